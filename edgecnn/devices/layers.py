"""Single-layer microbenchmarks in OpenVINO: the host's efficiencies, fitted to layers.

A GEMM of 1024^3 in ONNX Runtime runs far closer to the peak than the convolutions of a CNN
in OpenVINO do, so efficiencies taken from it over-predicted the networks' speed (measured
median error 45%). Here each item of :data:`SUITE` is one layer, built with OpenVINO's opset
(no torch, no export), compiled on the CPU and timed at batch 1:

- 3x3 convolutions along the usual ImageNet pyramid (64 channels at 56 px ... 512 at 7 px),
  one strided; 1x1 convolutions (expansion and reduction); one 5x5; a 7x7/2 and an 11x11/4
  stem on three channels;
- fully connected layers from 512x1000 (weights in cache) to 9216x4096 (151 MB in FP32,
  bound by memory bandwidth at batch 1);
- max pools 3x3/2 and 2x2/2.

INT8 puts FakeQuantize on the input (256 levels), the weights (255 levels, per output
channel) and the output, which OpenVINO's low-precision transformations turn into an int8
kernel with requantized output, as in an NNCF model. The items are common CNN layer shapes:
some coincide with layers of the four networks (the 7x7 and 11x11 stems, ResNet18's 3x3
convolutions), most do not, and a network's latency is predicted from the efficiencies fitted
to all of them (:func:`edgecnn.devices.predict.fit_to_layers`), not summed from these
timings, so comparing it with the measured network tests the roofline model, not a lookup.

Each layer is timed behind a prefix that hands it its input as a network would (a depthwise
1x1 convolution for a feature map, so the layer reads the runtime's blocked layout, in INT8 as
u8) and before a global mean (so neither model writes a large output), and the prefix and mean
alone are timed too: the difference is the layer's own time, without the per-call cost and the
input conversion and output reorder a lone layer would pay at the model's boundary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edgecnn.devices.costs import LayerCost, conv_class
from edgecnn.devices.openvino_cpu import compile_cpu

# ("conv", c_in, c_out, kernel, stride, size) | ("linear", in, out) | ("pool", channels, kernel, stride, size)
SUITE: tuple[tuple, ...] = (
    ("conv", 3, 64, 7, 2, 224),
    ("conv", 3, 64, 11, 4, 224),
    ("conv", 64, 64, 3, 1, 56),
    ("conv", 128, 128, 3, 1, 28),
    ("conv", 256, 256, 3, 1, 14),
    ("conv", 512, 512, 3, 1, 7),
    ("conv", 64, 192, 3, 1, 56),
    ("conv", 128, 256, 3, 2, 28),
    ("conv", 32, 64, 5, 1, 28),
    ("conv", 64, 256, 1, 1, 56),
    ("conv", 512, 128, 1, 1, 28),
    ("conv", 832, 256, 1, 1, 7),
    ("linear", 512, 1000),
    ("linear", 4096, 4096),
    ("linear", 9216, 4096),
    ("pool", 64, 3, 2, 112),
    ("pool", 128, 2, 2, 112),
)


def layer_cost(spec: tuple):
    """The predictor's :class:`LayerCost` of a suite item (same counting as ``profile_layers``)."""
    kind = spec[0]
    if kind == "conv":
        _, cin, cout, k, s, hw = spec
        p = k // 2
        out = (hw + 2 * p - k) // s + 1
        macs = cin * cout * k * k * out * out
        return LayerCost(
            label(spec),
            "conv",
            2.0 * macs,
            cin * cout * k * k + cout,
            cin * hw * hw + cout * out * out,
            conv_class(k, cin, cout),
        )
    if kind == "linear":
        _, n_in, n_out = spec
        return LayerCost(label(spec), "linear", 2.0 * n_in * n_out, n_in * n_out + n_out, n_in + n_out)
    _, c, k, s, hw = spec
    out = (hw - k) // s + 1
    return LayerCost(label(spec), "pool", 0.0, 0, c * hw * hw + c * out * out)


def label(spec: tuple) -> str:
    if spec[0] == "conv":
        _, cin, cout, k, s, hw = spec
        return f"conv{k}x{k}/{s} {cin}->{cout} @{hw}"
    if spec[0] == "linear":
        return f"linear {spec[1]}->{spec[2]}"
    _, c, k, s, hw = spec
    return f"maxpool{k}x{k}/{s} {c} @{hw}"


def _fq(ops, x, lo, hi, levels: int):
    f32 = np.float32
    lo, hi = np.asarray(lo, dtype=f32), np.asarray(hi, dtype=f32)
    return ops.fake_quantize(
        x, ops.constant(lo), ops.constant(hi), ops.constant(lo), ops.constant(hi), levels
    )


