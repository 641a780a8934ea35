"""Mixed precision under --max-drop (edgecnn.mixed): the search, and float layers in every runtime's file."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from tiny_recipes import int8_recipe, random_checkpoint

from edgecnn import mixed
from edgecnn.errors import EdgecnnError
from edgecnn.export import export, model_for
from edgecnn.quantize import stages
from edgecnn.results import QuantizedGraph

quiet = {"log": lambda s: None, "progress": False}
KEPT = ["layer2.0.conv2", "fc"]


def test_float_counts_double_up_to_the_cap():
    assert mixed.cap(21) == 5 and mixed.cap(3) == 1
    assert mixed.float_counts(5) == [1, 2, 4, 5]
    assert mixed.float_counts(4) == [1, 2, 4]
    assert mixed.float_counts(1) == [1]


class _Stages:
    """Stand-ins for the calibrate and qat stages: a drop per number of float layers."""

    def __init__(self, drops: dict[int, float], qat_drop: float = 0.1):
        self.drops, self.qat_drop, self.calls = drops, qat_drop, []

    def _report(self, stage, float_layers, drop):
        report = {
            "stage": stage,
            "arch": "resnet18",
            "float_layers": list(float_layers),
            "int8_fakequant": {"top1": 0.9 - drop / 100},
            "drop_points": drop,
            "key": f"{stage}{len(float_layers)}",
            "method": "minmax",
            "weight_bits": 8,
            "source": {"checkpoint": "/runs/train/x/model.pt", "sha256": "0" * 64},
            "calibration": {"split_id": "s", "batch_size": 32, "num_images": 64},
        }
        return QuantizedGraph.from_report(report, f"/runs/{stage}/{len(float_layers)}", cached=False)

    def calibrate(self, arch, recipe, *, float_layers=(), **kw):
        self.calls.append(("calibrate", tuple(float_layers)))
        return self._report("calibrate", float_layers, self.drops[len(float_layers)])

    def qat(self, arch, recipe, **kw):
        self.calls.append(("qat", ()))
        return self._report("qat", (), self.qat_drop)


@pytest.fixture
def fake(monkeypatch):
    ranking = [f"l{i}" for i in range(12)]  # cap(12) = 3: k = 1, 2, 3

    def use(drops, qat_drop=0.1):
        s = _Stages(drops, qat_drop)
        monkeypatch.setattr(stages, "calibrate", s.calibrate)
        monkeypatch.setattr(stages, "qat", s.qat)
        monkeypatch.setattr(
            mixed, "sensitivity_ranking", lambda *a, **k: (ranking, "/runs/sensitivity/x.json")
        )
        return s

    return use


def test_ptq_within_budget_stops_there(fake):
    s = fake({0: 0.2})
    r = mixed.within_budget("resnet18", None, 0.5, **quiet)
    assert s.calls == [("calibrate", ())] and r.chosen.kind == "ptq" and r.met and r.ranking is None


def test_the_fewest_float_layers_that_meet_the_budget(fake):
    s = fake({0: 2.0, 1: 1.2, 2: 0.4, 3: 0.1})
    r = mixed.within_budget("resnet18", None, 0.5, **quiet)
    assert [c for _, c in s.calls] == [(), ("l0",), ("l0", "l1")]  # stops at k = 2, never reaches QAT
    assert r.chosen.kind == "mixed" and r.chosen.float_layers == ("l0", "l1") and r.met
    doc = r.to_json()
    assert doc["chosen"] == "mixed (2 float)" and doc["float_layers"] == ["l0", "l1"] and doc["cap"] == 3
    assert [c["label"] for c in doc["candidates"]] == ["ptq", "mixed (1 float)", "mixed (2 float)"]
    assert r.stage_report["float_layers"] == ["l0", "l1"]


def test_qat_only_when_no_k_within_the_cap_meets_it(fake):
    s = fake({0: 2.0, 1: 1.5, 2: 1.2, 3: 0.9}, qat_drop=0.3)
    r = mixed.within_budget("resnet18", None, 0.5, **quiet)
    assert [k for k, _ in s.calls] == ["calibrate"] * 4 + ["qat"]
    assert r.chosen.kind == "qat" and r.met and r.stage_report["stage"] == "qat"
    s = fake({0: 2.0, 1: 1.5, 2: 1.2, 3: 0.9})
    r = mixed.within_budget("resnet18", None, 0.5, allow_qat=False, **quiet)  # edgecnn calibrate --max-drop
    assert "qat" not in [k for k, _ in s.calls] and not r.met and r.chosen.float_layers == ("l0", "l1", "l2")
    assert "misses" in r.describe()


def test_budget_section_of_the_report(fake):
    fake({0: 2.0, 1: 0.3})
    r = mixed.within_budget("resnet18", None, 0.5, **quiet)
    prices = [{"host_ms": 1.0, "host_vs_ptq": 1.0}, {"host_ms": 1.3, "host_vs_ptq": 1.3}]
    md = "\n".join(mixed.render_budget({**r.to_json(), "prices": prices}))
    assert "| mixed (1 float) | +0.30 | yes | 1.300 ms | 1.30x |" in md and "Float layers: l0." in md


def test_predicted_cost_of_float_layers():
    args = {"image_size": 224, "num_classes": 1000}
    int8 = mixed.predict_mixed("resnet18", "rpi5", "tflite", [], **args)
    part = mixed.predict_mixed("resnet18", "rpi5", "tflite", ["layer4.1.conv2"], **args)
    assert int8["ms"] < part["ms"] and part["band_ms"][0] < part["ms"] < part["band_ms"][1]


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mixed")
    torch.manual_seed(0)
    _, recipe = int8_recipe(tmp)
    return recipe, str(random_checkpoint(tmp, recipe))


def test_float_layers_are_in_the_calibrate_key_and_report(random_model):
    recipe, ckpt = random_model
    plain = stages.calibrate("test_resnet18", recipe, checkpoint=ckpt, **quiet).as_dict()
    kept_graph = stages.calibrate("test_resnet18", recipe, checkpoint=ckpt, float_layers=KEPT, **quiet)
    assert kept_graph.float_layers == tuple(sorted(KEPT))
    kept = kept_graph.as_dict()
    assert plain["float_layers"] == [] and kept["float_layers"] == sorted(KEPT)
    assert plain["key"] != kept["key"] and kept["dir"].split("/")[-1].startswith("test_resnet18-minmax-f2-")
    assert sorted(f.split()[0] for f in kept["float_ops"]) == ["conv", "linear"]
    with pytest.raises(EdgecnnError, match="no convolution or linear layer layer9.conv"):
        stages.calibrate("test_resnet18", recipe, checkpoint=ckpt, float_layers=["layer9.conv"], **quiet)


def _onnx_float_layers(path) -> list[str]:
    """The modules of the Conv / Gemm / MatMul nodes whose weight is not a DequantizeLinear output (they
    run in float), from the name scopes torch.onnx.export keeps on each node."""
    import ast

    m = onnx.load(str(path))
    made_by = {o: n.op_type for n in m.graph.node for o in n.output}
    out = []
    for n in m.graph.node:
        if n.op_type in ("Conv", "Gemm", "MatMul") and made_by.get(n.input[1]) != "DequantizeLinear":
            scopes = next(p.value for p in n.metadata_props if p.key == "pkg.torch.onnx.name_scopes")
            out.append(ast.literal_eval(scopes)[-2])
    return sorted(out)


def _check_onnx(path):
    assert _onnx_float_layers(path) == sorted(KEPT)


def _check_openvino(path):
    from edgecnn.export.openvino import runtime_precisions

    kinds = runtime_precisions(path / "model.xml")  # what OpenVINO's CPU plugin runs each layer in
    layers = [k.split(":")[0] for k in kinds if k.split(":")[0] in ("Convolution", "FullyConnected")]
    f32 = sorted(k.split(":")[0] for k, v in kinds.items() if v == "f32" and k.split(":")[0] in layers)
    assert len(layers) == 21 and f32 == ["Convolution", "FullyConnected"], kinds


def _check_tflite(path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path / "model.tflite"))
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    float_ops = [
        op["op_name"]
        for op in it._get_ops_details()
        if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED")
        and tensors[op["inputs"][1]]["dtype"] == np.float32  # a float weight: the layer runs in float
    ]
    assert sorted(float_ops) == ["CONV_2D", "FULLY_CONNECTED"], float_ops


@pytest.mark.parametrize(
    "target,runtime,check",
    [
        ("cpu", "onnxruntime", lambda p: _check_onnx(p / "model.onnx")),
        pytest.param("jetson", "tensorrt", lambda p: _check_onnx(p / "model.onnx"), marks=pytest.mark.slow),
        pytest.param("cpu", "openvino", _check_openvino, marks=pytest.mark.slow),
        pytest.param(
            "rpi",
            "tflite",
            _check_tflite,
            marks=[
                pytest.mark.slow,
                # Not yet: litert-torch's converter quantizes a float convolution that sits between
                # quantized activations (DQ -> conv -> Q) with its weight; only the final linear, whose
                # output is the graph's, stays float. float_layers.json's "backend" says so.
                pytest.mark.xfail(strict=True, reason="TFLite converter re-quantizes an inner float conv"),
            ],
        ),
    ],
)
def test_each_runtime_keeps_the_float_layers_in_float(random_model, target, runtime, check):
    recipe, ckpt = random_model
    graph = model_for("test_resnet18", recipe, runtime, checkpoint=ckpt, float_layers=KEPT, **quiet)
    path = export(graph, target, recipe=recipe, runtime=runtime, log=quiet["log"]).dir
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["quantization"]["float_layers"] == sorted(KEPT)
    assert json.loads((path / "float_layers.json").read_text())["kept_float"] == sorted(KEPT)
    check(path)


@pytest.mark.slow
def test_deploy_prices_the_candidates_and_the_frontier_marks_mixed(random_model, monkeypatch, tmp_path):
    """deploy --max-drop with the search's answer fixed (PTQ missed, 2 layers in float met it: a random
    model's drop says nothing), so what is checked is what deploy does with it: the exported
    artifact, each candidate timed here, the report and the frontier point."""
    from edgecnn.deploy import BenchOptions, DeployOptions, deploy
    from edgecnn.frontier.points import point_from_report

    recipe, ckpt = random_model
    ptq_r = stages.calibrate("test_resnet18", recipe, checkpoint=ckpt, **quiet).as_dict()
    kept_r = stages.calibrate("test_resnet18", recipe, checkpoint=ckpt, float_layers=KEPT, **quiet).as_dict()
    found = mixed.BudgetResult(
        0.5,
        (mixed._candidate(ptq_r, "ptq", -1.0), mixed._candidate(kept_r, "mixed", 100.0)),
        tuple(KEPT),
        None,
        5,
        kept_r,
    )
    monkeypatch.setattr(mixed, "within_budget", lambda *a, **k: found)
    opts = DeployOptions(
        checkpoint=ckpt, max_drop=0.5, threads=1, bench=BenchOptions(seconds=0.1), out=tmp_path / "b"
    )
    out, report = deploy("test_resnet18", "cpu", recipe=recipe, options=opts, **quiet)
    r = report.to_json()
    q = r["quantization"]
    assert q["kept_float"] == sorted(KEPT) and q["budget"]["chosen"] == "mixed (2 float)"
    prices = q["budget"]["prices"]
    assert [p["label"] for p in prices] == ["ptq", "mixed (2 float)"]
    assert all(p["host_ms"] > 0 and len(p["host_round_p50_ms"]) == 3 for p in prices)
    assert json.loads((out / "artifact" / "metadata.json").read_text())["quantization"][
        "float_layers"
    ] == sorted(KEPT)
    assert "| mixed (2 float) |" in (out / "report.md").read_text()
    point = point_from_report(r, out)
    assert (point.precision, point.float_layers, point.id) == (
        "mixed",
        2,
        "test_resnet18-host-openvino-mixed",
    )
    assert point.to_json()["float_layers"] == 2


def test_the_ranking_pass_leaves_each_layer_in_float_only(random_model):
    from edgecnn.numerics.sensitivity import sensitivity

    recipe, ckpt = random_model
    r = sensitivity("test_resnet18", recipe, checkpoint=ckpt, layers=["fc", "conv1"], images=50, alone=False)
    assert sorted(r.ranking()) == ["conv1", "fc"]
    assert all(x.only_top1 is None and x.cost_points is None and 0 <= x.without_top1 <= 1 for x in r.layers)
