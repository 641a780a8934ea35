"""Latency predictor: a per-layer roofline with fitted efficiencies, always labelled predicted.

For each layer that runs as its own kernel (conv, linear, pool; batch norms and
activations are fused into the preceding conv by every runtime edgecnn targets)::

    t = max(ops / (peak[precision] * eff_compute[precision]),
            dram_bytes / (bandwidth * eff_memory) + cached_bytes / (bandwidth * eff_cache)) + overhead

with ops = 2 x MACs from :func:`edgecnn.models.profile_layers` at the given input size
and batch, and bytes = (weights + input + output activations) x bytes per element at the
precision. Weights are read once per batch, so at batch 1 the FC layers of AlexNet and
VGG16 are bound by bandwidth.

Where the profile gives its last-level cache (``memory.cache_mb``; the host's is read from
sysfs), bytes that stay in it between one inference and the next are read at their own
efficiency (``eff_cache``, relative to the same bandwidth): of a network's weights the fraction
cache / weight bytes (all of ResNet18's and GoogLeNet's INT8 weights on a 32 MiB L3, half of
AlexNet's 61 MB, an eighth of its 244 MB in FP32), and a layer's activations when they fit.
Without a cache size every byte is a DRAM byte, as before.

The efficiencies are fitted per device and runtime, in log space (relative error):

- a device profile (Raspberry Pi, Jetson) by the *physical* fit (:func:`_fit_physical`): a compute
  efficiency per precision and kernel class (3x3, 1x1, depthwise and other convolutions, fully
  connected, pooling), each in (0, 1] -- bounded least squares, so no kernel runs above the peak --
  a memory efficiency <= 1, a per-kernel overhead in microseconds, and a fill limit (kernels too small
  to occupy every core run below the efficiency). It fits the figures the profile cites: the ``fit =
  yes`` rows of ``devices/published/*.csv`` naming it (LiteRT's XNNPACK kernels on a Pi, TensorRT on
  a Jetson), else the fit of ``transfer_from`` with this profile's own peaks (so a Pi 5's dotprod
  INT8 rate, :data:`edgecnn.devices.profile.INT8_RATE`, enters through its peak), else its
  ``fallback`` points (ncnn's figures, another runtime, labelled FALLBACK);
- the host by a grid search, to the latencies ``edgecnn devices fit --nets`` measured, else
  its single-layer timings, else its GEMM / copy microbenchmark, else defaults. There the factors may
  exceed 1 (Winograd convolutions, a CPU boosting above its nominal clock): they are fitted
  factors, not utilisations.

Every prediction carries an error band: a multiplicative factor ``f`` (``error_pct`` =
(f - 1) x 100; the band is [t / f, t x f]) combining in log space the fit's
leave-one-out residuals (rms), the profile's ``extra_error_pct`` (proxy runtime,
transferred fit) and a term when the precision was not itself calibrated.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecnn.devices.costs import KERNEL_CLASSES, LayerCost, costs_from_layers, network_costs  # noqa: F401
from edgecnn.devices.detect import load_host_fit
from edgecnn.devices.profile import BYTES_PER, HOST, CalibrationPoint, DeviceProfile
from edgecnn.devices.published import published_points
from edgecnn.devices.reference_nets import REFERENCE_NETS
from edgecnn.devices.registry import load_device

LATENCY_SOURCE = "predicted"

# Grids of the fit (log-spaced efficiencies; per-layer overhead in microseconds).
_EC = np.geomspace(0.002, 4.0, 89)
_EM = np.geomspace(0.1, 4.0, 28)
_EMC = np.geomspace(0.25, 32.0, 22)  # cache-resident bytes, relative to the DRAM bandwidth
_OV = np.array(
    [0, 1, 2, 3, 5, 7, 10, 15, 20, 30, 40, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000.0]
)
_EM_PRIOR = (0.7, 0.02)  # weak pull of eff_memory towards 0.7: breaks ties with few points

MIN_FIT_ERROR = math.log(1.10)  # no fit is trusted to better than 10%
FEW_POINTS_ERROR = math.log(1.5)  # fewer than 3 points: no leave-one-out estimate
UNCALIBRATED_PRECISION_ERROR = math.log(1.5)
DEFAULT_ERROR = math.log(2.0)  # no calibration at all


def costs_for(arch: str, image_size: int = 224, batch: int = 1) -> tuple[LayerCost, ...]:
    """Kernel costs of one of the four networks, or of a reference network a published figure is given for."""
    if arch in REFERENCE_NETS:
        return REFERENCE_NETS[arch](image_size, batch)
    return network_costs(arch, image_size, batch)


def _arrays(
    costs: Sequence[LayerCost],
    peak_ops: float,
    bandwidth: float,
    precision: str,
    cache_bytes: float | None = None,
):
    """Per kernel: seconds at the peak, and seconds of DRAM bytes and of cache-resident bytes at
    the bandwidth. Of the weights, which are read again every inference, the fraction
    cache / (all of ``costs``' weight bytes) stays resident (all of them when they fit: the
    37.7 MB INT8 FC layer of the host's suite read its weights at 88-156 GB/s in five runs,
    against a 34-43 GB/s DRAM copy, so most of them came from the 32 MiB L3); a kernel's
    activations when they fit."""
    b = BYTES_PER[precision]
    c = np.array([x.ops for x in costs], dtype=np.float64) / peak_ops
    w = np.array([x.weights for x in costs], dtype=np.float64) * b
    a = np.array([x.activations for x in costs], dtype=np.float64) * b
    if not cache_bytes:
        return c, (w + a) / bandwidth, np.zeros_like(c)
    w_res = w * min(1.0, cache_bytes / w.sum()) if w.sum() else w
    a_res = np.where(a <= cache_bytes, a, 0.0)
    return c, (w - w_res + a - a_res) / bandwidth, (w_res + a_res) / bandwidth


@dataclass(frozen=True)
class Efficiency:
    """Fitted efficiencies of one device + runtime and the error of the fit (log units)."""

    compute: dict[str, float]  # precision -> effective fraction of the peak
    memory: float  # effective fraction of the bandwidth (DRAM bytes)
    overhead_us: float  # per kernel
    fit_error: float  # rms log residual (leave-one-out where possible)
    basis: str  # where the efficiencies come from, in words
    points: int = 0
    residuals_pct: dict[str, float] = field(default_factory=dict)  # point -> LOO error %
    memory_cache: float | None = None  # the same for cache-resident bytes; None: read as DRAM bytes
    kernels: dict[str, float] = field(
        default_factory=dict
    )  # kernel class -> multiplier of compute[precision]
    physical: bool = False  # per (precision, kernel class) efficiencies capped at 1 (device fits)
    fill_s: float = 0.0  # see :func:`fill`: kernels under this many seconds at the peak run slower
    borrowed: dict[str, str] = field(
        default_factory=dict
    )  # precision -> device its compute efficiency is from

    def compute_for(self, precision: str) -> tuple[float, bool]:
        """(efficiency, calibrated?) for ``precision``; uncalibrated ones use the others' geometric mean."""
        if precision in self.compute:
            return self.compute[precision], precision not in self.borrowed
        vals = list(self.compute.values())
        return float(np.exp(np.mean(np.log(vals)))), False

    def layer_efficiencies(self, precision: str, classes: Sequence[str]) -> tuple[np.ndarray, bool]:
        """Per kernel: the fraction of the peak it reaches (capped at 1 in a physical fit), and calibrated?"""
        base, calibrated = self.compute_for(precision)
        mult = np.array([self.kernels.get(k, 1.0) for k in classes], dtype=np.float64)
        e = base * mult
        return (np.minimum(e, 1.0) if self.physical else e), calibrated

    def kernel_table(self) -> dict[str, dict[str, float]]:
        """precision -> kernel class -> efficiency (physical fits: every value in (0, 1])."""
        return {
            p: dict(
                zip(
                    KERNEL_CLASSES,
                    (round(float(v), 4) for v in self.layer_efficiencies(p, KERNEL_CLASSES)[0]),
                    strict=True,
                )
            )
            for p in self.compute
        }

    def to_dict(self) -> dict[str, Any]:
        d = {
            "compute": {k: round(v, 4) for k, v in self.compute.items()},
            "memory": round(self.memory, 4),
            "memory_cache": None if self.memory_cache is None else round(self.memory_cache, 4),
            "overhead_us": self.overhead_us,
            "fit_error_pct": round((math.exp(self.fit_error) - 1) * 100, 1),
            "basis": self.basis,
            "points": self.points,
            "loo_residuals_pct": {k: round(v, 1) for k, v in self.residuals_pct.items()},
        }
        if self.physical:
            d["kernel_efficiency"] = self.kernel_table()
            d["fill_us"] = round(self.fill_s * 1e6, 2)
        return d


