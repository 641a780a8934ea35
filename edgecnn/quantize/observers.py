"""Activation observers for PTQ calibration: ``minmax``, ``percentile``, ``entropy``, ``mse``.

Each is a torchao PT2E observer (an ``ObserverBase``: ``forward(x) -> x`` records
statistics, ``calculate_qparams() -> (scale, zero_point)``), usable directly as a
``QuantizationSpec(observer_or_fake_quant_ctr=...)`` for per-tensor activations, or inside
``FakeQuantize.with_args(observer=...)`` for QAT. The quantization spec's ``dtype``,
``qscheme``, ``quant_min`` and ``quant_max`` reach the observer as keyword arguments, so
one constructor serves both forms:

- symmetric (``torch.per_tensor_symmetric``, int8, zero point 0: TensorRT's form): the
  observer histograms ``|x|`` and picks a clip threshold ``T``; ``scale = T / 127`` so
  that ``T`` is exactly the largest positive level (uint8 symmetric: zero point 128, the
  same grid).
- affine (``torch.per_tensor_affine``, uint8 or int8): the observer histograms the
  positive and the negative side of ``x`` separately and picks ``[lo, hi]`` (``lo <= 0 <=
  hi``); scale and zero point as torchao's ``MinMaxObserver`` computes them from that range.

The histogram methods keep a fixed number of bins (2048) over ``[0, R]`` per side, ``R``
growing as needed: when a batch exceeds ``R`` the histogram is re-binned onto the new
range (mass spread uniformly within each old bin, as torch's ``HistogramObserver`` does),
so the statistics cover every calibration batch, not a mean of per-batch estimates.

- ``percentile``: clip at the p-th percentile of ``|x|`` (symmetric) or at the
  ``[100 - p, p]`` percentiles of ``x`` (affine); default p = 99.99.
- ``entropy``: TensorRT's KL-divergence calibration (as NVIDIA's pytorch-quantization
  implements it: the zero bin is replaced by its neighbour, thresholds from bin 128 up,
  the candidate distribution quantized into 128 levels (symmetric int8), or 256 for
  affine on non-negative data, the last minimum of KL(P||Q) wins). Affine on mixed-sign
  data treats each side as a symmetric half (128 levels each). One safeguard beyond
  TensorRT: thresholds that clip more than ``max_clip`` (1%) of the values are not
  candidates (KL is blind there when few bins hold all the mass below the threshold,
  e.g. logits far from zero).
- ``mse``: the clip range minimising the expected squared error (rounding + clipping)
  under the histogram, mass taken uniform within each bin (exact integrals), found by a
  coarse then a fine grid search over thresholds (coordinate descent over ``lo`` and
  ``hi`` for affine mixed-sign data).
- ``minmax``: torchao's ``MinMaxObserver`` itself.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torchao.quantization.pt2e.observer import MinMaxObserver, UniformQuantizationObserverBase

from edgecnn.errors import EdgecnnError, suggest
from edgecnn.quantize.calibset import (  # re-exported: METHODS, min_calibration_images, ...
    METHODS,
    check_calibration_size,
    check_method,
    min_calibration_images,
)

__all__ = [
    "METHODS",
    "EntropyObserver",
    "MSEObserver",
    "PercentileObserver",
    "activation_observer",
    "check_calibration_size",
    "check_method",
    "min_calibration_images",
]

# Keyword arguments each method accepts beyond dtype / qscheme / quant_min / quant_max.
_METHOD_KW = {
    "minmax": ("eps",),
    "percentile": ("percentile", "bins", "eps"),
    "entropy": ("bins", "start_bin", "stride", "max_clip", "eps"),
    "mse": ("bins", "eps"),
}


# ----------------------------------------------------------------------------- histogram base

_FLOAT32_EPS = torch.finfo(torch.float32).eps


class _HistogramObserverBase(UniformQuantizationObserverBase):
    """Records one-sided histograms of the observed values; subclasses pick the clip range.

    Buffers (fixed shapes, so a prepared model's ``state_dict`` round-trips):
    ``histogram`` (2, bins) float64: row 0 ``|x|`` (symmetric) or ``x >= 0`` (affine), row 1
    ``-x`` for ``x < 0`` (affine only); ``hist_max`` (2,): the upper edge ``R`` of each row
    (bins span ``[0, R]``; 0 while the side has seen nothing but zeros); ``min_val``,
    ``max_val``: the exact observed extremes.
    """

    histogram: torch.Tensor
    hist_max: torch.Tensor
    min_val: torch.Tensor
    max_val: torch.Tensor

    def __init__(
        self,
        bins: int = 2048,
        dtype=torch.int8,
        qscheme=torch.per_tensor_symmetric,
        reduce_range=False,
        quant_min=None,
        quant_max=None,
        factory_kwargs=None,
        eps=_FLOAT32_EPS,
        is_dynamic=False,
        **kwargs,
    ) -> None:
        if qscheme not in (torch.per_tensor_symmetric, torch.per_tensor_affine):
            raise NotImplementedError(
                f"{type(self).__name__} supports per-tensor qschemes only, got {qscheme}"
            )
        if is_dynamic:
            raise NotImplementedError(f"{type(self).__name__} does not support dynamic quantization")
        super().__init__(
            dtype=dtype,
            qscheme=qscheme,
            reduce_range=reduce_range,
            quant_min=quant_min,
            quant_max=quant_max,
            factory_kwargs=factory_kwargs,
            eps=eps,
            is_dynamic=is_dynamic,
            **kwargs,
        )
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 8:
            raise ValueError(f"bins must be an integer >= 8, got {bins!r}")
        self.bins = bins
        fk = torch.nn.factory_kwargs(factory_kwargs)
        device = fk.get("device")
        self.register_buffer("histogram", torch.zeros(2, bins, dtype=torch.float64, device=device))
        self.register_buffer("hist_max", torch.zeros(2, dtype=torch.float64, device=device))
        self.register_buffer("min_val", torch.tensor(float("inf"), device=device))
        self.register_buffer("max_val", torch.tensor(float("-inf"), device=device))

    # -- properties of the quantized grid

    @property
    def symmetric(self) -> bool:
        return self.qscheme == torch.per_tensor_symmetric

    def _symmetric_zero_point(self) -> int:
        if self.dtype in (torch.quint8, torch.uint8):  # as torchao: the midpoint of the range
            return (self.quant_min + self.quant_max) // 2 if self.has_customized_qrange else 128
        if self.dtype == torch.uint16:
            return 2**15
        return 0

    def _positive_levels(self) -> int:
        """Symmetric: how many steps above zero (127 for int8): ``scale = T / this``."""
        zp = self._symmetric_zero_point()
        return max(1, min(self.quant_max - zp, zp - self.quant_min))

    # -- recording

    def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
        if x_orig.numel() == 0:
            return x_orig
        x = x_orig.detach().float()
        x_min, x_max = torch.aminmax(x)
        if not (bool(torch.isfinite(x_min)) and bool(torch.isfinite(x_max))):
            warnings.warn(
                f"{type(self).__name__}: non-finite values in the observed tensor are ignored", stacklevel=1
            )
            x = x[torch.isfinite(x)]
            if x.numel() == 0:
                return x_orig
            x_min, x_max = torch.aminmax(x)
        self.min_val.copy_(torch.minimum(self.min_val, x_min))
        self.max_val.copy_(torch.maximum(self.max_val, x_max))
        lo, hi = float(x_min), float(x_max)
        if self.symmetric:
            self._accumulate(0, x.abs(), max(-lo, hi), 0)
        else:
            n_neg = int((x < 0).sum()) if lo < 0 else 0
            if n_neg < x.numel():  # zeros and positives: row 0 (negatives land in bin 0, taken off)
                self._accumulate(0, x.clamp(min=0) if lo < 0 else x, max(hi, 0.0), n_neg)
            if n_neg:
                self._accumulate(1, (-x).clamp(min=0), -lo, x.numel() - n_neg)
        return x_orig

    def _accumulate(self, row: int, values: torch.Tensor, vmax: float, spurious_zeros: int) -> None:
        """Add ``values`` (all >= 0, max ``vmax``) to histogram ``row``, less ``spurious_zeros``
        from bin 0 (values clamped to 0 that belong to the other side)."""
        r = float(self.hist_max[row])
        if vmax > r:
            self.histogram[row] = _rebin(self.histogram[row], r, vmax)
            self.hist_max[row] = vmax
            r = vmax
        if r <= 0.0:  # everything seen on this side so far is exactly zero
            self.histogram[row, 0] += values.numel() - spurious_zeros
            return
        h = torch.histc(values, bins=self.bins, min=0.0, max=r).to(torch.float64)
        h[0] -= spurious_zeros
        self.histogram[row] += h.to(self.histogram.device)

    # -- qparams

    def calculate_qparams(self):
        if bool(self.min_val == float("inf")):
            warnings.warn(
                f"{type(self).__name__}: calculate_qparams before any data was observed; "
                "returning scale 1, zero point 0",
                stacklevel=1,
            )
            return torch.tensor([1.0], device=self.min_val.device), torch.tensor(
                [0], device=self.min_val.device
            )
        lo, hi = self.clip_range()
        return self._qparams(lo, hi)

    def clip_range(self) -> tuple[float, float]:
        """The chosen float range ``(lo, hi)``, ``lo <= 0 <= hi``; ``lo == -hi`` when symmetric."""
        h = self.histogram.detach().to("cpu", torch.float64)
        r = self.hist_max.detach().to("cpu", torch.float64)
        if self.symmetric:
            t = self._symmetric_threshold(h[0], float(r[0]))
            return -t, t
        return self._affine_range(h[0], float(r[0]), h[1], float(r[1]))

    def _qparams(self, lo: float, hi: float) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.min_val.device
        if self.symmetric:
            t = max(-lo, hi)
            scale = torch.tensor([t / self._positive_levels()], dtype=torch.float32, device=device)
            scale = torch.max(scale, self.eps.to(device))
            return scale, torch.tensor([self._symmetric_zero_point()], dtype=torch.int64, device=device)
        return self._calculate_qparams(torch.tensor(lo, device=device), torch.tensor(hi, device=device))

    def _symmetric_threshold(self, h: torch.Tensor, r: float) -> float:
        raise NotImplementedError

    def _affine_range(self, hp: torch.Tensor, rp: float, hn: torch.Tensor, rn: float) -> tuple[float, float]:
        raise NotImplementedError

    def reset_min_max_vals(self):
        self.histogram.zero_()
        self.hist_max.zero_()
        self.min_val.fill_(float("inf"))
        self.max_val.fill_(float("-inf"))

    def extra_repr(self) -> str:
        return f"bins={self.bins}, min_val={float(self.min_val):.6g}, max_val={float(self.max_val):.6g}"


def _rebin(h: torch.Tensor, old_r: float, new_r: float) -> torch.Tensor:
    """Histogram ``h`` over ``[0, old_r]`` re-binned onto ``[0, new_r]`` (``new_r >= old_r``),
    taking each old bin's mass as uniform within it (linear interpolation of the CDF)."""
    n = h.numel()
    if old_r <= 0.0:
        out = torch.zeros_like(h)
        out[0] = h.sum()
        return out
    cdf = torch.cat([h.new_zeros(1), torch.cumsum(h, 0)])
    pos = (torch.linspace(0.0, new_r, n + 1, dtype=torch.float64, device=h.device) * (n / old_r)).clamp(max=n)
    k = pos.floor().long().clamp(max=n - 1)
    frac = pos - k
    new_cdf = cdf[k] + frac * (cdf[k + 1] - cdf[k])
    return torch.diff(new_cdf)


# ----------------------------------------------------------------------------- percentile


def _upper_quantile(h: torch.Tensor, r: float, tail: float) -> float:
    """The value ``t`` in ``[0, r]`` with ``tail`` counts of histogram ``h`` above it."""
    total = float(h.sum())
    target = total - tail
    if total <= 0.0 or target <= 0.0 or r <= 0.0:
        return 0.0
    n = h.numel()
    cdf = torch.cat([h.new_zeros(1), torch.cumsum(h, 0)])
    k = int(torch.searchsorted(cdf, torch.tensor([target], dtype=cdf.dtype), right=False)[0])
    k = min(max(k, 1), n)
    lo_c, hi_c = float(cdf[k - 1]), float(cdf[k])
    frac = 1.0 if hi_c <= lo_c else min(max((target - lo_c) / (hi_c - lo_c), 0.0), 1.0)
    return (k - 1 + frac) * r / n


class PercentileObserver(_HistogramObserverBase):
    """Clip at the ``percentile``-th percentile of ``|x|`` (symmetric) or at the
    ``[100 - percentile, percentile]`` percentiles of ``x`` (affine), from a histogram of
    every observed batch."""

    def __init__(self, percentile: float = 99.99, bins: int = 2048, **kwargs) -> None:
        super().__init__(bins=bins, **kwargs)
        if (
            isinstance(percentile, bool)
            or not isinstance(percentile, (int, float))
            or not 50 < percentile <= 100
        ):
            raise ValueError(f"percentile must be in (50, 100], got {percentile!r}")
        self.percentile = float(percentile)

    def _symmetric_threshold(self, h, r):
        return _upper_quantile(h, r, (1.0 - self.percentile / 100.0) * float(h.sum()))

    def _affine_range(self, hp, rp, hn, rn):
        tail = (1.0 - self.percentile / 100.0) * float(hp.sum() + hn.sum())
        return -_upper_quantile(hn, rn, tail), _upper_quantile(hp, rp, tail)

    def extra_repr(self) -> str:
        return f"percentile={self.percentile}, " + super().extra_repr()


# ----------------------------------------------------------------------------- entropy (KL)


def kl_divergences(
    hist: torch.Tensor, levels: int, start_bin: int = 128, stride: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """TensorRT's KL calibration on a one-sided histogram, vectorised over thresholds.

    Returns ``(i, kl)``: candidate thresholds in bins (the clip value is ``i * bin_width``)
    and KL(P||Q) for each, where P is ``hist[:i]`` with the mass beyond folded into its
    last bin and Q is ``hist[:i]`` quantized into ``levels`` chunks, each chunk's mass
    spread evenly over its non-empty bins (the reference loop of NVIDIA's
    pytorch-quantization ``_compute_amax_entropy``, including ``hist[0] = hist[1]``).
    Every sum over bins is a difference of prefix sums, so the cost is O(candidates * levels).
    """
    b = hist.detach().to("cpu", torch.float64).clone()
    n = b.numel()
    if n > 1:
        b[0] = b[1]  # the spike at zero (ReLU) is quantized exactly; leave it out of the comparison
    total = float(b.sum())
    cand = list(range(min(start_bin, n), n + 1, max(1, stride)))
    if cand[-1] != n:
        cand.append(n)
    i = torch.tensor(cand, dtype=torch.int64)
    if total <= 0.0:
        return i, torch.zeros(len(cand), dtype=torch.float64)
    pos = b > 0
    blogb = torch.where(pos, b * torch.log(torch.where(pos, b, torch.ones_like(b))), torch.zeros_like(b))
    cs = torch.cat([b.new_zeros(1), torch.cumsum(b, 0)])
    cnz = torch.cat([b.new_zeros(1), torch.cumsum(pos.to(torch.float64), 0)])
    cblogb = torch.cat([b.new_zeros(1), torch.cumsum(blogb, 0)])
    kl = torch.cat([_kl_chunk(ic, levels, b, cs, cnz, cblogb, total) for ic in i.split(256)])  # cache-sized
    return i, kl


def _kl_chunk(i, levels, b, cs, cnz, cblogb, total):
    # chunk g of candidate i holds bins [ceil(g*i/L), ceil((g+1)*i/L)), i.e. floor(j*L/i) == g
    g = torch.arange(levels + 1, dtype=torch.int64)
    edges = (g[None, :] * i[:, None] + levels - 1) // levels  # (C, L+1), last column == i
    chunk_sum = torch.diff(torch.take(cs, edges), dim=1)
    chunk_nz = torch.diff(torch.take(cnz, edges), dim=1)
    avg = torch.where(chunk_nz > 0, chunk_sum / chunk_nz.clamp(min=1), torch.zeros_like(chunk_sum))
    log_avg = torch.log(torch.where(avg > 0, avg, torch.ones_like(avg)))
    sum_b_log_avg = (chunk_sum * log_avg).sum(1)  # sum_{j<i} b_j log avg_{g(j)}
    last = i - 1
    b_last = b[last]
    g_last = (last * levels) // i
    log_avg_last = log_avg.gather(1, g_last[:, None])[:, 0]
    nq = cs[i]  # total mass of Q (unnormalised)
    head_mass = cs[last]  # sum_{j <= i-2} b_j
    log_nq = torch.log(nq.clamp(min=1e-300))
    # N * sum_{j <= i-2} p_j log(p_j / q_j), with p_j = b_j / N and q_j = avg_g / nq
    head = (
        cblogb[last]
        - head_mass * math.log(total)
        - (sum_b_log_avg - b_last * log_avg_last)
        + head_mass * log_nq
    )
    p_last = b_last + (total - cs[i])  # outliers folded into the last bin
    tail = torch.where(
        p_last > 0,
        torch.where(
            b_last > 0,
            p_last * (torch.log(p_last.clamp(min=1e-300)) - math.log(total) - log_avg_last + log_nq),
            torch.full_like(p_last, float("inf")),
        ),
        torch.zeros_like(p_last),
    )
    return (head + tail) / total


def _entropy_threshold(
    h: torch.Tensor, r: float, levels: int, start_bin: int, stride: int, max_clip: float
) -> float:
    total = float(h.sum())
    if r <= 0.0 or total <= 0.0:
        return 0.0
    i, kl = kl_divergences(h, levels, start_bin, stride)
    # Safeguard (not in TensorRT): where everything below a threshold sits in a few bins (logits far
    # from zero, few samples), P == Q there and KL is 0 while most values are clipped. Thresholds
    # clipping more than `max_clip` of the values are not candidates; the last one (i == bins) never is.
    cs = torch.cat([h.new_zeros(1), torch.cumsum(h.detach().to("cpu", torch.float64), 0)])
    clipped = (total - cs[i]) / total
    kl = torch.where(clipped > max_clip + 1e-12, torch.full_like(kl, float("inf")), kl)
    last_argmin = len(kl) - 1 - int(torch.argmin(torch.flip(kl, [0])))
    return int(i[last_argmin]) * r / h.numel()


class EntropyObserver(_HistogramObserverBase):
    """TensorRT-style KL-divergence (entropy) calibration; see :func:`kl_divergences`."""

    def __init__(
        self, bins: int = 2048, start_bin: int = 128, stride: int = 1, max_clip: float = 0.01, **kwargs
    ) -> None:
        super().__init__(bins=bins, **kwargs)
        if not 1 <= start_bin <= bins or stride < 1 or not 0.0 <= max_clip <= 1.0:
            raise ValueError(
                f"need 1 <= start_bin <= bins, stride >= 1 and 0 <= max_clip <= 1, got "
                f"start_bin={start_bin}, stride={stride}, max_clip={max_clip}"
            )
        self.start_bin = start_bin
        self.stride = stride
        self.max_clip = float(max_clip)

    def _symmetric_threshold(self, h, r):
        return _entropy_threshold(
            h, r, self._positive_levels() + 1, self.start_bin, self.stride, self.max_clip
        )

    def _affine_range(self, hp, rp, hn, rn):
        levels = self.quant_max - self.quant_min + 1
        if float(hn.sum()) <= 0.0:  # non-negative data: the whole grid on one side
            return 0.0, _entropy_threshold(hp, rp, levels, self.start_bin, self.stride, self.max_clip)
        half = max(1, levels // 2)
        return (
            -_entropy_threshold(hn, rn, half, self.start_bin, self.stride, self.max_clip),
            _entropy_threshold(hp, rp, half, self.start_bin, self.stride, self.max_clip),
        )

    def extra_repr(self) -> str:
        return (
            f"start_bin={self.start_bin}, stride={self.stride}, max_clip={self.max_clip}, "
            + super().extra_repr()
        )


# ----------------------------------------------------------------------------- mse


def _rounding_antiderivative(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """F with F' = (x - s * round(x / s))**2 (a sawtooth squared), for x >= 0."""
    u = x / s + 0.5
    k = torch.floor(u)
    f = u - k
    return s**3 * (k / 12.0 + ((f - 0.5) ** 3 + 0.125) / 3.0)


def side_errors(h: torch.Tensor, r: float, scale: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
    """Expected total squared error of one side (values ``>= 0``, histogram ``h`` over
    ``[0, r]``) quantized on the grid ``k * scale`` clipped at ``clip``, for each of the
    candidate ``(scale, clip)`` pairs (1-D tensors of equal length). Mass is taken uniform
    within each bin; the integrals are exact."""
    n = h.numel()
    if r <= 0.0 or float(h.sum()) <= 0.0:
        return torch.zeros_like(scale)
    w = r / n
    e = torch.arange(n + 1, dtype=torch.float64) * w  # bin edges
    density = (h / w)[None, :]
    out = []
    for s, c in zip(
        scale.split(_CHUNK), clip.split(_CHUNK), strict=True
    ):  # chunks stay in cache: several times faster
        s, c = s[:, None], c[:, None]
        edge = c + s / 2  # beyond it every value maps to `clip`
        # antiderivative of the squared error at each bin edge: rounding part + clipping part
        big = _rounding_antiderivative(torch.minimum(e, edge), s) + (torch.maximum(e, edge) - c) ** 3 / 3.0
        out.append((torch.diff(big, dim=1) * density).sum(1))
    return torch.cat(out)


_CHUNK = 16


def _grid_search(err, lo: float, hi: float, points: int = 128, rounds: int = 2) -> float:
    """Minimise ``err(candidates)`` over ``(lo, hi]``: a grid, then finer grids around the best."""
    best = hi
    for _ in range(rounds):
        cand = torch.linspace(lo, hi, points + 1, dtype=torch.float64)[1:]
        e = err(cand)
        k = int(torch.argmin(e))
        best = float(cand[k])
        step = (hi - lo) / points
        lo, hi = max(lo, best - step), min(hi, best + step)
    return best


class MSEObserver(_HistogramObserverBase):
    """The clip range minimising the expected squared quantization error (rounding inside
    the range, clipping outside) under the accumulated histogram."""

    def __init__(self, bins: int = 2048, **kwargs) -> None:
        super().__init__(bins=bins, **kwargs)

    def _symmetric_threshold(self, h, r):
        if r <= 0.0 or float(h.sum()) <= 0.0:
            return 0.0
        q = self._positive_levels()
        return _grid_search(lambda t: side_errors(h, r, t / q, t), 0.0, r)

    def _affine_range(self, hp, rp, hn, rn):
        qmin, qmax = self.quant_min, self.quant_max
        steps = float(qmax - qmin)

        def error(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
            s = ((hi - lo) / steps).clamp(min=1e-30)
            zp = torch.clamp(qmin - torch.round(lo / s), qmin, qmax)
            return side_errors(hp, rp, s, (qmax - zp) * s) + side_errors(hn, rn, s, (zp - qmin) * s)

        has_neg = rn > 0.0 and float(hn.sum()) > 0.0
        has_pos = rp > 0.0 and float(hp.sum()) > 0.0
        lo, hi = (-rn if has_neg else 0.0), (rp if has_pos else 0.0)
        if not has_neg and not has_pos:
            return 0.0, 0.0
        for _ in range(2 if has_neg and has_pos else 1):  # coordinate descent
            if has_pos:
                hi = _grid_search(lambda c, lo=lo: error(torch.full_like(c, lo), c), 0.0, rp)
            if has_neg:
                lo = -_grid_search(lambda c, hi=hi: error(-c, torch.full_like(c, hi)), 0.0, rn)
        return lo, hi


# ----------------------------------------------------------------------------- factory

_CLASSES = {"percentile": PercentileObserver, "entropy": EntropyObserver, "mse": MSEObserver}
_DTYPES = {"int8": torch.int8, "uint8": torch.uint8}


def activation_observer(method: str, *, dtype: str | torch.dtype = "int8", symmetric: bool = True, **kw: Any):
    """The observer constructor (``Observer.with_args(...)``) for calibration ``method``.

    ``dtype`` ``"int8"`` or ``"uint8"``; ``symmetric`` picks ``per_tensor_symmetric`` (zero
    point 0 for int8) or ``per_tensor_affine``. ``kw``: ``quant_min``/``quant_max`` (default:
    the dtype's full range), ``eps``, and per method ``percentile`` (99.99), ``bins``
    (2048), ``start_bin`` (128) / ``stride`` (1) / ``max_clip`` (0.01) for entropy. A
    ``QuantizationSpec``'s own dtype / qscheme / quant range override these when torchao builds the observer.
    """
    check_method(method)
    if isinstance(dtype, torch.dtype):
        tdtype = {torch.qint8: torch.int8, torch.quint8: torch.uint8}.get(dtype, dtype)
        if tdtype not in _DTYPES.values():
            raise EdgecnnError(f"activation dtype must be int8 or uint8, got {dtype}")
    elif dtype in _DTYPES:
        tdtype = _DTYPES[dtype]
    else:
        raise EdgecnnError(f"activation dtype must be 'int8' or 'uint8', got {dtype!r}")
    allowed = ("quant_min", "quant_max", *_METHOD_KW[method])
    for k in kw:
        if k not in allowed:
            raise EdgecnnError(
                f"calibration method '{method}' has no setting '{k}'.{suggest(k, allowed)} "
                f"Valid settings: {', '.join(allowed)}"
            )
    _check_settings(method, kw)
    qscheme = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
    cls = MinMaxObserver if method == "minmax" else _CLASSES[method]
    return cls.with_args(dtype=tdtype, qscheme=qscheme, **kw)


def _check_settings(method: str, kw: dict) -> None:
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    if "bins" in kw and (not is_int(kw["bins"]) or not 256 <= kw["bins"] <= 65536):
        raise EdgecnnError(f"{method}: bins must be an integer in [256, 65536], got {kw['bins']!r}")
    if "percentile" in kw:
        p = kw["percentile"]
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 50 < p <= 100:
            raise EdgecnnError(f"percentile must be a number in (50, 100], e.g. 99.99; got {p!r}")
    if "start_bin" in kw and (
        not is_int(kw["start_bin"]) or not 1 <= kw["start_bin"] <= kw.get("bins", 2048)
    ):
        raise EdgecnnError(f"entropy: start_bin must be an integer in [1, bins], got {kw['start_bin']!r}")
    if "stride" in kw and (not is_int(kw["stride"]) or kw["stride"] < 1):
        raise EdgecnnError(f"entropy: stride must be a positive integer, got {kw['stride']!r}")
    if "max_clip" in kw and (
        isinstance(kw["max_clip"], bool)
        or not isinstance(kw["max_clip"], (int, float))
        or not 0 <= kw["max_clip"] <= 1
    ):
        raise EdgecnnError(f"entropy: max_clip must be a fraction in [0, 1], got {kw['max_clip']!r}")
