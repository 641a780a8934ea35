"""Pareto sets (pure: no torch, no backend).

:func:`pareto` and :func:`frontier` work on any mappings; :func:`flag_pareto` on :class:`Point`:

>>> pts = [{"name": "a", "top1": 0.90, "ms": 5.0}, {"name": "b", "top1": 0.85, "ms": 8.0}]
>>> [p["dominated"] for p in pareto(pts, "ms")]
[False, True]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from edgecnn.frontier.points import COSTS, EMULATED_WHY, check_cost
from edgecnn.results import FrontierPoint as Point


def pareto(
    points: Sequence[dict[str, Any]],
    cost: str | Callable[[dict[str, Any]], float],
    *,
    accuracy: str | Callable[[dict[str, Any]], float] = "top1",
) -> list[dict[str, Any]]:
    """Copies of ``points`` (same order) with ``dominated`` (bool) and ``dominated_by`` (indices).

    A point is dominated when another has accuracy >= and cost <= with at least one strict;
    accuracy is maximised, ``cost`` (a key or a function of the point) minimised. Points
    whose accuracy or cost is None are dominated by nothing and marked ``dominated`` None.
    """
    acc_of = accuracy if callable(accuracy) else (lambda p: p.get(accuracy))
    cost_of = cost if callable(cost) else (lambda p: p.get(cost))
    return [
        {**p, "dominated": None if by is None else bool(by), "dominated_by": by or []}
        for p, by in zip(points, dominators([(acc_of(p), cost_of(p)) for p in points]), strict=True)
    ]


def dominators(vals: Sequence[tuple[float | None, float | None]]) -> list[list[int] | None]:
    """For each (accuracy, cost): the indices of the pairs that dominate it; None where either is None."""
    out: list[list[int] | None] = []
    for i, (a, c) in enumerate(vals):
        if a is None or c is None:
            out.append(None)
            continue
        out.append(
            [
                j
                for j, (a2, c2) in enumerate(vals)
                if j != i and a2 is not None and c2 is not None and a2 >= a and c2 <= c and (a2 > a or c2 < c)
            ]
        )
    return out


def frontier(
    points: Sequence[dict[str, Any]], cost: str | Callable[[dict[str, Any]], float], **kw
) -> list[dict]:
    """The non-dominated points, cheapest first."""
    cost_of = cost if callable(cost) else (lambda p: p[cost])
    return sorted((p for p in pareto(points, cost, **kw) if p["dominated"] is False), key=cost_of)


def flag_pareto(points: Sequence[Point], cost: str) -> list[Point]:
    """``points`` with ``cost`` (its value), ``pareto`` (True / False / None: no cost figure) and
    ``dominated_by`` (ids) set, the Pareto set computed per device. An emulated latency is no cost:
    such a point stays out of the set, ``excluded`` says why."""
    key = COSTS[check_cost(cost)][0]
    timed = COSTS[cost][3] == "latency_source"

    def cost_of(p: Point) -> Any:
        return None if timed and p.emulated() else p.get(key)

    out: list[Point] = []
    for dev in dict.fromkeys(p.device for p in points):
        group = [p for p in points if p.device == dev]
        for p, by in zip(group, dominators([(p.top1, cost_of(p)) for p in group]), strict=True):
            out.append(
                dataclasses.replace(
                    p,
                    cost=cost_of(p),
                    pareto=None if by is None else not by,
                    dominated_by=tuple(group[j].id for j in by or ()),
                    excluded=EMULATED_WHY if timed and p.emulated() else None,
                )
            )
    return out