@dataclass(frozen=True)
class _Item:
    c: np.ndarray
    m: np.ndarray  # DRAM bytes, in seconds at the bandwidth
    mc: np.ndarray  # cache-resident bytes, the same
    n: int
    group: str
    y: float  # log latency (s)
    label: str
    k: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # kernel class index per layer


def _class_index(costs: Sequence[LayerCost]) -> np.ndarray:
    return np.array([KERNEL_CLASSES.index(x.kernel_class) for x in costs], dtype=np.int64)


def _items(profile: DeviceProfile, runtime: str, points: Sequence[CalibrationPoint]) -> list[_Item]:
    items = []
    for cp in points:
        costs = costs_for(cp.arch, cp.image_size, cp.batch)
        c, m, mc = _arrays(
            costs,
            profile.peak_ops(runtime, cp.precision, cp.threads),
            profile.bandwidth,
            cp.precision,
            profile.cache_bytes,
        )
        items.append(
            _Item(
                c,
                m,
                mc,
                len(costs),
                cp.precision,
                math.log(cp.latency_ms / 1e3),
                f"{cp.arch}/{cp.precision}",
                _class_index(costs),
            )
        )
    return items


def _log_pred_grid(it: _Item, emc: np.ndarray) -> np.ndarray:
    """log predicted seconds over the (eff_compute, eff_memory, eff_cache, overhead) grid."""
    mem = it.m[None, None, :] / _EM[:, None, None] + it.mc[None, None, :] / emc[None, :, None]
    t = np.maximum(it.c[None, None, None, :] / _EC[:, None, None, None], mem[None]).sum(-1)
    return np.log(t[..., None] + it.n * _OV * 1e-6)


