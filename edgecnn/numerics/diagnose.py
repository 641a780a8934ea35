"""``edgecnn diagnose``: where an INT8 artifact's runtime departs from its fake-quant graph, layer by layer.

N test images run through the artifact with every quantized activation exposed
(:mod:`edgecnn.numerics.expose`) and through the converted PT2E graph it was exported from, in
fake-quant and in float (:mod:`edgecnn.numerics.reference`). Per layer (a tap: one activation
quantize op, matched by name):

- SQNR of the runtime's tensor against the fake-quant graph's and against FP32, and of the
  fake-quant graph against FP32 (what quantization itself costs there);
- the largest difference from the fake-quant graph in quantization steps of that tensor, and the
  share of values off by one step or more (both tensors are on the same integer grid, so a value
  is either exact or a whole number of steps off);
- the first layer whose share of off values exceeds ``threshold``: where the runtime departs.

Errors carry forward, so a layer after the first departure inherits its difference; the first
departure is the layer to look at.
"""

from __future__ import annotations

import fnmatch
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import EdgecnnError

DEFAULT_IMAGES = 256
DEFAULT_THRESHOLD = 0.02  # share of a layer's values off by >= 1 step (ties flip up to ~1.3% on ResNet18)
IDENTICAL_DB = 100.0  # where the plot draws a layer whose tensors are identical


@dataclass(frozen=True)
class LayerDiff:
    """One quantized activation compared across the runtime, the fake-quant graph and FP32."""

    index: int  # position in the graph's order (for reading, not for matching)
    name: str  # the graph's quantize op (= the ONNX QuantizeLinear output)
    op: str
    module: str
    scale: float
    values: int  # values compared (all images)
    sqnr_db: float | None  # runtime vs fake-quant graph; None: identical
    sqnr_fp32_db: float | None  # runtime vs FP32
    fakequant_sqnr_fp32_db: float | None  # fake-quant graph vs FP32
    max_steps: float  # largest |runtime - fake-quant| in quantization steps
    share_off: float  # share of values off by one step or more

    @property
    def label(self) -> str:
        return f"{self.module}:{self.op}"


@dataclass(frozen=True)
class Diagnosis:
    artifact: str
    arch: str
    runtime: str
    images: int
    threshold: float
    agreement: float  # top-1 agreement with the fake-quant graph on these images
    first_departure: str | None  # label of the first layer with share_off > threshold
    layers: tuple[LayerDiff, ...]
    missing: tuple[str, ...]  # taps the runtime's model does not expose (fused away, renamed)
    exposed_output_steps: float | None  # plain session's logits vs the exposed run's, in output steps
    runtime_info: dict = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = [asdict(layer) | {"label": layer.label} for layer in self.layers]
        return d


class _Stats:
    """Running sums over batches for one tap."""

    def __init__(self):
        self.n = self.off = 0
        self.max_steps = 0.0
        self.sq = dict.fromkeys(("fq", "fp", "rt_fq", "rt_fp", "fq_fp"), 0.0)

    def add(self, rt: np.ndarray, fq: np.ndarray, fp: np.ndarray, scale: float) -> None:
        rt, fq, fp = (a.astype(np.float64).reshape(-1) for a in (rt, fq, fp))
        steps = np.abs(rt - fq) / scale
        self.n += rt.size
        self.off += int(np.count_nonzero(steps >= 0.5))
        self.max_steps = max(self.max_steps, float(steps.max(initial=0.0)))
        for key, a, b in (
            ("fq", fq, 0),
            ("fp", fp, 0),
            ("rt_fq", rt, fq),
            ("rt_fp", rt, fp),
            ("fq_fp", fq, fp),
        ):
            self.sq[key] += float(np.sum((a - b) ** 2))

    def sqnr(self, signal: str, noise: str) -> float | None:
        if self.sq[noise] == 0:
            return None
        if self.sq[signal] == 0:
            return -math.inf
        return round(10 * math.log10(self.sq[signal] / self.sq[noise]), 3)


