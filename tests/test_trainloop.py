"""The one training loop (float training and QAT): an interrupted run resumes to the very same
weights (torch RNG included), from the state it writes and from the older QAT state that held
only a step count; a part epoch ends the run; a non-finite loss or weight stops it and keeps only
finite states. A tiny linear model with dropout on 8x8 images: seconds, no dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgecnn.data import Preprocess
from edgecnn.errors import EdgecnnError
from edgecnn.trainloop import Batches, Hooks, Loop, Run, Schedule, StepOptions, lr_at


class _Killed(Exception):
    """Stands in for a SIGKILL at a given step."""


def _loop(
    tmp_path, *, epochs=2.0, lr=0.1, kill_at=None, hooks=None, options=None, kind="training", model=None
):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (96, 8, 8, 1), dtype=np.uint8)
    labels = (images.reshape(96, -1).mean(axis=1) > 127.5).astype(np.int64)
    if model is None:
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.3), torch.nn.Linear(64, 2))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    schedule = Schedule.plan(len(labels), 16, epochs, lr, section="train", warmup_epochs=0.5)
    pre = Preprocess(image_size=8, channels=1, mean=(0.5,), std=(0.25,))
    batches = Batches(images, labels, pre, 16, seed=3, augment="flip")
    run = Run("tiny", kind, "train", "key1", tmp_path / "state.pt", "test-state/1", checkpoint_seconds=0.0)

    def before_step(step):
        if step == kill_at:
            raise _Killed

    def end_epoch(epoch, stats):
        return {"epoch": epoch + 1, "loss": stats.loss, "n": stats.acc.n}

    hooks = hooks or Hooks(start_epoch=model.train, before_step=before_step, end_epoch=end_epoch)
    return Loop(run, model, opt, schedule, batches, hooks=hooks, options=options)


def _weights(loop):
    return [p.detach().clone() for p in loop.model.parameters()]


def _same(a, b):
    assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.fixture
def uninterrupted(tmp_path):
    loop = _loop(tmp_path / "whole")
    assert not loop.resume(log=lambda s: None)
    loop.run()
    assert loop.step == 12 and (loop.epoch, loop.step_in_epoch) == (2, 0)
    return loop


def test_resume_after_a_kill_gives_the_same_weights(tmp_path, uninterrupted):
    first = _loop(tmp_path, kill_at=9)  # epoch 2, step 3 of 6; the state is saved after every step
    with pytest.raises(_Killed):
        first.run()
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert (state["epoch"], state["step_in_epoch"], state["step"]) == (1, 3, 9)
    again = _loop(tmp_path)
    lines = []
    assert again.resume(log=lines.append)
    assert lines == [f"tiny: resuming training {tmp_path} at epoch 2, step 3/6"]
    again.run()
    _same(_weights(again), _weights(uninterrupted))
    assert [h["epoch"] for h in again.history] == [1, 2]
    assert again.history[0] == uninterrupted.history[0]  # epoch 1's entry came back with the state


def test_a_state_of_another_key_or_force_starts_over(tmp_path, uninterrupted):
    with pytest.raises(_Killed):
        _loop(tmp_path, kill_at=4).run()
    other = _loop(tmp_path)
    other.run_info = Run("tiny", "training", "train", "key2", tmp_path / "state.pt", "test-state/1", 0.0)
    assert not other.resume(log=lambda s: None)
    assert not _loop(tmp_path).resume(force=True, log=lambda s: None)
    assert not (tmp_path / "state.pt").exists()


def test_resume_from_a_step_only_state(tmp_path, uninterrupted):
    """QAT's state before the loop was shared held ``step`` only, no epoch, history or time."""
    with pytest.raises(_Killed):
        _loop(tmp_path, kill_at=8).run()
    path = tmp_path / "state.pt"
    state = torch.load(path, weights_only=True)
    torch.save(
        {k: v for k, v in state.items() if k not in ("epoch", "step_in_epoch", "history", "elapsed")}, path
    )
    again = _loop(tmp_path)
    assert again.resume(log=lambda s: None) and (again.epoch, again.step_in_epoch) == (1, 2)
    again.run()
    _same(_weights(again), _weights(uninterrupted))


def test_a_state_saved_before_its_epochs_end_resumes_into_that_end(tmp_path, uninterrupted):
    """A state at (epoch 2, step 6 of 6) -- float training used to save one when its timer fired on
    an epoch's last step -- runs that epoch's end (validation, history) and stops there."""
    _loop(tmp_path).run()  # the loop leaves its last state (float training deletes it after model.pt)
    path = tmp_path / "state.pt"
    state = torch.load(path, weights_only=True)
    assert (state["epoch"], state["step_in_epoch"]) == (2, 0)
    state.update(epoch=1, step_in_epoch=6, history=state["history"][:1])
    torch.save(state, path)
    again = _loop(tmp_path)
    assert again.resume(log=lambda s: None)
    again.run()
    assert [h["epoch"] for h in again.history] == [1, 2] and again.history[1]["n"] == 0
    _same(_weights(again), _weights(uninterrupted))


def test_a_part_epoch_ends_the_run(tmp_path):
    loop = _loop(tmp_path, epochs=1.5)  # QAT's fractions of an epoch
    loop.run()
    assert loop.schedule.total == 9 and (loop.epoch, loop.step_in_epoch) == (1, 3)
    assert len(loop.history) == 1  # only the whole epoch had an end
    assert torch.load(tmp_path / "state.pt", weights_only=True)["step"] == 9  # saved after the last step


def test_a_non_finite_loss_stops_and_keeps_only_finite_states(tmp_path):
    loop = _loop(tmp_path, lr=1e38)
    with pytest.raises(
        EdgecnnError, match=r"tiny: training loss became (nan|inf).* last good state: .*lower train.lr"
    ):
        loop.run()
    if (tmp_path / "state.pt").exists():
        sd = torch.load(tmp_path / "state.pt", weights_only=True)["model"]
        assert all(torch.isfinite(v).all() for v in sd.values())


def test_check_weights_stops_at_the_first_non_finite_weight(tmp_path):
    """QAT checks the weights after every step (NaN weights break its observers before the loss
    shows it); float training finds out from the next step's loss."""

    def inf_gradient(loop):
        def before_step(step):
            if step == 2:
                loop.model[2].weight.register_hook(lambda g: torch.full_like(g, float("inf")))

        loop.hooks = Hooks(before_step=before_step)
        return loop

    qat = inf_gradient(_loop(tmp_path / "q", kind="QAT", options=StepOptions(check_weights=True)))
    with pytest.raises(EdgecnnError, match=r"tiny: QAT weights became NaN/inf at epoch 1 step 2; stopped"):
        qat.run()
    float_run = inf_gradient(_loop(tmp_path / "f"))
    with pytest.raises(EdgecnnError, match=r"tiny: training loss became (nan|inf) at epoch 1 step 3;"):
        float_run.run()


def test_schedule():
    s = Schedule.plan(100, 10, 0.25, 1.0, section="qat")
    assert (s.steps_per_epoch, s.total, s.epochs, s.warmup) == (10, 3, 1, 0)
    assert s.lr_at(0) == 1.0 and s.lr_at(3) == pytest.approx(0.0)
    assert lr_at(0, 100, 10, 1.0, "cosine") == pytest.approx(0.1)
    with pytest.raises(
        EdgecnnError, match="8 training images are fewer than one batch of 10; lower qat.batch_size"
    ):
        Schedule.plan(8, 10, 1.0, 1.0, section="qat")