def _choose(
    groups: dict[str, np.ndarray], emc: np.ndarray
) -> tuple[dict[str, float], float, float | None, float]:
    """The grid point of least summed squared log error (``groups``: precision -> summed grid)."""
    prior = _EM_PRIOR[1] * np.log(_EM / _EM_PRIOR[0]) ** 2
    total = sum(g.min(axis=0) for g in groups.values()) + prior[:, None, None]
    im, ic, io = np.unravel_index(int(np.argmin(total)), total.shape)
    compute = {g: float(_EC[int(np.argmin(loss[:, im, ic, io]))]) for g, loss in groups.items()}
    return compute, float(_EM[im]), (float(emc[ic]) if len(emc) > 1 else None), float(_OV[io])


def _predict_log(
    it: _Item, compute: dict[str, float], memory: float, memory_cache: float | None, overhead_us: float
) -> float:
    ec = compute.get(it.group, float(np.exp(np.mean(np.log(list(compute.values()))))))
    mem = it.m / memory + (it.mc / memory_cache if memory_cache else 0.0)
    t = np.maximum(it.c / ec, mem).sum() + it.n * overhead_us * 1e-6
    return math.log(t)


def fit_efficiency(
    profile: DeviceProfile,
    runtime: str,
    points: Sequence[CalibrationPoint],
    basis: str = "",
    *,
    physical: bool | None = None,
) -> Efficiency:
    """Fit efficiencies of ``profile``/``runtime`` to ``points``; the error is leave-one-out.

    ``physical`` (default: every profile but the host's) fits per kernel class, every efficiency
    in (0, 1] (:func:`_fit_physical`); the host keeps its grid fit, whose factors may exceed 1."""
    if not points:
        raise ValueError("fit_efficiency needs at least one point")
    what = basis or f"fit to {len(points)} calibration point(s) of {profile.name} ({runtime})"
    items = _items(profile, runtime, points)
    if profile.kind != HOST if physical is None else physical:
        return _fit_physical(items, what, fill_limit=profile.runtime(runtime).unit == "gpu")
    return _fit_items(items, what)


