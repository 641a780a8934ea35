"""`edgecnn bench ARTIFACT --profile`: per-layer times from each runtime's own profiler."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgecnn.artifact import write_metadata
from edgecnn.cli import cli
from edgecnn.errors import EdgecnnError
from edgecnn.profiling import LayerProfile, profile_artifact, tflite_csv_layers, trtexec_layers

META = {
    "arch": "tiny",
    "model_options": {},
    "num_classes": 10,
    "class_names": [f"c{i}" for i in range(10)],
    "precision": "fp32",
    "quantization": None,
    "float_layers": [],
    "source": {"checkpoint": None, "sha256": None},
    "tools": {},
    "output": {"name": "logits", "shape": [1, 10], "dtype": "float32", "scale": None, "zero_point": None},
    "preprocess": {"image_size": 8, "channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3},
}


def _meta(files, runtime, target, shape, layout="NCHW"):
    from edgecnn.data import Preprocess

    pre = Preprocess(image_size=8, channels=3, mean=(0.5,) * 3, std=(0.25,) * 3).to_dict()
    return {
        **META,
        "files": files,
        "runtime": runtime,
        "target": target,
        "preprocess": pre,
        "input": {
            "name": "input",
            "shape": shape,
            "layout": layout,
            "dtype": "float32",
            "scale": None,
            "zero_point": None,
        },
    }


def conv_onnx_artifact(d: Path, runtime: str) -> Path:
    """Conv 3x3 -> ReLU -> MaxPool -> Flatten -> Gemm, 1x3x8x8 -> 10 (ONNX helper: no torch)."""
    from onnx import TensorProto, helper, numpy_helper

    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal((128, 10)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c"], ["r"], name="relu1"),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool1"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w2"], ["logits"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "tinyconv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (d / "model.onnx").write_bytes(model.SerializeToString())
    write_metadata(d, _meta(["model.onnx"], runtime, "cpu", [1, 3, 8, 8]))
    return d


def _check(prof: LayerProfile, runtime: str, ops: set[str]) -> None:
    assert prof.runtime == runtime and prof.arch == "tiny" and prof.runs == 5
    assert ops <= {x.op_type for x in prof.layers}, [x.op_type for x in prof.layers]
    assert all(x.ms >= 0 for x in prof.layers) and prof.total_ms > 0
    back = LayerProfile.from_json(json.loads(json.dumps(prof.to_json())))
    assert back == prof and prof.to_json()["format"] == "edgecnn.layer-profile/1"


def test_openvino_perf_count_profile(tmp_path):
    pytest.importorskip("openvino")
    art = conv_onnx_artifact(tmp_path / "ov", "openvino")
    prof = profile_artifact(art, threads=1, runs=5, warmup=2)
    _check(prof, "openvino", {"Convolution", "MaxPool"})
    assert prof.profiler == "OpenVINO PERF_COUNT" and prof.wall_ms > 0
    assert any(x.kernel for x in prof.layers)  # the implementation OpenVINO chose (jit_*, brgconv_*, ...)


def test_onnxruntime_profile_and_cli_table(tmp_path):
    pytest.importorskip("onnxruntime")
    art = conv_onnx_artifact(tmp_path / "ort", "onnxruntime")
    prof = profile_artifact(art, threads=1, runs=5, warmup=1)
    _check(prof, "onnxruntime", {"Conv", "MaxPool", "Gemm"})
    assert not list(Path.cwd().glob("ort_*.json")) and not list(tmp_path.glob("**/ort_*.json"))
    r = CliRunner().invoke(
        cli, ["bench", str(art), "--profile", "--min-runs", "5", "--threads", "1"], catch_exceptions=False
    )
    assert r.exit_code == 0, r.output
    assert "ONNX Runtime enable_profiling" in r.output and "Gemm" in r.output and "layers," in r.output
    r = CliRunner().invoke(
        cli, ["bench", str(art), "--profile", "--json", "--min-runs", "5"], catch_exceptions=False
    )
    out = json.loads(r.output)
    assert out["runtime"] == "onnxruntime" and len(out["layers"]) >= 3 and out["total_ms"] > 0


def test_profile_errors_are_one_line(tmp_path):
    r = CliRunner().invoke(cli, ["bench", "resnet18", "--profile"])
    assert r.exit_code == 2 and "--profile times the layers of an exported artifact" in r.output
    assert r.output.strip().count("\n") == 0


# ---- TFLite: LiteRT's benchmark_model (a stand-in script here, reading the real model) -------------

FAKE_BENCHMARK_MODEL = r'''#!{python}
"""Stands in for LiteRT's benchmark_model: lists the model's real ops (read with ai-edge-litert) in
the tool's CSV op-profile format, with made-up times. Only the format is the tool's."""
import sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--"))
assert args["enable_op_profiling"] == "true" and args["op_profiling_output_mode"] == "csv"
from ai_edge_litert.interpreter import Interpreter
ops = Interpreter(model_path=args["graph"])._get_ops_details()
rows = ["============================== Run Order ==============================",
        "node type, first, avg_ms, %, cdf%, mem KB, times called, name",
        "TfLiteXNNPackDelegate, 0.5, 0.4, 100%, 100%, 0, 1, [logits]:1", "",
        "Delegate internal: ",
        "============================== Run Order ==============================",
        "node type, first, avg_ms, %, cdf%, mem KB, times called, name"]
for i, op in enumerate(ops):
    rows.append(f"{{op['op_name']}} (ND), 0.1, {{0.01 * (i + 1):.3f}}, 1%, 1%, 0, 1, "
                f"Delegate/{{op['op_name']}}:{{i}}")
rows.append("")
open(args["op_profiling_output_file"], "w").write("\n".join(rows) + "\n")
'''


def _script(path: Path, text: str) -> Path:
    path.write_text(text.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def tiny_tflite_artifact(d: Path) -> Path:
    torch = pytest.importorskip("torch")
    litert_torch = pytest.importorskip("litert_torch")
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(128, 10)
    ).eval()
    d.mkdir(parents=True)
    litert_torch.convert(net, (torch.zeros(1, 3, 8, 8),)).export(str(d / "model.tflite"))
    write_metadata(d, _meta(["model.tflite"], "tflite", "rpi", [1, 3, 8, 8]))
    return d


def test_tflite_profile_runs_benchmark_model(tmp_path, monkeypatch):
    pytest.importorskip("ai_edge_litert")
    art = tiny_tflite_artifact(tmp_path / "tfl")
    monkeypatch.delenv("EDGECNN_TFLITE_BENCHMARK_MODEL", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(EdgecnnError, match="no op profiler"):
        profile_artifact(art, runs=5)
    tool = _script(tmp_path / "benchmark_model", FAKE_BENCHMARK_MODEL)
    monkeypatch.setenv("EDGECNN_TFLITE_BENCHMARK_MODEL", str(tool))
    prof = profile_artifact(art, runs=5, threads=2)
    assert prof.runtime == "tflite" and prof.profiler.startswith("LiteRT benchmark_model")
    # the delegate's internal table, not the interpreter's one-node view
    assert "CONV_2D (ND)" in {x.op_type for x in prof.layers} and len(prof.layers) >= 3
    assert all(x.name.startswith("Delegate/") for x in prof.layers)


def test_tflite_csv_without_a_delegate_table():
    text = (
        "============================== Run Order ==============================\n"
        "node type, start, first, avg_ms, %, cdf%, mem KB, times called, name\n"
        "CONV_2D, 0.0, 1.5, 1.25, 60%, 60%, 0, 1, [conv]:0\n"
        "FULLY_CONNECTED, 1.5, 0.9, 0.75, 40%, 100%, 0, 1, [fc]:1\n\n"
    )
    layers = tflite_csv_layers(text)
    assert [(x.op_type, x.ms) for x in layers] == [("CONV_2D", 1.25), ("FULLY_CONNECTED", 0.75)]
    with pytest.raises(EdgecnnError, match="Run Order"):
        tflite_csv_layers("nothing here")


# ---- TensorRT: trtexec --exportProfile (a stand-in trtexec; no GPU here) --------------------------

FAKE_TRTEXEC = r"""#!{python}
import json, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
assert "--separateProfileRun" in sys.argv and open(args["loadEngine"], "rb").read() == b"ENGINE"
json.dump([{{"count": int(args["iterations"])}},
           {{"name": "conv1 + relu1", "timeMs": 5.0, "averageMs": 0.05, "medianMs": 0.048,
             "percentage": 70.0}},
           {{"name": "fc", "timeMs": 2.0, "averageMs": 0.02, "medianMs": 0.021, "percentage": 30.0}}],
          open(args["exportProfile"], "w"))
"""


def test_tensorrt_profile_runs_trtexec(tmp_path, monkeypatch):
    d = tmp_path / "trt"
    d.mkdir()
    (d / "model.engine").write_bytes(b"ENGINE")
    write_metadata(d, _meta(["model.engine"], "tensorrt", "jetson", [1, 3, 8, 8]))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "trtexec", FAKE_TRTEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    prof = profile_artifact(d, runs=7)
    assert prof.profiler == "trtexec --exportProfile" and prof.statistic == "median over 7 iterations"
    assert [(x.name, x.ms) for x in prof.layers] == [("conv1 + relu1", 0.048), ("fc", 0.021)]
    assert trtexec_layers([{"count": 1}, {"name": "a", "averageMs": 0.5}])[0].ms == 0.5
