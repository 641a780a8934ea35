"""`edgecnn bench --profile --host` and `edgecnn devices fit --host`, against the real loopback sshd
of tests/test_remote.py (the "device" is this machine, its Python without torch)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from test_bench import _onnx_artifact
from test_remote import PY, Sshd, sshd  # noqa: F401 - the sshd fixture

from edgecnn.cli import cli
from edgecnn.devices import load_device
from edgecnn.devices.predict import efficiency_for, predict_latency
from edgecnn.remote import profile_hosts

TINY_SUITE = (
    ("conv", 8, 16, 3, 1, 16),
    ("conv", 16, 32, 1, 1, 16),
    ("linear", 256, 64),
    ("pool", 8, 2, 2, 16),
)


def test_profile_over_ssh(sshd, tmp_path):  # noqa: F811
    pytest.importorskip("onnxruntime")
    art = _onnx_artifact(tmp_path / "tiny")
    (r,) = profile_hosts(art, ["dev1"], remote_python=PY, ssh_config=sshd.config, runs=3, warmup=1, threads=1)
    assert r.ok, r.error
    assert r.result["host"] == "dev1" and r.result["runtime"] == "onnxruntime"
    assert {x["op_type"] for x in r.result["layers"]} >= {"Gemm"} and r.result["total_ms"] > 0
    out = CliRunner().invoke(
        cli,
        [
            "bench",
            str(art),
            "--profile",
            "--host",
            "dev1",
            "--ssh-config",
            str(sshd.config),
            "--remote-python",
            PY,
            "--min-runs",
            "3",
        ],
        catch_exceptions=False,
    )
    assert out.exit_code == 0, out.output
    assert out.output.startswith("dev1:") and "ONNX Runtime enable_profiling" in out.output
    assert sshd.leftovers() == []


@pytest.mark.slow
def test_fit_over_ssh_writes_a_profile_the_predictor_uses(sshd, tmp_path):  # noqa: F811
    pytest.importorskip("onnxruntime")
    from edgecnn.devices.remote_fit import fit_over_ssh

    out = tmp_path / "my-device.toml"
    path, prof = fit_over_ssh(
        "dev1",
        base="host",
        runtime="onnxruntime",
        precisions=["fp32"],
        suite=TINY_SUITE,
        out=out,
        remote_python=PY,
        ssh_config=str(sshd.config),
        threads=1,
        runs=3,
        warmup=1,
    )
    assert path == out and [p.name for p in tmp_path.iterdir()] == ["my-device.toml"]  # nothing half-written
    again = load_device(str(out))
    assert (
        again.name == "host-dev1" and again.layer_points == prof.layer_points and len(prof.layer_points) == 4
    )
    assert all(lp.seconds > 0 and "on dev1" in lp.measured_with for lp in again.layer_points)
    eff = efficiency_for(again, "onnxruntime")
    assert "timed on this device" in eff.basis and eff.physical and eff.points == len(TINY_SUITE)
    assert all(0 < e <= 1 for t in eff.kernel_table().values() for e in t.values())
    r = predict_latency("resnet18", again, runtime="onnxruntime", precision="fp32", image_size=32)
    assert r["latency_source"] == "predicted" and r["latency_ms"]["p50"] > 0
    assert sshd.leftovers() == []


def test_fit_host_cli_errors(tmp_path):
    r = CliRunner().invoke(cli, ["devices", "fit", "--host", "dev1"])
    assert r.exit_code == 2 and "--host needs --base DEVICE" in r.output
    r = CliRunner().invoke(cli, ["devices", "fit", "--host", "dev1", "--base", "rpi5", "--nets"])
    assert r.exit_code == 2 and "--nets apply to this host only" in r.output
    r = CliRunner().invoke(
        cli, ["devices", "fit", "--host", "dev1", "--base", "rpi5", "--runtime", "openvino"]
    )
    assert r.exit_code == 2 and "has no runtime 'openvino'" in r.output
    assert json.loads(CliRunner().invoke(cli, ["devices", "--json"]).output)  # the listing still works
