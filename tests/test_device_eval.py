"""`edgecnn evaluate --host`: accuracy measured on a device over SSH, against the real sshd on 127.0.0.1.

The "device" is this machine behind test_remote's sshd: its Python is this venv's with a
``torch`` stub that fails to import first on its PYTHONPATH, then this checkout.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_evaluate import CLASSES, PREPROCESS, folder, make_artifact  # noqa: F401 - folder is a fixture
from test_remote import NO_MODULE, PY, REPO, _wrapper, sshd  # noqa: F401 - sshd is a fixture

import edgecnn.device_eval as device_eval
from edgecnn.artifact import write_metadata
from edgecnn.data import load_dataset
from edgecnn.device_eval import (
    FLIPPED_SHOWN,
    _pack,
    device_accuracy,
    evaluate_hosts,
    host_runtime,
    predict_file,
)
from edgecnn.errors import EdgecnnError
from edgecnn.evaluate import evaluate_artifact, load_eval_set

FAKE_JETSON = Path(__file__).resolve().parent / "fake_jetson"


def _int8_onnx(d: Path, data: Path) -> Path:
    """The tiny float ONNX of test_evaluate, quantized to INT8 QDQ by ONNX Runtime's own static PTQ."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    float_dir = make_artifact(d.parent / f"{d.name}-fp32", CLASSES)
    x = PREPROCESS.apply_numpy(load_dataset(data).train.images)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": x[i : i + 4]} for i in range(0, len(x), 4)])

        def get_next(self):
            return next(self.batches, None)

    d.mkdir(parents=True)
    quantize_static(
        str(float_dir / "model.onnx"),
        str(d / "model.onnx"),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )
    meta = json.loads((float_dir / "metadata.json").read_text())
    meta.update(precision="int8", files=["model.onnx"])
    write_metadata(d, meta)
    return d


