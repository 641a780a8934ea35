"""The typed stage results (edgecnn.results) and the vocabulary (edgecnn.vocab): JSON round trips,
type checks on the way in, and the schema, held here so that a change to it is deliberate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecnn import results
from edgecnn.results import Artifact, FloatModel, QuantizedGraph
from edgecnn.vocab import LatencySource, Method, Precision, QuantStage, Runtime, Target

SCHEMA_FILE = Path(__file__).with_name("results_schema.json")

CALIBRATE_JSON = {  # a calibrate.json as quantize.stages writes it (fields trimmed)
    "stage": "calibrate",
    "arch": "test_resnet18",
    "key": "0123456789ab",
    "method": "percentile",
    "weight_bits": 7,
    "int8_fakequant": {"top1": 0.8125, "top5": 1.0, "n": 16},
    "drop_points": 1.5,
    "source": {"checkpoint": "/h/runs/train/x/model.pt", "sha256": "ab" * 32},
}


def _examples():
    return [
        FloatModel(
            "test_resnet18",
            Path("/h/runs/train/x/model.pt"),
            Path("/h/runs/train/x"),
            "abc",
            {"top1": 0.5, "top5": 0.9, "n": 16},
            True,
            {"format": "edgecnn.train-report/1", "test": {"top1": 0.5}},
        ),
        FloatModel.given("test_resnet18", "/tmp/ckpt.pt"),
        QuantizedGraph.from_report(CALIBRATE_JSON, "/h/runs/calibrate/y", cached=False, qat_skipped="met"),
        Artifact(Path("/h/runs/artifacts/z"), {"runtime": "openvino", "files": {"model.xml": "00"}}, True),
    ]


@pytest.mark.parametrize("result", _examples(), ids=lambda r: type(r).__name__)
def test_round_trip_through_json_text(result):
    text = json.dumps(result.to_json())
    back = type(result).from_json(json.loads(text))
    assert back == result
    assert isinstance(json.loads(text)["dir"], str | None)  # a Path is written as a string


def test_quantized_graph_reads_its_stage_report():
    q = QuantizedGraph.from_report(CALIBRATE_JSON, "/h/runs/calibrate/y", cached=True)
    assert q.stage is QuantStage.CALIBRATE and q.method is Method.PERCENTILE
    assert (q.weight_bits, q.fakequant_top1, q.drop_points) == (7, 0.8125, 1.5)
    assert q.graph == Path("/h/runs/calibrate/y/quantized.pt2")
    assert q.checkpoint == Path("/h/runs/train/x/model.pt")  # the recorded one, unless told
    moved = QuantizedGraph.from_report(CALIBRATE_JSON, "/h/c", cached=True, checkpoint="/new/model.pt")
    assert moved.checkpoint == Path("/new/model.pt")
    # what `edgecnn calibrate --json` printed before results were typed: the report, cached, dir
    assert q.as_dict() == {**CALIBRATE_JSON, "cached": True, "dir": "/h/runs/calibrate/y"}
    assert list(q.as_dict())[-2:] == ["cached", "dir"]


def test_from_json_refuses_wrong_types_unknown_and_missing_fields():
    good = _examples()[2].to_json()
    with pytest.raises(ValueError, match=r"QuantizedGraph.method: expected .*'minmax'"):
        QuantizedGraph.from_json({**good, "method": "kl"})
    with pytest.raises(ValueError, match="QuantizedGraph.weight_bits"):
        QuantizedGraph.from_json({**good, "weight_bits": 7.5})
    with pytest.raises(ValueError, match="QuantizedGraph.cached"):
        QuantizedGraph.from_json({**good, "cached": "yes"})
    with pytest.raises(ValueError, match="unknown field.*colour"):
        QuantizedGraph.from_json({**good, "colour": 1})
    with pytest.raises(ValueError, match="missing field key"):
        QuantizedGraph.from_json({k: v for k, v in good.items() if k != "key"})
    with pytest.raises(ValueError, match=r"FloatModel.metrics.top1"):
        FloatModel.from_json({"arch": "a", "checkpoint": "c", "metrics": {"top1": "high"}})
    with pytest.raises(ValueError, match="FloatModel.dir"):
        FloatModel.from_json({"arch": "a", "checkpoint": "c", "dir": 3})
    assert FloatModel.from_json({"arch": "a", "checkpoint": "c", "dir": None}).dir is None


def test_results_are_frozen():
    q = _examples()[2]
    with pytest.raises(AttributeError):
        q.key = "other"


def test_the_schema_is_the_one_held_here():
    """One place states every result's JSON: this file. A change to a result's fields shows here;
    when it is meant, write the new schema with
    ``python -c "import json; from edgecnn import results; print(json.dumps(results.schema(), indent=2))"
    > tests/results_schema.json`` and say in the commit what changed for readers of the JSON."""
    held = json.loads(SCHEMA_FILE.read_text())
    assert results.schema() == held
    q = held["QuantizedGraph"]["properties"]
    assert q["method"]["enum"] == ["minmax", "percentile", "entropy", "mse"]
    assert q["stage"]["enum"] == ["calibrate", "qat"]
    assert q["qat_skipped"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert set(held["Artifact"]["required"]) == {"dir", "meta"}


def test_every_to_json_fits_the_schema():
    """A small check of to_json against its schema (types of each property, no extra keys)."""
    kinds = {
        "string": str,
        "boolean": bool,
        "integer": int,
        "number": (int, float),
        "object": dict,
        "array": list,
    }
    for r in _examples():
        s = type(r).schema()
        d = r.to_json()
        assert set(d) == set(s["properties"]) and set(s["required"]) <= set(d)
        for k, v in d.items():
            p = s["properties"][k]
            options = p.get("anyOf", [p])
            assert any(
                (o.get("type") == "null" and v is None) or isinstance(v, kinds.get(o.get("type"), ()))
                for o in options
            ), (k, v, p)


def test_vocabulary_words_are_plain_strings_in_json_and_text():
    assert Target.values() == ("cpu", "jetson", "rpi")
    assert Runtime.values() == ("openvino", "onnxruntime", "tensorrt", "tflite")
    assert Precision.values() == ("int8", "fp16", "fp32")
    assert LatencySource.values() == ("measured", "emulated", "predicted")
    assert (
        json.dumps({Target.CPU: [Runtime.TFLITE, LatencySource.PREDICTED]})
        == '{"cpu": ["tflite", "predicted"]}'
    )
    assert f"{Precision.INT8} on {Target.RPI}" == "int8 on rpi"
    assert {Target.JETSON: 1}["jetson"] == 1 and Target("jetson") is Target.JETSON


def test_method_names_come_from_the_vocabulary():
    from edgecnn.artifact import PRECISIONS, RUNTIMES, TARGETS
    from edgecnn.quantize.calibset import METHODS

    assert METHODS == Method.values() == ("minmax", "percentile", "entropy", "mse")
    assert (Target.values(), Runtime.values(), Precision.values()) == (TARGETS, RUNTIMES, PRECISIONS)