def build(spec: tuple, precision: str, seed: int = 0, *, with_layer: bool = True):
    """An ``ov.Model`` of one suite layer behind its prefix (or the prefix alone), and an input.

    The prefix hands the layer its input the way a network does: for a feature map a depthwise
    1x1 convolution with ReLU (so the layer reads the runtime's blocked layout, in INT8 as u8),
    for a vector a ReLU; a feature map then ends in a global mean, so the output is tiny in both
    models. Timing prefix + layer minus prefix alone leaves the layer's own time, free of the
    input conversion and output reorder a lone layer pays at the model's boundary.
    """
    from edgecnn.telemetry import import_openvino

    ov = import_openvino()
    ops = ov.opset13

    rng = np.random.default_rng(seed)
    int8 = precision == "int8"
    kind = spec[0]
    if kind == "conv":
        _, cin, cout, k, s, hw = spec
        shape = [1, cin, hw, hw]
    elif kind == "linear":
        shape = [1, spec[1]]
    else:
        shape = [1, spec[1], spec[4], spec[4]]

    def requant(node):
        return _fq(ops, node, 0.0, 6.0, 256) if int8 else node  # what the next layer reads

    def weights(w):
        node = ops.constant(w)
        if not int8:
            return node
        amax = np.abs(w).reshape(w.shape[0], -1).max(1).reshape((-1,) + (1,) * (w.ndim - 1))
        return _fq(ops, node, -amax, amax, 255)

    x = ops.parameter(shape, np.float32, name="x")
    y = _fq(ops, x, -4.0, 4.0, 256) if int8 else x
    if len(shape) == 4:  # a depthwise 1x1 convolution: cheap, and its output is in the blocked layout
        c = shape[1]
        w = (1.0 + 0.1 * rng.standard_normal((c, 1, 1, 1, 1))).astype(np.float32)
        y = ops.group_convolution(y, weights(w), [1, 1], [0, 0], [0, 0], [1, 1])
    y = requant(ops.relu(y))
    if with_layer:
        if kind == "conv":
            w = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)
            p = k // 2
            y = ops.convolution(y, weights(w), [s, s], [p, p], [p, p], [1, 1])
            y = requant(ops.relu(ops.add(y, ops.constant(np.zeros((1, cout, 1, 1), np.float32)))))
        elif kind == "linear":
            _, n_in, n_out = spec
            w = (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(np.float32)
            y = ops.add(
                ops.matmul(y, weights(w), False, True), ops.constant(np.zeros((1, n_out), np.float32))
            )
            y = requant(y)
        else:
            _, _, k, s, _ = spec
            y = ops.max_pool(y, [s, s], [1, 1], [0, 0], [0, 0], [k, k]).output(0)
    if len(shape) == 4:  # both models end in a global mean: a tiny output, so no output reorder to subtract
        y = ops.reduce_mean(y, ops.constant(np.array([2, 3], dtype=np.int64)), True)
    model = ov.Model([y], [x], label(spec) + ("" if with_layer else " (prefix)"))
    return model, rng.standard_normal(shape).astype(np.float32)


def _timeit_pair(
    a: Callable[[], Any], b: Callable[[], Any], seconds: float, min_runs: int
) -> tuple[float, float]:
    """Median seconds per call of ``a`` and of ``b``, timed in alternation (one warm-up each), so
    that the VM's drift (tens of percent over minutes) hits both alike: the difference of two
    back-to-back medians put a max-pool at 0.004 ms in one run and 0.25 ms in the next."""
    a(), b()
    ta: list[float] = []
    tb: list[float] = []
    start = time.perf_counter()
    while len(ta) < min_runs or time.perf_counter() - start < 2 * seconds:
        for fn, out in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        if time.perf_counter() - start > 20 * seconds:
            break
    return float(np.median(ta)), float(np.median(tb))


def measure_layers(
    precisions=("fp32", "int8"),
    *,
    threads: int | None = None,
    seconds: float = 0.5,
    min_runs: int = 10,
    suite: tuple[tuple, ...] = SUITE,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Seconds per layer of ``suite`` at each precision: median of (prefix + layer) minus median
    of the prefix alone, the two timed in alternation (floored at 2% of the former where noise
    makes it smaller)."""
    from edgecnn.telemetry import import_openvino

    import_openvino("the layer microbenchmark needs OpenVINO: pip install 'edgecnn[openvino]'")
    log = log or (lambda s: None)

    def runner(spec, prec, with_layer):
        model, inp = build(spec, prec, with_layer=with_layer)
        request = compile_cpu(model, prec, threads).create_infer_request()
        return lambda: request.infer({0: inp})

    points = []
    for prec in precisions:
        for spec in suite:
            t_prefix, t_with = _timeit_pair(
                runner(spec, prec, False), runner(spec, prec, True), seconds, min_runs
            )
            net = max(t_with - t_prefix, 0.02 * t_with)
            log(
                f"  {prec} {label(spec)}: {net * 1e3:.3f} ms ({t_with * 1e3:.3f} with its prefix, "
                f"{t_prefix * 1e3:.3f} without)"
            )
            points.append(
                {
                    "layer": list(spec),
                    "label": label(spec),
                    "precision": prec,
                    "seconds": net,
                    "with_prefix_seconds": t_with,
                    "prefix_seconds": t_prefix,
                }
            )
    return {
        "runtime": "openvino",
        "threads": threads,
        "method": "prefix + layer minus prefix, medians, timed in alternation",
        "points": points,
    }