@pytest.fixture(scope="module")
def own_home(tmp_path_factory):
    """A cache of this module's own: its deploy runs must not leave trained stages for test_deploy's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGECNN_HOME", str(tmp_path_factory.mktemp("device-eval-home")))
        yield


@pytest.fixture(scope="module")
def int8_artifact(tmp_path_factory, folder) -> Path:  # noqa: F811
    pytest.importorskip("onnxruntime")
    return _int8_onnx(tmp_path_factory.mktemp("device-eval") / "tiny-int8", folder)


def _one_line(msg: str) -> bool:
    return "\n" not in msg and msg.strip() == msg and len(msg) > 0


def test_device_gives_exactly_the_hosts_accuracy(sshd, int8_artifact, folder):  # noqa: F811
    here = evaluate_artifact(int8_artifact, data=folder)
    (r,) = evaluate_hosts(int8_artifact, ["dev1"], data=folder, remote_python=PY, ssh_config=sshd.config)
    assert r.ok, r.error
    acc = r.result
    assert (
        acc.num_images == here["num_images"] == 54 and acc.top1 == here["top1"] and acc.top5 == here["top5"]
    )
    assert list(acc.top1_ci) == here["top1_ci"] and acc.precision == "int8"
    assert (
        acc.host_run.agreement == 1.0 and acc.host_run.flipped == () and acc.host_run.runtime == "onnxruntime"
    )
    assert acc.host_run.mcnemar == {"b01": 0, "b10": 0, "p_value": 1.0}
    onnxruntime = pytest.importorskip("onnxruntime")
    assert acc.runtime == "onnxruntime" and acc.runtime_version == onnxruntime.__version__
    assert acc.machine["hostname"] == platform.node() and acc.machine["machine"] == platform.machine()
    assert acc.machine["cpu_model"] and platform.release() in acc.machine["uname"]
    out = acc.to_json()
    assert out["accuracy_where"] == "device:dev1" and out["top1"] == here["top1"]
    json.dumps(out)
    assert sshd.leftovers() == []


def test_cli_one_line_per_failed_host_and_json_for_all(sshd, int8_artifact, folder):  # noqa: F811
    env = {**os.environ, "EDGECNN_SSH_CONFIG": str(sshd.config), "EDGECNN_REMOTE_PYTHON": PY}
    p = _evaluate_cli(
        str(int8_artifact), "--data", str(folder), "--host", "dev1", "--host", "badport", "--json", env=env
    )
    assert p.returncode == 2, p.stderr
    out = json.loads(p.stdout)
    assert [o["host"] for o in out] == ["dev1", "badport"]
    assert out[0]["accuracy_where"] == "device:dev1" and out[0]["host_run"]["agreement"] == 1.0
    assert out[0]["host_run"]["flipped"] == [] and out[0]["num_images"] == 54
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: badport: cannot connect"), p.stderr
    p = _evaluate_cli(str(int8_artifact), "--data", str(folder), "--host", "dev1", env=env)
    assert p.returncode == 0, p.stderr
    assert "\ndev1: tiny int8 in onnxruntime" in p.stdout and "(measured on the device)" in p.stdout
    assert "agreement with this machine's run (onnxruntime" in p.stdout and "0 images flipped" in p.stdout


def test_device_side_failure_is_one_error_line(sshd, int8_artifact, folder, tmp_path):  # noqa: F811
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "onnxruntime.py").write_text(NO_MODULE.format("onnxruntime"))
    python = _wrapper(tmp_path / "python", f'PYTHONPATH={blocked}:$PYTHONPATH exec {PY} "$@"\n')
    p = _evaluate_cli(
        str(int8_artifact),
        "--data",
        str(folder),
        "--host",
        "dev1",
        "--ssh-config",
        str(sshd.config),
        "--remote-python",
        python,
    )
    assert p.returncode == 2 and "top-1" not in p.stdout  # progress lines only
    assert p.stderr.count("\n") == 1 and _one_line(p.stderr.strip())
    assert p.stderr.startswith(
        "error: dev1: ONNX Runtime is not installed on the device; install it there: pip install onnxruntime"
    ), p.stderr
    assert sshd.leftovers() == []


def test_jetson_engine_is_built_and_cached_on_the_device(sshd, int8_artifact, folder, tmp_path, monkeypatch):  # noqa: F811
    """A TensorRT artifact runs in the device's TensorRT (tests/fake_jetson: no GPU here): the engine is
    built there once, cached in the device's $EDGECNN_HOME/engines under engine_key, and reused by bench."""
    from edgecnn.fileio import sha256_file
    from edgecnn.remote import bench_hosts
    from edgecnn.tensorrt.engine_cache import DeviceInfo, engine_key, sidecar_path

    art = shutil.copytree(int8_artifact, tmp_path / "tiny-jetson")
    meta = json.loads((art / "metadata.json").read_text())
    meta.update(target="jetson", runtime="tensorrt")
    write_metadata(art, meta)
    builds = tmp_path / "builds"
    python = _wrapper(
        tmp_path / "python", f'FAKE_TRT_BUILDS={builds} PYTHONPATH={FAKE_JETSON}:$PYTHONPATH exec {PY} "$@"\n'
    )
    monkeypatch.setattr(device_eval, "has_vnni", lambda: False)  # the host run in ONNX Runtime, as the fake
    (r,) = evaluate_hosts(art, ["dev1"], data=folder, remote_python=python, ssh_config=sshd.config)
    assert r.ok, r.error
    acc = r.result
    assert acc.runtime == "tensorrt" and acc.runtime_version == "10.3.0.30" and acc.target == "jetson"
    assert acc.host_run.runtime == "onnxruntime" and any("stand-in" in n for n in acc.notes)
    assert acc.host_run.agreement == 1.0  # the fake engine runs the same QDQ file in ONNX Runtime
    cache = Path(acc.runtime_info["engine_cache"])
    key = engine_key(sha256_file(art / "model.onnx"), "int8", DeviceInfo("10.3.0.30", "Orin (fake)", "8.7"))
    assert cache == sshd.root / "remote-home" / "engines" / f"{key}.engine"
    assert json.loads(sidecar_path(cache).read_text())["gpu"] == "Orin (fake)"
    assert builds.read_text().count("build") == 1
    (b,) = bench_hosts(
        art, ["dev1"], remote_python=python, ssh_config=sshd.config, min_seconds=0.1, min_runs=2, warmup=1
    )
    assert b.ok, b.error
    assert b.result["runtime"] == "tensorrt" and b.result["runtime_info"]["engine_cache"] == str(cache)
    assert builds.read_text().count("build") == 1  # bench loaded the engine evaluate built
    assert sshd.leftovers() == []


