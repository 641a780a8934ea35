"""``edgecnn sensitivity``: which quantized layers cost accuracy.

Each convolution and linear layer is quantized alone (the rest of the network in float) and,
separately, left alone in float (the rest quantized), by the PT2E quantizer's per-node decision
(:func:`edgecnn.quantize.pt2e.make_quantizer`'s ``only_layers`` / ``float_layers``): every
configuration is calibrated on the same images and measured on the validation split, as top-1
and as the SQNR of its logits against the FP32 model's. The ranking is by what leaving a layer in
float recovers, the quantity mixed precision (``--max-drop``) spends.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LayerSensitivity:
    index: int  # position among the quantizable layers, in graph order
    layer: str  # module path: "layer1.0.conv2"
    only_top1: float | None  # top-1 with only this layer quantized (None: not measured, alone=False)
    only_sqnr_db: float | None  # its logits against FP32 (None: identical, or not measured)
    without_top1: float  # top-1 with every layer but this one quantized
    without_sqnr_db: float | None
    cost_points: float | None  # FP32 top-1 minus only_top1: what quantizing it alone costs
    recovered_points: float  # without_top1 minus the all-INT8 top-1: what leaving it float gives back


@dataclass(frozen=True)
class Sensitivity:
    arch: str
    method: str
    val_images: int
    calib_images: int
    fp32_top1: float
    int8_top1: float
    int8_sqnr_db: float | None
    layers: tuple[LayerSensitivity, ...]  # most sensitive first (recovered_points, then SQNR)

    def to_json(self) -> dict[str, Any]:
        return {"format": "edgecnn.sensitivity/1", **asdict(self), "layers": [asdict(x) for x in self.layers]}

    def ranking(self) -> list[str]:
        return [x.layer for x in self.layers]


def _sqnr(ref: np.ndarray, x: np.ndarray) -> float | None:
    noise = float(np.sum((x.astype(np.float64) - ref) ** 2))
    return (
        None if noise == 0 else round(10 * math.log10(float(np.sum(ref.astype(np.float64) ** 2)) / noise), 3)
    )


def quantizable_layers(model, sample) -> list[str]:
    """The convolution and linear layers the quantizer annotates, in graph order."""
    from edgecnn.quantize.pt2e import capture, layer_of, prepare_float

    gm = capture(prepare_float(model), sample)
    return [layer for n in gm.graph.nodes if (layer := layer_of(n))]


def sensitivity(
    arch: str,
    recipe,
    *,
    data=None,
    checkpoint=None,
    method: str | None = None,
    images: int | None = None,
    calib_images: int | None = None,
    layers: list[str] | None = None,
    alone: bool = True,
    log: Callable[[str], None] = lambda s: None,
) -> Sensitivity:
    """Quantize each layer alone and leave each alone in float; top-1 on the validation split.

    ``alone=False`` skips quantizing each layer alone (half the work): the ranking, by what leaving
    each layer in float recovers, is the same (``--max-drop`` uses it so, :mod:`edgecnn.mixed`)."""
    import torch

    from edgecnn.data.splits import take
    from edgecnn.errors import EdgecnnError
    from edgecnn.quantize import stages
    from edgecnn.quantize.pt2e import capture, layer_of, prepare_float, ptq

    src = stages.float_source(arch, recipe, data=data, checkpoint=checkpoint, log=log, progress=False)
    method = method or recipe.calibrate.method
    calib, _ = stages.calibration_images(src, calib_images or recipe.calibrate.num_images)
    xv, yv = take(src.bundle, src.splits["val"])
    if images:
        xv, yv = xv[:images], yv[:images]
    if not len(yv):
        raise EdgecnnError(
            f"the validation split of {src.bundle.name} is empty; raise data.val in the recipe"
        )
    xv = src.preprocess.apply_torch(xv)
    bs = recipe.calibrate.batch_size
    captured = capture(prepare_float(src.model), calib[: min(bs, len(calib))])  # once for all the PTQs
    every = [layer for n in captured.graph.nodes if (layer := layer_of(n))]
    names = layers or every
    unknown = sorted(set(names) - set(every))
    if unknown:
        raise EdgecnnError(f"{arch} has no quantizable layer {', '.join(unknown)}")

    @torch.no_grad()
    def logits(module) -> np.ndarray:
        return torch.cat([module(b) for b in xv.split(250)]).numpy()

    def score(**which) -> tuple[float, float | None]:
        out = logits(ptq(src.model, calib, method=method, batch_size=bs, captured=captured, **which))
        return float((out.argmax(1) == yv).mean()), _sqnr(ref, out)

    ref = logits(src.model)
    fp32 = float((ref.argmax(1) == yv).mean())
    log(f"{arch}: {len(names)} layers, {len(yv)} validation images, {method}: all INT8")
    int8, int8_sqnr = score()
    rows = []
    for i, layer in enumerate(names):
        log(f"{arch}: [{i + 1}/{len(names)}] {layer}")
        only, only_db = score(only_layers=[layer]) if alone else (None, None)
        without, without_db = score(float_layers=[layer])
        rows.append(
            LayerSensitivity(
                every.index(layer),
                layer,
                only,
                only_db,
                without,
                without_db,
                None if only is None else round(100 * (fp32 - only), 3),
                round(100 * (without - int8), 3),
            )
        )
    rows.sort(
        key=lambda r: (-r.recovered_points, -(r.without_sqnr_db or math.inf), r.only_sqnr_db or math.inf)
    )
    return Sensitivity(arch, method, len(yv), len(calib), fp32, int8, int8_sqnr, tuple(rows))


def plot(result: Sensitivity, path: str | os.PathLike) -> Path:
    """Per layer (graph order): SQNR of the logits with only that layer quantized, and with all but it."""
    from edgecnn.numerics import pyplot, save_figure

    plt = pyplot()

    order = sorted(result.layers, key=lambda r: r.index)
    cap = 100.0
    fig, ax = plt.subplots(figsize=(max(8.0, 0.35 * len(order)), 4.5))
    xs = range(len(order))
    ax.plot(
        xs,
        [cap if r.only_sqnr_db is None else r.only_sqnr_db for r in order],
        "o-",
        label="only this layer INT8",
    )
    ax.plot(
        xs,
        [cap if r.without_sqnr_db is None else r.without_sqnr_db for r in order],
        "s-",
        label="all but this layer INT8",
    )
    if result.int8_sqnr_db is not None:
        ax.axhline(result.int8_sqnr_db, ls="--", color="gray", label="all INT8")
    ax.set_xticks(list(xs), [r.layer for r in order], rotation=90, fontsize=7)
    ax.set_ylabel("SQNR of the logits vs FP32, dB")
    ax.set_title(
        f"{result.arch}: per-layer INT8 sensitivity ({result.method}, {result.val_images} val images)"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
