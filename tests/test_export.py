"""INT8 end to end on a tiny ResNet18: calibrate, QAT, export for every target, run each artifact
in its own runtime and compare it with the fake-quant PyTorch graph it was made from."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from tiny_recipes import int8_recipe

from edgecnn.artifact import Artifact, load_artifact
from edgecnn.data import Preprocess, load_dataset
from edgecnn.errors import EdgecnnError
from edgecnn.export import export, model_for, resolve, weight_bits
from edgecnn.export.onnx import to_u8s8
from edgecnn.host import has_vnni
from edgecnn.numerics.diagnose import load_reference
from edgecnn.quantize import stages
from edgecnn.results import FloatModel, QuantizedGraph
from edgecnn.runtimes import open_session
from edgecnn.train import train

quiet = {"log": lambda s: None, "progress": False}


def _export(float_run, target, runtime=None, precision="int8", **kw):
    """The artifact folder of the tiny net: its stages composed as ``edgecnn export`` does."""
    _, recipe, ckpt = float_run
    rt = resolve(target, runtime, precision)
    model = model_for("test_resnet18", recipe, rt, precision=precision, checkpoint=ckpt, **quiet)
    art = export(model, target, recipe=recipe, runtime=runtime, precision=precision, log=quiet["log"], **kw)
    return art.dir


def _recipe(tmp, qat_lr=0.001, name="r.toml"):
    return int8_recipe(tmp, qat_lr, name)[1]


@pytest.fixture(scope="module")
def float_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    recipe = _recipe(tmp)
    result = train("test_resnet18", recipe, threads=1, **quiet)
    return tmp, recipe, str(result.checkpoint)


@pytest.fixture(scope="module")
def calibrated(float_run):
    _, recipe, ckpt = float_run
    return stages.calibrate("test_resnet18", recipe, checkpoint=ckpt, **quiet)


@pytest.fixture(scope="module")
def test_batch(float_run):
    _, _, ckpt = float_run
    pre = Preprocess.from_dict(torch.load(ckpt, weights_only=True)["preprocess"])
    return pre.apply_numpy(load_dataset(None).test.images[:256])


@pytest.fixture(scope="module")
def artifacts(float_run, calibrated, tmp_path_factory):
    out = {}
    for target, runtime in (("cpu", "openvino"), ("cpu", "onnxruntime"), ("jetson", None), ("rpi", None)):
        path = tmp_path_factory.mktemp(f"{target}-{runtime}") / "bundle"
        out[(target, runtime)] = _export(float_run, target, runtime, out=path)
    return out


def test_calibrate_reports_the_drop_and_is_cached(float_run, calibrated):
    _, recipe, ckpt = float_run
    assert isinstance(calibrated, QuantizedGraph) and calibrated.method == "minmax"
    assert calibrated.graph.is_file()  # made here or by an earlier test of the same model (cached)
    r = calibrated.report
    assert r["method"] == "minmax" and r["calibration"]["num_images"] == 64
    assert r["calibration"]["split"].startswith("calib")
    assert r["drop_points"] == pytest.approx(
        100 * (r["fp32"]["top1"] - r["int8_fakequant"]["top1"]), abs=1e-3
    )
    assert r["fp32"]["top1"] > 0.3  # the tiny net learnt something, so agreement figures mean something
    assert r["float_ops"] == []  # every conv, linear, add and pool of ResNet18 is quantized
    again = stages.calibrate("test_resnet18", recipe, checkpoint=ckpt, **quiet)
    assert again.cached and again.key == calibrated.key == r["key"]
    assert again.fakequant_top1 == r["int8_fakequant"]["top1"] and again.drop_points == r["drop_points"]


def test_calibrate_that_trains_first_runs_ptq_on_its_threads(float_run, monkeypatch):
    """Training the float model first (here its cached run) must not reset calibrate's --threads,
    and calibrate leaves the caller's thread count as it found it."""
    from edgecnn.quantize import pt2e

    _, recipe, _ = float_run
    seen = []

    class Stop(Exception):
        pass

    def ptq(*args, **kw):
        seen.append(torch.get_num_threads())
        raise Stop  # before the fake-quant evaluation: only the count matters

    monkeypatch.setattr(pt2e, "ptq", ptq)
    before = torch.get_num_threads()
    with pytest.raises(Stop):  # num_images=32: not the calibrated fixture's cached run
        stages.calibrate("test_resnet18", recipe, num_images=32, threads=before + 2, **quiet)
    assert seen == [before + 2]
    assert torch.get_num_threads() == before


