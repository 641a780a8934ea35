"""Bench statistics on fake runs, environment fingerprint from fake roots, `edgecnn bench`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgecnn.bench import bench_arch, bench_artifact
from edgecnn.cli import cli
from edgecnn.devices.detect import environment
from edgecnn.errors import EdgecnnError
from edgecnn.timing import FORMAT, _rapl_delta_uj, add_energy, measure, peak_memory_mb, summarize

LATENCY_KEYS = {"p50", "p90", "p99", "mean", "min", "max", "std", "n"}


def _root(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


def _ordered(lat: dict) -> bool:
    return lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]


def test_summarize_orders_percentiles():
    s = summarize([5.0, 1.0, 2.0, 3.0, 100.0, 4.0])
    assert set(s) == LATENCY_KEYS and s["n"] == 6 and s["min"] == 1.0 and s["max"] == 100.0
    assert _ordered(s) and s["p50"] == 3.5
    assert summarize([2.0])["std"] == 0.0
    with pytest.raises(ValueError):
        summarize([])


def test_measure_a_fake_run_with_known_sleep(tmp_path):
    calls = []

    def run(x):
        calls.append(len(x))
        time.sleep(0.001)

    x = np.zeros((4, 3, 8, 8), np.float32)
    r = measure(
        run, x, warmup=3, min_seconds=0.02, min_runs=7, max_seconds=10, load_ms=12.5, threads=2, root=tmp_path
    )
    lat = r["latency_ms"]
    assert r["format"] == FORMAT and r["latency_source"] == "measured"
    assert set(lat) == LATENCY_KEYS and lat["n"] >= 7 and _ordered(lat)
    assert lat["min"] >= 1.0 - 1e-6  # every call slept at least 1 ms
    assert len(calls) == 3 + lat["n"] and r["batch"] == 4 and r["threads"] == 2 and r["load_ms"] == 12.5
    assert r["first_inference_ms"] > 0 and r["throughput_ips"] > 0 and r["peak_memory_mb"] > 0
    assert r["energy_mj"] is None and r["energy_source"] is None  # no RAPL under the fake root
    assert "env" not in r and environment(tmp_path)["device"] == "host"  # the bench adds env, not measure


def test_measure_stops_at_max_seconds():
    r = measure(
        lambda x: time.sleep(0.005),
        np.zeros((1, 1)),
        warmup=0,
        min_seconds=0,
        min_runs=10_000,
        max_seconds=0.03,
    )
    assert 1 <= r["latency_ms"]["n"] < 10_000 and "max_seconds" in r["notes"][0]
    r = measure(lambda x: None, np.zeros((1, 1)), warmup=0, min_seconds=5, min_runs=3, max_runs=5)
    assert r["latency_ms"]["n"] == 5
    # `bench --min-seconds` above max_seconds (60 by default) is measured for as long as asked
    r = measure(
        lambda x: time.sleep(0.005), np.zeros((1, 1)), warmup=0, min_seconds=0.1, min_runs=1, max_seconds=0.02
    )
    assert r["timed_s"] >= 0.1 and not r["notes"]


def test_rapl_energy_from_a_fake_counter(tmp_path):
    rapl = tmp_path / "sys/class/powercap/intel-rapl:0"
    _root(
        tmp_path,
        {
            "sys/class/powercap/intel-rapl:0/energy_uj": "1000000",
            "sys/class/powercap/intel-rapl:0/max_energy_range_uj": "262143328850",
        },
    )

    def run(x):  # every call "uses" 2000 uJ = 2 mJ for the batch of 2
        f = rapl / "energy_uj"
        f.write_text(str(int(f.read_text()) + 2000))

    r = measure(run, np.zeros((2, 3)), warmup=2, min_seconds=0, min_runs=5, root=tmp_path)
    assert r["energy_source"] == "measured-rapl" and r["energy_mj"] == pytest.approx(1.0)
    assert _rapl_delta_uj((100, 1000), (50, 1000)) == 950  # counter wrapped
    assert _rapl_delta_uj((100, 1000), (300, 1000)) == 200


def test_estimated_energy_and_peak_memory_from_fake_status(tmp_path):
    r = add_energy({"latency_ms": {"p50": 4.0}, "batch": 2, "energy_mj": None}, 10.0, "test")
    assert r["energy_source"] == "estimated" and r["energy_mj"] == pytest.approx(20.0)
    kept = add_energy(
        {"latency_ms": {"p50": 4.0}, "energy_mj": 1.5, "energy_source": "measured-rapl"}, 10, "t"
    )
    assert kept["energy_mj"] == 1.5 and kept["energy_source"] == "measured-rapl"
    root = _root(tmp_path, {"proc/self/status": "Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t 1000 kB\n"})
    assert peak_memory_mb(root) == pytest.approx(200.0)


def test_environment_on_a_fake_jetson_and_pi(tmp_path):
    jet = _root(
        tmp_path / "jetson",
        {
            "proc/device-tree/model": "NVIDIA Jetson Orin Nano Developer Kit\x00",
            "etc/nv_tegra_release": "# R36 (release), REVISION: 3.0, GCID: 1, BOARD: generic\n",
            "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": "schedutil\n",
            "proc/cpuinfo": (
                "processor\t: 0\nmodel name\t: ARMv8 Processor rev 1 (v8l)\nFeatures\t: fp asimd\n"
            ),
        },
    )
    env = environment(jet)
    assert env["device"] == "jetson-orin-nano" and env["l4t_release"] == "R36.3.0"
    assert env["governor"] == "schedutil" and env["board"].startswith("NVIDIA Jetson Orin Nano")
    assert "numpy" in env["versions"] and "nvpmodel" not in env  # commands run only for the real root
    pi = _root(tmp_path / "pi", {"proc/device-tree/model": "Raspberry Pi 5 Model B Rev 1.0\x00"})
    assert environment(pi)["device"] == "rpi5"


def test_an_emulated_machine_labels_its_latency_emulated(tmp_path, capsys):
    # what scripts/emulated-pi/make.sh leaves in its root, with the sysfs device-tree model run.sh shows
    root = _root(
        tmp_path,
        {
            "etc/edgecnn-emulated": "emulated=qemu-user\nqemu=qemu-aarch64 version 7.2.19\n",
            "sys/firmware/devicetree/base/model": "Raspberry Pi 5 Model B Rev 1.0\x00",
        },
    )
    r = measure(lambda x: x, np.zeros(2), warmup=1, min_seconds=0, min_runs=3, root=root)
    assert r["latency_source"] == "emulated" and "never a latency figure" in r["notes"][0]
    env = environment(root)
    assert env["emulated"]["emulated"] == "qemu-user" and env["device"] == "rpi5"
    assert (
        measure(lambda x: x, np.zeros(2), min_seconds=0, min_runs=1, root=tmp_path / "none")["latency_source"]
        == "measured"
    )
    from edgecnn.cli.bench_cmd import _print

    _print({**r, "env": env, "arch": "tiny", "device": "rpi5", "runtime": "tflite", "precision": "int8"})
    assert "EMULATED (qemu-user" in capsys.readouterr().out


def test_bench_arch_predicts_for_an_absent_device():
    r = bench_arch("resnet18", target="rpi4")
    assert r["latency_source"] == "predicted" and r["device"] == "rpi4" and r["precision"] == "int8"
    assert set(r["latency_ms"]) >= LATENCY_KEYS and r["latency_ms"]["n"] == 0
    assert r["energy_source"] == "estimated" and "not this machine" in r["notes"][0]
    r = bench_arch("alexnet", target="cpu", predict=True, precision="fp32")
    assert r["latency_source"] == "predicted" and r["device"] == "host" and "--predict" in r["notes"][0]
    with pytest.raises(EdgecnnError, match="no INT8 path"):
        bench_arch("resnet18", target="jetson-nano", precision="int8")


def _onnx_artifact(d: Path) -> Path:
    """A tiny float ONNX artifact (Flatten + Gemm), 3x8x8 -> 10 classes, dynamic batch."""
    from onnx import TensorProto, helper, numpy_helper

    from edgecnn.artifact import write_metadata
    from edgecnn.data import Preprocess

    d.mkdir(parents=True)
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((192, 10)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (d / "model.onnx").write_bytes(model.SerializeToString())
    pre = Preprocess(image_size=8, channels=3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    write_metadata(
        d,
        {
            "arch": "tiny",
            "model_options": {},
            "num_classes": 10,
            "class_names": [f"c{i}" for i in range(10)],
            "target": "cpu",
            "runtime": "onnxruntime",
            "precision": "fp32",
            "files": ["model.onnx"],
            "input": {
                "name": "input",
                "shape": [None, 3, 8, 8],
                "layout": "NCHW",
                "dtype": "float32",
                "scale": None,
                "zero_point": None,
            },
            "output": {
                "name": "logits",
                "shape": [None, 10],
                "dtype": "float32",
                "scale": None,
                "zero_point": None,
            },
            "preprocess": pre.to_dict(),
            "quantization": None,
            "float_layers": [],
            "source": {"checkpoint": None, "sha256": None},
            "tools": {},
        },
    )
    return d


def test_bench_artifact_measures_and_verifies_sha256(tmp_path):
    pytest.importorskip("onnxruntime")
    art = _onnx_artifact(tmp_path / "tiny")
    r = bench_artifact(art, threads=1, batch=3, warmup=1, min_seconds=0, min_runs=4)
    assert r["latency_source"] == "measured" and r["latency_ms"]["n"] >= 4 and _ordered(r["latency_ms"])
    assert r["arch"] == "tiny" and r["runtime"] == "onnxruntime" and r["batch"] == 3 and r["image_size"] == 8
    assert r["load_ms"] > 0 and r["artifact"] == str(art) and r["energy_mj"] is not None
    assert "IOBinding" in r["binding"] and r["python_overhead_ms"] is None  # ORT keeps no time of its own
    (art / "model.onnx").write_bytes((art / "model.onnx").read_bytes() + b"\0")
    with pytest.raises(EdgecnnError, match="sha256"):
        bench_artifact(art, min_seconds=0, min_runs=1)


def test_bench_cli_json_artifact_and_prediction(tmp_path):
    pytest.importorskip("onnxruntime")
    art = _onnx_artifact(tmp_path / "tiny")
    r = CliRunner().invoke(
        cli,
        [
            "bench",
            str(art),
            "--json",
            "--min-seconds",
            "0",
            "--min-runs",
            "3",
            "--warmup",
            "1",
            "--threads",
            "1",
        ],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["latency_source"] == "measured" and set(out["latency_ms"]) >= LATENCY_KEYS
    r = CliRunner().invoke(
        cli, ["bench", "googlenet", "--target", "jetson", "--json"], catch_exceptions=False
    )
    assert r.exit_code == 0
    out = json.loads(r.output)
    assert out["latency_source"] == "predicted" and out["device"] == "jetson-orin-nano"
    assert {"p50", "p90", "p99", "mean", "min", "max", "n"} <= set(out["latency_ms"])
    r = CliRunner().invoke(
        cli, ["bench", "resnet18", "--target", "rpi", "--precision", "fp32"], catch_exceptions=False
    )
    assert r.exit_code == 0 and "PREDICTED" in r.output and "not measured" in r.output


def test_bench_cli_errors_are_one_line(tmp_path):
    r = CliRunner().invoke(cli, ["bench", "resnt18"])
    assert r.exit_code == 2 and "Did you mean: resnet18" in r.output and r.output.strip().count("\n") == 0
    r = CliRunner().invoke(cli, ["bench", "resnet18", "--target", "jetsn"])
    assert r.exit_code == 2 and "unknown device 'jetsn'" in r.output
    art = _onnx_artifact(tmp_path / "tiny")
    r = CliRunner().invoke(cli, ["bench", str(art), "--target", "rpi"])
    assert r.exit_code == 2 and "--target apply to ARCH" in r.output


def test_bench_arch_measures_on_this_host_through_openvino():
    pytest.importorskip("openvino")
    pytest.importorskip("onnx")
    r = bench_arch(
        "test_resnet18", target="cpu", image_size=32, threads=1, warmup=1, min_seconds=0, min_runs=3
    )
    assert r["latency_source"] == "measured" and r["device"] == "host" and r["runtime"] == "openvino"
    assert r["precision"] == "fp32" and r["latency_ms"]["n"] >= 3 and _ordered(r["latency_ms"])
    assert (
        r["load_ms"] > 0
        and r["energy_source"] in ("estimated", "measured-rapl")
        and "random weights" in r["model"]
    )
    with pytest.raises(EdgecnnError, match="through OpenVINO"):
        bench_arch("test_resnet18", target="cpu", runtime="tflite", image_size=32)


def test_measure_splits_the_runtimes_own_time_from_the_python_call():
    """A runtime that says it spent 1 ms of a >= 3 ms call: the other >= 2 ms are the Python side."""
    r = measure(
        lambda x: time.sleep(0.003),
        np.zeros((1, 1)),
        warmup=0,
        min_seconds=0,
        min_runs=5,
        runtime_ms=lambda: 1.0,
    )
    assert r["latency_clock"] == "runtime" and r["latency_ms"]["p50"] == 1.0 and r["latency_ms"]["n"] == 5
    assert r["wall_latency_ms"]["p50"] >= 3.0 and r["wall_latency_ms"]["n"] == 5
    assert 2.0 <= r["python_overhead_ms"] == pytest.approx(r["wall_latency_ms"]["p50"] - 1.0, abs=0.5)
    plain = measure(lambda x: None, np.zeros((1, 1)), warmup=0, min_seconds=0, min_runs=2)
    assert (
        plain["python_overhead_ms"] is None
        and plain["latency_clock"] == "wall"
        and "wall_latency_ms" not in plain
    )
