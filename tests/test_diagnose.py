"""``edgecnn diagnose`` on the tiny ResNet18: every quantized layer of the OpenVINO, ONNX Runtime,
LiteRT (and, with a GPU, TensorRT) artifacts compared with the fake-quant graph, matched by name."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper
from test_remote import PY, sshd  # noqa: F401 - sshd is a fixture
from tiny_recipes import int8_recipe

from edgecnn.artifact import load_artifact, write_metadata
from edgecnn.cli import cli
from edgecnn.errors import EdgecnnError
from edgecnn.export import export, model_for, resolve
from edgecnn.numerics.diagnose import Diagnosis, diagnose, figure
from edgecnn.numerics.reference import graph_taps
from edgecnn.numerics.remote import diagnose_hosts
from edgecnn.quantize.pt2e import load_graph
from edgecnn.train import train

quiet = {"log": lambda s: None, "progress": False}
TARGETS = {
    "openvino": ("cpu", "openvino"),
    "onnxruntime": ("cpu", "onnxruntime"),
    "tflite": ("rpi", None),
    "tensorrt": ("jetson", None),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("diagnose")
    _, recipe = int8_recipe(tmp)
    ckpt = str(train("test_resnet18", recipe, threads=1, **quiet).checkpoint)

    def artifact(target, runtime, precision, out):
        rt = resolve(target, runtime, precision)
        model = model_for("test_resnet18", recipe, rt, precision=precision, checkpoint=ckpt, **quiet)
        return export(
            model, target, recipe=recipe, precision=precision, runtime=rt, out=out, log=quiet["log"]
        ).dir

    arts = {rt: artifact(target, runtime, "int8", tmp / rt) for rt, (target, runtime) in TARGETS.items()}
    return arts, artifact("cpu", None, "fp32", tmp / "fp32")


def test_taps_are_named_as_the_onnx_quantize_outputs(tiny):
    arts, _ = tiny
    art = load_artifact(arts["onnxruntime"])
    taps = graph_taps(load_graph(art.meta["source"]["quantized_graph"]))
    q_outputs = [
        n.output[0] for n in onnx.load(str(art.model_file)).graph.node if n.op_type == "QuantizeLinear"
    ]
    assert [t.name for t in taps] == q_outputs  # the names the exporter keeps, one per activation
    assert taps[0].module == "input" and taps[-1].output and taps[-1].module == "fc"
    assert {t.op for t in taps} >= {"conv", "relu", "add+relu", "max_pool", "avg_pool", "linear"}


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino", "tflite"])
def test_every_layer_is_compared(tiny, runtime):
    arts, _ = tiny
    d = diagnose(arts[runtime], images=32)
    # LiteRT's flatten is a reshape without a tensor of its own
    expected_missing = {"tflite": 1}.get(runtime, 0)
    assert len(d.missing) == expected_missing
    # 33 quantized activations; OpenVINO's graph has 8 fewer (residual_form)
    assert len(d.layers) == {"openvino": 25}.get(runtime, 33) - expected_missing
    assert d.agreement >= 0.95
    first = d.layers[0]
    assert first.module == "input" and first.values == 32 * 3 * 32 * 32
    for lay in d.layers:
        # quantization noise is small against the signal, and the runtime is never far from its graph
        assert lay.fakequant_sqnr_fp32_db > 15 and lay.max_steps <= 8, lay
    if runtime == "onnxruntime":  # ONNX Runtime computes the fake-quant graph exactly here
        assert d.first_departure is None and d.exposed_output_steps == 0


def _break_one_conv(src, dest, layer: str):
    """A copy of the ONNX Runtime artifact with the int8 weights of ``layer`` negated."""
    shutil.copytree(src, dest)
    model = onnx.load(str(dest / "model.onnx"))
    conv = next(
        n
        for n in model.graph.node
        if n.op_type == "Conv"
        and any(p.key == "pkg.torch.onnx.name_scopes" and f"'{layer}'" in p.value for p in n.metadata_props)
    )
    dq = next(n for n in model.graph.node if n.output[0] == conv.input[1])
    init = next(i for i in model.graph.initializer if i.name == dq.input[0])
    init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
    onnx.save(model, str(dest / "model.onnx"))
    meta = json.loads((dest / "metadata.json").read_text())
    meta["files"] = list(meta["files"])
    write_metadata(dest, meta)


def test_the_first_departure_is_the_broken_layer(tiny, tmp_path):
    arts, _ = tiny
    _break_one_conv(arts["onnxruntime"], tmp_path / "broken", "layer2.0.conv2")
    d = diagnose(tmp_path / "broken", images=16)
    assert d.first_departure == "layer2.0.conv2:conv"
    before = [lay for lay in d.layers if lay.index < 10]
    assert all(lay.sqnr_db is None for lay in before)  # exact up to the broken layer
    broken = next(lay for lay in d.layers if lay.label == "layer2.0.conv2:conv")
    assert broken.share_off > 0.5 and broken.sqnr_db < 5


def test_a_jetson_onnx_can_be_diagnosed_in_openvino(tiny):
    arts, _ = tiny
    d = diagnose(arts["tensorrt"], images=16, runtime="openvino")
    assert d.runtime == "openvino" and not d.missing


def test_cli_table_json_and_plot(tiny, tmp_path):
    arts, fp32 = tiny
    runner = CliRunner()
    png = tmp_path / "sqnr.png"
    r = runner.invoke(
        cli,
        [
            "diagnose",
            str(arts["onnxruntime"]),
            str(arts["tflite"]),
            "--images",
            "8",
            "--json",
            "--plot",
            str(png),
        ],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [d["runtime"] for d in doc["diagnoses"]] == ["onnxruntime", "tflite"]
    assert {"label", "sqnr_db", "sqnr_fp32_db", "max_steps", "share_off"} <= set(
        doc["diagnoses"][0]["layers"][0]
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # one SQNR line per runtime across the layers, and the graph's own quantization noise
    results = [Diagnosis.from_json(d) for d in doc["diagnoses"]]
    assert json.loads(json.dumps(results[0].to_json())) == doc["diagnoses"][0]  # the JSON is all of it
    lines = figure(results).axes[0].lines
    assert [ln.get_label().split()[0] for ln in lines] == ["onnxruntime", "tflite", "fake-quant"]
    assert len(lines[0].get_xdata()) == 33 and len(lines[1].get_xdata()) == 32  # LiteRT: no flatten tensor
    table = runner.invoke(
        cli, ["diagnose", str(arts["onnxruntime"]), "--images", "4"], catch_exceptions=False
    )
    assert "first departure: none" in table.stdout and "layer2.0.conv2:conv" in table.stdout
    bad = runner.invoke(cli, ["diagnose", str(fp32), "--images", "4"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error:") and "fp32 artifact" in bad.stderr


def test_a_missing_quantized_graph_is_an_error(tiny, tmp_path):
    arts, _ = tiny
    with pytest.raises(EdgecnnError, match="--graph"):
        diagnose(arts["onnxruntime"], images=4, graph=tmp_path / "gone.pt2")


def _check_tensorrt_taps(art):
    d = diagnose(art, images=8)
    assert d.runtime == "tensorrt" and not d.missing and d.agreement >= 0.95
    assert np.isfinite([lay.max_steps for lay in d.layers]).all()
    return d


@pytest.mark.needs_tensorrt
def test_tensorrt_layers_are_marked_as_outputs(tiny):
    _check_tensorrt_taps(tiny[0]["tensorrt"])


@pytest.fixture
def fake_jetson(monkeypatch):
    """tests/fake_jetson's tensorrt and cuda modules (an "engine" is its ONNX run in ONNX Runtime),
    imported for one test and removed again."""
    fakes = ("tensorrt", "cuda", "cuda.bindings", "cuda.bindings.runtime")
    for name in fakes:
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent / "fake_jetson"))
    yield
    for name in fakes:
        sys.modules.pop(name, None)


def test_tensorrt_taps_on_the_fake_jetson(tiny, fake_jetson):
    """The TensorRT path without a GPU: every tap marked as an engine output, the model's own output
    for the agreement. The fake runs the ONNX in ONNX Runtime, so it matches ONNX Runtime's taps."""
    d = _check_tensorrt_taps(tiny[0]["tensorrt"])
    ort = diagnose(tiny[0]["tensorrt"], images=8, runtime="onnxruntime")
    assert [lay.label for lay in d.layers] == [lay.label for lay in ort.layers]
    assert [lay.max_steps for lay in d.layers] == [lay.max_steps for lay in ort.layers]