def _images(art, data, n: int) -> tuple[np.ndarray, np.ndarray]:
    from edgecnn.data import load_dataset

    bundle = load_dataset(data)
    if art.meta["num_classes"] != len(bundle.classes):
        raise EdgecnnError(
            f"the artifact has {art.meta['num_classes']} classes but "
            f"{data or 'Fashion-MNIST'} has {len(bundle.classes)}; pass the --data it was trained on"
        )
    images, labels = bundle.test.images[:n], bundle.test.labels[:n]
    return art.preprocess().apply_numpy(images), labels


def load_reference(art, graph: str | os.PathLike | None = None):
    """The converted PT2E graph an INT8 artifact was exported from (``graph`` overrides metadata), in
    the artifact's form (OpenVINO's: :func:`edgecnn.quantize.pt2e.residual_form`)."""
    import torch

    from edgecnn.quantize.pt2e import load_graph, residual_form, retrace

    if art.meta.get("precision") != "int8" or not art.meta.get("quantization"):
        raise EdgecnnError(
            f"{art.dir} is a {art.meta.get('precision')} artifact; diagnose compares INT8 "
            f"artifacts with their fake-quant graph"
        )
    path = graph or (art.meta.get("source") or {}).get("quantized_graph")
    if not path or not Path(path).exists():
        raise EdgecnnError(
            f"the quantized graph this artifact was exported from ({path}) is not here; "
            f"pass --graph PATH (runs/calibrate/.../quantized.pt2) or re-run edgecnn calibrate"
        )
    gm = load_graph(path)
    if art.meta["quantization"].get("residual_form"):
        residual_form(gm)  # as export made it, and retraced as export did: the same node names
        shape = [2 if d is None else int(d) for d in art.meta["input"]["shape"]]
        gm = retrace(gm, torch.zeros(shape))
    return gm


def _like(got: np.ndarray, ref: np.ndarray) -> np.ndarray | None:
    """``got`` in ``ref``'s shape (as is, or a flattened twin: N x C against N x C x 1 x 1); None if neither
    fits."""
    if got.shape == ref.shape:
        return got
    return got.reshape(ref.shape) if got.size == ref.size and (got.ndim < 4 or ref.ndim < 4) else None


