"""``edgecnn choose``: the point to ship on a device under latency and accuracy limits, and why."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.errors import EdgecnnError
from edgecnn.frontier.points import COSTS, EMULATED_WHY, check_cost, check_result, point_from_json
from edgecnn.frontier.render import accuracy_cell
from edgecnn.results import FrontierPoint

LATENCY_STATS = ("p50", "p90", "p99")


def load_points(sources: Sequence[str | os.PathLike] = ()) -> list[FrontierPoint]:
    """Points of the given frontier directories / frontier.json files, or of every frontier
    run recorded under $EDGECNN_HOME; the newest result per point id wins."""
    import json

    from edgecnn import paths

    files: list[Path] = []
    for s in sources:
        p = Path(s)
        f = p / "frontier.json" if p.is_dir() else p
        if not f.is_file():
            raise EdgecnnError(f"no frontier results at {s}: pass a directory `edgecnn frontier --out` wrote")
        files.append(f)
    if not sources:
        files = sorted((paths.runs_dir() / "frontier").glob("*.json"))
    found: dict[str, tuple[str, FrontierPoint]] = {}
    for f in files:
        try:
            res = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            raise EdgecnnError(f"{f} is not a frontier.json ({e}); re-run edgecnn frontier") from None
        check_result(res, f)
        for i, d in enumerate(res["points"]):
            p = point_from_json(d, f"{f}: points[{i}]")
            if p.id not in found or res["created"] >= found[p.id][0]:
                found[p.id] = (res["created"], p)
    return [p for _, p in found.values()]


@dataclass(frozen=True)
class Choice:
    """What ``choose`` decided: ``choice`` (None when nothing meets the limits), the candidates,
    the rejected points with why, and the paragraph that says so."""

    device: str
    max_latency_ms: float | None
    min_accuracy: float | None
    cost: str
    latency: str
    accuracy_basis: str
    candidates: tuple[str, ...]
    rejected: dict[str, str] = field(default_factory=dict)
    choice: FrontierPoint | None = None
    ok: bool = False
    paragraph: str = ""

    def to_json(self) -> dict[str, Any]:
        """As ``edgecnn choose --json`` prints it."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return {**d, "candidates": list(self.candidates), "choice": self.choice and self.choice.to_json()}


def _matches(p: FrontierPoint, device: str) -> bool:
    from edgecnn.devices import ALIASES

    return device in (p.target, p.device) or ALIASES.get(device) == p.device


def _mine(points: Sequence[FrontierPoint], device: str, precision: str | None) -> list[FrontierPoint]:
    """The points of ``device`` (and ``precision``); EdgecnnError saying what to run when none can be used."""
    mine = [p for p in points if _matches(p, device) and (precision is None or p.precision == precision)]
    if not mine:
        have = sorted({p.device for p in points})
        raise EdgecnnError(
            f"no frontier results for {device}"
            + (f" {precision}" if precision else "")
            + f": run `edgecnn frontier --targets {device} --out DIR` first"
            + (f" (results exist for {', '.join(have)})" if have else "")
        )
    if all(p.emulated() for p in mine):
        raise EdgecnnError(
            f"every frontier result for {device} has an emulated latency ({EMULATED_WHY}): "
            f"measure on the device itself (edgecnn bench ARTIFACT --host USER@DEVICE)"
        )
    return mine


def _why_not(
    p: FrontierPoint, latency: str, max_latency_ms: float | None, min_accuracy: float | None
) -> list[str]:
    """Why ``p`` is out (empty: it meets the limits)."""
    why = [EMULATED_WHY] if p.emulated() else []
    lat = p.get(f"{latency}_ms")
    if max_latency_ms is not None and lat > max_latency_ms:
        why.append(f"{latency} {lat:.3g} ms > {max_latency_ms:g} ms")
    if p.top1 is None:
        why.append("accuracy not published: it cannot be ranked")
    elif min_accuracy is not None and p.top1 < min_accuracy:
        why.append(f"top-1 {100 * p.top1:.2f}% < {100 * min_accuracy:.2f}%")
    return why


def choose(
    points: Sequence[FrontierPoint],
    device: str,
    *,
    max_latency_ms: float | None = None,
    min_accuracy: float | None = None,
    cost: str = "p50",
    latency: str = "p90",
    precision: str | None = None,
) -> Choice:
    """Pick the point to ship on ``device``.

    Among the runs that meet both limits, the most accurate wins; a run whose top-1 lies
    inside the winner's 95% interval counts as equally accurate, and of those the cheapest
    (``cost``) is chosen. ``max_latency_ms`` is checked on the ``latency`` percentile; for a
    predicted latency, the paragraph says whether the error band crosses the limit.
    """
    check_cost(cost)
    if latency not in LATENCY_STATS:
        raise EdgecnnError(f"unknown latency statistic '{latency}'; pass one of {', '.join(LATENCY_STATS)}")
    mine = _mine(points, device, precision)
    basis = _one_basis(mine, device)
    judged = [(p, _why_not(p, latency, max_latency_ms, min_accuracy)) for p in mine]
    ok = [p for p, why in judged if not why]
    rejected = [(p, why) for p, why in judged if why]
    res = Choice(
        device,
        max_latency_ms,
        min_accuracy,
        cost,
        latency,
        basis,
        tuple(p.id for p in ok),
        {p.id: "; ".join(w) for p, w in rejected},
    )
    if not ok:
        real = [p for p in mine if not p.emulated()]
        return dataclasses.replace(res, paragraph=_none_fits(real, device, latency, basis))
    best = max(ok, key=lambda p: p.top1)
    floor = best.ci95_low if best.ci95_low is not None else best.top1
    priced = [p for p in ok if p.top1 >= floor and p.get(COSTS[cost][0]) is not None]
    pick = min(priced, key=lambda p: p.get(COSTS[cost][0])) if priced else best
    text = _paragraph(pick, best, ok, rejected, res)
    return dataclasses.replace(res, choice=pick, ok=True, paragraph=text)