def test_openvino_follows_its_residual_form_graph(tiny):
    """OpenVINO skips the rounding of a convolution's requantization where it fuses a residual add;
    its IR leaves that requantization out, and its block outputs then follow the graph."""
    arts, _ = tiny
    meta = load_artifact(arts["openvino"]).meta
    assert len(meta["quantization"]["residual_form"]) == 8  # one per basic block
    d = diagnose(arts["openvino"], images=64, layers="*add*")
    assert [lay.op for lay in d.layers] == ["add+relu"] * 8 + ["linear"]  # the glob, and the output
    assert d.first_departure is None and d.agreement == 1.0
    jetson = diagnose(arts["tensorrt"], images=64, runtime="openvino", layers="*add*")
    assert jetson.first_departure == "layer1.0.relu:add+relu"  # the requantized form: OpenVINO departs


def test_diagnose_on_a_device_over_ssh_is_the_local_diagnosis(tiny, sshd):  # noqa: F811
    """The device (this machine through a real sshd, torch unimportable there) runs LiteRT and sends
    its layers back as integer codes; compared here, they give exactly the local diagnosis."""
    arts, _ = tiny
    (r,) = diagnose_hosts(
        arts["tflite"], ["dev1"], images=8, threshold=0.02, remote_python=PY, ssh_config=sshd.config
    )
    assert r.ok, r.error
    d, local = r.result, diagnose(arts["tflite"], images=8)
    assert d.host == "dev1" and local.host is None and d.runtime == "tflite"
    assert d.missing == local.missing and d.agreement == local.agreement
    assert d.exposed_output_steps == local.exposed_output_steps
    assert d.layers == local.layers  # every statistic of every layer, matched by the same names
    assert d.runtime_info["off_grid_steps"] < 1e-3  # LiteRT's tensors are on their grid
    assert d.runtime_info["machine"]["hostname"]
    assert sshd.leftovers() == []


def test_cli_host_json_plot_and_one_line_per_failed_host(tiny, sshd, tmp_path):  # noqa: F811
    arts, _ = tiny
    png = tmp_path / "sqnr.png"
    args = ["diagnose", str(arts["onnxruntime"]), "--images", "4", "--host", "dev1", "--host", "badport"]
    args += ["--remote-python", PY, "--ssh-config", str(sshd.config), "--json", "--plot", str(png)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2, r.output
    doc = json.loads(r.stdout)
    (d,) = doc["diagnoses"]
    assert d["host"] == "dev1" and d["runtime"] == "onnxruntime" and d["first_departure"] is None
    assert all(lay["sqnr_db"] is None for lay in d["layers"])  # ONNX Runtime computes the graph exactly
    assert [f["host"] for f in doc["failed"]] == ["badport"]
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "badport" in errors[0]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