def diagnose(
    artifact,
    *,
    images: int = DEFAULT_IMAGES,
    runtime: str | None = None,
    data=None,
    threshold: float = DEFAULT_THRESHOLD,
    threads: int | None = None,
    batch_size: int = 64,
    graph=None,
    runtime_config: dict | None = None,
    layers: str | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> Diagnosis:
    """Compare every quantized layer of ``artifact`` in ``runtime`` (default its own) with the fake-quant
    graph and FP32 on the first ``images`` test images. ``runtime_config``: OpenVINO compile options.
    ``layers``: a glob on the layer labels (``"*add*"``) to expose only those: a runtime that fuses
    across layers (OpenVINO) fuses differently around an exposed tensor, so fewer exposed layers
    leave its graph closer to the one it runs without them (``exposed_output_steps`` says how close)."""
    from edgecnn.artifact import load_artifact
    from edgecnn.numerics.expose import open_taps
    from edgecnn.numerics.reference import graph_taps, tap_values
    from edgecnn.runtimes import open_session

    if images < 1 or batch_size < 1:
        raise EdgecnnError("--images and the batch size must be positive")
    art = load_artifact(artifact)
    rt_name = runtime or art.runtime
    gm = load_reference(art, graph)
    taps = graph_taps(gm)
    if layers:
        taps = [t for t in taps if fnmatch.fnmatchcase(t.label, layers) or t.output]  # the output: agreement
    x, _ = _images(art, data, images)
    opts = {"threads": threads}
    if rt_name == "openvino" and runtime_config:
        opts["config"] = runtime_config
    if rt_name == "tensorrt":
        opts = {"precision": art.meta.get("precision")}
    log(f"{art.dir.name}: {len(taps)} quantized layers, {len(x)} images, {rt_name}")
    runner = open_taps(art.model_file, rt_name, taps, **opts)
    stats = {t.name: _Stats() for t in runner.taps}
    out_tap = next((t.name for t in taps if t.output), None)
    agree, plain_steps = [], 0.0
    with open_session(art, runtime=rt_name, threads=threads) as plain:
        for s in range(0, len(x), batch_size):
            xb = x[s : s + batch_size]
            fq, fp, got = tap_values(gm, taps, xb), tap_values(gm, taps, xb, float_mode=True), runner.run(xb)
            for t in runner.taps:
                value = _like(got[t.name], fq[t.name])
                if value is None:
                    raise EdgecnnError(
                        f"{rt_name}'s tensor for {t.label} has shape {list(got[t.name].shape)}, "
                        f"the graph's {list(fq[t.name].shape)}: the names matched the wrong tensor"
                    )
                stats[t.name].add(value, fq[t.name], fp[t.name], t.scale)
            if out_tap and out_tap in got:
                agree.append(
                    np.argmax(got[out_tap].reshape(len(xb), -1), 1)
                    == np.argmax(fq[out_tap].reshape(len(xb), -1), 1)
                )
                scale = next(t.scale for t in taps if t.name == out_tap)
                plain_steps = max(
                    plain_steps,
                    float(np.abs(plain.run(xb) - got[out_tap].reshape(len(xb), -1)).max()) / scale,
                )
    layers = tuple(_layer(i, t, stats[t.name]) for i, t in enumerate(taps) if t.name in stats)
    first = next((lay.label for lay in layers if lay.share_off > threshold), None)
    return Diagnosis(
        str(art.dir),
        art.meta["arch"],
        rt_name,
        len(x),
        threshold,
        float(np.concatenate(agree).mean()) if agree else float("nan"),
        first,
        layers,
        tuple(runner.missing),
        round(plain_steps, 3) if agree else None,
        dict(runner.info),
    )


def _layer(i: int, t, st: _Stats) -> LayerDiff:
    return LayerDiff(
        i,
        t.name,
        t.op,
        t.module,
        t.scale,
        st.n,
        st.sqnr("fq", "rt_fq"),
        st.sqnr("fp", "rt_fp"),
        st.sqnr("fp", "fq_fp"),
        round(st.max_steps, 3),
        st.off / max(st.n, 1),
    )


# -- output -----------------------------------------------------------------------------------


def plot(results: Sequence[Diagnosis], path: str | os.PathLike) -> Path:
    """One SQNR-against-the-fake-quant-graph line per runtime across the layers, as PNG (or SVG/PDF).
    Layers are placed by their label, so graphs with fewer quantized layers (OpenVINO's
    residual form) line up with the others."""
    from edgecnn.numerics import pyplot, save_figure

    plt = pyplot()
    ref = max(results, key=lambda r: len(r.layers))
    where = {}
    for lay in ref.layers:
        where.setdefault(lay.label, len(where))

    def xy(r, value):
        pts = [(where[lay.label], value(lay)) for lay in r.layers if lay.label in where]
        return [x for x, _ in pts], [IDENTICAL_DB if y is None else y for _, y in pts]

    fig, ax = plt.subplots(figsize=(max(8.0, 0.28 * len(where)), 4.8))
    for r in results:
        ax.plot(
            *xy(r, lambda lay: lay.sqnr_db),
            marker="o",
            ms=3,
            label=f"{r.runtime} ({Path(r.artifact).name}, agreement {100 * r.agreement:.2f}%)",
        )
    ax.plot(
        *xy(ref, lambda lay: lay.fakequant_sqnr_fp32_db),
        ls="--",
        color="gray",
        label="fake-quant graph vs FP32 (quantization noise)",
    )
    ax.set_xticks(list(where.values()), list(where), rotation=90, fontsize=6)
    ax.set_ylabel(f"SQNR vs fake-quant graph, dB ({IDENTICAL_DB:.0f} = identical)")
    ax.set_title(f"{ref.arch}: INT8 runtime vs its fake-quant graph, {ref.images} test images")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)