def _paragraph(pick, best, ok, rejected, res: Choice) -> str:
    """Why ``pick``: the choice, why it beat the others, what was ruled out, what it rests on."""
    cost_key = COSTS[res.cost][0]
    s = [_shipping(pick, res.latency, res.max_latency_ms)]
    others = [p for p in ok if p is not pick]
    if pick is not best:
        ratio = (
            (best.get(cost_key) / pick.get(cost_key)) if best.get(cost_key) and pick.get(cost_key) else None
        )
        s.append(
            f"{_name(best)} scores {100 * (best.top1 - pick.top1):.2f} points more, inside its own "
            f"95% interval (a difference this test set does not resolve), and {_name(pick)} costs "
            f"{'less' if ratio is None else f'{ratio:.2g}x less'} ({COSTS[res.cost][2]})."
        )
    elif others:
        runner = max(others, key=lambda p: p.top1)
        s.append(
            f"It is the most accurate of the {len(ok)} runs within the limits; the next, {_name(runner)}, "
            f"scores {100 * (pick.top1 - runner.top1):.2f} points less."
        )
    else:
        s.append("It is the only run within the limits.")
    if rejected:
        s.append("Out: " + "; ".join(f"{_name(p)} ({', '.join(w)})" for p, w in rejected) + ".")
    basis = res.accuracy_basis
    s.append(
        f"This answer rests on {basis}"
        + (", quoted with its source, not measured by edgecnn." if basis.startswith("published") else ".")
    )
    return " ".join(s)


def _shipping(pick: FrontierPoint, latency: str, max_latency_ms: float | None) -> str:
    """The first sentence: what to ship, its accuracy and latency (and a predicted band's reach)."""
    lat = pick.get(f"{latency}_ms")
    s = (
        f"Ship {_name(pick)} on {pick.device}: top-1 {100 * pick.top1:.2f}% "
        f"({_accuracy_phrase(pick)}), "
        f"{latency} latency {lat:.3g} ms {pick.latency_source.upper()}"
    )
    if pick.latency_source == "predicted" and pick.latency_band_high_ms is not None:
        hi = pick.latency_band_high_ms * (lat / pick.p50_ms if pick.p50_ms else 1)
        s += f" (error band up to {hi:.3g} ms"
        if max_latency_ms is not None and hi > max_latency_ms:
            s += f", which crosses your {max_latency_ms:g} ms limit"
        art = pick.artifact or f"{pick.bundle or '<bundle>'}/artifact"
        s += f"; measure it with `edgecnn bench {art} --host USER@DEVICE`)"
    return s + "."


def _basis_of(p: FrontierPoint) -> str:
    if p.accuracy_source in ("published", "not published"):
        return "published ImageNet top-1"
    return f"measured on {p.dataset}"


def _one_basis(points: Sequence[FrontierPoint], device: str) -> str:
    """The one kind of accuracy ``points`` rest on; comparing two kinds would be meaningless."""
    kinds = sorted({_basis_of(p) for p in points})
    if len(kinds) > 1:
        raise EdgecnnError(
            f"the frontier results for {device} rest on {len(kinds)} kinds of accuracy that cannot be "
            f"compared ({'; '.join(kinds)}): pass --from DIR naming one frontier"
        )
    return kinds[0]


def _accuracy_phrase(p: FrontierPoint) -> str:
    if p.accuracy_source == "published":
        return (
            f"accuracy: {p.accuracy_reference or 'published'}, not measured; the artifact runs at "
            f"{p.image_size} px"
        )
    ci = "" if p.ci95_low is None else f"95% CI {100 * p.ci95_low:.2f}-{100 * p.ci95_high:.2f}%, "
    return (
        f"{ci}measured in {p.accuracy_runtime} on {p.test_images} {p.dataset} test images at "
        f"{p.image_size} px"
    )


def _none_fits(mine: Sequence[FrontierPoint], device: str, latency: str, basis: str) -> str:
    lat_key = f"{latency}_ms"
    fastest = min(mine, key=lambda p: p.get(lat_key))
    ranked = [p for p in mine if p.top1 is not None]
    text = (
        f"No run on {device} meets the limits: the fastest, {_name(fastest)}, takes "
        f"{fastest.get(lat_key):.3g} ms ({latency}, {fastest.latency_source}) at "
        f"{accuracy_cell(fastest)} top-1"
    )
    if ranked:
        best = max(ranked, key=lambda p: p.top1)
        text += (
            f", and the most accurate, {_name(best)}, reaches {100 * best.top1:.2f}% "
            f"at {best.get(lat_key):.3g} ms"
        )
    relax = "" if fastest.top1 is None else f" or --min-accuracy to at most {100 * fastest.top1:.2f}%"
    return (
        text
        + f". Relax --max-latency to at least {fastest.get(lat_key):.3g} ms{relax}, or run the frontier for "
        f"another device or at a smaller image size. Accuracy: {basis}."
    )


def _name(p: FrontierPoint) -> str:
    return f"{p.arch} {p.precision.upper()} ({p.runtime})"
