"""frontier.png: one panel per device, every point labelled, measured costs filled and predicted ones
hollow with their error band, the Pareto set joined by a step line."""

from __future__ import annotations

import io

from edgecnn.frontier.render import cost_label, cost_source, target_of
from edgecnn.results import Frontier, FrontierPoint

LEGEND = (
    "filled: measured cost, hollow: predicted/estimated (bar: error band); line: Pareto set\n"
    "circle int8, square float: measured accuracy; triangle int8, diamond float: PUBLISHED "
    "accuracy; x: accuracy not published"
)


def check_plot() -> None:
    import importlib.util

    from edgecnn.errors import EdgecnnError

    if importlib.util.find_spec("matplotlib") is None:
        raise EdgecnnError("frontier.png needs matplotlib: pip install 'edgecnn[plot]'")


def render_png(result: Frontier) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    devices = result.devices()
    fig, axes = plt.subplots(1, len(devices), figsize=(5.2 * len(devices), 4.4), squeeze=False)
    colors: dict[str, str] = {}
    for ax, dev in zip(axes[0], devices, strict=True):
        _panel(ax, result, dev, colors)
    fig.text(0.01, 0.01, LEGEND, fontsize=6)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _panel(ax, result: Frontier, dev: str, colors: dict[str, str]) -> None:
    """The points of ``dev`` against the cost, and their Pareto line."""
    pts = [p for p in result.points if p.device == dev and p.cost is not None]
    for p in pts:
        c = colors.setdefault(p.arch, f"C{len(colors)}")
        if p.top1 is None:
            _unranked(ax, p, c)
        else:
            _point(ax, result, p, c)
    front = sorted((p for p in pts if p.pareto), key=lambda p: p.cost)
    if front:
        ax.step(
            [p.cost for p in front],
            [100 * p.top1 for p in front],
            where="post",
            color="k",
            lw=1,
            alpha=0.6,
            zorder=2,
        )
    costs = [p.cost for p in pts if p.cost > 0]
    if costs and max(costs) / min(costs) > 20:
        ax.set_xscale("log")
    ax.set_title(f"{target_of(result, dev)}: {dev}", fontsize=10)
    ax.set_xlabel(cost_label(result), fontsize=8)
    ax.set_ylabel(
        "ImageNet top-1 % (PUBLISHED)" if result.basis == "published" else "top-1 % (measured)",
        fontsize=8,
    )
    ax.grid(alpha=0.3)


def _unranked(ax, p: FrontierPoint, c: str) -> None:
    """A point with no accuracy: an x at its cost, at the foot of the panel."""
    from matplotlib.transforms import blended_transform_factory

    unknown = blended_transform_factory(ax.transData, ax.transAxes)
    ax.scatter([p.cost], [0.03], transform=unknown, marker="x", color=c, zorder=3)
    ax.annotate(
        f"{p.arch} {p.precision}: accuracy not published",
        (p.cost, 0.03),
        xycoords=unknown,
        textcoords="offset points",
        xytext=(4, 4),
        fontsize=6,
    )


def _point(ax, result: Frontier, p: FrontierPoint, c: str) -> None:
    """One labelled point: filled when its cost is measured, with its band when predicted."""
    y = 100 * p.top1
    if (
        result.cost in ("p50", "p90")
        and p.latency_source == "predicted"
        and p.latency_band_low_ms is not None
    ):
        scale = p.cost / p.p50_ms if p.p50_ms else 1.0
        ax.errorbar(
            p.cost,
            y,
            xerr=[[p.cost - scale * p.latency_band_low_ms], [scale * p.latency_band_high_ms - p.cost]],
            fmt="none",
            ecolor=c,
            alpha=0.4,
            capsize=2,
        )
    published = p.accuracy_source == "published"
    marker = ("^" if published else "o") if p.precision == "int8" else ("D" if published else "s")
    ax.scatter(
        [p.cost],
        [y],
        s=46,
        marker=marker,
        facecolors=c if cost_source(result, p) == "measured" else "none",
        edgecolors=c,
        linewidths=1.5,
        zorder=3,
    )
    ax.annotate(f"{p.arch} {p.precision}", (p.cost, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