def test_one_calibration_image_gives_a_graph_for_any_batch(float_run):
    """--num-images 1 used to trace a batch-1 graph that then refused the evaluation's batches
    (a traceback: "Guard failed: x.size()[0] == 1"); the graph must keep its dynamic batch."""
    from edgecnn.quantize.pt2e import load_graph

    _, recipe, ckpt = float_run
    r = stages.calibrate("test_resnet18", recipe, checkpoint=ckpt, num_images=1, **quiet)
    assert r.report["calibration"]["num_images"] == 1 and 0.0 <= r.fakequant_top1 <= 100.0
    graph = load_graph(r.graph)
    size = recipe.data.image_size
    for n in (1, 3):
        assert graph(torch.zeros(n, recipe.data.channels, size, size)).shape[0] == n


def test_calibration_set_too_small_for_the_method(float_run):
    _, recipe, ckpt = float_run
    with pytest.raises(EdgecnnError, match="at least 32 images"):
        stages.calibrate("test_resnet18", recipe, checkpoint=ckpt, method="entropy", num_images=8, **quiet)


@pytest.mark.slow
def test_metadata_describes_the_artifact(artifacts, calibrated):
    for (target, _), path in artifacts.items():
        meta = load_artifact(path).meta  # verifies every file's sha256
        assert meta["target"] == target and meta["precision"] == "int8"
        q = meta["quantization"]
        assert q["calibration"]["split_id"] == calibrated.report["calibration"]["split_id"]
        seven = target == "cpu" and meta["runtime"] == "openvino" and not has_vnni()
        assert q["weights_range"].startswith("int8 limited to [-63, 63]" if seven else "[-127, 127]")
        assert q["calibration"]["method"] == "minmax"
        assert meta["preprocess"]["image_size"] == 32
        assert meta["float_layers"] == []
        assert q["float_layers"] == []
        assert json.loads((path / "float_layers.json").read_text()) == {
            "kept_float": [],
            "graph": [],
            "backend": [],
        }
        assert meta["source"]["sha256"] == calibrated.report["source"]["sha256"]


def _qdq(path):
    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    return m, inits


@pytest.mark.slow
def test_jetson_onnx_is_tensorrt_explicit_quantization(artifacts):
    m, inits = _qdq(artifacts[("jetson", None)] / "model.onnx")
    q = [n for n in m.graph.node if n.op_type == "QuantizeLinear"]
    dq = [n for n in m.graph.node if n.op_type == "DequantizeLinear"]
    assert q and dq
    for n in q:  # activations: int8, per-tensor, zero point 0
        assert inits[n.input[2]].dtype == np.int8 and inits[n.input[2]].size == 1 and inits[n.input[2]] == 0
    weights = [n for n in dq if n.input[0] in inits]
    assert len(weights) == 21  # 20 convolutions + fc, stored as int8, per output channel
    for n in weights:
        w, scale = inits[n.input[0]], inits[n.input[1]]
        assert w.dtype == np.int8 and scale.size == w.shape[0] and np.all(inits[n.input[2]] == 0)
        assert w.min() >= -127
    convs = [n for n in m.graph.node if n.op_type in ("Conv", "Gemm")]
    assert all(len(n.input) < 3 or inits[n.input[2]].dtype == np.float32 for n in convs)  # float bias


@pytest.mark.slow
def test_onnxruntime_file_is_the_same_grid_in_uint8(artifacts, test_batch):
    m, inits = _qdq(artifacts[("cpu", "onnxruntime")] / "model.onnx")
    for n in m.graph.node:
        if n.op_type == "QuantizeLinear":
            assert inits[n.input[2]].dtype == np.uint8 and inits[n.input[2]] == 128
    s8 = open_session(artifacts[("jetson", None)], runtime="onnxruntime", threads=1).run(test_batch)
    u8 = open_session(artifacts[("cpu", "onnxruntime")], threads=1).run(test_batch)
    np.testing.assert_allclose(u8, s8, atol=1e-5)


