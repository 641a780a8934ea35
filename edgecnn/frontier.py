"""The accuracy / cost Pareto frontier of deployed models (pure: no torch, no backend).

>>> pts = [{"name": "a", "top1": 0.90, "ms": 5.0}, {"name": "b", "top1": 0.85, "ms": 8.0}]
>>> [p["dominated"] for p in pareto(pts, "ms")]
[False, True]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def pareto(points: Sequence[dict[str, Any]], cost: str | Callable[[dict[str, Any]], float], *,
           accuracy: str | Callable[[dict[str, Any]], float] = "top1") -> list[dict[str, Any]]:
    """Copies of ``points`` (same order) with ``dominated`` (bool) and ``dominated_by`` (indices).

    A point is dominated when another has accuracy >= and cost <= with at least one strict;
    accuracy is maximised, ``cost`` (a key or a function of the point) minimised. Points
    whose accuracy or cost is None are dominated by nothing and marked ``dominated`` None.
    """
    acc_of = accuracy if callable(accuracy) else (lambda p: p.get(accuracy))
    cost_of = cost if callable(cost) else (lambda p: p.get(cost))
    vals = [(acc_of(p), cost_of(p)) for p in points]
    out = []
    for i, p in enumerate(points):
        a, c = vals[i]
        if a is None or c is None:
            out.append({**p, "dominated": None, "dominated_by": []})
            continue
        by = [j for j, (a2, c2) in enumerate(vals) if j != i and a2 is not None and c2 is not None
              and a2 >= a and c2 <= c and (a2 > a or c2 < c)]
        out.append({**p, "dominated": bool(by), "dominated_by": by})
    return out


def frontier(points: Sequence[dict[str, Any]], cost: str | Callable[[dict[str, Any]], float], **kw) -> list[dict]:
    """The non-dominated points, cheapest first."""
    cost_of = cost if callable(cost) else (lambda p: p[cost])
    return sorted((p for p in pareto(points, cost, **kw) if p["dominated"] is False), key=cost_of)
