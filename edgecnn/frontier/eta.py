"""How long the rest of a frontier will take.

A run still to do counts the time it took when this folder was last written (``recorded``), unless
its network has a training still to do (a new folder, a changed recipe): then the network's
training counts once, timed from a few of its steps before the frontier starts
(:func:`edgecnn.train.estimate`), and each of its runs what this run's finished runs after training
took (``after_s``, :func:`after_training_s`), where one has finished.

>>> runs = [("vgg16", "cpu", None, "int8"), ("vgg16", "cpu", None, "fp32")]
>>> eta_text(*eta_basis(runs, {}, {"vgg16": 360.0}, {"vgg16": 30.0}))
"ETA 0:07:00 (estimated from the trainings' timed steps and this run's finished runs)"
>>> eta_text(*eta_basis(runs[:1], {("vgg16", "cpu", "host", "int8"): 75.0}, {"vgg16": 0.0}, None))
"ETA 0:01:15 (the last run's recorded times)"
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from edgecnn.errors import EdgecnnError
from edgecnn.frontier.points import read_frontier
from edgecnn.vocab import EtaBasis

_TEXT = {
    EtaBasis.RECORDED: "ETA {} (the last run's recorded times)",
    EtaBasis.ESTIMATED: "ETA {} (estimated from the trainings' timed steps and this run's finished runs)",
    EtaBasis.LOWER_BOUND: "ETA at least {} (the trainings still to do, from their timed steps)",
}


# How many passes over the test split at the rate of the network's own FP32 PyTorch pass one run
# after training makes, on average over a network's six runs (the fake-quant graph; the FP32
# OpenVINO IR, ONNX file and .tflite; the INT8 files at a fraction of that rate). Fitted on two
# cold frontiers on a 2-core Xeon with AMX (least squares: 0.51 and 0.59 passes, 12.8 and 11.6 s
# fixed; docs/BENCHMARKS.md, issue 17), where a run after training took 15-17 s for ResNet18,
# GoogLeNet and AlexNet and 30-31 s for VGG16.
EVAL_PASSES_PER_RUN = 0.6


def after_training_s(
    finished: Sequence[tuple[str, float]], eval_s: Mapping[str, float], archs: Iterable[str]
) -> dict[str, float] | None:
    """arch -> the seconds one of its runs after training should take, from the ``finished``
    (arch, seconds) runs after training: for a network with an FP32 test pass (``eval_s``, arch ->
    seconds), the fixed part of the finished runs of such networks (each less its network's
    evaluations) plus :data:`EVAL_PASSES_PER_RUN` times its pass; for any other, or where no
    finished run has one, the plain mean of the finished runs. None until one has finished.

    >>> after_training_s([("resnet18", 15.0)], {"resnet18": 5.0, "vgg16": 30.0}, ["vgg16", "alexnet"])
    {'alexnet': 15.0, 'resnet18': 15.0, 'vgg16': 30.0}
    """
    if not finished:
        return None
    k, mean = EVAL_PASSES_PER_RUN, statistics.fmean(t for _, t in finished)
    scaled = [t - k * eval_s[a] for a, t in finished if a in eval_s]
    fixed = max(0.0, statistics.fmean(scaled)) if scaled else None
    return {
        a: fixed + k * eval_s[a] if fixed is not None and a in eval_s else mean
        for a in sorted(set(archs) | {a for a, _ in finished})
    }


def recorded_seconds(out: Path) -> dict[tuple, float]:
    """Each run's recorded deploy time in the frontier last written to ``out``:
    (arch, target, device, precision) -> seconds; empty where there is none."""
    if not (out / "frontier.json").is_file():
        return {}
    try:
        prev = read_frontier(out / "frontier.json")
    except EdgecnnError:
        return {}
    return {
        (p.arch, p.target, p.device, p.precision): float(p.seconds)
        for p in prev.points
        if p.seconds is not None
    }


def recorded_time(recorded: dict[tuple, float], run: tuple) -> float | None:
    """The recorded time of ``run`` (arch, target, device, precision; device None: the target's
    default), or None."""
    arch, target, device, precision = run
    times = [
        s
        for (a, t, d, p), s in recorded.items()
        if (a, t, p) == (arch, target, precision) and device in (None, d)
    ]
    return times[0] if times else None


def eta_basis(
    remaining: Sequence[tuple],
    recorded: dict[tuple, float],
    training_s: dict[str, float],
    after_s: Mapping[str, float] | None,
) -> tuple[float | None, EtaBasis | None]:
    """(seconds, basis) for the ``remaining`` (arch, target, device, precision) runs.

    ``training_s``: arch -> seconds of its training still to do (0 once trained or cached). A run
    whose network has none to do counts its ``recorded`` time where there is one; otherwise its
    network's training (once) plus ``after_s[arch]``, the time one of its runs after training
    should take (:func:`after_training_s`; None: none finished yet, so the sum is a lower bound).
    (None, None) where a run has neither a recorded time nor a training estimate, or where the
    lower bound would be 0: never a guess."""
    total, basis, left = 0.0, EtaBasis.RECORDED, dict(training_s)
    for run in remaining:
        arch = run[0]
        rec = recorded_time(recorded, run) if not training_s.get(arch) else None
        if rec is not None:
            total += rec
        elif arch not in training_s:
            return None, None
        else:
            total += left.pop(arch, 0.0)
            if after_s is None:
                basis = EtaBasis.LOWER_BOUND
            else:
                total += after_s[arch]
                basis = EtaBasis.ESTIMATED if basis != EtaBasis.LOWER_BOUND else basis
    if basis == EtaBasis.LOWER_BOUND and total == 0:
        return None, None
    return total, basis


def eta_text(seconds: float | None, basis: EtaBasis | None = EtaBasis.RECORDED) -> str:
    return (
        "ETA unknown"
        if seconds is None
        else _TEXT[EtaBasis(basis or EtaBasis.RECORDED)].format(duration(seconds))
    )


def duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}"
