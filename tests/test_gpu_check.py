"""scripts/gpu/check.sh and benchmarks/gpu_tensorrt.py: what runs without a GPU (arguments, plan,
recipes, parsing, reports). The GPU steps themselves run on a GPU machine (see README)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECK = REPO / "scripts" / "gpu" / "check.sh"


@pytest.fixture(scope="module")
def driver():
    spec = importlib.util.spec_from_file_location("gpu_tensorrt", REPO / "benchmarks" / "gpu_tensorrt.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_tensorrt"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("gpu_tensorrt", None)


def _check(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "EDGECNN_HOME": str(home),
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    return subprocess.run(
        ["bash", str(CHECK), *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def test_check_dry_run_lists_every_step(tmp_path):
    r = _check("--dry-run", "--out", str(tmp_path / "out"), home=tmp_path / "home")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[1].startswith("steps: gpu, install (CUDA ") and "pytest -m needs_tensorrt" in lines[1]
    work = tmp_path / "home" / "gpucheck"
    for arch in ("resnet18", "googlenet", "alexnet", "vgg16"):
        for prec in ("int8", "fp16", "fp32"):
            art = work / "artifacts" / f"{arch}-jetson-{prec}"
            assert any(line.startswith(f"{arch} {prec} export:") and f"--out {art}" in line for line in lines)
            assert any(line.startswith(f"{arch} {prec} build-engine:") for line in lines)
            for b in (1, 32):
                assert any(
                    line.startswith(f"{arch} {prec} bench-b{b}:") and f"--batch {b}" in line for line in lines
                )
    assert not (tmp_path / "out").exists()  # a dry run writes no results


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "error: unknown argument '--bogus'"),
        (["--budget-s", "ten"], "error: --budget-s takes whole seconds"),
    ],
)
def test_check_bad_arguments(tmp_path, args, message):
    r = _check(*args, home=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith(message)


def test_tiny_recipes_load_and_keep_the_networks(driver, tmp_path):
    from edgecnn.recipes import load_recipe

    for arch in driver.ARCHS:
        spec = driver.tiny_recipe(arch, tmp_path, 6000)
        profile = spec.rsplit(":", 1)[1]
        recipe, quick = load_recipe(arch, spec), load_recipe(arch, "quick")
        assert profile == "quick" and recipe.data.train_subset == 6000 and recipe.train.epochs == 1
        assert (recipe.model, recipe.data.image_size, recipe.calibrate) == (
            quick.model,
            quick.data.image_size,
            quick.calibrate,
        )


def test_trtexec_latency_and_timer_agreement(driver):
    log = (
        "[I] Latency: min = 0.51 ms, max = 0.9 ms, mean = 0.55 ms, median = 0.54 ms, "
        "percentile(90%) = 0.6 ms\n"
        "[I] GPU Compute Time: min = 0.3 ms, max = 0.5 ms, mean = 0.33 ms, median = 0.32 ms\n"
    )
    assert driver.parse_trtexec_latency(log) == {"min": 0.51, "max": 0.9, "mean": 0.55, "median": 0.54}
    assert driver.parse_trtexec_latency("nothing") is None
    run = driver.Run("resnet18", "int8")
    run.steps = [
        driver.Step("bench-b1", [], status="ok", result={"latency_ms": {"p50": 0.56}}),
        driver.Step("trtexec-b1", [], status="ok", result={"median": 0.54}),
        driver.Step("bench-b32", [], status="ok", result={"latency_ms": {"p50": 3.0}}),
        driver.Step("trtexec-b32", [], status="ok", result={"median": 2.5}),
    ]
    b1, b32 = driver.compare_timers(run)
    assert b1["within_5pct"] and b1["ratio"] == pytest.approx(0.56 / 0.54, abs=1e-4)
    assert not b32["within_5pct"] and b32["ratio"] == 1.2


def test_failed_step_is_recorded_and_reports_are_written(driver, tmp_path):
    run = driver.plan("resnet18", "int8", tmp_path, "r.toml:quick", trtexec=None)
    export = run.steps[0]
    export.command = [sys.executable, "-c", "import sys; print('no GPU here', file=sys.stderr); sys.exit(3)"]
    driver.run_step(export, timeout=30)
    assert export.status == "failed" and export.detail == "no GPU here"
    slow = driver.Step("evaluate", [sys.executable, "-c", "import time; time.sleep(5)"])
    driver.run_step(slow, timeout=1)
    assert slow.status == "timeout"
    assert [s.status for s in run.steps if s.name.startswith("trtexec")] == ["skipped", "skipped"]
    env = {"date": "2026-12-02", "gpu": "", "cpu": "x", "packages": {"tensorrt": "11.4.0"}}
    driver.write_reports(tmp_path / "res" / "gpu", [run], env, 100.0, 1.0)
    doc = json.loads((tmp_path / "res" / "gpu.json").read_text())
    assert doc["summary"][0]["top1"] is None and doc["runs"][0]["steps"][0]["status"] == "failed"
    md = (tmp_path / "res" / "gpu.md").read_text()
    assert "| resnet18 | int8 | - | - | - |" in md and "resnet18 int8 export: failed no GPU here" in md


def test_driver_rejects_unknown_names(driver, capsys):
    assert driver.main(["--archs", "resnet19", "--dry-run"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown network or precision: resnet19")
