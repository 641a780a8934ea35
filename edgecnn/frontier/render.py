"""frontier.csv, report.md and report.html of a :class:`Frontier` (the plot: :mod:`.plot`)."""

from __future__ import annotations

import csv
import io

from edgecnn.frontier.eta import eta_text
from edgecnn.frontier.points import COSTS
from edgecnn.results import Frontier
from edgecnn.results import FrontierPoint as Point

REFRESH_S = 15  # report.html reloads itself this often while the frontier is still running
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


def render_csv(result: Frontier) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for p in result.points:
        row = {**p.to_json(), "dominated_by": " ".join(p.dominated_by)}
        w.writerow(["" if row.get(c) is None else row.get(c) for c in CSV_COLUMNS])
    return buf.getvalue()


def _fmt(x: float | None, spec: str = ".3g") -> str:
    return "n/a" if x is None else format(x, spec)


def cost_label(result: Frontier) -> str:
    return f"{COSTS[result.cost][2]} ({result.cost_unit})"


def cost_source(result: Frontier, p: Point) -> str:
    return p.get(COSTS[result.cost][3]) or "not available"


def target_of(result: Frontier, device: str) -> str:
    return next(p.target for p in result.points if p.device == device)


def accuracy_cell(p: Point) -> str:
    """A point's top-1 as its basis gives it: measured [95% CI], published (with its source), or not
    published."""
    if p.top1 is None:
        return "accuracy: not published"
    if p.accuracy_source == "published":
        return f"{100 * p.top1:.2f}% ({p.accuracy_reference or 'published'})"
    ci = "" if p.ci95_low is None else f" [{100 * p.ci95_low:.1f}, {100 * p.ci95_high:.1f}]"
    return f"{100 * p.top1:.2f}%{ci}" + (f" on {p.accuracy_where}" if p.accuracy_where else "")


def _status(p: Point) -> str:
    if p.pareto is None:
        return "left out: " + p.excluded if p.excluded else "no cost figure"
    return "Pareto" if p.pareto else "dominated by " + ", ".join(p.dominated_by)


def _row(result: Frontier, p: Point) -> list[str]:
    lat = f"{p.p50_ms:.3g} ms"
    if p.latency_source == "predicted" and p.latency_band_low_ms is not None:
        lat += f" (band {p.latency_band_low_ms:.3g}-{p.latency_band_high_ms:.3g})"
    return [
        p.arch,
        p.precision if p.float_layers is None else f"{p.precision} ({p.float_layers} layers float)",
        p.runtime,
        accuracy_cell(p),
        "n/a" if p.drop_points is None else f"{p.drop_points:+.2f}",
        "-" if p.agreement is None else f"{100 * p.agreement:.2f}%",
        f"{lat}, {p.latency_source}",
        f"{_fmt(p.cost)} ({cost_source(result, p)})",
        f"{p.size_mb:.3g}",
        _fmt(p.published_imagenet_top1, ".2f"),
        _status(p),
    ]


def rows(result: Frontier, device: str) -> list[list[str]]:
    """The table of ``device``: one row per point, cheapest first (no cost figure last)."""
    pts = sorted(
        (p for p in result.points if p.device == device), key=lambda p: (p.cost is None, p.cost or 0)
    )
    return [_row(result, p) for p in pts]


def header(result: Frontier) -> list[str]:
    if result.basis != "published":
        return HEADER
    return [HEADER[0], HEADER[1], HEADER[2], "ImageNet top-1 (PUBLISHED, not measured: source)"] + HEADER[4:]


