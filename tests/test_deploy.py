"""``edgecnn deploy`` end to end on a tiny ResNet18: cpu (measured), rpi (predicted), caching, bundle
rules."""

from __future__ import annotations

import json
import re
import time

import pytest
from click.testing import CliRunner
from tiny_recipes import int8_recipe

from edgecnn.cli import cli
from edgecnn.deploy import BenchOptions, DeployOptions, deploy
from edgecnn.errors import EdgecnnError
from edgecnn.fileio import sha256_file
from edgecnn.recipes import load_recipe
from edgecnn.results import Report

quiet = {"log": lambda s: None, "progress": False}


def fast(**kw) -> DeployOptions:
    return DeployOptions(bench=BenchOptions(seconds=0.2, runs=5), threads=1, **kw)


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory):
    return int8_recipe(tmp_path_factory.mktemp("deploy"))[0]


@pytest.fixture(scope="module")
def cpu_run(recipe_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "cpu"
    t0 = time.perf_counter()
    path, report = deploy(
        "test_resnet18",
        "cpu",
        recipe=load_recipe("test_resnet18", str(recipe_file)),
        options=fast(out=out),
        **quiet,
    )
    return path, report, time.perf_counter() - t0


def _consistent(report: Report, bundle) -> dict:
    """report.json as written: every key of the schema (edgecnn.results.Report), in its order, and
    figures that agree with each other and with the bundle's files. Returns it."""
    r = json.loads((bundle / "report.json").read_text())
    assert list(r) == list(Report.schema()["properties"])
    assert r == report.to_json() and Report.from_json(r) == report
    assert r["schema"] == "edgecnn.report/1" and r["arch"] == "test_resnet18" and r["precision"] == "int8"
    assert r["image_size"] == 32 and r["dataset"]["name"].lower().startswith("fashion")
    a = r["accuracy"]
    assert {"top1", "top5", "fp32_top1", "drop", "ci95", "agreement", "runtime"} <= set(a)
    assert a["drop"] == pytest.approx(100 * (a["fp32_top1"] - a["top1"]))
    assert a["ci95"][0] <= a["top1"] <= a["ci95"][1] and a["top1"] <= a["top5"]
    assert 0.3 < a["fp32_top1"] <= 1 and 0.8 <= a["agreement"] <= 1
    lat = r["latency_ms"]
    assert set(lat) == {"p50", "p90", "p99", "mean", "min", "max", "n"}
    assert lat["min"] <= lat["p50"] <= lat["max"] and lat["p50"] <= lat["p90"] <= lat["p99"]
    assert r["throughput_ips"] > 0 and r["model_size_mb"] > 0 and r["energy_mj"] > 0 and r["energy_source"]
    assert r["artifact"]["path"] == "artifact"
    for name, digest in r["artifact"]["files"].items():
        assert sha256_file(bundle / "artifact" / name) == digest
    assert set(r["stages"]) == {"train", "quantize", "export", "evaluate", "latency"}
    assert r["tools"]["torch"] and r["tools"]["edgecnn"]
    assert (bundle / "artifact" / "metadata.json").is_file()
    return r


@pytest.mark.slow
def test_deploy_to_cpu_is_measured_in_openvino(cpu_run):
    path, report, _ = cpu_run
    r = _consistent(report, path)
    assert r["target"] == "cpu" and r["runtime"] == "openvino" and r["accuracy"]["runtime"] == "openvino"
    assert r["latency_source"] == "measured" and r["latency_error_pct"] is None
    assert r["latency_ms"]["n"] >= 5 and r["peak_memory_mb"] > 0 and r["peak_memory_source"] == "measured"
    assert r["device"] == "host"
    assert not r["stages"]["train"]["cached"] and not r["stages"]["evaluate"]["cached"]
    md = (path / "report.md").read_text()
    assert "measured, n=" in md and "PREDICTED" not in md


@pytest.mark.slow
def test_rerun_reuses_every_stage(cpu_run, recipe_file):
    path, first, first_s = cpu_run
    t0 = time.perf_counter()
    again_path, r = deploy(
        "test_resnet18",
        "cpu",
        recipe=load_recipe("test_resnet18", str(recipe_file)),
        options=fast(out=path),
        **quiet,
    )
    took = time.perf_counter() - t0
    assert again_path == path
    assert all(s["cached"] for s in r.stages.values()), r.stages
    assert r.accuracy == first.accuracy and r.latency_ms == first.latency_ms
    assert took < min(20.0, first_s / 3), (took, first_s)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left behind


@pytest.mark.slow
def test_deploy_to_rpi_predicts_latency_and_measures_tflite_accuracy(cpu_run, recipe_file, tmp_path):
    path, report = deploy(
        "test_resnet18",
        "rpi",
        recipe=load_recipe("test_resnet18", str(recipe_file)),
        options=fast(out=tmp_path / "rpi"),
        **quiet,
    )
    r = _consistent(report, path)
    assert r["runtime"] == "tflite" and r["accuracy"]["runtime"] == "tflite"
    assert r["latency_source"] == "predicted" and r["device"] == "rpi5"
    lo, hi = r["latency_band_ms"]
    assert lo == r["latency_ms"]["min"] < r["latency_ms"]["p50"] < hi == r["latency_ms"]["max"]
    assert r["latency_error_pct"] > 0 and r["latency_ms"]["n"] == 0
    assert r["peak_memory_mb"] is None and r["energy_source"] == "estimated"
    assert r["stages"]["train"]["cached"]  # the float model trained for cpu is reused
    assert "PREDICTED" in (path / "report.md").read_text()


def test_foreign_out_is_refused(recipe_file, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(EdgecnnError, match="did not write"):
        deploy(
            "test_resnet18",
            "cpu",
            recipe=load_recipe("test_resnet18", str(recipe_file)),
            options=DeployOptions(out=foreign),
            **quiet,
        )
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_conflicting_options(recipe_file):
    with pytest.raises(EdgecnnError, match="conflict"):
        DeployOptions(qat=True, max_drop=1.0)
    for bad, msg in (
        ({"precision": "fp32", "qat": True}, "apply to int8, not fp32"),
        ({"max_drop": float("nan")}, "--max-drop must be a finite number >= 0 points, got nan"),
        ({"max_drop": -1.0}, "got -1"),
        ({"weights": "imagenet", "checkpoint": "c.pt"}, "pass one of them"),
        ({"hosts": ["pi@a", "-oProxyCommand=x"]}, "bad --host '-oProxyCommand=x'"),
    ):
        with pytest.raises(EdgecnnError, match=re.escape(msg)):
            DeployOptions(**bad)
    assert DeployOptions(hosts=["pi@a"]).hosts == ("pi@a",)  # frozen all the way down
    res = CliRunner().invoke(cli, ["deploy", "test_resnet18", "--target", "cpu", "--qat", "--max-drop", "1"])
    assert res.exit_code == 2 and "conflict" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["deploy", "test_resnet18", "--target", "rpi", "--precision", "fp16"])
    assert res.exit_code == 2 and "error: tflite on rpi supports int8, fp32, not fp16" in res.output


def test_pareto_flags_dominated_points():
    from edgecnn.frontier import frontier, pareto

    pts = [
        {"n": "a", "top1": 0.90, "ms": 5.0},
        {"n": "b", "top1": 0.85, "ms": 8.0},
        {"n": "c", "top1": 0.95, "ms": 9.0},
        {"n": "d", "top1": 0.90, "ms": 5.0},
        {"n": "e", "top1": None, "ms": 1.0},
        {"n": "f", "top1": 0.80, "ms": 2.0},
    ]
    r = pareto(pts, "ms")
    assert [p["dominated"] for p in r] == [False, True, False, False, None, False]  # equal points tie
    assert r[1]["dominated_by"] == [0, 3] and pts[1] == {"n": "b", "top1": 0.85, "ms": 8.0}
    assert [p["n"] for p in frontier(pts, "ms")] == ["f", "a", "d", "c"]
    by_size = pareto(pts, lambda p: -p["ms"])  # any cost function: here larger ms is "cheaper"
    assert [p["dominated"] for p in by_size] == [True, True, False, True, None, True]
    assert pareto([], "ms") == []


@pytest.mark.slow
def test_bundle_runs_on_its_own_with_predict_py(cpu_run, tmp_path):
    """predict.py classifies image files in the artifact's runtime without torch, and agrees with
    the runtime run on the same images; RUN.md says how to install that runtime on the device."""
    import subprocess
    import sys

    from PIL import Image

    from edgecnn.data import load_dataset
    from edgecnn.data.preprocess import Preprocess
    from edgecnn.runtimes import open_session

    path, _, _ = cpu_run
    assert "pip install openvino" in (path / "RUN.md").read_text()
    test = load_dataset(None).test
    files = []
    for i in range(6):
        f = tmp_path / f"img {i}.png"  # a space in the name: passed through argv untouched
        Image.fromarray(test.images[i][..., 0]).save(f)
        files.append(str(f))
    block = (
        "import sys, builtins; real = builtins.__import__\n"
        "def no_torch(name, *a, **k):\n"
        "    if name.split('.')[0] == 'torch': raise ImportError('no torch here')\n"
        "    return real(name, *a, **k)\nbuiltins.__import__ = no_torch\n"
    )
    script = (path / "predict.py").read_text()
    res = subprocess.run(
        [sys.executable, "-c", block + f"__file__ = {str(path / 'predict.py')!r}\n" + script, *files],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-1500:]
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 6 and all(line.startswith(f"{f}: ") for line, f in zip(lines, files, strict=True))
    art_meta = json.loads((path / "artifact" / "metadata.json").read_text())
    names = art_meta["class_names"]
    pre = Preprocess.from_dict(art_meta["preprocess"])
    logits = open_session(path / "artifact").run(pre.apply_numpy(test.images[:6]))
    for line, k in zip(lines, logits.argmax(1), strict=True):
        first = line.split(": ", 1)[1].split(", ")[0]
        assert first.rsplit(" ", 1)[0] == names[k]
    bad = subprocess.run(
        [sys.executable, str(path / "predict.py"), str(tmp_path / "missing.png")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode != 0 and "cannot read" in bad.stderr