def fit_to_layers(
    profile: DeviceProfile,
    runtime: str,
    layer_points: Sequence[dict[str, Any]],
    basis: str = "",
    *,
    physical: bool | None = None,
) -> Efficiency:
    """Fit efficiencies to single layers timed on the device (``devices.layers.measure_layers``
    points: ``layer`` spec, ``precision``, ``seconds``); the error is leave-one-out over layers."""
    from edgecnn.devices.layers import layer_cost

    if not layer_points:
        raise ValueError("fit_to_layers needs at least one layer point")
    items = []
    for pt in layer_points:
        cost = layer_cost(tuple(pt["layer"]))
        c, m, mc = _arrays(
            [cost],
            profile.peak_ops(runtime, pt["precision"], pt.get("threads")),
            profile.bandwidth,
            pt["precision"],
            profile.cache_bytes,
        )
        items.append(
            _Item(
                c,
                m,
                mc,
                1,
                pt["precision"],
                math.log(pt["seconds"]),
                f"{cost.name}/{pt['precision']}",
                _class_index([cost]),
            )
        )
    what = basis or f"fit to {len(items)} single layers timed on {profile.name} ({runtime})"
    if profile.kind != HOST if physical is None else physical:
        return _fit_physical(items, what, fill_limit=profile.runtime(runtime).unit == "gpu")
    return _fit_items(items, what)


# ---- the physical fit (device profiles): per kernel class, every efficiency in (0, 1] ---------------
# Bounded least squares in log space by coordinate descent over bounded grids: the per-precision
# base efficiency a_p in [0.005, 1], a multiplier b_k per kernel class (the product capped at 1, so
# no kernel runs above the peak), the memory efficiency in [0.05, 1] of the bandwidth (no cache
# term: the Pi and Jetson profiles give no cache), and the per-kernel overhead in [0, 300] us.
# Weak priors (b_k towards 1, overhead towards 10 us, memory towards 0.5) decide what a few
# points cannot: with four published figures the fit does not invent a per-class structure.
_PA = np.geomspace(0.005, 1.0, 61)
_PB = np.geomspace(0.25, 4.0, 25)
_PM = np.geomspace(0.05, 1.0, 28)
_PO = np.array([0, 1, 2, 3, 5, 7, 10, 15, 20, 30, 40, 50, 75, 100, 150, 200, 300.0])
_PS = np.concatenate([[0.0], np.geomspace(1e-6, 1e-3, 19)])
_PRIOR_B, _PRIOR_O, _PRIOR_M, _PRIOR_S = 0.05, 0.05, 0.02, 0.01
_MAX_FOLDS = 8
_ROBUST_C = math.log(1.3)
# A CPU runtime's cost per kernel beyond its arithmetic: XNNPACK's per-operator dispatch and a 4-thread
# pool's barrier take microseconds, not the 300 us per kernel the ncnn fit once gave (issue 15), so the
# fit may not park a network it cannot explain in the overhead (a GPU's launches may cost more).
_CPU_OVERHEAD_MAX_US = 50.0


@dataclass
class _Phys:
    a: dict[str, float]
    b: np.ndarray  # per KERNEL_CLASSES
    mem: float
    ov: float
    sat: float = 0.0  # seconds at the peak below which a kernel cannot fill the machine

    def log_pred(self, it: _Item) -> float:
        base = self.a.get(it.group)
        if base is None:
            base = float(np.exp(np.mean(np.log(list(self.a.values())))))
        tc = it.c / (np.minimum(1.0, base * self.b[it.k]) * fill(it.c, self.sat))
        return math.log(np.maximum(tc, (it.m + it.mc) / self.mem).sum() + it.n * self.ov * 1e-6)

    def loss(self, items: Sequence[_Item]) -> float:
        r = sum(_robust(self.log_pred(it) - it.y) for it in items)
        return (
            r
            + _PRIOR_B * float(np.sum(np.log(self.b) ** 2))
            + _PRIOR_O * math.log((self.ov + 1) / 11) ** 2
            + _PRIOR_M * math.log(self.mem / 0.5) ** 2
            + _PRIOR_S * (self.sat > 0)
        )