def _accuracy_intro(result: Frontier) -> str:
    if result.basis == "published":
        return (
            f"Accuracy: PUBLISHED ImageNet top-1 (FP32: torchvision's figures; INT8: FP32 minus a published "
            "INT8 drop), quoted with its source, NOT measured by edgecnn; 'accuracy: not published' where no "
            f"citable figure exists. The artifacts are the networks' own architectures at "
            f"{result.image_size} px with {result.weights}, INT8 by PTQ on "
            f"{(result.calibration or {}).get('source')}: real files, real latency."
        )
    ds = {f"{p.test_images} {p.dataset} test images at {p.image_size} px" for p in result.points}
    return f"Accuracy: top-1 of each exported artifact in its target's runtime on {'; '.join(sorted(ds))}."


def progress_line(result: Frontier) -> str | None:
    """While the run goes on: how far it is and its ETA; None on the final report."""
    prog = result.in_progress
    if prog is None:
        return None
    eta = eta_text(prog.eta_s, prog.eta_basis)
    return f"In progress: {prog.done} of {prog.of} runs done, {eta}; this report is rewritten after each one."


def intro(result: Frontier) -> list[str]:
    """The paragraphs above the tables: what cost and accuracy are, when and how it was made."""
    lines = [
        f"Cost: {cost_label(result)}. {_accuracy_intro(result)}",
        (
            "Latency is *measured* where the device ran the artifact (this machine for cpu) and *predicted* "
            "from the device profile otherwise, with its error band; energy is measured (RAPL) or "
            "*estimated* from the profile's power; the ImageNet column is *published*, not measured by "
            "edgecnn."
        ),
        f"Created {result.created} in {result.seconds:.0f} s"
        + (f" by `{result.command}`." if result.command else "."),
    ]
    prog = progress_line(result)
    return lines if prog is None else [*lines, prog]


def _lists(result: Frontier) -> list[tuple[str, list[str]]]:
    return [
        ("Not applicable", [f"{s.arch} {s.precision} on {s.target}: {s.why}" for s in result.skipped]),
        ("Failed", [f"{f.arch} {f.precision} on {f.target}: {f.error}" for f in result.failed]),
    ]


def render_markdown(result: Frontier) -> str:
    lines = ["# Accuracy / cost frontier", ""] + [s + "\n" for s in intro(result)]
    for dev in result.devices():
        head = header(result)
        lines += [
            f"## {target_of(result, dev)}: {dev}",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        lines += ["| " + " | ".join(r) + " |" for r in rows(result, dev)]
        lines.append("")
    lines += ["![frontier](frontier.png)", ""]
    for title, items in _lists(result):
        if items:
            lines += [f"## {title}", ""] + [f"- {i}" for i in items] + [""]
    return "\n".join(lines)


CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:110em}table{border-collapse:collapse;"
    "margin-bottom:2em}td,th{border:1px solid #bbb;padding:.25em .5em;font-size:90%}"
    "tr.pareto{font-weight:bold}tr.dom{color:#666}img{max-width:100%}"
)


def render_html(result: Frontier, png: bytes) -> str:
    """One file, no external resource: the plot is embedded as a data: URI. While the run goes on
    (``in_progress``) the page reloads itself every :data:`REFRESH_S` seconds."""
    import base64
    from html import escape

    body = ["<h1>Accuracy / cost frontier</h1>"] + [f"<p>{escape(s)}</p>" for s in intro(result)]
    body.append(f'<img alt="frontier plot" src="data:image/png;base64,{base64.b64encode(png).decode()}">')
    for dev in result.devices():
        body.append(
            f"<h2>{escape(target_of(result, dev))}: {escape(dev)}</h2><table><tr>"
            + "".join(f"<th>{escape(h)}</th>" for h in header(result))
            + "</tr>"
        )
        for r in rows(result, dev):
            cls = "pareto" if r[-1] == "Pareto" else "dom"
            body.append(f'<tr class="{cls}">' + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>")
        body.append("</table>")
    for title, items in _lists(result):
        if items:
            body.append(f"<h2>{title}</h2><ul>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>")
    refresh = f'<meta http-equiv="refresh" content="{REFRESH_S}">' if result.in_progress else ""
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8">{refresh}<title>edgecnn frontier</title>'
        f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
