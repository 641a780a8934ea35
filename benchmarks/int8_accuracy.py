"""INT8 accuracy of the quick-profile networks: the PTQ drop per calibration method (fake-quant
graph, whole test split), then each runtime's exported artifact evaluated in that runtime on the
whole test split, with its top-1 agreement with the fake-quant graph.

Usage: python benchmarks/int8_accuracy.py [--archs resnet18,...] [--methods minmax,entropy,...]
                                          [--qat] [--runtimes openvino,onnxruntime,tensorrt,tflite]
Needs the float quick runs (edgecnn train ARCH); uses and fills the edgecnn cache.
Prints one JSON line per result and Markdown tables for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import time

TARGET = {"openvino": "cpu", "onnxruntime": "cpu", "tensorrt": "jetson", "tflite": "rpi"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", default="alexnet,vgg16,resnet18,googlenet")
    ap.add_argument("--methods", default="minmax,percentile,entropy,mse")
    ap.add_argument("--runtimes", default="openvino,onnxruntime,tensorrt,tflite")
    ap.add_argument("--qat", action="store_true", help="export from QAT instead of the best PTQ method")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from edgecnn.artifact import load_artifact
    from edgecnn.device_eval import host_runtime
    from edgecnn.evaluate import evaluate_artifact
    from edgecnn.export import export, model_for
    from edgecnn.quantize import stages
    from edgecnn.recipes import load_recipe

    def log(s):
        return None

    ptq_rows, rt_rows = [], []
    for arch in args.archs.split(","):
        recipe = load_recipe(arch, "quick")
        best = None
        for method in args.methods.split(","):
            t = time.perf_counter()
            q = stages.calibrate(arch, recipe, method=method, threads=args.threads, log=log, progress=False)
            r = q.as_dict()
            row = {
                "arch": arch,
                "method": method,
                "fp32_top1": r["fp32"]["top1"],
                "int8_top1": r["int8_fakequant"]["top1"],
                "drop_points": r["drop_points"],
                "seconds": round(time.perf_counter() - t, 1),
                "cached": r["cached"],
            }
            print(json.dumps(row), flush=True)
            ptq_rows.append(row)
            if best is None or row["drop_points"] < best["drop_points"]:
                best = row
        method = best["method"]
        for runtime in args.runtimes.split(","):
            target = TARGET[runtime]
            model = model_for(
                arch,
                recipe,
                runtime,
                method=method,
                use_qat=args.qat,
                threads=args.threads,
                log=log,
                progress=False,
            )
            path = export(model, target, recipe=recipe, runtime=runtime, log=log).dir
            ev_runtime = host_runtime(load_artifact(path))[0]  # no TensorRT here: its stand-in
            res = evaluate_artifact(path, runtime=ev_runtime, threads=args.threads)
            row = {
                "arch": arch,
                "runtime": runtime,
                "ran_in": res.get("runtime", ev_runtime or runtime),
                "method": method,
                "qat": args.qat,
                "top1": res["top1"],
                "top5": res["top5"],
                "ci95": res.get("top1_ci"),
                "fp32_top1": res.get("fp32_top1"),
                "reference_top1": res.get("reference_top1"),
                "agreement": res.get("agreement"),
                "mcnemar_p": (res.get("mcnemar") or {}).get("p_value"),
                "artifact": str(path),
            }
            print(json.dumps(row), flush=True)
            rt_rows.append(row)

    print("\n| network | method | FP32 top-1 | INT8 fake-quant top-1 | PTQ drop (points) |")
    print("|---|---|---|---|---|")
    for r in ptq_rows:
        print(
            f"| {r['arch']} | {r['method']} | {100 * r['fp32_top1']:.2f}% | {100 * r['int8_top1']:.2f}% | "
            f"{r['drop_points']:+.2f} |"
        )
    print(
        "\n| network | artifact for | evaluated in | INT8 top-1 (95% CI) | FP32 top-1 | drop (points) | "
        "agreement with fake-quant | McNemar p vs FP32 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rt_rows:
        lo, hi = r["ci95"] or (float("nan"), float("nan"))
        drop = 100 * (r["fp32_top1"] - r["top1"]) if r["fp32_top1"] is not None else float("nan")
        print(
            f"| {r['arch']} | {r['runtime']} ({r['method']}{', QAT' if r['qat'] else ''}) | {r['ran_in']} | "
            f"{100 * r['top1']:.2f}% ({100 * lo:.2f}-{100 * hi:.2f}) | {100 * (r['fp32_top1'] or 0):.2f}% | "
            f"{drop:+.2f} | {100 * (r['agreement'] or 0):.2f}% | {r['mcnemar_p']:.3g} |"
        )


if __name__ == "__main__":
    main()