@pytest.mark.slow
def test_openvino_file_is_the_same_grid_with_uint8_after_relu(artifacts, test_batch, tmp_path):
    """The OpenVINO IR reads post-ReLU activations as uint8 with zero point 0 (no FakeQuantize left
    to re-encode them, no int8 pooling), and the rewrite behind it leaves every value as it was."""
    import onnxruntime as ort

    from edgecnn.export.onnx import to_u8_after_relu
    from edgecnn.export.openvino import runtime_precisions

    s8 = artifacts[("jetson", None)] / "model.onnx"
    n = to_u8_after_relu(s8, tmp_path / "u8.onnx")
    m, inits = _qdq(tmp_path / "u8.onnx")
    q = [x for x in m.graph.node if x.op_type == "QuantizeLinear"]
    u8 = [x for x in q if inits[x.input[2]].dtype == np.uint8]
    assert n == len(u8) >= 17  # the 17 ReLUs of ResNet18, the max-pool and the global mean
    assert all(inits[x.input[2]] == 0 for x in u8)
    # Exactly the symmetric graph's values, also where activations saturate (inputs scaled up):
    # reference kernels (no graph optimizations), so only the encoding differs.
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    a, b = (
        ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
        for p in (s8, tmp_path / "u8.onnx")
    )
    for k in (1.0, 4.0):
        x = (test_batch[:16] * k).astype(np.float32)
        np.testing.assert_array_equal(a.run(None, {"input": x})[0], b.run(None, {"input": x})[0])
    kinds = runtime_precisions(artifacts[("cpu", "openvino")] / "model.xml")
    assert not [k for k in kinds if k.startswith("FakeQuantize") and kinds[k] == "i8"], kinds
    # Every convolution and pool after a ReLU reads uint8. The stem convolution reads the signed image
    # itself: OpenVINO runs it u8 (shifted) on AVX-512 VNNI CPUs and s8 on AMX ones (seen on a Sapphire
    # Rapids Xeon, 2026-12-02), so it is the one layer allowed either.
    not_u8 = [k for k, v in kinds.items() if k.split(":")[0] in ("Convolution", "Pooling") and v != "u8"]
    assert not_u8 in ([], ["Convolution:node_conv2d/WithoutBiases"]), kinds


@pytest.mark.slow
def test_uint8_after_relu_covers_googlenet_concats(tmp_path):
    """GoogLeNet's inception outputs are concats of ReLU branches: their quantizers become uint8
    too (only the input's and the logits' stay int8), and the values stay exactly the same."""
    import onnxruntime as ort

    from edgecnn.export.onnx import export_onnx, finalize_qdq, to_u8_after_relu
    from edgecnn.models import create
    from edgecnn.quantize.pt2e import ptq

    torch.manual_seed(0)
    x = torch.randn(16, 3, 32, 32)
    q = ptq(create("test_googlenet", num_classes=10).eval(), x, batch_size=16)
    s8 = export_onnx(q, x[:2], tmp_path / "s8.onnx")
    finalize_qdq(s8)
    to_u8_after_relu(s8, tmp_path / "u8.onnx")
    m, inits = _qdq(tmp_path / "u8.onnx")
    producer = {o: n for n in m.graph.node for o in n.output}
    kept = []
    for n in m.graph.node:
        if n.op_type == "QuantizeLinear" and inits[n.input[2]].dtype == np.int8:
            src = producer.get(n.input[0])
            kept.append(src.op_type if src is not None else "input")
    assert sorted(kept) == ["Gemm", "input"], kept
    assert any(n.op_type == "Concat" for n in m.graph.node)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    a, b = (
        ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
        for p in (s8, tmp_path / "u8.onnx")
    )
    for k in (1.0, 5.0):
        xi = (x[:4] * k).numpy()
        np.testing.assert_array_equal(a.run(None, {"input": xi})[0], b.run(None, {"input": xi})[0])


def test_u8s8_rewrite_refuses_a_float_model(tmp_path):
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["x"], ["y"])
    g = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(g), str(tmp_path / "f.onnx"))
    with pytest.raises(EdgecnnError, match="no int8 activation"):
        to_u8s8(tmp_path / "f.onnx", tmp_path / "u.onnx")
    assert not (tmp_path / "u.onnx").exists()