def _robust(r: float) -> float:
    """Cauchy loss of a log residual: squared for small misses, logarithmic beyond ~30%, so one figure the
    model cannot explain (a network with ops outside the runtime's fast kernels) does not drag the
    memory efficiency or the overhead of every other prediction with it."""
    return _ROBUST_C**2 * math.log1p((r / _ROBUST_C) ** 2)


def fill(c: np.ndarray, sat: float) -> np.ndarray:
    """The share of the machine a kernel of ``c`` seconds at the peak can occupy: 1, or c / sat for a
    kernel too small to give every core (every GPU multiprocessor) work (``sat`` = 0: no such limit)."""
    if sat <= 0:
        return np.ones_like(c)
    return np.clip(c / sat, 1e-3, 1.0)


def _descend(items: Sequence[_Item], fill_limit: bool = False) -> _Phys:
    """Coordinate descent over the bounded grids until no coordinate moves."""
    st = _Phys(
        a={g: 0.3 for g in sorted({it.group for it in items})},
        b=np.ones(len(KERNEL_CLASSES)),
        mem=0.5,
        ov=10.0,
    )
    used = sorted({int(k) for it in items for k, c in zip(it.k, it.c, strict=True) if c > 0})
    ov_grid = _PO if fill_limit else _PO[_PO <= _CPU_OVERHEAD_MAX_US]
    coords = (
        [("a", g, _PA) for g in st.a]
        + [("b", k, _PB) for k in used]
        + [("mem", None, _PM), ("ov", None, ov_grid)]
        + ([("sat", None, _PS)] if fill_limit else [])
    )
    for _ in range(12):
        moved = False
        for name, key, grid in coords:
            before = _get(st, name, key)
            losses = []
            for v in grid:
                _set(st, name, key, float(v))
                losses.append(st.loss(items))
            best = float(grid[int(np.argmin(losses))])
            moved |= best != before
            _set(st, name, key, best)
        if not moved:
            break
    return st


def _set(st: _Phys, name: str, key: Any, v: float) -> None:
    if name == "a":
        st.a[key] = v
    elif name == "b":
        st.b[key] = v
    else:
        setattr(st, name, v)


def _get(st: _Phys, name: str, key: Any) -> float:
    return st.a[key] if name == "a" else float(st.b[key]) if name == "b" else getattr(st, name)


def _fit_physical(items: Sequence[_Item], what: str, fill_limit: bool = False) -> Efficiency:
    """``fill_limit``: a GPU, whose thousands of lanes a small kernel leaves idle (:func:`fill`); a 4-core
    CPU splits even a 32 px layer across its cores, so it has none."""
    st = _descend(items, fill_limit)
    residuals: dict[str, float] = {}
    if len(items) >= 3:
        logs = []
        folds = min(len(items), _MAX_FOLDS)  # leave-one-out; k-fold (every k-th held out) for many points
        for f in range(folds):
            held = [it for j, it in enumerate(items) if j % folds == f]
            st_f = _descend([it for j, it in enumerate(items) if j % folds != f], fill_limit)
            for it in held:
                r = st_f.log_pred(it) - it.y
                logs.append(r)
                residuals[it.label] = (math.exp(r) - 1) * 100
        fit_error = max(math.sqrt(float(np.mean(np.square(logs)))), MIN_FIT_ERROR)
    else:
        in_sample = [st.log_pred(it) - it.y for it in items]
        fit_error = max(math.sqrt(float(np.mean(np.square(in_sample)))), FEW_POINTS_ERROR)
    kernels = {k: float(st.b[i]) for i, k in enumerate(KERNEL_CLASSES) if st.b[i] != 1.0}
    return Efficiency(
        compute=dict(st.a),
        memory=st.mem,
        overhead_us=st.ov,
        fit_error=fit_error,
        basis=what,
        points=len(items),
        residuals_pct=residuals,
        kernels=kernels,
        physical=True,
        fill_s=st.sat,
    )


