"""ResNet18 at 224x224, batch 1, 2 threads: edgecnn's CPU INT8 artifacts against the plain
OpenVINO + NNCF default PTQ flow on the same weights, and against PyTorch eager FP32, all
measured in one run (rounds interleaved so drift hits every flow alike).

Usage: python benchmarks/cpu_int8_latency.py [--arch resnet18] [--rounds 3] [--seconds 3]

Weights: a seeded random init with a 10-class head, the same for every flow (latency does
not depend on the values). Calibration: 64 Fashion-MNIST calibration-split images at 224 for
both flows.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from edgecnn.data import Preprocess, SplitSpec, load_dataset, make_splits
    from edgecnn.data.splits import calibration_set, take
    from edgecnn.export.onnx import export_onnx, finalize_qdq, to_u8s8
    from edgecnn.export.openvino import nncf_ptq_ir, qdq_to_int8_ir
    from edgecnn.models import create
    from edgecnn.quantize.pt2e import prepare_float, ptq, residual_form
    from edgecnn.runtimes import open_session  # noqa: F401 - same import cost as users pay
    from edgecnn.telemetry import import_openvino
    from edgecnn.timing import measure

    ov = import_openvino()

    torch.manual_seed(0)
    model = create(args.arch, num_classes=10).eval()
    bundle = load_dataset(None)
    pre = Preprocess.for_dataset(bundle, 224, 3)
    calib = take(bundle, calibration_set(make_splits(bundle, SplitSpec())["calib"], 64))[0]
    xc = pre.apply_torch(calib)
    x1 = xc[:1].numpy()

    tmp = Path(tempfile.mkdtemp(prefix="edgecnn-bench-"))
    float_onnx = export_onnx(prepare_float(model), xc[:2], tmp / "float.onnx")
    from edgecnn.host import has_vnni

    quantized = ptq(model, xc, method="minmax", batch_size=16)
    qdq = export_onnx(quantized, xc[:2], tmp / "qdq.onnx")
    finalize_qdq(qdq)
    to_u8s8(qdq, tmp / "u8s8.onnx")
    # as `edgecnn export --target cpu` does: 7-bit weights on x86 without VNNI
    q7 = ptq(model, xc, method="minmax", batch_size=16, weight_bits=8 if has_vnni() else 7)
    qdq7 = export_onnx(q7, xc[:2], tmp / "qdq7.onnx")
    finalize_qdq(qdq7)
    before_ir = qdq_to_int8_ir(qdq7, tmp / "requantized.xml")  # export before residual_form
    residual_form(q7)  # as export writes it: a convolution feeding a residual add not requantized
    qdq7r = export_onnx(q7, xc[:2], tmp / "qdq7r.onnx")
    finalize_qdq(qdq7r)
    edge_ir = qdq_to_int8_ir(qdq7r, tmp / "edgecnn.xml")
    nncf_ir = nncf_ptq_ir(float_onnx, [xc[i : i + 1].numpy() for i in range(len(xc))], tmp / "nncf.xml")

    core = ov.Core()
    cfg = {"INFERENCE_NUM_THREADS": args.threads, "PERFORMANCE_HINT": "LATENCY"}

    def ov_run(xml, extra=None):
        req = core.compile_model(str(xml), "CPU", {**cfg, **(extra or {})}).create_infer_request()
        return lambda x: req.infer([x])

    import onnxruntime as ort

    def ort_run(path):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
        from edgecnn.host import has_vnni

        if not has_vnni():
            so.add_session_config_entry("session.x64quantprecision", "1")
        s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return lambda x: s.run(None, {"input": x})

    def torch_run(x):
        with torch.inference_mode():
            model(torch.from_numpy(x))

    flows = {
        "edgecnn INT8 (OpenVINO IR from the QDQ graph)": ov_run(edge_ir),
        "edgecnn INT8 (OpenVINO IR, residual inputs requantized: before residual_form)": ov_run(before_ir),
        "OpenVINO + NNCF default PTQ": ov_run(nncf_ir),
        "edgecnn INT8 (ONNX Runtime U8S8)": ort_run(tmp / "u8s8.onnx"),
        "OpenVINO FP32": ov_run(tmp / "float.onnx", {"INFERENCE_PRECISION_HINT": "f32"}),
        "PyTorch eager FP32": torch_run,
    }
    samples: dict[str, list[float]] = {k: [] for k in flows}
    for _ in range(args.rounds):
        for name, run in flows.items():
            r = measure(run, x1, warmup=5, min_seconds=args.seconds, min_runs=20)
            samples[name].append(r["latency_ms"]["p50"])
    p50 = {k: float(np.median(v)) for k, v in samples.items()}
    base = p50["OpenVINO + NNCF default PTQ"]
    eager = p50["PyTorch eager FP32"]
    print(
        json.dumps({"arch": args.arch, "threads": args.threads, "p50_ms": p50, "rounds": samples}, indent=2)
    )
    print(
        f"\n| flow ({args.arch}, 224x224, batch 1, {args.threads} threads) | p50 ms (median of {args.rounds} "
        f"rounds) | ratio to NNCF PTQ | ratio to PyTorch eager FP32 |"
    )
    print("|---|---|---|---|")
    for k, v in p50.items():
        print(f"| {k} | {v:.2f} | {v / base:.2f} | {v / eager:.2f} |")


if __name__ == "__main__":
    main()
