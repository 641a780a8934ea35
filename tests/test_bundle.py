"""A deploy bundle without a deploy: the typed report (edgecnn.results.Report) and its JSON, the
README's table of report.json, and edgecnn.bundle's writer, renderers and runner (predict.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgecnn import bundle
from edgecnn.results import Accuracy, BundledArtifact, Dataset, Latency, Published, Quantization, Report
from edgecnn.vocab import LatencySource, Method, Precision, QuantStage, Runtime, Target

README = Path(__file__).resolve().parents[1] / "README.md"


def _report(**kw) -> Report:
    """A predicted rpi INT8 report, as deploy assembles one (figures made up, shapes real)."""
    fields = {
        "arch": "test_resnet18",
        "target": Target.RPI,
        "device": "rpi5",
        "runtime": Runtime.TFLITE,
        "precision": Precision.INT8,
        "image_size": 32,
        "num_classes": 10,
        "dataset": Dataset("fashion-mnist", "test", "abc123", 10000),
        "accuracy": Accuracy(
            top1=0.875,
            top5=0.99,
            fp32_top1=0.88,
            drop=0.5,
            ci95=(0.868, 0.881),
            agreement=0.97,
            runtime=Runtime.TFLITE,
            fakequant_top1=0.874,
            mcnemar_p=0.2,
            source="measured",
            where="host-standin:tflite",
            runtime_version="2.3.0",
            machine=None,
            host_agreement=None,
            flipped=None,
        ),
        "accuracy_where": "host-standin:tflite",
        "latency_ms": Latency(p50=1.5, p90=1.5, p99=1.5, mean=1.5, min=1.0, max=2.0, n=0),
        "latency_source": LatencySource.PREDICTED,
        "latency_error_pct": 33.0,
        "latency_band_ms": (1.0, 2.0),
        "latency_where": "predicted for rpi5 from its device profile (no device measured it)",
        "batch": 1,
        "throughput_ips": 666.7,
        "model_size_mb": 0.25,
        "peak_memory_mb": None,
        "peak_memory_source": None,
        "energy_mj": 1.2,
        "energy_source": "estimated",
        "quantization": Quantization(QuantStage.CALIBRATE, Method.PERCENTILE, None, ()),
        "published": Published(69.758, 89.078, "torchvision"),
        "artifact": BundledArtifact(
            "artifact", "/h/runs/artifacts/x", "edgecnn.artifact/1", {"model.tflite": "00"}
        ),
        "stages": {
            "train": {"dir": None, "cached": True, "checkpoint": "/c.pt", "given": True},
            "quantize": None,
        },
        "hosts": None,
        "bench_env": None,
        "notes": ("tflite ran on this machine's x86_64 kernels, a stand-in",),
        "tools": {"torch": "2.13.0", "edgecnn": "0.1"},
        "created": "2026-12-02T11:00:00+0000",
        "seconds": 12.5,
    }
    return Report(**{**fields, **kw})


def test_report_json_round_trip_in_schema_order():
    r = _report()
    d = json.loads(json.dumps(r.to_json()))
    assert list(d) == list(Report.schema()["properties"]) and d["schema"] == "edgecnn.report/1"
    assert Report.from_json(d) == r
    assert d["latency_ms"] == {
        "p50": 1.5,
        "p90": 1.5,
        "p99": 1.5,
        "mean": 1.5,
        "min": 1.0,
        "max": 2.0,
        "n": 0,
    }
    assert (
        d["accuracy"]["ci95"] == [0.868, 0.881]
        and d["target"] == "rpi"
        and d["quantization"]["stage"] == "calibrate"
    )
    with pytest.raises(ValueError, match="expected schema edgecnn.report/1, got 'edgecnn.report/0'"):
        Report.from_json({**d, "schema": "edgecnn.report/0"})
    with pytest.raises(ValueError, match="Report.latency_source"):
        Report.from_json({**d, "latency_source": "guessed"})
    with pytest.raises(ValueError, match="missing field latency_ms"):
        Report.from_json({k: v for k, v in d.items() if k != "latency_ms"})


def _readme_report_keys() -> set[str]:
    """The keys named in the first column of README's report.json table."""
    text = README.read_text()
    table = text[text.index("`report.json`, schema `edgecnn.report/1`") :].split("\n\n")[1]
    keys = set()
    for line in table.splitlines()[2:]:
        keys |= set(re.findall(r"`([a-z0-9_]+)`", line.split("|")[1]))
    return keys