def test_device_entry_point_imports_no_torch(int8_artifact, folder, tmp_path):  # noqa: F811
    """`python -m edgecnn.device_eval` (what runs on the device) never imports torch."""
    images = tmp_path / "images.npz"
    np.savez_compressed(images, images=load_dataset(folder).test.images)
    code = (
        "import sys, runpy; sys.argv = ['x', sys.argv[1], sys.argv[2]]\n"
        "try:\n    runpy.run_module('edgecnn.device_eval', run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGECNN_HOME": str(tmp_path / "home")}
    p = subprocess.run(
        [PY, "-c", code, str(int8_artifact), str(images)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    answer = json.loads(p.stdout)
    assert answer["topk"]["shape"] == [54, 5] and answer["runtime"] == "onnxruntime"


def test_flips_are_listed_all_in_json_and_capped_in_text(int8_artifact, folder, tmp_path, capsys):  # noqa: F811
    from edgecnn.cli.evaluate_cmd import _print_device

    es = load_eval_set(int8_artifact, data=folder)
    answer = predict_file(int8_artifact, _npz(tmp_path, es.images))
    top = _unpacked(answer)
    local = {
        "runtime": "onnxruntime",
        "note": None,
        "top1": 0.5,
        "predictions": top[:, 0].copy(),
        "correct": top[:, 0] == es.labels,
    }
    flip = np.arange(0, 54, 2)  # 27 images: the device says another class there
    local["predictions"][flip] = (local["predictions"][flip] + 1) % len(CLASSES)
    acc = device_accuracy("pi", answer, es, local, wall_s=1.0)
    assert acc.host_run.flipped == tuple(int(i) for i in flip) and acc.host_run.agreement == pytest.approx(
        27 / 54
    )
    assert acc.to_json()["host_run"]["flipped"] == flip.tolist()
    _print_device(acc)
    text = capsys.readouterr().out
    shown = ", ".join(str(i) for i in flip[:FLIPPED_SHOWN])
    assert f"27 images flipped: {shown} and {27 - FLIPPED_SHOWN} more (--json lists all)" in text
    # a damaged or short answer is a one-line error naming the host
    with pytest.raises(EdgecnnError, match="pi: the device returned predictions for 3 images, not 54"):
        device_accuracy("pi", {**answer, "topk": _pack(top[:3])}, es, None, 1.0)


@pytest.mark.slow
def test_deploy_host_records_accuracy_measured_on_the_device(sshd, tmp_path, own_home):  # noqa: F811
    """deploy --target rpi --host: the INT8 TFLite artifact's accuracy and latency both come from the
    device."""
    pytest.importorskip("ai_edge_litert")
    from tiny_recipes import int8_recipe

    from edgecnn.deploy import BenchOptions, DeployOptions, SshOptions, deploy

    recipe = int8_recipe(tmp_path)[1]
    quiet = {"log": lambda s: None, "progress": False}

    def fast(**kw) -> DeployOptions:
        return DeployOptions(bench=BenchOptions(seconds=0.2, runs=3), threads=1, **kw)

    ssh = SshOptions(remote_python=PY, config=str(sshd.config))
    path, report = deploy(
        "test_resnet18",
        "rpi",
        recipe=recipe,
        options=fast(hosts=["dev1"], out=tmp_path / "rpi", ssh=ssh),
        **quiet,
    )
    r = report.to_json()
    a = r["accuracy"]
    assert (
        r["accuracy_where"] == "device:dev1"
        and a["where"] == "device:dev1"
        and r["stages"]["evaluate"]["where"]
    )
    assert a["runtime"] == "tflite" and a["runtime_version"] and a["machine"]["hostname"] == platform.node()
    assert a["host_agreement"] == 1.0 and a["flipped"] == []
    here = evaluate_artifact(path / "artifact")  # the same artifact on this machine
    assert a["top1"] == here["top1"] and a["top5"] == here["top5"] and a["agreement"] == here["agreement"]
    assert r["latency_source"] == "measured" and r["latency_where"] == "measured on dev1 over SSH"
    (h,) = r["hosts"]
    assert h["host"] == "dev1" and h["result"]["latency_ms"]["n"] >= 3 and h["accuracy"]["top1"] == a["top1"]
    assert h["accuracy_error"] is None and "device:dev1" in (path / "report.md").read_text()
    # Without --host the rpi artifact's accuracy is this machine's, and says it is a stand-in.
    _, local = deploy(
        "test_resnet18", "rpi", recipe=recipe, options=fast(out=tmp_path / "rpi-local"), **quiet
    )
    local = local.to_json()
    assert local["accuracy_where"] == "host-standin:tflite" and local["accuracy"]["top1"] == a["top1"]
    assert any("stand-in" in n for n in local["notes"]) and local["accuracy"]["host_agreement"] is None
    assert sshd.leftovers() == []


def test_frontier_hosts_per_target():
    from edgecnn.frontier import parse_hosts, parse_targets

    targets = parse_targets("cpu,rpi4,jetson")
    hosts = parse_hosts(["rpi4=pi@10.0.0.7", "jetson=nvidia@orin", "rpi=pi@10.0.0.8"], targets)
    assert hosts == {"rpi4": ["pi@10.0.0.7", "pi@10.0.0.8"], "jetson": ["nvidia@orin"]}
    for bad, msg in (
        ("rpi", "pass TARGET=[USER@]HOST"),
        ("rpi=", "pass TARGET"),
        ("rpi=-oProxy", "pass TARGET"),
        ("rpi5=pi@x", "'rpi5' is none of --targets (cpu, rpi4, jetson)"),
    ):
        with pytest.raises(EdgecnnError, match=re.escape(msg)):
            parse_hosts([bad], targets)
    p = subprocess.run(
        [
            PY,
            "-m",
            "edgecnn",
            "frontier",
            "--targets",
            "rpi",
            "--archs",
            "test_resnet18",
            "--host",
            "jetson=nvidia@orin",
            "--out",
            "unused",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert (
        p.returncode == 2
        and p.stderr == "error: --host jetson=nvidia@orin: 'jetson' is none of --targets (rpi)\n"
    )


@pytest.mark.slow
def test_frontier_point_measured_on_a_device_says_so(sshd, tmp_path, own_home):  # noqa: F811
    pytest.importorskip("ai_edge_litert")
    from tiny_recipes import int8_recipe

    from edgecnn.frontier import FrontierOptions, run_frontier

    recipe = int8_recipe(tmp_path)[1]
    opts = FrontierOptions(
        recipe_for=lambda a: recipe,
        out=tmp_path / "f",
        hosts={"rpi": ["dev1"]},
        ssh_timeout=600,
        remote_python=PY,
        ssh_config=str(sshd.config),
        threads=1,
        bench_seconds=0.2,
        bench_runs=3,
        log=lambda s: None,
        progress=False,
    )
    out, res = run_frontier(["test_resnet18"], [("rpi", None)], ["int8"], opts)
    (p,) = res.points
    assert p.target == "rpi" and p.accuracy_where == "device:dev1" and p.latency_source == "measured"
    assert json.loads((out / "frontier.json").read_text())["points"][0]["accuracy_where"] == "device:dev1"
    assert (
        "on device:dev1" in (out / "report.md").read_text()
        and "accuracy_where" in (out / "frontier.csv").read_text()
    )


def _evaluate_cli(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, "-m", "edgecnn", "evaluate", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def _npz(tmp_path: Path, images: np.ndarray) -> Path:
    p = tmp_path / "images.npz"
    np.savez_compressed(p, images=images)
    return p


def _unpacked(answer: dict) -> np.ndarray:
    from edgecnn.device_eval import unpack

    return unpack(answer["topk"])


def _qdq_graph(path: Path, residual: bool) -> Path:
    """A QDQ ONNX graph of TensorRT's kind, reduced to what the stand-in choice reads: two dequantized
    tensors added (a residual add), or a dequantized tensor into a convolution."""
    import onnx
    from onnx import TensorProto, helper

    def dq(name):
        return helper.make_node("DequantizeLinear", [f"{name}_q", "scale"], [name])

    nodes = [dq("a"), dq("b")]
    nodes += (
        [helper.make_node("Add", ["a", "b"], ["y"])]
        if residual
        else [helper.make_node("Conv", ["a", "b"], ["y"])]
    )
    inputs = [helper.make_tensor_value_info(f"{n}_q", TensorProto.INT8, [1, 4, 4, 4]) for n in "ab"]
    graph = helper.make_graph(
        nodes,
        "g",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [helper.make_tensor("scale", TensorProto.FLOAT, [], [0.1])],
    )
    onnx.save(helper.make_model(graph), path)
    return path


@pytest.mark.parametrize(
    ("precision", "vnni", "installed", "residual", "expected"),
    [
        (
            "int8",
            True,
            {"openvino"},
            False,
            "openvino",
        ),  # integer convolutions, as TensorRT runs them, and fast
        ("int8", True, {"openvino"}, True, "onnxruntime"),  # a residual add: OpenVINO computes it its own way
        (
            "int8",
            False,
            {"openvino"},
            False,
            "onnxruntime",
        ),  # no VNNI: OpenVINO's 8-bit products could saturate
        ("int8", True, set(), False, "onnxruntime"),  # no OpenVINO installed
        ("fp32", True, {"openvino"}, False, "onnxruntime"),
        ("fp16", True, {"openvino"}, False, "onnxruntime"),
        ("int8", True, {"openvino", "tensorrt"}, False, "tensorrt"),  # TensorRT here: no stand-in
    ],
)
def test_host_runtime_stands_in_for_tensorrt(
    tmp_path, monkeypatch, precision, vnni, installed, residual, expected
):
    import importlib.machinery
    import importlib.util
    from types import SimpleNamespace

    pytest.importorskip("onnx")
    art = SimpleNamespace(
        meta={"precision": precision},
        runtime="tensorrt",
        model_file=_qdq_graph(tmp_path / "model.onnx", residual),
    )
    real = importlib.util.find_spec

    def find_spec(name, *a):  # openvino and tensorrt installed or not, as the case says
        if name in ("openvino", "tensorrt"):
            return importlib.machinery.ModuleSpec(name, None) if name in installed else None
        return real(name, *a)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(device_eval, "has_vnni", lambda: vnni)
    runtime, note = host_runtime(art)
    assert runtime == expected
    if expected == "tensorrt":
        assert note is None
    else:
        assert f"ran in {expected} (a stand-in, not the Jetson's TensorRT)" in note
    tflite = SimpleNamespace(
        meta={"precision": precision}, runtime="tflite", model_file=tmp_path / "model.tflite"
    )
    assert host_runtime(tflite) == ("tflite", None)  # only TensorRT's file has a stand-in
    # TensorRT asked for on a file that is not ONNX: not read here (the runtime's own check refuses it)
    assert host_runtime(tflite, "tensorrt")[0] == ("tensorrt" if "tensorrt" in installed else "onnxruntime")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
