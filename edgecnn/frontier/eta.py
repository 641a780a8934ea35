"""How long the rest of a frontier will take: the times its runs took when this folder was last written.

>>> eta_text(eta_seconds([("resnet18", "cpu", None, "int8")], {("resnet18", "cpu", "host", "int8"): 75.0}))
"ETA 0:01:15 (the last run's recorded times)"
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edgecnn.errors import EdgecnnError
from edgecnn.frontier.points import read_frontier


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


def eta_seconds(remaining: Sequence[tuple], recorded: dict[tuple, float]) -> float | None:
    """Time the ``remaining`` (arch, target, device, precision) runs took last time (``recorded``);
    None when one of them has no recorded time (never a guess)."""
    total = 0.0
    for arch, target, device, precision in remaining:
        times = [
            s
            for (a, t, d, p), s in recorded.items()
            if (a, t, p) == (arch, target, precision) and device in (None, d)
        ]
        if not times:
            return None
        total += times[0]
    return total


def eta_text(seconds: float | None) -> str:
    return "ETA unknown" if seconds is None else f"ETA {duration(seconds)} (the last run's recorded times)"


def eta(remaining: Sequence[tuple], recorded: dict[tuple, float]) -> str:
    """:func:`eta_seconds` as the progress line says it."""
    return eta_text(eta_seconds(remaining, recorded))


def duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}"