def _fit_items(items: Sequence[_Item], what: str) -> Efficiency:
    # eff_cache is only fitted where some bytes are cache-resident (the profile gives a cache).
    emc = _EMC if any(it.mc.any() for it in items) else np.ones(1)

    def r2(it: _Item) -> np.ndarray:  # recomputed, not stored: a grid per item would take GBs
        return (_log_pred_grid(it, emc) - it.y) ** 2

    groups: dict[str, np.ndarray] = {}
    for it in items:
        groups[it.group] = groups.get(it.group, 0.0) + r2(it)
    compute, memory, memory_cache, overhead = _choose(groups, emc)
    residuals: dict[str, float] = {}
    if len(items) >= 3:
        logs = []
        for it in items:  # leave-one-out: the item's own term taken out of its group's sum
            rest = dict(groups)
            rest[it.group] = groups[it.group] - r2(it)
            if not any(x.group == it.group for x in items if x is not it):
                del rest[it.group]
            r = _predict_log(it, *_choose(rest, emc)) - it.y
            logs.append(r)
            residuals[it.label] = (math.exp(r) - 1) * 100
        fit_error = max(math.sqrt(float(np.mean(np.square(logs)))), MIN_FIT_ERROR)
    else:
        in_sample = [(_predict_log(it, compute, memory, memory_cache, overhead) - it.y) for it in items]
        fit_error = max(math.sqrt(float(np.mean(np.square(in_sample)))), FEW_POINTS_ERROR)
    return Efficiency(
        compute=compute,
        memory=memory,
        overhead_us=overhead,
        fit_error=fit_error,
        basis=what,
        points=len(items),
        residuals_pct=residuals,
        memory_cache=memory_cache,
    )


DEFAULT_EFFICIENCY = Efficiency(
    compute={"fp32": 0.5},
    memory=0.7,
    overhead_us=10.0,
    fit_error=DEFAULT_ERROR,
    basis="uncalibrated defaults (eff_compute 0.5, eff_memory 0.7, 10 us/kernel)",
)


def _host_efficiency(profile: DeviceProfile, runtime: str) -> Efficiency:
    cal = load_host_fit() or {}
    pts = [CalibrationPoint(**p) for p in cal.get("calibration_points", []) if p.get("runtime") == runtime]
    if pts:
        return fit_efficiency(
            profile,
            runtime,
            pts,
            basis=f"fit to {len(pts)} latencies measured on this host by `devices fit --nets`",
        )
    layers = cal.get("layer_points") or {}
    if layers.get("runtime") == runtime and layers.get("points"):
        pts = [{**p, "threads": layers.get("threads")} for p in layers["points"]]
        return fit_to_layers(
            profile,
            runtime,
            pts,
            basis=f"fit to {len(pts)} single layers timed in {runtime} on this host by `devices fit`",
        )
    gemm = cal.get("gemm_tops") or {}
    compute = {}
    for prec, tops in gemm.items():
        peak = profile.cpu.peak_tops.get(prec)
        if peak:
            compute[prec] = tops / peak
    if compute:
        return Efficiency(
            compute=compute,
            memory=1.0,
            overhead_us=10.0,
            fit_error=math.log(1.6),
            basis="GEMM and copy microbenchmarks of `devices fit` (no network fit)",
        )
    return DEFAULT_EFFICIENCY


@functools.lru_cache(maxsize=64)
def _efficiency_cached(name: str, runtime: str) -> Efficiency:
    profile = load_device(name)
    return efficiency_for(profile, runtime, _cached=False)