def test_readme_names_exactly_the_report_keys():
    """The schema is stated once (Report's fields); README's table must name each key, no more."""
    assert _readme_report_keys() == set(Report.schema()["properties"])


def _artifact(tmp_path: Path) -> Path:
    art = tmp_path / "runs" / "artifacts" / "x"
    art.mkdir(parents=True)
    (art / "model.tflite").write_bytes(b"not really a model")
    (art / "metadata.json").write_text("{}")
    return art


def test_bundle_holds_the_report_its_renderings_and_the_runner(tmp_path):
    r = _report()
    out = tmp_path / "bundle"
    bundle.write_bundle(out, _artifact(tmp_path), r)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        ["artifact", "report.json", "report.md", "predict.py", "RUN.md"]
    )
    assert (out / "artifact" / "model.tflite").read_bytes() == b"not really a model"
    assert Report.from_json(json.loads((out / "report.json").read_text())) == r
    md = (out / "report.md").read_text()
    assert md.startswith("# test_resnet18 on rpi (rpi5): tflite int8\n")
    assert (
        "| top-1 | 87.50% | measured (tflite on host-standin:tflite, 10000 fashion-mnist test images) |" in md
    )
    assert "| latency p50 | 1.500 ms | PREDICTED, band 1.000-2.000 ms (+-33%), not measured |" in md
    assert (
        "latency p90" not in md
        and "| ImageNet top-1 (FP32, 224 px) | 69.76% | published (torchvision) |" in md
    )
    assert "- `model.tflite` sha256 `00`" in md and "## Hosts" not in md
    run = (out / "RUN.md").read_text()
    assert (
        run.startswith("# Running test_resnet18 (tflite int8) on rpi5")
        and "pip install ai-edge-litert" in run
    )
    assert (out / "predict.py").read_bytes() == bundle.RUNNER.read_bytes()


def test_report_md_lists_measured_latency_and_each_host(tmp_path):
    host = {
        "host": "pi@dev",
        "result": {"latency_ms": {"p50": 2.25}, "device": "rpi5"},
        "error": None,
        "accuracy": {"top1": 0.87, "runtime": "tflite"},
        "accuracy_error": None,
    }
    failed = {"host": "pi@gone", "result": None, "error": "pi@gone: ssh: no route", "accuracy": None}
    r = _report(
        latency_source=LatencySource.MEASURED,
        latency_error_pct=None,
        latency_band_ms=None,
        latency_ms=Latency(p50=2.25, p90=2.5, p99=3.0, mean=2.3, min=2.0, max=3.1, n=40),
        hosts=(host, {**failed, "accuracy_error": "pi@gone: ssh: no route"}),
    )
    md = bundle.report_md(r)
    assert "| latency p99 | 3.000 ms | measured, n=40 |" in md and "PREDICTED" not in md
    assert "- pi@dev: measured p50 2.250 ms on rpi5; top-1 87.00% measured there in tflite" in md
    assert "- pi@gone: error: pi@gone: ssh: no route; accuracy error: pi@gone: ssh: no route" in md


def test_the_runner_is_a_real_file_that_says_how_to_use_it(tmp_path):
    """predict.py in a bundle is edgecnn/bundle/runner.py; run with no image it prints its usage."""
    bundle.write_bundle(tmp_path / "b", _artifact(tmp_path), _report())
    p = subprocess.run(
        [sys.executable, str(tmp_path / "b" / "predict.py")], capture_output=True, text=True, check=False
    )
    assert p.returncode == 1 and p.stderr.strip() == "usage: python3 predict.py IMAGE [IMAGE ...]"
