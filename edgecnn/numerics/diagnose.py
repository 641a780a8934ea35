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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.numerics.tap import Tap

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
    host: str | None = None  # where it ran: None here, else the --host it ran on over SSH

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = [asdict(layer) | {"label": layer.label} for layer in self.layers]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Diagnosis:
        """The diagnosis :meth:`to_json` wrote (``edgecnn diagnose --json``'s ``diagnoses``)."""
        layers = tuple(LayerDiff(**{f.name: lay[f.name] for f in fields(LayerDiff)}) for lay in d["layers"])
        kw = {f.name: d[f.name] for f in fields(cls) if f.name in d}
        return cls(**{**kw, "layers": layers, "missing": tuple(d["missing"])})


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


@dataclass(frozen=True)
class Setup:
    """What a diagnosis runs, here or on a device: the artifact, its graph's taps and the images."""

    art: Any
    gm: Any  # the converted PT2E graph (torch; never sent to a device)
    taps: tuple[Tap, ...]
    images: np.ndarray  # the test images as stored (uint8 N x H x W x C): what --host sends
    x: np.ndarray  # the same, preprocessed as the artifact's metadata says (float32 NCHW)
    runtime: str


@dataclass
class Exposed:
    """One runtime's side of a diagnosis: its tensors for the images ``[a, b)``, and its plain
    session's logits for them (without any layer exposed)."""

    taps: list[Tap]  # the taps the runtime exposes
    missing: list[str]
    info: dict
    values: Callable[[int, int], dict[str, np.ndarray]]
    plain: Callable[[int, int], np.ndarray]


def prepare(artifact, *, images: int, runtime=None, data=None, graph=None, layers=None) -> Setup:
    """Load ``artifact``, its quantized graph, its taps (``layers``: a glob on their labels; the output
    tap is always kept, for the agreement) and the first ``images`` test images."""
    from edgecnn.artifact import load_artifact
    from edgecnn.data import load_dataset
    from edgecnn.numerics.reference import graph_taps

    if images < 1:
        raise EdgecnnError("--images must be positive")
    art = load_artifact(artifact)
    gm = load_reference(art, graph)
    taps = [t for t in graph_taps(gm) if not layers or t.output or fnmatch.fnmatchcase(t.label, layers)]
    bundle = load_dataset(data)
    if art.meta["num_classes"] != len(bundle.classes):
        raise EdgecnnError(
            f"the artifact has {art.meta['num_classes']} classes but "
            f"{data or 'Fashion-MNIST'} has {len(bundle.classes)}; pass the --data it was trained on"
        )
    raw = bundle.test.images[:images]
    x = art.preprocess().apply_numpy(raw)
    return Setup(art, gm, tuple(taps), raw, x, runtime or art.runtime)


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


def _like(got: np.ndarray, ref: np.ndarray, tap: Tap, runtime: str) -> np.ndarray:
    """``got`` in ``ref``'s shape (as is, or a flattened twin: N x C against N x C x 1 x 1)."""
    if got.shape == ref.shape:
        return got
    if got.size == ref.size and (got.ndim < 4 or ref.ndim < 4):
        return got.reshape(ref.shape)
    raise EdgecnnError(
        f"{runtime}'s tensor for {tap.label} has shape {list(got.shape)}, "
        f"the graph's {list(ref.shape)}: the names matched the wrong tensor"
    )


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
    from edgecnn.numerics.expose import open_taps
    from edgecnn.runtimes import open_session

    s = prepare(artifact, images=images, runtime=runtime, data=data, graph=graph, layers=layers)
    log(f"{s.art.dir.name}: {len(s.taps)} quantized layers, {len(s.x)} images, {s.runtime}")
    precision = s.art.meta.get("precision")
    runner = open_taps(
        s.art.model_file, s.runtime, s.taps, threads=threads, config=runtime_config, precision=precision
    )
    with open_session(s.art, runtime=s.runtime, threads=threads) as plain:
        exposed = Exposed(
            runner.taps,
            runner.missing,
            dict(runner.info),
            lambda a, b: runner.run(s.x[a:b]),
            lambda a, b: plain.run(s.x[a:b]),
        )
        return compare(s, exposed, threshold=threshold, batch_size=batch_size)


def compare(
    s: Setup, exposed: Exposed, *, threshold: float, batch_size: int = 64, host: str | None = None
) -> Diagnosis:
    """The runtime's tensors against the fake-quant graph's and FP32's, batch by batch, matched by name."""
    from edgecnn.numerics.reference import tap_values

    if batch_size < 1:
        raise EdgecnnError("the batch size must be positive")
    stats = {t.name: _Stats() for t in exposed.taps}
    out = next((t for t in s.taps if t.output), None)
    agree, plain_steps = [], 0.0
    for a in range(0, len(s.x), batch_size):
        b = min(a + batch_size, len(s.x))
        xb, got = s.x[a:b], exposed.values(a, b)
        fq, fp = tap_values(s.gm, s.taps, xb), tap_values(s.gm, s.taps, xb, float_mode=True)
        for t in exposed.taps:
            stats[t.name].add(_like(got[t.name], fq[t.name], t, s.runtime), fq[t.name], fp[t.name], t.scale)
        if out and out.name in got:
            logits = got[out.name].reshape(b - a, -1)
            agree.append(np.argmax(logits, 1) == np.argmax(fq[out.name].reshape(b - a, -1), 1))
            plain_steps = max(plain_steps, float(np.abs(exposed.plain(a, b) - logits).max()) / out.scale)
    layers = tuple(_layer(i, t, stats[t.name]) for i, t in enumerate(s.taps) if t.name in stats)
    return Diagnosis(
        str(s.art.dir),
        s.art.meta["arch"],
        s.runtime,
        len(s.x),
        threshold,
        float(np.concatenate(agree).mean()) if agree else float("nan"),
        next((lay.label for lay in layers if lay.share_off > threshold), None),
        layers,
        tuple(exposed.missing),
        round(plain_steps, 3) if agree else None,
        exposed.info,
        host,
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
    """:func:`figure` written to ``path`` as PNG (or SVG/PDF, by its suffix)."""
    from edgecnn.numerics import save_figure

    return save_figure(figure(results), path)


def figure(results: Sequence[Diagnosis]):
    """One SQNR-against-the-fake-quant-graph line per diagnosis (runtime, host) across the layers, and
    the fake-quant graph's own SQNR against FP32 (dashed). Layers are placed by their label, so runtimes
    that expose fewer layers (OpenVINO's residual form, a fused FC+ReLU) line up with the others."""
    from edgecnn.numerics import pyplot

    plt = pyplot()
    ref = max(results, key=lambda r: len(r.layers))
    where: dict[str, int] = {}
    for r in sorted(results, key=lambda r: -len(r.layers)):  # every label any runtime has
        for lay in r.layers:
            where.setdefault(lay.label, len(where))

    def xy(r, value):
        pts = [(where[lay.label], value(lay)) for lay in r.layers]
        return [x for x, _ in pts], [IDENTICAL_DB if y is None else y for _, y in pts]

    fig, ax = plt.subplots(figsize=(max(8.0, 0.28 * len(where)), 4.8))
    for r in results:
        on = f" on {r.host}" if r.host else ""
        ax.plot(
            *xy(r, lambda lay: lay.sqnr_db),
            marker="o",
            ms=3,
            label=f"{r.runtime}{on} ({Path(r.artifact).name}, agreement {100 * r.agreement:.2f}%)",
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
    return fig