@pytest.mark.parametrize(
    "key,runtime",
    [
        (("cpu", "openvino"), None),
        (("cpu", "onnxruntime"), None),
        (("jetson", None), "onnxruntime"),
        (("jetson", None), "openvino"),
        (("rpi", None), None),
    ],
)
@pytest.mark.slow
def test_every_runtime_runs_the_fake_quant_graph(artifacts, test_batch, key, runtime):
    art = load_artifact(artifacts[key])
    ref = load_reference(art)(torch.from_numpy(test_batch)).detach().numpy()  # the graph it was exported from
    out = open_session(artifacts[key], runtime=runtime, threads=1).run(test_batch)
    # A broken export (wrong zero point, float fallback, lost scale) is far above 3% of the logit
    # spread. ONNX Runtime and LiteRT add the bias as int32: with the bias on its int32 grid
    # (snap_biases) they follow the fake-quant graph to 0.0006% of the spread (0.18% and 98.4%
    # top-1 agreement here with the bias off the grid). OpenVINO skips the rounding of a
    # convolution's requantization where it fuses a residual add: its own IR leaves that
    # requantization out (pt2e.residual_form) and follows its graph as closely; the Jetson file read
    # by OpenVINO does not (0.37% of the spread, 98% agreement on this tiny net).
    spread = ref.max() - ref.min()
    drift = np.abs(out - ref).mean() / spread
    assert drift < 0.03, "integer kernels drifted from the fake-quant graph"
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.9
    if (runtime or art.meta["runtime"]) in ("onnxruntime", "tflite") or key == ("cpu", "openvino"):
        assert drift < 5e-4 and (out.argmax(1) == ref.argmax(1)).mean() >= 0.99, "bias off its int32 grid?"


@pytest.mark.slow
def test_tflite_is_full_integer(artifacts):
    meta = load_artifact(artifacts[("rpi", None)]).meta
    assert meta["input"]["dtype"] == "int8" and meta["output"]["dtype"] == "int8"
    assert meta["input"]["scale"] > 0 and meta["input"]["shape"] == [1, 3, 32, 32]


@pytest.mark.slow
def test_artifacts_are_reproducible_and_carry_no_build_paths(artifacts, float_run, tmp_path):
    """The same checkpoint and recipe give the same bytes, and no artifact names the directories
    it was built in (the exporter's stack traces did: two checkouts gave two different files)."""
    import hashlib
    from pathlib import Path

    import edgecnn

    build_dirs = {
        str(Path(edgecnn.__file__).resolve().parents[1]).encode(),
        str(Path(torch.__file__).parent).encode(),
    }
    for path in artifacts.values():
        meta = load_artifact(path).meta
        for name in meta["files"]:
            data = (path / name).read_bytes()
            assert not any(d in data for d in build_dirs), f"{path.name}/{name} names a build directory"
    again = _export(float_run, "jetson", out=tmp_path / "again", force=True)
    digest = [
        hashlib.sha256((p / "model.onnx").read_bytes()).hexdigest()
        for p in (artifacts[("jetson", None)], again)
    ]
    assert digest[0] == digest[1]


