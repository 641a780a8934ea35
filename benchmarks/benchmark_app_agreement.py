"""`edgecnn bench` against OpenVINO's own `benchmark_app` on the same IR files (target: within 10%).

Usage: python benchmarks/benchmark_app_agreement.py [--arch resnet18] [--image-size 224] [--threads 2]
                                                    [--seconds 5] [--rounds 3] [--precisions fp32,int8]

Builds the network with seeded random weights (latency does not depend on the values) as an
FP32 IR and as edgecnn's INT8 IR (PT2E minmax on 64 Fashion-MNIST calibration images, 7-bit
weights where the CPU has no VNNI, as `edgecnn export --target cpu` does), wraps each in an
artifact directory, then per round runs, each in a fresh process and in alternating order,
`edgecnn bench ARTIFACT --json --threads T --min-seconds S` and
`benchmark_app -m model.xml -d CPU -hint none -api sync -nstreams 1 -nthreads T -t S -shape [1,C,H,W]`
(`-infer_precision f32` for FP32, as edgecnn compiles FP32 artifacts). Reports the median
over rounds of each tool's median and mean latency and their ratio.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_artifacts(arch: str, size: int, tmp: Path, precisions: list[str]) -> dict[str, Path]:
    from edgecnn.artifact import write_metadata
    from edgecnn.data import Preprocess, SplitSpec, load_dataset, make_splits
    from edgecnn.data.splits import calibration_set, take
    from edgecnn.export.onnx import export_onnx, finalize_qdq
    from edgecnn.export.openvino import onnx_to_ir, qdq_to_int8_ir
    from edgecnn.host import has_vnni
    from edgecnn.models import create
    from edgecnn.quantize.pt2e import prepare_float, ptq

    torch.manual_seed(0)
    model = create(arch, num_classes=10).eval()
    bundle = load_dataset(None)
    pre = Preprocess.for_dataset(bundle, size, 3)
    xc = pre.apply_torch(take(bundle, calibration_set(make_splits(bundle, SplitSpec())["calib"], 64))[0])
    out = {}
    for prec in precisions:
        d = tmp / prec
        d.mkdir()
        if prec == "fp32":
            onnx_path = export_onnx(prepare_float(model), xc[:2], tmp / "float.onnx")
        else:
            q = ptq(model, xc, method="minmax", batch_size=16, weight_bits=8 if has_vnni() else 7)
            onnx_path = export_onnx(q, xc[:2], tmp / "qdq.onnx")
            finalize_qdq(onnx_path)
        (onnx_to_ir if prec == "fp32" else qdq_to_int8_ir)(onnx_path, d / "model.xml")   # as export writes it
        write_metadata(d, {
            "arch": arch, "model_options": {"num_classes": 10}, "num_classes": 10, "class_names": bundle.classes,
            "target": "cpu", "runtime": "openvino", "precision": prec, "files": ["model.xml", "model.bin"],
            "input": {"name": "input", "shape": [None, 3, size, size], "layout": "NCHW", "dtype": "float32",
                      "scale": None, "zero_point": None},
            "output": {"name": "logits", "shape": [None, 10], "dtype": "float32", "scale": None,
                       "zero_point": None},
            "preprocess": pre.to_dict(), "quantization": None if prec == "fp32" else {"note": "benchmark only"},
            "float_layers": [], "source": {"note": "seeded random weights (benchmark only)"}, "tools": {}})
        out[prec] = d
    return out


def edgecnn_bench(d: Path, threads: int, seconds: float) -> dict:
    exe = str(Path(sys.executable).parent / "edgecnn")
    p = subprocess.run([exe, "bench", str(d), "--json", "--threads", str(threads), "--min-seconds", str(seconds)],
                       capture_output=True, text=True, check=True)
    lat = json.loads(p.stdout)["latency_ms"]
    return {"median": lat["p50"], "mean": lat["mean"], "n": lat["n"]}


def benchmark_app(d: Path, prec: str, size: int, threads: int, seconds: float) -> dict:
    exe = str(Path(sys.executable).parent / "benchmark_app")
    cmd = [exe, "-m", str(d / "model.xml"), "-d", "CPU", "-hint", "none", "-api", "sync", "-nstreams", "1",
           "-nthreads", str(threads), "-t", str(int(seconds)), "-shape", f"[1,3,{size},{size}]"]
    if prec == "fp32":
        cmd += ["-infer_precision", "f32"]
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    got = {}
    for key, pat in (("median", r"Median:\s+([\d.]+) ms"), ("mean", r"Average:\s+([\d.]+) ms"),
                     ("n", r"Count:\s+(\d+) iterations")):
        m = re.search(pat, p.stdout)
        if not m:
            sys.exit(f"benchmark_app printed no {key}: {p.stdout[-400:]}")
        got[key] = float(m.group(1))
    return got


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--precisions", default="fp32,int8")
    args = ap.parse_args()
    precs = args.precisions.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="edgecnn-bapp-"))
    arts = make_artifacts(args.arch, args.image_size, tmp, precs)
    res: dict[str, dict[str, list[dict]]] = {p: {"edgecnn": [], "benchmark_app": []} for p in precs}
    for r in range(args.rounds):
        for prec in precs:
            order = ("edgecnn", "benchmark_app") if r % 2 == 0 else ("benchmark_app", "edgecnn")
            for tool in order:
                res[prec][tool].append(edgecnn_bench(arts[prec], args.threads, args.seconds) if tool == "edgecnn"
                                       else benchmark_app(arts[prec], prec, args.image_size, args.threads,
                                                          args.seconds))
    rows = []
    for prec in precs:
        e = {k: float(np.median([x[k] for x in res[prec]["edgecnn"]])) for k in ("median", "mean")}
        b = {k: float(np.median([x[k] for x in res[prec]["benchmark_app"]])) for k in ("median", "mean")}
        rows.append({"precision": prec, "edgecnn": e, "benchmark_app": b,
                     "ratio_median": e["median"] / b["median"], "ratio_mean": e["mean"] / b["mean"],
                     "rounds": res[prec]})
    print(json.dumps({"arch": args.arch, "image_size": args.image_size, "threads": args.threads,
                      "date": time.strftime("%Y-%m-%d"), "rows": rows}, indent=1))
    print(f"\n| {args.arch} {args.image_size}px, batch 1, {args.threads} threads | edgecnn bench median / mean ms | "
          f"benchmark_app median / mean ms | ratio (median) | ratio (mean) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['precision']} | {r['edgecnn']['median']:.2f} / {r['edgecnn']['mean']:.2f} | "
              f"{r['benchmark_app']['median']:.2f} / {r['benchmark_app']['mean']:.2f} | {r['ratio_median']:.3f} | "
              f"{r['ratio_mean']:.3f} |")


if __name__ == "__main__":
    main()