def efficiency_for(profile: DeviceProfile, runtime: str | None = None, *, _cached: bool = True) -> Efficiency:
    """The efficiencies the predictor uses for ``profile`` and ``runtime``."""
    rt = runtime or profile.default_runtime
    if profile.name == HOST:
        return _host_efficiency(profile, rt)
    if _cached and profile.source.startswith("devices/"):
        return _efficiency_cached(profile.name, rt)
    if any(lp.runtime == rt for lp in profile.layer_points):
        return _own_layers_fit(profile, rt)
    pts = cited_points(profile, rt)
    if pts:
        with_ = sorted({p.measured_with for p in pts})
        eff = fit_efficiency(
            profile,
            rt,
            pts,
            basis=f"fit to {len(pts)} published latencies on {profile.name} ({'; '.join(with_)})",
        )
        return _borrow_precisions(eff, profile, rt)
    src = profile.runtime(rt).transfer_from
    if src:
        eff = efficiency_for(load_device(src), rt)
        return dataclasses.replace(eff, basis=f"transferred from {src}: {eff.basis}")
    fallback = [p for p in profile.calibration_points if p.runtime == rt and p.fallback]
    if fallback:
        with_ = sorted({p.measured_with for p in fallback})
        return fit_efficiency(
            profile,
            rt,
            fallback,
            basis=f"FALLBACK (another runtime): fit to {len(fallback)} "
            f"published latencies of {'; '.join(with_)}",
        )
    return DEFAULT_EFFICIENCY


def _borrow_precisions(eff: Efficiency, profile: DeviceProfile, rt: str) -> Efficiency:
    """A precision the device's figures leave out takes its base efficiency from the ``transfer_from``
    device's fit, said in the basis and, as an uncalibrated precision, with a wider band."""
    src = profile.runtime(rt).transfer_from
    missing = [p for p in profile.runtime(rt).precisions if p not in eff.compute]
    if not (src and missing):
        return eff
    other = efficiency_for(load_device(src), rt)
    got = {p: other.compute[p] for p in missing if p in other.compute}
    if not got:
        return eff
    return dataclasses.replace(
        eff,
        compute={**eff.compute, **got},
        borrowed={p: src for p in got},
        basis=f"{eff.basis}; {', '.join(got)} efficiency from {src}'s fit",
    )


_OWN_FITS: dict[tuple, Efficiency] = {}


def _own_layers_fit(profile: DeviceProfile, rt: str) -> Efficiency:
    """The physical fit to the single layers timed on this device (``devices fit --host``), once
    per process for the same points, peaks and bandwidth."""
    mine = [lp for lp in profile.layer_points if lp.runtime == rt]
    key = (profile.name, rt, tuple(mine), profile.unit(rt), profile.memory)
    if key not in _OWN_FITS:
        pts = [
            {"layer": lp.layer, "precision": lp.precision, "seconds": lp.seconds, "threads": lp.threads}
            for lp in mine
        ]
        with_ = sorted({lp.measured_with for lp in mine})
        _OWN_FITS[key] = fit_to_layers(
            profile,
            rt,
            pts,
            physical=True,
            basis=f"fit to {len(pts)} single layers timed on this device ({'; '.join(with_)})",
        )
    return _OWN_FITS[key]


def cited_points(profile: DeviceProfile, runtime: str) -> tuple[CalibrationPoint, ...]:
    """The points a device fit uses: the profile's own (not fallback) and, for a shipped profile, the
    ``fit = yes`` rows of ``devices/published/*.csv`` naming it."""
    own = tuple(p for p in profile.calibration_points if p.runtime == runtime and not p.fallback)
    shipped = profile.source.startswith("devices/")
    return own + (published_points(profile.name, runtime) if shipped else ())


def roofline(
    costs: Sequence[LayerCost],
    profile: DeviceProfile,
    runtime: str,
    precision: str,
    eff: Efficiency,
    threads: int | None = None,
) -> dict[str, Any]:
    """Predicted seconds of ``costs`` and its breakdown (compute-bound, memory-bound, overhead)."""
    ec, calibrated = eff.layer_efficiencies(precision, [x.kernel_class for x in costs])
    c, m, mc = _arrays(
        costs,
        profile.peak_ops(runtime, precision, threads),
        profile.bandwidth,
        precision,
        profile.cache_bytes,
    )
    ec = ec * fill(c, eff.fill_s)
    # An efficiency fitted without a cache reads every byte at eff_memory.
    tc, tm = (
        c / ec,
        (m + mc) / eff.memory if eff.memory_cache is None else m / eff.memory + mc / eff.memory_cache,
    )
    per_layer = np.maximum(tc, tm)
    overhead = len(costs) * eff.overhead_us * 1e-6
    mem_bound = tm > tc
    return {
        "seconds": float(per_layer.sum() + overhead),
        "compute_bound_ms": float(per_layer[~mem_bound].sum() * 1e3),
        "memory_bound_ms": float(per_layer[mem_bound].sum() * 1e3),
        "overhead_ms": overhead * 1e3,
        "kernels": len(costs),
        "memory_bound_layers": [
            x.name for x, b in zip(costs, mem_bound, strict=True) if b and x.kind in ("conv", "linear")
        ],
        "precision_calibrated": calibrated,
        "eff_compute": eff.compute_for(precision)[0],
    }


