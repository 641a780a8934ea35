"""A few-node OpenVINO IR that shows how the CPU plugin rounds a quantized convolution whose output
is quantized, then added to a quantized residual (ResNet's basic block tail):

    a (u8 grid) -> Convolution(int8 weights, per-channel scale) + bias -> FakeQuantize "mid" (int8)
                -> Add(., b on its u8 grid) -> ReLU -> FakeQuantize "out" (u8)

The reference is the graph's own arithmetic in float64 with round-half-to-even (what the PT2E
fake-quant graph, ONNX Runtime and TensorRT compute): ``out`` depends on ``mid``'s rounding. The
script compiles the same model three ways and reports the share of ``out`` values off by >= 1 step:

- as is (the CPU plugin fuses the Add, the ReLU and both FakeQuantize nodes into the convolution);
- with ``mid`` also a model output (an extra consumer: the fusion stops at ``mid``);
- with low-precision transformations off (``LP_TRANSFORMS_MODE=False``: FakeQuantize emulated in f32);

and against a second reference that skips ``mid``'s rounding (``out = q(conv + b)``).

Usage: python benchmarks/openvino_fused_add_repro.py [--channels 64] [--size 16] [--seed 0]
Needs only numpy and openvino.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def build(c: int, w_q: np.ndarray, w_scale: np.ndarray, bias: np.ndarray, s: dict, expose_mid: bool):
    import openvino as ov
    import openvino.opset13 as op

    def fq(x, lo, hi, name):
        node = op.fake_quantize(x, np.float32(lo), np.float32(hi), np.float32(lo), np.float32(hi), 256)
        node.set_friendly_name(name)
        return node

    a = op.parameter([-1, c, -1, -1], np.float32, name="a")
    b = op.parameter([-1, c, -1, -1], np.float32, name="b")
    a_q = fq(a, 0, 255 * s["a"], "a_fq")
    b_q = fq(b, 0, 255 * s["b"], "b_fq")
    w = op.multiply(op.convert(op.constant(w_q), np.float32), op.constant(w_scale.reshape(c, 1, 1, 1)))
    conv = op.convolution(a_q, w, [1, 1], [1, 1], [1, 1], [1, 1])
    conv = op.add(conv, op.constant(bias.reshape(1, c, 1, 1)))
    mid = fq(conv, -128 * s["mid"], 127 * s["mid"], "mid_fq")
    out = fq(op.relu(op.add(mid, b_q)), 0, 255 * s["out"], "out_fq")
    results = [op.result(out)] + ([op.result(mid)] if expose_mid else [])
    return ov.Model(results, [a, b], "conv_fq_add_relu_fq")


def reference(qa, qb, w_q, w_scale, bias, s, mid: str = "round") -> np.ndarray:
    """The graph's arithmetic in float64: integer accumulation, half-to-even rounding. ``mid``: "round"
    (the graph), "clamp" (mid's range kept, its rounding dropped) or "none" (mid skipped)."""
    c = w_q.shape[0]
    pad = np.pad(qa.astype(np.int64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    h, wd = qa.shape[2:]
    acc = np.zeros((qa.shape[0], c, h, wd), np.int64)
    for dy in range(3):
        for dx in range(3):
            acc += np.einsum(
                "nihw,oi->nohw", pad[:, :, dy : dy + h, dx : dx + wd], w_q[:, :, dy, dx].astype(np.int64)
            )
    conv = acc * (s["a"] * w_scale.astype(np.float64)).reshape(1, c, 1, 1) + bias.reshape(1, c, 1, 1)
    if mid != "none":
        conv = np.clip(np.round(conv / s["mid"]) if mid == "round" else conv / s["mid"], -128, 127) * s["mid"]
    add = np.maximum(conv + qb * s["b"], 0)
    return np.clip(np.round(add / s["out"]), 0, 255)


def run(model, config: dict, a: np.ndarray, b: np.ndarray, s_out: float) -> np.ndarray:
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", **config})
    return np.round(compiled({"a": a, "b": b})[compiled.outputs[0]].astype(np.float64) / s_out)


def fused_layers(model) -> list[str]:
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    out = []
    for node in compiled.get_runtime_model().get_ordered_ops():
        info = node.get_rt_info()
        if "layerType" in info and info["layerType"].astype(str) == "Convolution":
            out.append(info["originalLayersNames"].astype(str))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import openvino as ov

    rng = np.random.default_rng(args.seed)
    c, n, hw = args.channels, args.images, args.size
    w_q = rng.integers(-127, 128, (c, c, 3, 3)).astype(np.int8)
    w_scale = rng.uniform(0.5e-3, 2e-3, c).astype(np.float32)
    # scales as calibration gives them (no simple ratios between them, which would make exact ties)
    s = {
        k: float(np.float32(v * rng.uniform(0.9, 1.1)))
        for k, v in {"a": 0.02, "b": 0.03, "mid": 0.05, "out": 0.06}.items()
    }
    acc_std = np.sqrt(9 * c) * 60 * 60
    bias = (rng.normal(0, 1, c) * s["a"] * w_scale * acc_std * 0.1).astype(np.float32)
    qa = rng.integers(0, 128, (n, c, hw, hw))  # post-ReLU activations on their u8 grid
    qb = rng.integers(0, 128, (n, c, hw, hw))
    a, b = (qa * s["a"]).astype(np.float32), (qb * s["b"]).astype(np.float32)
    ref = reference(qa, qb, w_q, w_scale, bias, s)
    ref_clamp = reference(qa, qb, w_q, w_scale, bias, s, mid="clamp")
    ref_skip = reference(qa, qb, w_q, w_scale, bias, s, mid="none")

    def off(x, r):
        return float(np.mean(np.abs(x - r) >= 1))

    plain = run(build(c, w_q, w_scale, bias, s, False), {}, a, b, s["out"])
    exposed = run(build(c, w_q, w_scale, bias, s, True), {}, a, b, s["out"])
    no_lpt = run(build(c, w_q, w_scale, bias, s, False), {"LP_TRANSFORMS_MODE": False}, a, b, s["out"])
    report = {
        "openvino": ov.get_version(),
        "values": int(ref.size),
        "fused_into_convolution": fused_layers(build(c, w_q, w_scale, bias, s, False)),
        "share_off_vs_reference": {
            "as_is": off(plain, ref),
            "mid_exposed": off(exposed, ref),
            "lp_transforms_off": off(no_lpt, ref),
        },
        "share_off_vs_reference_mid_clamped_not_rounded": {
            "as_is": off(plain, ref_clamp),
            "mid_exposed": off(exposed, ref_clamp),
        },
        "share_off_vs_reference_mid_skipped": {
            "as_is": off(plain, ref_skip),
            "mid_exposed": off(exposed, ref_skip),
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
