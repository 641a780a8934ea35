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
kernel with requantized output, as in an NNCF model. The items are generic layer shapes, not
the four networks' layers; the networks are then predicted from the fit (see
:func:`edgecnn.devices.predict.fit_to_layers`), which is what makes the comparison against
the measured networks a test of the predictor rather than of a lookup.

The time of an empty inference (a ReLU on 8 values) is measured too and subtracted: it is
the per-call cost of the runtime, paid once per network, not once per layer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edgecnn.errors import EdgecnnError

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
    from edgecnn.devices.predict import LayerCost

    kind = spec[0]
    if kind == "conv":
        _, cin, cout, k, s, hw = spec
        p = k // 2
        out = (hw + 2 * p - k) // s + 1
        macs = cin * cout * k * k * out * out
        return LayerCost(label(spec), "conv", 2.0 * macs, cin * cout * k * k + cout,
                         cin * hw * hw + cout * out * out)
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
    return ops.fake_quantize(x, ops.constant(lo), ops.constant(hi), ops.constant(lo), ops.constant(hi), levels)


def build(spec: tuple, precision: str, seed: int = 0):
    """An ``ov.Model`` of one suite layer, and an input for it."""
    import openvino as ov
    import openvino.opset13 as ops

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
    x = ops.parameter(shape, np.float32, name="x")
    y = _fq(ops, x, -4.0, 4.0, 256) if int8 else x
    if kind == "conv":
        w = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)
        wn = ops.constant(w)
        if int8:
            amax = np.abs(w).reshape(cout, -1).max(1).reshape(cout, 1, 1, 1)
            wn = _fq(ops, wn, -amax, amax, 255)
        p = k // 2
        y = ops.convolution(y, wn, [s, s], [p, p], [p, p], [1, 1])
        y = ops.relu(ops.add(y, ops.constant(np.zeros((1, cout, 1, 1), np.float32))))
    elif kind == "linear":
        _, n_in, n_out = spec
        w = (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(np.float32)
        wn = ops.constant(w)
        if int8:
            amax = np.abs(w).max(1, keepdims=True)
            wn = _fq(ops, wn, -amax, amax, 255)
        y = ops.add(ops.matmul(y, wn, False, True), ops.constant(np.zeros((1, n_out), np.float32)))
    else:
        _, _, k, s, _ = spec
        y = ops.max_pool(y, [s, s], [1, 1], [0, 0], [0, 0], [k, k]).output(0)
    if int8 and kind != "pool":
        y = _fq(ops, y, -4.0, 4.0, 256)   # the requantized output the next layer reads
    model = ov.Model([y], [x], label(spec))
    return model, rng.standard_normal(shape).astype(np.float32)


def _time(fn: Callable[[], Any], seconds: float, min_runs: int) -> float:
    fn()
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > 20 * seconds:
            break
    return float(np.median(times))


def _compile(model, precision: str, threads: int | None):
    import openvino as ov

    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if precision == "fp32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return ov.Core().compile_model(model, "CPU", config)


def measure_layers(precisions=("fp32", "int8"), *, threads: int | None = None, seconds: float = 0.5,
                   min_runs: int = 10, suite: tuple[tuple, ...] = SUITE,
                   log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Median seconds per layer of ``suite`` at each precision, less the empty-call time."""
    try:
        import openvino as ov
        import openvino.opset13 as ops
    except ImportError:
        raise EdgecnnError("the layer microbenchmark needs OpenVINO: pip install 'edgecnn[openvino]'") from None
    log = log or (lambda s: None)
    x = ops.parameter([1, 8], np.float32, name="x")
    empty = _compile(ov.Model([ops.relu(x)], [x], "empty"), "fp32", threads).create_infer_request()
    z = np.zeros((1, 8), np.float32)
    call_s = _time(lambda: empty.infer({0: z}), seconds, min_runs)
    log(f"  empty inference: {call_s * 1e6:.0f} us")
    points = []
    for prec in precisions:
        for spec in suite:
            model, inp = build(spec, prec)
            request = _compile(model, prec, threads).create_infer_request()
            t = _time(lambda r=request, i=inp: r.infer({0: i}), seconds, min_runs)
            net = max(t - call_s, t * 0.05)
            log(f"  {prec} {label(spec)}: {t * 1e3:.3f} ms")
            points.append({"layer": list(spec), "label": label(spec), "precision": prec,
                           "seconds": net, "raw_seconds": t})
    return {"runtime": "openvino", "threads": threads, "call_seconds": call_s, "points": points}