def test_bundle_is_replaced_whole_and_foreign_dirs_refused(float_run, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(EdgecnnError, match="did not write"):
        _export(float_run, "jetson", out=foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_fp32_and_fp16_exports(float_run, tmp_path, test_batch, monkeypatch):
    """And the float model is exported to ONNX once for both: the artifacts share runs/onnx's file."""
    from edgecnn.export import onnx as onnx_export

    exported = []
    real = onnx_export.export_onnx
    monkeypatch.setattr(onnx_export, "export_onnx", lambda *a, **k: exported.append(a[2]) or real(*a, **k))
    _, _, ckpt = float_run
    model, _ = __import__("edgecnn.models", fromlist=["from_checkpoint"]).from_checkpoint(ckpt)
    ref = model.eval()(torch.from_numpy(test_batch)).detach().numpy()
    fp32 = _export(float_run, "cpu", precision="fp32", out=tmp_path / "a")
    np.testing.assert_allclose(open_session(fp32, threads=1).run(test_batch), ref, atol=1e-3)
    assert load_artifact(fp32).meta["quantization"] is None
    fp16 = _export(float_run, "jetson", precision="fp16", out=tmp_path / "b")
    out = open_session(fp16, runtime="onnxruntime", threads=1).run(test_batch)
    assert np.abs(out - ref).max() < 0.05 * (ref.max() - ref.min())
    assert len(exported) <= 1  # none where an earlier test exported this checkpoint already


def test_export_takes_a_stage_result_and_runs_no_stage_before_it(
    float_run, calibrated, tmp_path, monkeypatch
):
    _, recipe, ckpt = float_run

    def upstream(*a, **k):
        raise AssertionError("export ran a stage before it")

    for name in ("calibrate", "qat"):
        monkeypatch.setattr(stages, name, upstream)
    monkeypatch.setattr("edgecnn.train.train", upstream)
    log = quiet["log"]
    art = export(calibrated, "jetson", recipe=recipe, out=tmp_path / "j", log=log)
    assert isinstance(art, Artifact) and not art.cached and art.dir == tmp_path / "j"
    assert art.meta["precision"] == "int8" and art.meta["runtime"] == "tensorrt"
    assert art.meta["source"]["quantized_graph"] == str(calibrated.graph)
    assert art.meta["quantization"]["fakequant_top1"] == calibrated.fakequant_top1
    again = export(calibrated, "jetson", recipe=recipe, out=tmp_path / "j", log=log)
    assert again.cached and again.meta == art.meta
    with pytest.raises(EdgecnnError, match="int8 is exported from a quantized graph: run calibrate or qat"):
        export(FloatModel.given("test_resnet18", ckpt), "jetson", recipe=recipe, precision="int8", log=log)
    with pytest.raises(
        EdgecnnError, match="fp16 is exported from the float model, not from a quantized graph"
    ):
        export(calibrated, "jetson", recipe=recipe, precision="fp16", log=log)
    other = 7 if weight_bits("tensorrt") == 8 else 8
    with pytest.raises(EdgecnnError, match=f"{other}-bit weights; tensorrt here needs 8-bit"):
        export(dataclasses.replace(calibrated, weight_bits=other), "jetson", recipe=recipe, log=log)


def test_unsupported_combinations_fail_before_work(monkeypatch):
    with pytest.raises(EdgecnnError, match="supports int8, fp32, not fp16"):
        resolve("rpi", None, "fp16")
    with pytest.raises(EdgecnnError, match="Did you mean: jetson"):
        resolve("jetsn", None, "int8")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "openvino" else real(n, *a))
    with pytest.raises(EdgecnnError, match=r"edgecnn\[openvino\]"):
        resolve("cpu", None, "int8")


def test_qat_fine_tunes_from_calibrated_scales(float_run, calibrated):
    _, recipe, ckpt = float_run
    q = stages.qat("test_resnet18", recipe, checkpoint=ckpt, **quiet)
    r = q.report
    assert q.stage == "qat" and r["ptq"]["top1"] == calibrated.fakequant_top1
    assert r["qat"]["steps"] == 2  # 0.25 epoch of 512 images at batch 64
    assert 0 <= q.fakequant_top1 == r["int8_fakequant"]["top1"] <= 1 and r["float_ops"] == []


def test_qat_nan_stops_and_says_so(float_run, tmp_path):
    _, _, ckpt = float_run
    recipe = _recipe(tmp_path, qat_lr="1e30", name="nan.toml")  # finite: a recipe refuses inf
    with pytest.raises(EdgecnnError, match="QAT (loss became nan|weights became NaN).*lower qat.lr"):
        stages.qat("test_resnet18", recipe, checkpoint=ckpt, **quiet)


@pytest.mark.slow
def test_googlenet_pools_after_an_inception_concat_are_quantized(tmp_path):
    """Every max-pool of GoogLeNet reads a dequantized int8 tensor, including the stage pools
    after an inception concat and the 3x3/1 branch pool that follows them; the .tflite made
    from the graph then matches it as closely as ResNet18's does."""
    from edgecnn.export.tflite import export_tflite
    from edgecnn.models import create
    from edgecnn.quantize.pt2e import float_ops, make_quantizer, ptq

    torch.manual_seed(0)
    pre = Preprocess(image_size=32, channels=3, mean=(0.286,) * 3, std=(0.353,) * 3)
    x = torch.from_numpy(pre.apply_numpy(load_dataset(None).test.images[:64]))
    model = create("test_googlenet", num_classes=10).eval()
    for m in model.modules():  # He init: torchvision's std-0.01 init leaves an untrained net's features ~0
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    g = ptq(model, x, batch_size=32)
    pools = [n for n in g.graph.nodes if "max_pool2d" in str(n.target)]
    assert len(pools) == 13 and float_ops(g) == []
    for n in pools:
        assert "dequantize" in str(n.args[0].target), f"{n.name} reads {n.args[0].name}, a float tensor"
    path = export_tflite(g, x[:1], tmp_path / "g.tflite", quantizer=make_quantizer())
    ref = g(x).detach().numpy()
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    (inp,), (outp,) = it.get_input_details(), it.get_output_details()
    (si, zi), (so, zo) = inp["quantization"], outp["quantization"]
    out = []
    for i in range(len(x)):
        q = np.clip(np.round(x[i : i + 1].numpy() / si) + zi, -128, 127).astype(np.int8)
        it.set_tensor(inp["index"], q.transpose(0, 2, 3, 1) if list(inp["shape"]) == [1, 32, 32, 3] else q)
        it.invoke()
        out.append((it.get_tensor(outp["index"]).astype(np.float32) - zo) * so)
    out = np.concatenate(out)
    assert np.abs(out - ref).mean() < 0.03 * (ref.max() - ref.min())
