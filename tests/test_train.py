"""Float training: a tiny run end to end, its cache, resume after kill -9, NaN handling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from edgecnn.errors import EdgecnnError
from edgecnn.models import from_checkpoint
from edgecnn.recipes import load_recipe
from edgecnn.train import TrainingEstimate, train
from edgecnn.trainloop import lr_at

RECIPE = """
arch = "test_resnet18"
[quick.data]
image_size = 32
channels = 3
val = 500
calib = 100
train_subset = {subset}
[quick.train]
epochs = 2
batch_size = 64
lr = {lr}
warmup_epochs = 0.5
amp = "off"
eval_batch_size = 1000
checkpoint_seconds = {ckpt}
"""


def _recipe(tmp_path: Path, *, subset=768, lr=0.05, ckpt=60.0, name="r.toml"):
    p = tmp_path / name
    p.write_text(RECIPE.format(subset=subset, lr=lr, ckpt=ckpt))
    return p


def test_lr_schedule():
    assert lr_at(0, 100, 10, 1.0, "cosine") == pytest.approx(0.1)
    assert lr_at(10, 100, 10, 1.0, "cosine") == pytest.approx(1.0)
    assert lr_at(100, 100, 10, 1.0, "cosine") == pytest.approx(0.0)
    assert lr_at(50, 100, 0, 0.5, "constant") == 0.5


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    recipe = load_recipe("test_resnet18", str(_recipe(tmp)))
    result = train(
        "test_resnet18", recipe, out_dir=tmp / "run", threads=1, progress=False, log=lambda s: None
    )
    return tmp, recipe, result


def test_tiny_run_learns_and_writes_a_loadable_checkpoint(finished):
    _, _, result = finished
    rep = result.report
    assert not result.cached
    assert rep["dataset"]["name"] == "fashion-mnist"
    assert rep["dataset"]["train_images"] == 768 and rep["dataset"]["test_images"] == 10000
    assert rep["test"]["n"] == 10000
    assert rep["test"]["top1"] > 0.4  # chance is 0.1
    assert len(rep["history"]) == 2 and rep["wall_seconds"] > 0 and rep["peak_memory_mb"] > 0
    assert not (result.dir / "state.pt").exists()  # removed once the run finished
    model, ckpt = from_checkpoint(result.checkpoint)
    assert ckpt["arch"] == "test_resnet18" and ckpt["classes"][0] == "T-shirt/top"
    assert ckpt["preprocess"]["image_size"] == 32
    x = torch.zeros(2, 3, 32, 32)
    assert model.eval()(x).shape == (2, 10)


def test_second_run_reuses_the_result(finished):
    tmp, recipe, first = finished
    t = time.perf_counter()
    again = train("test_resnet18", recipe, out_dir=tmp / "run", threads=1, progress=False, log=lambda s: None)
    assert again.cached and again.report == first.report
    assert time.perf_counter() - t < 10


def test_the_int8_stages_take_the_float_reference_from_the_training_run(finished, monkeypatch):
    from edgecnn.quantize import stages
    from edgecnn.train import predict_model

    _, recipe, result = finished
    src = stages.float_source("test_resnet18", recipe, checkpoint=str(result.checkpoint), log=lambda s: None)
    again = lambda *a, **k: pytest.fail("the float model predicted again")  # noqa: E731
    monkeypatch.setattr(stages, "predict_model", again)
    ref = stages.fp32_reference(src, log=lambda s: None)
    assert ref["top1"] == result.report["test"]["top1"] and ref["n"] == 10000
    kept = np.load(ref["correct"])
    # the same answers as the checkpoint loaded back and run on the test split again
    preds, acc = predict_model(src.model, src.bundle.test.images, src.bundle.test.labels, src.preprocess)
    assert (kept == (preds == src.bundle.test.labels)).mean() > 0.999
    assert acc["top1"] == pytest.approx(ref["top1"], abs=1e-3)


@pytest.mark.slow
def test_resume_after_kill_gives_the_same_model(finished, tmp_path):
    _, _, first = finished
    recipe = _recipe(tmp_path, ckpt=0.0)  # state after every step; same key as `finished`
    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "edgecnn.cli",
        "train",
        "test_resnet18",
        "--recipe",
        str(recipe),
        "--out",
        str(out),
        "--threads",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    state = out / "state.pt"
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and torch.load(state, weights_only=True)["step_in_epoch"] >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "model.pt").exists()
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stdout
    report = json.loads((out / "train.json").read_text())
    assert report["key"] == first.report["key"]
    assert report["test"] == first.report["test"]
    a = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(first.checkpoint, weights_only=True)["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_estimate_times_a_few_steps_of_the_run_and_reads_a_finished_one_from_the_cache(
    finished, tmp_path, monkeypatch
):
    """The frontier's first-run ETA: a run still to do is the schedule's steps times a timed step
    plus its validation and test passes (a batch of each timed), with nothing written and torch's
    random state left alone; a finished run in the cache costs nothing."""
    from edgecnn.train import estimate

    _, recipe, _ = finished
    monkeypatch.setenv("EDGECNN_HOME", str(tmp_path / "home"))
    rng = torch.get_rng_state()
    est = estimate("test_resnet18", recipe, threads=1)
    assert est.steps == 2 * (768 // 64) and 0 < est.step_seconds < 30
    # the validation of both epochs and the FP32 test pass, timed on a batch each, are counted
    assert est.val_seconds > 0 and est.test_seconds > 0
    assert est.seconds == pytest.approx(est.steps * est.step_seconds + est.val_seconds + est.test_seconds)
    assert est.seconds > est.steps * est.step_seconds
    assert not (tmp_path / "home" / "runs" / "train").exists()
    assert torch.equal(torch.get_rng_state(), rng)
    # the finished run, where train() keeps it under the home
    train("test_resnet18", recipe, threads=1, progress=False, log=lambda s: None)
    assert estimate("test_resnet18", recipe, threads=1) == TrainingEstimate(0, 0.0)


def test_evaluate_model_runs_the_forward_pass_under_the_autocast_it_is_given():
    from edgecnn.data import Preprocess
    from edgecnn.train import evaluate_model

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.seen = torch.nn.Linear(3 * 8 * 8, 10), []

        def forward(self, x):
            on = torch.is_autocast_enabled("cpu")
            self.seen.append(torch.get_autocast_dtype("cpu") if on else None)
            return self.fc(x.flatten(1))

    images, labels = np.zeros((6, 8, 8, 1), np.uint8), np.arange(6) % 10
    pre = Preprocess(image_size=8, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3)
    for dtype in (torch.bfloat16, None):
        m = Probe()
        acc = evaluate_model(m, images, labels, pre, batch_size=4, autocast=dtype)
        assert m.seen == [dtype, dtype] and acc["n"] == 6


def test_a_bf16_run_validates_in_bf16_and_tests_in_fp32(tmp_path, monkeypatch):
    """Validation each epoch runs in the step's precision (bf16 autocast); the test split, the
    run's reported top-1 and the INT8 stages' reference, in FP32."""
    from edgecnn import train as train_mod

    seen = []

    def spy(module, images, labels, preprocess, batch_size, autocast=None):
        seen.append((len(labels), autocast))
        return real(module, images, labels, preprocess, batch_size, autocast)

    real = train_mod._score
    monkeypatch.setattr(train_mod, "_score", spy)
    p = tmp_path / "r.toml"
    p.write_text(RECIPE.format(subset=128, lr=0.05, ckpt=60).replace('amp = "off"', 'amp = "bf16"'))
    lines = []
    result = train(
        "test_resnet18", load_recipe("test_resnet18", str(p)), out_dir=tmp_path / "o", threads=1,
        progress=False, log=lines.append,
    )  # fmt: skip
    assert result.report["amp"] == "bf16"
    assert seen == [(500, torch.bfloat16)] * 2 + [(10000, None)]
    assert sum("val top-1" in s and s.endswith("(bf16)") for s in lines) == 2


def test_nan_loss_stops_and_keeps_last_good_state(tmp_path):
    recipe = load_recipe("test_resnet18", str(_recipe(tmp_path, lr=1e8, ckpt=0.0)))
    out = tmp_path / "nan"
    with pytest.raises(EdgecnnError, match="training loss became .* stopped; last good state"):
        train("test_resnet18", recipe, out_dir=out, threads=1, progress=False, log=lambda s: None)
    assert not (out / "model.pt").exists()
    state = out / "state.pt"
    if state.exists():  # whatever was kept holds finite weights only
        sd = torch.load(state, weights_only=True)["model"]
        assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())


def test_too_few_images_for_a_batch(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text(RECIPE.format(subset=32, lr=0.1, ckpt=60))
    with pytest.raises(EdgecnnError, match="fewer than one batch of 64"):
        train(
            "test_resnet18",
            load_recipe("test_resnet18", str(p)),
            out_dir=tmp_path / "o",
            progress=False,
            log=lambda s: None,
        )
