"""The accuracy / cost frontier of the four networks per target, and the chooser over it.

:func:`pareto` and :func:`frontier` are pure (no torch, no backend):

>>> pts = [{"name": "a", "top1": 0.90, "ms": 5.0}, {"name": "b", "top1": 0.85, "ms": 8.0}]
>>> [p["dominated"] for p in pareto(pts, "ms")]
[False, True]

:func:`run_frontier` deploys every (network, target, precision) combination with
:func:`edgecnn.deploy.deploy` (each stage cached, so a re-run only reads caches), flattens
each ``report.json`` into a *point* (:func:`point_from_report`), flags the Pareto set per
device and writes ``frontier.json`` (schema ``edgecnn.frontier/1``), ``frontier.csv``,
``frontier.png``, ``report.html`` (self-contained) and ``report.md`` into one directory
(:mod:`edgecnn.outdir`: a re-run replaces those files and keeps yours). :func:`choose` picks
one point for a device under latency and accuracy limits and says why.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgecnn import outdir
from edgecnn.config import check_json_types
from edgecnn.errors import EdgecnnError, suggest

SCHEMA = "edgecnn.frontier/1"
FILES = ("frontier.json", "frontier.csv", "frontier.png", "report.html", "report.md")
# cost name -> (point key, unit, what it is, key of the point holding the cost's source)
COSTS: dict[str, tuple[str, str, str, str]] = {
    "p50": ("p50_ms", "ms", "median batch-1 latency", "latency_source"),
    "p90": ("p90_ms", "ms", "90th-percentile batch-1 latency", "latency_source"),
    "energy": ("energy_mj", "mJ/image", "energy per image", "energy_source"),
    "size": ("size_mb", "MB", "artifact size", "size_source"),
    "memory": ("memory_mb", "MB", "peak memory of the runtime", "memory_source"),
}
LATENCY_STATS = ("p50", "p90", "p99")
REFRESH_S = 15  # report.html reloads itself this often while the frontier is still running
EMULATED_WHY = (
    "its latency was emulated (QEMU user-mode, about 100x a device's time): a correctness check, "
    "never a latency figure"
)
CSV_COLUMNS = (
    "id",
    "arch",
    "target",
    "device",
    "runtime",
    "precision",
    "image_size",
    "top1",
    "top5",
    "ci95_low",
    "ci95_high",
    "fp32_top1",
    "drop_points",
    "agreement",
    "accuracy_runtime",
    "accuracy_where",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "latency_n",
    "latency_source",
    "latency_band_low_ms",
    "latency_band_high_ms",
    "throughput_ips",
    "energy_mj",
    "energy_source",
    "size_mb",
    "memory_mb",
    "memory_source",
    "published_imagenet_top1",
    "cost",
    "pareto",
    "dominated_by",
    "bundle",
    "accuracy_source",
    "accuracy_reference",
)


# ---------------------------------------------------------------- Pareto (pure)


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
    vals = [(acc_of(p), cost_of(p)) for p in points]
    out = []
    for i, p in enumerate(points):
        a, c = vals[i]
        if a is None or c is None:
            out.append({**p, "dominated": None, "dominated_by": []})
            continue
        by = [
            j
            for j, (a2, c2) in enumerate(vals)
            if j != i and a2 is not None and c2 is not None and a2 >= a and c2 <= c and (a2 > a or c2 < c)
        ]
        out.append({**p, "dominated": bool(by), "dominated_by": by})
    return out


def frontier(
    points: Sequence[dict[str, Any]], cost: str | Callable[[dict[str, Any]], float], **kw
) -> list[dict]:
    """The non-dominated points, cheapest first."""
    cost_of = cost if callable(cost) else (lambda p: p[cost])
    return sorted((p for p in pareto(points, cost, **kw) if p["dominated"] is False), key=cost_of)


def check_cost(cost: str) -> str:
    if cost not in COSTS:
        raise EdgecnnError(f"unknown cost '{cost}'.{suggest(cost, COSTS)} Costs: {', '.join(COSTS)}")
    return cost


# ---------------------------------------------------------------- points


def point_from_report(r: dict[str, Any], bundle: str | os.PathLike | None = None) -> dict[str, Any]:
    """One flat row of a deploy ``report.json``: what the frontier, its files and ``choose`` use."""
    a, lat = r["accuracy"], r["latency_ms"]
    band = r.get("latency_band_ms") or [None, None]
    ci = a.get("ci95") or [None, None]
    pub = r.get("published") or {}
    return {
        "id": f"{r['arch']}-{r['device']}-{r['runtime']}-{r['precision']}",
        "arch": r["arch"],
        "target": r["target"],
        "device": r["device"],
        "runtime": r["runtime"],
        "precision": r["precision"],
        "image_size": r["image_size"],
        "dataset": r["dataset"]["name"],
        "test_images": r["dataset"]["num_images"],
        "top1": a["top1"],
        "top5": a["top5"],
        "ci95_low": ci[0],
        "ci95_high": ci[1],
        "fp32_top1": a["fp32_top1"],
        "drop_points": a["drop"],
        "agreement": a.get("agreement"),
        "accuracy_runtime": a["runtime"],
        "accuracy_source": a.get("source", "measured"),
        "accuracy_where": r.get("accuracy_where"),
        "p50_ms": lat["p50"],
        "p90_ms": lat["p90"],
        "p99_ms": lat["p99"],
        "latency_n": lat["n"],
        "latency_source": r["latency_source"],
        "latency_band_low_ms": band[0],
        "latency_band_high_ms": band[1],
        "latency_where": r.get("latency_where"),
        "throughput_ips": r.get("throughput_ips"),
        "energy_mj": r.get("energy_mj"),
        "energy_source": r.get("energy_source"),
        "size_mb": r["model_size_mb"],
        "size_source": "measured",
        "memory_mb": r.get("peak_memory_mb"),
        "memory_source": r.get("peak_memory_source"),
        "published_imagenet_top1": pub.get("imagenet_top1"),
        "published_source": pub.get("source"),
        "bundle": None if bundle is None else str(bundle),
        "seconds": r.get("seconds"),
        "reused": sorted(k for k, s in (r.get("stages") or {}).items() if s and s.get("cached")),
    }


def flag_pareto(points: Sequence[dict[str, Any]], cost: str) -> list[dict[str, Any]]:
    """Points with ``cost`` (its value), ``pareto`` (True / False / None: no cost figure) and
    ``dominated_by`` (ids), the Pareto set computed per device."""
    key = COSTS[check_cost(cost)][0]
    timed = COSTS[cost][3] == "latency_source"

    def cost_of(p: dict[str, Any]) -> Any:  # an emulated latency is no cost: the point stays out of the set
        return None if timed and _emulated(p) else p.get(key)

    out: list[dict[str, Any]] = []
    for dev in dict.fromkeys(p["device"] for p in points):
        group = [p for p in points if p["device"] == dev]
        for p in pareto(group, cost_of):
            dom = p.pop("dominated")
            by = p.pop("dominated_by")
            out.append(
                {
                    **p,
                    "cost": cost_of(p),
                    "pareto": None if dom is None else not dom,
                    "dominated_by": [group[j]["id"] for j in by],
                    **({"excluded": EMULATED_WHY} if timed and _emulated(p) else {}),
                }
            )
    return out


def _emulated(p: dict[str, Any]) -> bool:
    return p.get("latency_source") == "emulated"


# ---------------------------------------------------------------- running it


def parse_targets(spec: str | Sequence[str]) -> list[tuple[str, str | None]]:
    """``cpu,jetson,rpi`` or device names (``rpi4``, ``jetson-agx-orin``) -> [(target, device or None)]."""
    from edgecnn.devices import ALIASES, HOST, load_device
    from edgecnn.export import SUPPORT

    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not names:
        raise EdgecnnError("--targets is empty; pass e.g. cpu,jetson,rpi")
    out: list[tuple[str, str | None]] = []
    for n in names:
        if n in SUPPORT:
            item = (n, None)
        else:
            prof = load_device(n)  # unknown: error suggesting the nearest
            if prof.name == HOST or ALIASES.get(prof.target) == prof.name:
                item = (prof.target, None)
            else:
                item = (prof.target, prof.name)
        if item not in out:
            out.append(item)
    return out


def parse_hosts(specs: Sequence[str], targets: Sequence[tuple[str, str | None]]) -> dict[str, list[str]]:
    """``["rpi=pi@10.0.0.7", "jetson=nvidia@orin"]`` -> {target or device as in ``targets``: [hosts]}."""
    out: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, host = spec.partition("=")
        name, host = name.strip(), host.strip()
        if not sep or not name or not host or host.startswith("-"):
            raise EdgecnnError(f"bad --host '{spec}': pass TARGET=[USER@]HOST, e.g. rpi=pi@10.0.0.7")
        where = next((d or t for t, d in targets if name in (t, d)), None)
        if where is None:
            raise EdgecnnError(
                f"--host {spec}: '{name}' is none of --targets ({', '.join(d or t for t, d in targets)})"
            )
        out.setdefault(where, []).append(host)
    return out


def parse_list(spec: str | Sequence[str], known: Sequence[str], what: str) -> list[str]:
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not items:
        raise EdgecnnError(f"--{what} is empty; pass some of {', '.join(known)}")
    for s in items:
        if s not in known:
            raise EdgecnnError(f"unknown {what[:-1]} '{s}'.{suggest(s, known)} Known: {', '.join(known)}")
    return list(dict.fromkeys(items))


def check_plot() -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise EdgecnnError("frontier.png needs matplotlib: pip install 'edgecnn[plot]'")


# Cheapest network family first: the quick recipes' training on 2 cores took ResNet18 ~9 min, GoogLeNet ~15,
# AlexNet ~33, VGG16 ~40 (issue 17), so a complete cheap network lands in the report first.
CHEAP_FIRST = ("resnet", "googlenet", "alexnet", "vgg")


def work_order(archs: Sequence[str], family: Callable[[str], str]) -> list[str]:
    """``archs`` cheapest family first (:data:`CHEAP_FIRST`); other families last, in the order given."""
    rank = {f: i for i, f in enumerate(CHEAP_FIRST)}
    return sorted(archs, key=lambda a: rank.get(family(a), len(rank)))


def recorded_seconds(out: Path) -> dict[tuple, float]:
    """Each run's recorded deploy time in the frontier last written to ``out``:
    (arch, target, device, precision) -> seconds; empty where there is none."""
    try:
        prev = json.loads((out / "frontier.json").read_text())
        return {
            (p["arch"], p["target"], p["device"], p["precision"]): float(p["seconds"])
            for p in prev["points"]
            if p.get("seconds") is not None
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def eta(remaining: Sequence[tuple], recorded: dict[tuple, float]) -> str:
    """Time left for the ``remaining`` (arch, target, device, precision) runs, from their recorded times;
    "ETA unknown" when one of them has none (never a guess)."""
    total = 0.0
    for arch, target, device, precision in remaining:
        times = [
            s
            for (a, t, d, p), s in recorded.items()
            if (a, t, p) == (arch, target, precision) and device in (None, d)
        ]
        if not times:
            return "ETA unknown"
        total += times[0]
    return f"ETA {_duration(total)} (the last run's recorded times)"


def _duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}"


@outdir.holding_locks
def run_frontier(
    archs: Sequence[str],
    targets: Sequence[tuple[str, str | None]],
    precisions: Sequence[str],
    *,
    recipe_for: Callable[[str], Any],
    out: str | os.PathLike,
    cost: str = "p50",
    data: str | None = None,
    force: bool = False,
    threads: int | None = None,
    bench_seconds: float = 2.0,
    bench_runs: int = 10,
    qat: bool = False,
    max_drop: float | None = None,
    hosts: dict[str, list[str]] | None = None,
    remote_python: str | None = None,
    ssh_config: str | None = None,
    ssh_timeout: float | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    command: str | None = None,
    on_update: Callable[[Path, dict], None] | None = None,
) -> tuple[Path, dict]:
    """Deploy every combination (cached), flag the Pareto sets, write the frontier directory.

    INT8 is PTQ, or QAT with ``qat``, or QAT only where PTQ loses more than ``max_drop``
    points (as :func:`edgecnn.deploy.deploy`). A combination whose target cannot run the
    precision is listed under ``skipped``; one
    that fails (an :class:`EdgecnnError`) under ``failed`` with its one-line error, and the
    others go on. ``hosts`` (:func:`parse_hosts`): the devices that measure a target's
    accuracy and latency over SSH. Returns (out, frontier.json's content).

    The cheapest network runs first (:func:`work_order`), and the five files are rewritten after every
    finished combination with ``"in_progress"`` set (report.html then reloads itself), and
    ``on_update(out, result)`` is called; the final files have no ``in_progress``.
    """
    from edgecnn.deploy import BenchOptions, DeployOptions, SshOptions, deploy
    from edgecnn.export import DEFAULT_RUNTIME, SUPPORT
    from edgecnn.models import arch_info

    check_cost(cost)
    check_plot()
    DeployOptions(qat=qat, max_drop=max_drop)  # conflicting options, before any work
    out = Path(out)
    outdir.hold(out, "frontier", f"the frontier {out}", FILES)
    t0 = time.perf_counter()
    recorded = recorded_seconds(out)
    points: list[dict] = []
    skipped: list[dict] = []
    failed: list[dict] = []
    combos = [
        (a, t, d, p)
        for a in work_order(archs, lambda a: arch_info(a).family)
        for t, d in targets
        for p in precisions
    ]
    runnable = [c for c in combos if c[3] in SUPPORT[c[1]][DEFAULT_RUNTIME[c[1]]]]

    def result_now(in_progress: dict | None = None) -> dict:
        res = {
            "schema": SCHEMA,
            "cost": cost,
            "cost_unit": COSTS[cost][1],
            "cost_what": COSTS[cost][2],
            "archs": list(archs),
            "targets": [d or t for t, d in targets],
            "precisions": list(precisions),
            "int8": "qat"
            if qat
            else ("ptq" if max_drop is None else f"ptq, qat where the drop > {max_drop:g} points"),
            "points": flag_pareto(points, cost),
            "skipped": skipped,
            "failed": failed,
            "command": command,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        return {**res, "in_progress": in_progress} if in_progress else res

    for i, (arch, target, device, precision) in enumerate(combos, 1):
        where = device or target
        runtime = DEFAULT_RUNTIME[target]
        if precision not in SUPPORT[target][runtime]:
            skipped.append(
                {
                    "arch": arch,
                    "target": where,
                    "precision": precision,
                    "why": f"{runtime} on {target} runs {', '.join(SUPPORT[target][runtime])}",
                }
            )
            continue
        done = len(points) + len(failed)
        log(
            f"[{i}/{len(combos)}] {arch} on {where}, {precision} | {done} of {len(runnable)} done, "
            f"{_duration(time.perf_counter() - t0)} elapsed, {eta(runnable[done:], recorded)}"
        )
        try:
            int8 = precision == "int8"
            bundle, report = deploy(
                arch,
                target,
                recipe=recipe_for(arch),
                options=DeployOptions(
                    device=device,
                    data=data,
                    precision=precision,
                    qat=qat and int8,
                    max_drop=max_drop if int8 else None,
                    force=force,
                    threads=threads,
                    bench=BenchOptions(seconds=bench_seconds, runs=bench_runs),
                    hosts=(hosts or {}).get(where, ()),
                    ssh=SshOptions(remote_python=remote_python, config=ssh_config, timeout=ssh_timeout),
                ),
                log=log,
                progress=progress,
            )
        except EdgecnnError as e:
            log(f"  failed: {e}")
            failed.append({"arch": arch, "target": where, "precision": precision, "error": str(e)})
        else:
            points.append(point_from_report(report.to_json(), bundle))
        if points and len(points) + len(failed) < len(runnable):
            partial = result_now({"done": len(points) + len(failed), "of": len(runnable)})
            write_frontier(out, partial)
            if on_update:
                on_update(out, partial)
    if not points:
        raise EdgecnnError(
            "no combination ran: "
            + "; ".join(f"{f['arch']} {f['target']} {f['precision']}: {f['error']}" for f in failed)[:2000]
        )
    result = result_now()
    write_frontier(out, result)
    _remember(result, out)
    log(f"wrote {out}")
    return out, result


def _remember(result: dict, out: Path) -> None:
    """Keep a copy under $EDGECNN_HOME/runs/frontier so ``choose`` finds it without --from."""
    import hashlib

    from edgecnn import paths
    from edgecnn.fileio import atomic_write_json

    name = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:12] + ".json"
    atomic_write_json(paths.runs_dir() / "frontier" / name, {**result, "out": str(out.resolve())})


def write_frontier(out: Path, result: dict) -> None:
    """All five files into a temporary folder beside ``out``, then one rename
    (:func:`edgecnn.outdir.replace`)."""
    from edgecnn.fileio import atomic_write_json, atomic_write_text

    with outdir.replace(out, "frontier") as tmp:
        atomic_write_json(tmp / "frontier.json", result)
        atomic_write_text(tmp / "frontier.csv", render_csv(result))
        png = render_png(result)
        (tmp / "frontier.png").write_bytes(png)
        atomic_write_text(tmp / "report.md", render_markdown(result))
        atomic_write_text(tmp / "report.html", render_html(result, png))


# ---------------------------------------------------------------- rendering


def _devices(result: dict) -> list[str]:
    return list(dict.fromkeys(p["device"] for p in result["points"]))


def _fmt(x: float | None, spec: str = ".3g") -> str:
    return "n/a" if x is None else format(x, spec)


def render_csv(result: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for p in result["points"]:
        row = {**p, "dominated_by": " ".join(p["dominated_by"])}
        w.writerow(["" if row.get(c) is None else row.get(c) for c in CSV_COLUMNS])
    return buf.getvalue()


def _cost_label(result: dict) -> str:
    return f"{COSTS[result['cost']][2]} ({result['cost_unit']})"


def _cost_source(result: dict, p: dict) -> str:
    return p.get(COSTS[result["cost"]][3]) or "not available"


def _rows(result: dict, device: str) -> list[list[str]]:
    rows = []
    pts = sorted(
        (p for p in result["points"] if p["device"] == device),
        key=lambda p: (p["cost"] is None, p["cost"] or 0),
    )
    for p in pts:
        status = {
            True: "Pareto",
            False: "dominated by " + ", ".join(p["dominated_by"]),
            None: "left out: " + p["excluded"] if p.get("excluded") else "no cost figure",
        }[p["pareto"]]
        lat = f"{p['p50_ms']:.3g} ms"
        if p["latency_source"] == "predicted" and p["latency_band_low_ms"] is not None:
            lat += f" (band {p['latency_band_low_ms']:.3g}-{p['latency_band_high_ms']:.3g})"
        rows.append(
            [
                p["arch"],
                p["precision"],
                p["runtime"],
                accuracy_cell(p),
                "n/a" if p["drop_points"] is None else f"{p['drop_points']:+.2f}",
                "-" if p.get("agreement") is None else f"{100 * p['agreement']:.2f}%",
                f"{lat}, {p['latency_source']}",
                f"{_fmt(p['cost'])} ({_cost_source(result, p)})",
                f"{p['size_mb']:.3g}",
                _fmt(p["published_imagenet_top1"], ".2f"),
                status,
            ]
        )
    return rows


def accuracy_cell(p: dict) -> str:
    """A point's top-1 as its basis gives it: measured [95% CI], published (with its source), or not
    published."""
    if p["top1"] is None:
        return "accuracy: not published"
    if p.get("accuracy_source") == "published":
        return f"{100 * p['top1']:.2f}% ({p.get('accuracy_reference') or 'published'})"
    ci = "" if p["ci95_low"] is None else f" [{100 * p['ci95_low']:.1f}, {100 * p['ci95_high']:.1f}]"
    return f"{100 * p['top1']:.2f}%{ci}" + (f" on {p['accuracy_where']}" if p.get("accuracy_where") else "")


def accuracy_basis(result: dict) -> str:
    """``published`` or ``measured``: what a frontier's accuracy axis rests on (older files: measured)."""
    return result.get("accuracy_basis") or "measured"


def _header(result: dict) -> list[str]:
    if accuracy_basis(result) != "published":
        return HEADER
    return [HEADER[0], HEADER[1], HEADER[2], "ImageNet top-1 (PUBLISHED, not measured: source)"] + HEADER[4:]


HEADER = [
    "network",
    "precision",
    "runtime",
    "top-1 [95% CI] (measured in the runtime)",
    "drop vs FP32 (points)",
    "top-1 agreement with the fake-quant graph",
    "latency p50, source",
    "cost (source)",
    "size MB",
    "ImageNet top-1 % (PUBLISHED, FP32 224 px)",
    "frontier",
]


def _accuracy_intro(result: dict) -> str:
    pts = result["points"]
    if accuracy_basis(result) == "published":
        return (
            f"Accuracy: PUBLISHED ImageNet top-1 (FP32: torchvision's figures; INT8: FP32 minus a published "
            "INT8 drop), quoted with its source, NOT measured by edgecnn; 'accuracy: not published' where no "
            f"citable figure exists. The artifacts are the networks' own architectures at "
            f"{result.get('image_size')} px with {result.get('weights')}, INT8 by PTQ on "
            f"{(result.get('calibration') or {}).get('source')}: real files, real latency."
        )
    ds = {f"{p['test_images']} {p['dataset']} test images at {p['image_size']} px" for p in pts}
    return f"Accuracy: top-1 of each exported artifact in its target's runtime on {'; '.join(sorted(ds))}."


def _intro(result: dict) -> list[str]:
    return [
        f"Cost: {_cost_label(result)}. {_accuracy_intro(result)}",
        (
            "Latency is *measured* where the device ran the artifact (this machine for cpu) and *predicted* "
            "from the device profile otherwise, with its error band; energy is measured (RAPL) or "
            "*estimated* from the profile's power; the ImageNet column is *published*, not measured by "
            "edgecnn."
        ),
        f"Created {result['created']} in {result['seconds']:.0f} s"
        + (f" by `{result['command']}`." if result.get("command") else "."),
    ] + (
        [
            (
                f"In progress: {result['in_progress']['done']} of {result['in_progress']['of']} runs done; "
                f"this report is rewritten after each one."
            )
        ]
        if result.get("in_progress")
        else []
    )


def render_markdown(result: dict) -> str:
    lines = ["# Accuracy / cost frontier", ""] + [s + "\n" for s in _intro(result)]
    for dev in _devices(result):
        tgt = next(p["target"] for p in result["points"] if p["device"] == dev)
        head = _header(result)
        lines += [f"## {tgt}: {dev}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in _rows(result, dev)]
        lines.append("")
    lines += ["![frontier](frontier.png)", ""]
    if result["skipped"]:
        lines += (
            ["## Not applicable", ""]
            + [f"- {s['arch']} {s['precision']} on {s['target']}: {s['why']}" for s in result["skipped"]]
            + [""]
        )
    if result["failed"]:
        lines += (
            ["## Failed", ""]
            + [f"- {f['arch']} {f['precision']} on {f['target']}: {f['error']}" for f in result["failed"]]
            + [""]
        )
    return "\n".join(lines)


def render_html(result: dict, png: bytes) -> str:
    """One file, no external resource: the plot is embedded as a data: URI."""
    import base64
    from html import escape

    css = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:110em}table{border-collapse:collapse;"
        "margin-bottom:2em}td,th{border:1px solid #bbb;padding:.25em .5em;font-size:90%}"
        "tr.pareto{font-weight:bold}tr.dom{color:#666}img{max-width:100%}"
    )
    body = ["<h1>Accuracy / cost frontier</h1>"] + [f"<p>{escape(s)}</p>" for s in _intro(result)]
    body.append(f'<img alt="frontier plot" src="data:image/png;base64,{base64.b64encode(png).decode()}">')
    for dev in _devices(result):
        tgt = next(p["target"] for p in result["points"] if p["device"] == dev)
        body.append(
            f"<h2>{escape(tgt)}: {escape(dev)}</h2><table><tr>"
            + "".join(f"<th>{escape(h)}</th>" for h in _header(result))
            + "</tr>"
        )
        for r in _rows(result, dev):
            cls = "pareto" if r[-1] == "Pareto" else "dom"
            body.append(f'<tr class="{cls}">' + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>")
        body.append("</table>")
    for title, items in (
        (
            "Not applicable",
            [f"{s['arch']} {s['precision']} on {s['target']}: {s['why']}" for s in result["skipped"]],
        ),
        (
            "Failed",
            [f"{f['arch']} {f['precision']} on {f['target']}: {f['error']}" for f in result["failed"]],
        ),
    ):
        if items:
            body.append(f"<h2>{title}</h2><ul>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>")
    refresh = f'<meta http-equiv="refresh" content="{REFRESH_S}">' if result.get("in_progress") else ""
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8">{refresh}<title>edgecnn frontier</title>'
        f"<style>{css}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def render_png(result: dict) -> bytes:
    """One panel per device: every point labelled, measured filled, predicted hollow with its
    band, the Pareto set joined by a step line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import blended_transform_factory

    devices = _devices(result)
    fig, axes = plt.subplots(1, len(devices), figsize=(5.2 * len(devices), 4.4), squeeze=False)
    colors = {}
    for ax, dev in zip(axes[0], devices, strict=True):
        pts = [p for p in result["points"] if p["device"] == dev and p["cost"] is not None]
        unknown = blended_transform_factory(ax.transData, ax.transAxes)
        for p in pts:
            c = colors.setdefault(p["arch"], f"C{len(colors)}")
            if p["top1"] is None:  # its cost, on the x axis: no accuracy to place it by
                ax.scatter([p["cost"]], [0.03], transform=unknown, marker="x", color=c, zorder=3)
                ax.annotate(
                    f"{p['arch']} {p['precision']}: accuracy not published",
                    (p["cost"], 0.03),
                    xycoords=unknown,
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=6,
                )
                continue
            y = 100 * p["top1"]
            measured = _cost_source(result, p) == "measured"
            if (
                result["cost"] in ("p50", "p90")
                and p["latency_source"] == "predicted"
                and p["latency_band_low_ms"] is not None
            ):
                scale = p["cost"] / p["p50_ms"] if p["p50_ms"] else 1.0
                ax.errorbar(
                    p["cost"],
                    y,
                    xerr=[
                        [p["cost"] - scale * p["latency_band_low_ms"]],
                        [scale * p["latency_band_high_ms"] - p["cost"]],
                    ],
                    fmt="none",
                    ecolor=c,
                    alpha=0.4,
                    capsize=2,
                )
            published = p.get("accuracy_source") == "published"
            marker = ("^" if published else "o") if p["precision"] == "int8" else ("D" if published else "s")
            ax.scatter(
                [p["cost"]],
                [y],
                s=46,
                marker=marker,
                facecolors=c if measured else "none",
                edgecolors=c,
                linewidths=1.5,
                zorder=3,
            )
            ax.annotate(
                f"{p['arch']} {p['precision']}",
                (p["cost"], y),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
            )
        front = sorted((p for p in pts if p["pareto"]), key=lambda p: p["cost"])
        if front:
            ax.step(
                [p["cost"] for p in front],
                [100 * p["top1"] for p in front],
                where="post",
                color="k",
                lw=1,
                alpha=0.6,
                zorder=2,
            )
        costs = [p["cost"] for p in pts if p["cost"] > 0]
        if costs and max(costs) / min(costs) > 20:
            ax.set_xscale("log")
        tgt = next(p["target"] for p in result["points"] if p["device"] == dev)
        ax.set_title(f"{tgt}: {dev}", fontsize=10)
        ax.set_xlabel(_cost_label(result), fontsize=8)
        ax.set_ylabel(
            "ImageNet top-1 % (PUBLISHED)" if accuracy_basis(result) == "published" else "top-1 % (measured)",
            fontsize=8,
        )
        ax.grid(alpha=0.3)
    fig.text(
        0.01,
        0.01,
        "filled: measured cost, hollow: predicted/estimated (bar: error band); line: Pareto set\n"
        "circle int8, square float: measured accuracy; triangle int8, diamond float: PUBLISHED "
        "accuracy; x: accuracy not published",
        fontsize=6,
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


# ---------------------------------------------------------------- choose


def load_points(sources: Sequence[str | os.PathLike] = ()) -> list[dict]:
    """Points of the given frontier directories / frontier.json files, or of every frontier
    run recorded under $EDGECNN_HOME; the newest result per point id wins."""
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
    found: dict[str, tuple[str, dict]] = {}
    for f in files:
        try:
            res = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            raise EdgecnnError(f"{f} is not a frontier.json ({e}); re-run edgecnn frontier") from None
        check_result(res, f)
        for p in res["points"]:
            if p["id"] not in found or res["created"] >= found[p["id"]][0]:
                found[p["id"]] = (res["created"], p)
    return [p for _, p in found.values()]


# What ``choose`` reads from each point of a frontier.json, and the JSON types it must have.
_NUM, _NUM_OR_NULL, _STR_OR_NULL = (int, float), (int, float, type(None)), (str, type(None))
POINT_TYPES: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "arch": str,
    "target": str,
    "device": str,
    "runtime": str,
    "precision": str,
    "dataset": str,
    # top1, test_images, accuracy_runtime: null on a point whose accuracy is quoted or not published
    # (--imagenet)
    "image_size": int,
    "test_images": (int, type(None)),
    "top1": _NUM_OR_NULL,
    "ci95_low": _NUM_OR_NULL,
    "ci95_high": _NUM_OR_NULL,
    "accuracy_runtime": _STR_OR_NULL,
    "p50_ms": _NUM,
    "p90_ms": _NUM,
    "p99_ms": _NUM,
    "latency_source": str,
    "latency_band_high_ms": _NUM_OR_NULL,
    "energy_mj": _NUM_OR_NULL,
    "size_mb": _NUM_OR_NULL,
    "memory_mb": _NUM_OR_NULL,
    "bundle": _STR_OR_NULL,
}


def check_result(res: Any, f: Path) -> None:
    """EdgecnnError (one line naming ``f``) unless ``res`` is a frontier.json ``choose`` can read."""
    redo = "re-run edgecnn frontier, or pass another --from"
    if not isinstance(res, dict) or not str(res.get("schema", "")).startswith("edgecnn.frontier/"):
        schema = res.get("schema") if isinstance(res, dict) else None
        raise EdgecnnError(f"{f} is not a frontier.json (schema {schema!r}); pass a frontier --out dir")
    if res["schema"] != SCHEMA:
        raise EdgecnnError(
            f"{f} is {res['schema']}, and this edgecnn reads {SCHEMA}: upgrade edgecnn to read it"
        )
    if not isinstance(res.get("created"), str) or not isinstance(res.get("points"), list):
        raise EdgecnnError(f"{f} needs 'created' (a string) and 'points' (a list); {redo}")
    for i, p in enumerate(res["points"]):
        if not isinstance(p, dict):
            raise EdgecnnError(f"{f}: points[{i}] is not an object; {redo}")
        check_json_types(p, POINT_TYPES, f"{f}: points[{i}]", redo)


def parse_latency(text: str) -> float:
    """``50ms``, ``50 ms``, ``0.05s``, ``50`` (ms) -> milliseconds."""
    t = str(text).strip().lower().replace(" ", "")
    mult = 1.0
    for suffix, m in (("ms", 1.0), ("us", 1e-3), ("s", 1e3)):
        if t.endswith(suffix):
            t, mult = t[: -len(suffix)], m
            break
    try:
        v = float(t) * mult
    except ValueError:
        raise EdgecnnError(f"bad latency '{text}': pass e.g. 50ms, 0.05s or 50") from None
    if not math.isfinite(v) or v <= 0:
        raise EdgecnnError(f"latency limit must be a finite number > 0, got '{text}'")
    return v


def parse_accuracy(text: str) -> float:
    """``0.9``, ``90%`` or ``90`` -> 0.9."""
    t = str(text).strip()
    try:
        v = float(t.rstrip("%"))
    except ValueError:
        raise EdgecnnError(f"bad accuracy '{text}': pass a fraction (0.9) or a percentage (90%)") from None
    v = v / 100 if t.endswith("%") or v > 1 else v
    if not 0 <= v <= 1:
        raise EdgecnnError(f"accuracy must be between 0 and 1 (or 0% and 100%), got '{text}'")
    return v


def _matches(p: dict, device: str) -> bool:
    from edgecnn.devices import ALIASES

    return device in (p["target"], p["device"]) or ALIASES.get(device) == p["device"]


def choose(
    points: Sequence[dict],
    device: str,
    *,
    max_latency_ms: float | None = None,
    min_accuracy: float | None = None,
    cost: str = "p50",
    latency: str = "p90",
    precision: str | None = None,
) -> dict:
    """Pick the point to ship on ``device``; return {choice, candidates, rejected, paragraph, ok}.

    Among the runs that meet both limits, the most accurate wins; a run whose top-1 lies
    inside the winner's 95% interval counts as equally accurate, and of those the cheapest
    (``cost``) is chosen. ``max_latency_ms`` is checked on the ``latency`` percentile; for a
    predicted latency, the paragraph says whether the error band crosses the limit.
    """
    check_cost(cost)
    if latency not in LATENCY_STATS:
        raise EdgecnnError(f"unknown latency statistic '{latency}'; pass one of {', '.join(LATENCY_STATS)}")
    mine = [p for p in points if _matches(p, device) and (precision is None or p["precision"] == precision)]
    if not mine:
        have = sorted({p["device"] for p in points})
        raise EdgecnnError(
            f"no frontier results for {device}"
            + (f" {precision}" if precision else "")
            + f": run `edgecnn frontier --targets {device} --out DIR` first"
            + (f" (results exist for {', '.join(have)})" if have else "")
        )
    if all(_emulated(p) for p in mine):
        raise EdgecnnError(
            f"every frontier result for {device} has an emulated latency ({EMULATED_WHY}): "
            f"measure on the device itself (edgecnn bench ARTIFACT --host USER@DEVICE)"
        )
    basis = _one_basis(mine, device)
    lat_key, cost_key = f"{latency}_ms", COSTS[cost][0]
    ok, rejected = [], []
    for p in mine:
        why = [EMULATED_WHY] if _emulated(p) else []
        if max_latency_ms is not None and p[lat_key] > max_latency_ms:
            why.append(f"{latency} {p[lat_key]:.3g} ms > {max_latency_ms:g} ms")
        if p["top1"] is None:
            why.append("accuracy not published: it cannot be ranked")
        elif min_accuracy is not None and p["top1"] < min_accuracy:
            why.append(f"top-1 {100 * p['top1']:.2f}% < {100 * min_accuracy:.2f}%")
        (rejected if why else ok).append((p, why))
    res: dict[str, Any] = {
        "device": device,
        "max_latency_ms": max_latency_ms,
        "min_accuracy": min_accuracy,
        "cost": cost,
        "latency": latency,
        "accuracy_basis": basis,
        "candidates": [p["id"] for p, _ in ok],
        "rejected": {p["id"]: "; ".join(w) for p, w in rejected},
    }
    if not ok:
        real = [p for p in mine if not _emulated(p)]
        res.update(choice=None, ok=False, paragraph=_none_fits(real, device, latency, basis))
        return res
    best = max((p for p, _ in ok), key=lambda p: p["top1"])
    tied = [
        p for p, _ in ok if p["top1"] >= (best["ci95_low"] if best["ci95_low"] is not None else best["top1"])
    ]
    priced = [p for p in tied if p.get(cost_key) is not None]
    pick = min(priced, key=lambda p: p[cost_key]) if priced else best
    s = [
        (
            f"Ship {_name(pick)} on {pick['device']}: top-1 {100 * pick['top1']:.2f}% "
            f"({_accuracy_phrase(pick)}), "
            f"{latency} latency {pick[lat_key]:.3g} ms {pick['latency_source'].upper()}"
        )
    ]
    if pick["latency_source"] == "predicted" and pick["latency_band_high_ms"] is not None:
        hi = pick["latency_band_high_ms"] * (pick[lat_key] / pick["p50_ms"] if pick["p50_ms"] else 1)
        s[0] += f" (error band up to {hi:.3g} ms"
        if max_latency_ms is not None and hi > max_latency_ms:
            s[0] += f", which crosses your {max_latency_ms:g} ms limit"
        art = pick.get("artifact") or f"{pick['bundle'] or '<bundle>'}/artifact"
        s[0] += f"; measure it with `edgecnn bench {art} --host USER@DEVICE`)"
    s[0] += "."
    others = [p for p, _ in ok if p is not pick]
    if pick is not best:
        ratio = (best[cost_key] / pick[cost_key]) if best.get(cost_key) and pick[cost_key] else None
        s.append(
            f"{_name(best)} scores {100 * (best['top1'] - pick['top1']):.2f} points more, inside its own "
            f"95% interval (a difference this test set does not resolve), and {_name(pick)} costs "
            f"{'less' if ratio is None else f'{ratio:.2g}x less'} ({COSTS[cost][2]})."
        )
    elif others:
        runner = max(others, key=lambda p: p["top1"])
        s.append(
            f"It is the most accurate of the {len(ok)} runs within the limits; the next, {_name(runner)}, "
            f"scores {100 * (pick['top1'] - runner['top1']):.2f} points less."
        )
    else:
        s.append("It is the only run within the limits.")
    if rejected:
        s.append("Out: " + "; ".join(f"{_name(p)} ({', '.join(w)})" for p, w in rejected) + ".")
    s.append(
        f"This answer rests on {basis}"
        + (", quoted with its source, not measured by edgecnn." if basis.startswith("published") else ".")
    )
    res.update(choice=pick, ok=True, paragraph=" ".join(s))
    return res


def _basis_of(p: dict) -> str:
    if p.get("accuracy_source") in ("published", "not published"):
        return "published ImageNet top-1"
    return f"measured on {p['dataset']}"


def _one_basis(points: Sequence[dict], device: str) -> str:
    """The one kind of accuracy ``points`` rest on; comparing two kinds would be meaningless."""
    kinds = sorted({_basis_of(p) for p in points})
    if len(kinds) > 1:
        raise EdgecnnError(
            f"the frontier results for {device} rest on {len(kinds)} kinds of accuracy that cannot be "
            f"compared ({'; '.join(kinds)}): pass --from DIR naming one frontier"
        )
    return kinds[0]


def _accuracy_phrase(p: dict) -> str:
    if p.get("accuracy_source") == "published":
        return (
            f"accuracy: {p.get('accuracy_reference') or 'published'}, not measured; the artifact runs at "
            f"{p['image_size']} px"
        )
    ci = "" if p["ci95_low"] is None else f"95% CI {100 * p['ci95_low']:.2f}-{100 * p['ci95_high']:.2f}%, "
    return (
        f"{ci}measured in {p['accuracy_runtime']} on {p['test_images']} {p['dataset']} test images at "
        f"{p['image_size']} px"
    )


def _none_fits(mine: Sequence[dict], device: str, latency: str, basis: str) -> str:
    lat_key = f"{latency}_ms"
    fastest = min(mine, key=lambda p: p[lat_key])
    ranked = [p for p in mine if p["top1"] is not None]
    text = (
        f"No run on {device} meets the limits: the fastest, {_name(fastest)}, takes {fastest[lat_key]:.3g} "
        "ms "
        f"({latency}, {fastest['latency_source']}) at {accuracy_cell(fastest)} top-1"
    )
    if ranked:
        best = max(ranked, key=lambda p: p["top1"])
        text += (
            f", and the most accurate, {_name(best)}, reaches {100 * best['top1']:.2f}% "
            f"at {best[lat_key]:.3g} ms"
        )
    relax = "" if fastest["top1"] is None else f" or --min-accuracy to at most {100 * fastest['top1']:.2f}%"
    return (
        text + f". Relax --max-latency to at least {fastest[lat_key]:.3g} ms{relax}, or run the frontier for "
        f"another device or at a smaller image size. Accuracy: {basis}."
    )


def _name(p: dict) -> str:
    return f"{p['arch']} {p['precision'].upper()} ({p['runtime']})"