def error_factor(eff: Efficiency, profile: DeviceProfile, runtime: str, precision_calibrated: bool) -> float:
    extra = profile.runtime(runtime).extra_error_pct
    terms = [eff.fit_error, math.log1p(extra / 100.0)]
    if not precision_calibrated:
        terms.append(UNCALIBRATED_PRECISION_ERROR)
    return math.exp(math.sqrt(sum(t * t for t in terms)))


def _prediction_notes(
    profile: DeviceProfile, rt: str, prec: str, eff: Efficiency, calibrated: bool
) -> list[str]:
    """Why the band is wide: the runtime's own reason, a borrowed or averaged precision."""
    notes = []
    if profile.runtime(rt).extra_error_reason:
        notes.append(profile.runtime(rt).extra_error_reason)
    if prec in eff.borrowed:
        notes.append(
            f"{prec} has no calibration point on {profile.name}: its efficiency is "
            f"{eff.borrowed[prec]}'s (band widened)"
        )
    elif not calibrated:
        notes.append(f"{prec} has no calibration point: its efficiency is the calibrated precisions' mean")
    return notes


def predict_latency(
    arch: str | Sequence[LayerCost],
    device: str | DeviceProfile,
    *,
    runtime: str | None = None,
    precision: str | None = None,
    image_size: int = 224,
    batch: int = 1,
    threads: int | None = None,
    small_input: bool = False,
    num_classes: int = 1000,
    efficiency: Efficiency | None = None,
) -> dict[str, Any]:
    """Predicted latency of ``arch`` (a name or kernel costs) on ``device``: a bench-shaped dict.

    ``latency_source`` is always ``"predicted"``; ``latency_ms`` p50 = p90 = p99 = mean =
    the prediction, min/max = the error band, n = 0 (nothing was run).
    """
    profile = device if isinstance(device, DeviceProfile) else load_device(device)
    rt, prec = profile.check(runtime, precision)
    if isinstance(arch, str):
        costs = network_costs(arch, image_size, batch, small_input=small_input, num_classes=num_classes)
        name = arch
    else:
        costs, name = tuple(arch), "custom"
    eff = efficiency or efficiency_for(profile, rt)
    r = roofline(costs, profile, rt, prec, eff, threads)
    t = r["seconds"] * 1e3
    f = error_factor(eff, profile, rt, r["precision_calibrated"])
    lo, hi = t / f, t * f
    notes = _prediction_notes(profile, rt, prec, eff, r["precision_calibrated"])
    return {
        "arch": name,
        "device": profile.name,
        "target": profile.target,
        "runtime": rt,
        "precision": prec,
        "image_size": image_size,
        "batch": batch,
        "threads": threads,
        "latency_source": LATENCY_SOURCE,
        "latency_ms": {"p50": t, "p90": t, "p99": t, "mean": t, "min": lo, "max": hi, "std": None, "n": 0},
        "throughput_ips": batch * 1e3 / t,
        "error_pct": (f - 1) * 100,
        "band_ms": [lo, hi],
        "prediction": {
            "basis": eff.basis,
            "efficiency": eff.to_dict(),
            "eff_compute_used": r["eff_compute"],
            "compute_bound_ms": r["compute_bound_ms"],
            "memory_bound_ms": r["memory_bound_ms"],
            "overhead_ms": r["overhead_ms"],
            "kernels": r["kernels"],
            "memory_bound_layers": r["memory_bound_layers"],
            "notes": notes,
        },
    }
