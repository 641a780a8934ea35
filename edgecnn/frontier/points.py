"""Points: what a frontier costs are (:data:`COSTS`), the point of a deploy report, and reading
frontier.json back (its types, :class:`edgecnn.results.FrontierPoint` and ``Frontier``, state the schema).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from edgecnn.config import check_json_types
from edgecnn.errors import EdgecnnError, suggest
from edgecnn.results import Frontier, FrontierPoint

SCHEMA = Frontier.SCHEMA
# cost name -> (point field, unit, what it is, field of the point holding the cost's source)
COSTS: dict[str, tuple[str, str, str, str]] = {
    "p50": ("p50_ms", "ms", "median batch-1 latency", "latency_source"),
    "p90": ("p90_ms", "ms", "90th-percentile batch-1 latency", "latency_source"),
    "energy": ("energy_mj", "mJ/image", "energy per image", "energy_source"),
    "size": ("size_mb", "MB", "artifact size", "size_source"),
    "memory": ("memory_mb", "MB", "peak memory of the runtime", "memory_source"),
}
EMULATED_WHY = (
    "its latency was emulated (QEMU user-mode, about 100x a device's time): a correctness check, "
    "never a latency figure"
)
REDO = "re-run edgecnn frontier, or pass another --from"


def check_cost(cost: str) -> str:
    if cost not in COSTS:
        raise EdgecnnError(f"unknown cost '{cost}'.{suggest(cost, COSTS)} Costs: {', '.join(COSTS)}")
    return cost


def cost_fields(cost: str) -> dict[str, str]:
    """Frontier's ``cost``, ``cost_unit`` and ``cost_what`` for ``cost``."""
    return {"cost": check_cost(cost), "cost_unit": COSTS[cost][1], "cost_what": COSTS[cost][2]}


def point_from_report(r: dict[str, Any], bundle: str | os.PathLike | None = None) -> FrontierPoint:
    """The point of a deploy ``report.json`` (in the bundle ``bundle``)."""
    a, lat = r["accuracy"], r["latency_ms"]
    band = r.get("latency_band_ms") or [None, None]
    ci = a.get("ci95") or [None, None]
    pub = r.get("published") or {}
    kept = len((r.get("quantization") or {}).get("kept_float") or ())  # --max-drop left layers in float
    precision = "mixed" if kept else r["precision"]
    return FrontierPoint(
        id=f"{r['arch']}-{r['device']}-{r['runtime']}-{precision}",
        **{k: r[k] for k in ("arch", "target", "device", "runtime", "image_size")},
        precision=precision,
        float_layers=kept or None,
        dataset=r["dataset"]["name"],
        test_images=r["dataset"]["num_images"],
        top1=a["top1"],
        top5=a["top5"],
        ci95_low=ci[0],
        ci95_high=ci[1],
        fp32_top1=a["fp32_top1"],
        drop_points=a["drop"],
        agreement=a.get("agreement"),
        accuracy_runtime=a["runtime"],
        accuracy_source=a.get("source", "measured"),
        accuracy_where=r.get("accuracy_where"),
        p50_ms=lat["p50"],
        p90_ms=lat["p90"],
        p99_ms=lat["p99"],
        latency_n=lat["n"],
        latency_source=r["latency_source"],
        latency_band_low_ms=band[0],
        latency_band_high_ms=band[1],
        latency_where=r.get("latency_where"),
        throughput_ips=r.get("throughput_ips"),
        energy_mj=r.get("energy_mj"),
        energy_source=r.get("energy_source"),
        size_mb=r["model_size_mb"],
        size_source="measured",
        memory_mb=r.get("peak_memory_mb"),
        memory_source=r.get("peak_memory_source"),
        published_imagenet_top1=pub.get("imagenet_top1"),
        published_source=pub.get("source"),
        bundle=None if bundle is None else str(bundle),
        seconds=r.get("seconds"),
        reused=tuple(sorted(k for k, s in (r.get("stages") or {}).items() if s and s.get("cached"))),
    )


_JSON_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "None": (type(None),)}
_VOCAB = {"Target": (str,), "Runtime": (str,), "LatencySource": (str,)}


def _point_types() -> dict[str, tuple[type, ...]]:
    """The JSON types of :class:`FrontierPoint`'s required fields (its annotations)."""
    table = {**_JSON_TYPES, **_VOCAB}
    return {
        f.name: tuple(t for part in str(f.type).split("|") for t in table[part.strip()])
        for f in dataclasses.fields(FrontierPoint)
        if f.default is dataclasses.MISSING
    }


# The keys every point of a frontier.json has, with their JSON types: derived from FrontierPoint.
POINT_TYPES = _point_types()


def point_from_json(p: Any, where: str) -> FrontierPoint:
    """A point of a frontier.json; EdgecnnError naming ``where`` and the key when it is not one."""
    if not isinstance(p, dict):
        raise EdgecnnError(f"{where} is not an object; {REDO}")
    check_json_types(p, POINT_TYPES, where, REDO)
    try:
        return FrontierPoint.from_json(p)
    except ValueError as e:
        raise EdgecnnError(f"{where}: {e}; {REDO}") from None


def check_result(res: Any, f: str | Path) -> None:
    """EdgecnnError (one line naming ``f``) unless ``res`` is a frontier.json ``choose`` can read."""
    if not isinstance(res, dict) or not str(res.get("schema", "")).startswith("edgecnn.frontier/"):
        schema = res.get("schema") if isinstance(res, dict) else None
        raise EdgecnnError(f"{f} is not a frontier.json (schema {schema!r}); pass a frontier --out dir")
    if res["schema"] != SCHEMA:
        raise EdgecnnError(
            f"{f} is {res['schema']}, and this edgecnn reads {SCHEMA}: upgrade edgecnn to read it"
        )
    if not isinstance(res.get("created"), str) or not isinstance(res.get("points"), list):
        raise EdgecnnError(f"{f} needs 'created' (a string) and 'points' (a list); {REDO}")
    for i, p in enumerate(res["points"]):
        point_from_json(p, f"{f}: points[{i}]")


def read_frontier(f: Path) -> Frontier:
    """The frontier.json at ``f``; EdgecnnError naming it unless this edgecnn can read it."""
    import json

    try:
        res = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise EdgecnnError(f"{f} is not a frontier.json ({e}); re-run edgecnn frontier") from None
    check_result(res, f)
    try:
        return Frontier.from_json(res)
    except ValueError as e:
        raise EdgecnnError(f"{f}: {e}; {REDO}") from None
