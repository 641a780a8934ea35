"""How long the rest of a frontier will take.

Each run still to do counts the time it took when this folder was last written (``recorded``); a run
with no such time counts its network's training still to do, timed from a few of its steps before
the frontier starts (:func:`edgecnn.train.estimate`), and the mean time of this run's finished
runs that did not train (``after_s``), where one has finished.

>>> eta_text(eta_seconds([("resnet18", "cpu", None, "int8")], {("resnet18", "cpu", "host", "int8"): 75.0}))
"ETA 0:01:15 (the last run's recorded times)"
>>> runs = [("vgg16", "cpu", None, "int8"), ("vgg16", "cpu", None, "fp32")]
>>> eta_text(*eta_basis(runs, {}, {"vgg16": 360.0}, 30.0))
"ETA 0:07:00 (estimated from the trainings' timed steps and this run's finished runs)"
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edgecnn.errors import EdgecnnError
from edgecnn.frontier.points import read_frontier

RECORDED, ESTIMATED, LOWER_BOUND = "recorded", "estimated", "lower bound"
_BASIS = {
    RECORDED: "ETA {} (the last run's recorded times)",
    ESTIMATED: "ETA {} (estimated from the trainings' timed steps and this run's finished runs)",
    LOWER_BOUND: "ETA at least {} (the trainings still to do, from their timed steps; the rest unknown)",
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


def _recorded(recorded: dict[tuple, float], arch: str, target: str, device: str | None, precision: str):
    times = [
        s
        for (a, t, d, p), s in recorded.items()
        if (a, t, p) == (arch, target, precision) and device in (None, d)
    ]
    return times[0] if times else None


def eta_seconds(remaining: Sequence[tuple], recorded: dict[tuple, float]) -> float | None:
    """Time the ``remaining`` (arch, target, device, precision) runs took last time (``recorded``);
    None when one of them has no recorded time."""
    return eta_basis(remaining, recorded, {}, None)[0]


def eta_basis(
    remaining: Sequence[tuple],
    recorded: dict[tuple, float],
    training_s: dict[str, float],
    after_s: float | None,
) -> tuple[float | None, str | None]:
    """(seconds, basis) for the ``remaining`` runs: ``recorded`` times where there are; else the
    network's training still to do (``training_s``, arch -> seconds, counted once) plus ``after_s``,
    the mean time of a finished run that did not train (None: none yet, so a lower bound). (None,
    None) when a run has neither a recorded time nor a training estimate, or when the lower bound
    would be 0 (never a guess)."""
    total, basis, left = 0.0, RECORDED, dict(training_s)
    for arch, target, device, precision in remaining:
        if (rec := _recorded(recorded, arch, target, device, precision)) is not None:
            total += rec
        elif arch not in training_s:
            return None, None
        else:
            total += left.pop(arch, 0.0)
            if after_s is None:
                basis = LOWER_BOUND
            else:
                total += after_s
                basis = ESTIMATED if basis != LOWER_BOUND else basis
    if basis == LOWER_BOUND and total == 0:  # nothing left to train, and no run after training timed yet
        return None, None
    return total, basis


def eta_text(seconds: float | None, basis: str | None = RECORDED) -> str:
    return "ETA unknown" if seconds is None else _BASIS[basis or RECORDED].format(duration(seconds))


def duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}"
