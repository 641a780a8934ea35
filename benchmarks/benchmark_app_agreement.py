"""`edgecnn bench` against each runtime's own tool on the same files (target: within 10%).

OpenVINO: `benchmark_app` on the IR. LiteRT: `litert-benchmark` (ai-edge-litert's
benchmark_litert_model: CompiledModel with pre-made buffers) on the INT8 .tflite
(`--litert`; INT8 only, as the rpi target ships it).

Usage: python benchmarks/benchmark_app_agreement.py [--arch resnet18] [--image-sizes 32,224] [--threads 2]
                                                    [--seconds 5] [--rounds 3] [--precisions fp32,int8]
                                                    [--litert]

Builds the network with seeded random weights (latency does not depend on the values) as an
FP32 IR and as edgecnn's INT8 IR (PT2E minmax on 64 Fashion-MNIST calibration images, 7-bit
weights where the CPU has no VNNI, as `edgecnn export --target cpu` does), wraps each in an
artifact directory, then per round runs, each in a fresh process and in alternating order,
`edgecnn bench ARTIFACT --json --threads T --min-seconds S` and
`benchmark_app -m model.xml -d CPU -hint none -api sync -nstreams 1 -nthreads T -t S -shape [1,C,H,W]`
`-infer_precision f32` (edgecnn compiles FP32 and INT8 artifacts with INFERENCE_PRECISION_HINT=f32;
without it benchmark_app runs an INT8 IR's float layers in bf16 on AMX/AVX-512-BF16 CPUs), and with --litert
`edgecnn bench TFLITE_ARTIFACT` against `litert-benchmark --model model.tflite --num_threads T
--num_runs N` (N: the runs edgecnn made in that round). Reports the median over rounds of each
tool's median and mean latency, their ratio, and edgecnn's `python_overhead_ms` where the runtime
keeps its own time (OpenVINO: edgecnn's latency_ms is then the runtime's own time, as benchmark_app's
is; the ratio of edgecnn's wall-clock median to the tool's is listed too).
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


def _metadata(arch, size, bundle, pre, prec, runtime, files, shape0, io_dtype="float32") -> dict:
    return {
        "arch": arch,
        "model_options": {"num_classes": 10},
        "num_classes": 10,
        "class_names": bundle.classes,
        "target": "rpi" if runtime == "tflite" else "cpu",
        "runtime": runtime,
        "precision": prec,
        "files": files,
        "input": {
            "name": "input",
            "shape": [shape0, 3, size, size],
            "layout": "NCHW",
            "dtype": io_dtype,
            "scale": None,
            "zero_point": None,
        },
        "output": {
            "name": "logits",
            "shape": [shape0, 10],
            "dtype": io_dtype,
            "scale": None,
            "zero_point": None,
        },
        "preprocess": pre.to_dict(),
        "quantization": None if prec == "fp32" else {"note": "benchmark only"},
        "float_layers": [],
        "source": {"note": "seeded random weights (benchmark only)"},
        "tools": {},
    }


def make_artifacts(arch: str, size: int, tmp: Path, precisions: list[str], litert: bool) -> dict[str, Path]:
    from edgecnn.artifact import write_metadata
    from edgecnn.data import Preprocess, SplitSpec, load_dataset, make_splits
    from edgecnn.data.splits import calibration_set, take
    from edgecnn.export.onnx import export_onnx, finalize_qdq
    from edgecnn.export.openvino import onnx_to_ir, qdq_to_int8_ir
    from edgecnn.export.tflite import export_tflite
    from edgecnn.host import has_vnni
    from edgecnn.models import create
    from edgecnn.quantize.pt2e import make_quantizer, prepare_float, ptq

    torch.manual_seed(0)
    model = create(arch, num_classes=10).eval()
    bundle = load_dataset(None)
    pre = Preprocess.for_dataset(bundle, size, 3)
    xc = pre.apply_torch(take(bundle, calibration_set(make_splits(bundle, SplitSpec())["calib"], 64))[0])
    out = {}
    bits = 8 if has_vnni() else 7
    q = (
        ptq(model, xc, method="minmax", batch_size=16, weight_bits=bits)
        if "int8" in precisions or litert
        else None
    )
    for prec in precisions:
        d = tmp / f"{size}-{prec}"
        d.mkdir()
        if prec == "fp32":
            onnx_path = export_onnx(prepare_float(model), xc[:2], tmp / "float.onnx")
        else:
            onnx_path = export_onnx(q, xc[:2], tmp / "qdq.onnx")
            finalize_qdq(onnx_path)
        (onnx_to_ir if prec == "fp32" else qdq_to_int8_ir)(onnx_path, d / "model.xml")  # as export writes it
        write_metadata(
            d, _metadata(arch, size, bundle, pre, prec, "openvino", ["model.xml", "model.bin"], None)
        )
        out[prec] = d
    if litert:  # full-integer INT8 at batch 1, as `edgecnn export --target rpi` writes it
        d = tmp / f"{size}-tflite-int8"
        d.mkdir()
        export_tflite(q, xc[:1], d / "model.tflite", quantizer=make_quantizer("minmax", weight_bits=bits))
        write_metadata(d, _metadata(arch, size, bundle, pre, "int8", "tflite", ["model.tflite"], 1, "int8"))
        out["tflite-int8"] = d
    return out


def edgecnn_bench(d: Path, threads: int, seconds: float) -> dict:
    exe = str(Path(sys.executable).parent / "edgecnn")
    p = subprocess.run(
        [exe, "bench", str(d), "--json", "--threads", str(threads), "--min-seconds", str(seconds)],
        capture_output=True,
        text=True,
        check=True,
    )
    r = json.loads(p.stdout)
    lat = r["latency_ms"]
    wall = r.get("wall_latency_ms") or lat
    return {
        "median": lat["p50"],
        "mean": lat["mean"],
        "n": lat["n"],
        "clock": r["latency_clock"],
        "wall_median": wall["p50"],
        "python_overhead_ms": r["python_overhead_ms"],
    }


def _tool(cmd: list[str], patterns: dict[str, str]) -> dict:
    """Run a benchmark tool; each pattern's number from its stdout, times in ms (benchmark_app prints
    sub-millisecond times in us)."""
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    got = {}
    for key, pat in patterns.items():
        m = re.search(pat, p.stdout)
        if not m:
            sys.exit(f"{Path(cmd[0]).name} printed no {key}: {p.stdout[-400:]}")
        unit = m.group(2) if m.re.groups > 1 else "ms"
        got[key] = float(m.group(1)) / (1000 if unit == "us" else 1)
    return got


def benchmark_app(d: Path, prec: str, size: int, threads: int, seconds: float) -> dict:
    exe = str(Path(sys.executable).parent / "benchmark_app")
    cmd = [
        exe,
        "-m",
        str(d / "model.xml"),
        "-d",
        "CPU",
        "-hint",
        "none",
        "-api",
        "sync",
        "-nstreams",
        "1",
        "-nthreads",
        str(threads),
        "-t",
        str(int(seconds)),
        "-shape",
        f"[1,3,{size},{size}]",
        "-infer_precision",
        "f32",
    ]  # as edgecnn compiles FP32 and INT8 artifacts (no bf16 on AMX)
    return _tool(
        cmd,
        {
            "median": r"Median:\s+([\d.]+) (ms|us)",
            "mean": r"Average:\s+([\d.]+) (ms|us)",
            "n": r"Count:\s+(\d+) iterations",
        },
    )


def litert_benchmark(d: Path, threads: int, runs: int) -> dict:
    exe = str(Path(sys.executable).parent / "litert-benchmark")
    cmd = [
        exe,
        "--model",
        str(d / "model.tflite"),
        "--num_threads",
        str(threads),
        "--num_runs",
        str(runs),
        "--warmup_runs",
        "5",
    ]
    return _tool(
        cmd,
        {
            "median": r"Inference \(median\):\s+([\d.]+) ms",
            "mean": r"Inference \(avg\):\s+([\d.]+) ms",
            "n": r"Inference \(avg\):\s+[\d.]+ ms \((\d+) runs\)",
        },
    )


def one_round(r: int, arts: dict[str, Path], size: int, args, res: dict) -> None:
    """Each artifact under edgecnn bench and its runtime's own tool, in an order alternating per round."""
    for kind, d in arts.items():
        order = ("edgecnn", "tool") if r % 2 == 0 else ("tool", "edgecnn")
        for tool in order:
            if tool == "edgecnn":
                got = edgecnn_bench(d, args.threads, args.seconds)
            elif kind == "tflite-int8":
                runs = int(res[kind]["edgecnn"][-1]["n"]) if res[kind]["edgecnn"] else 200
                got = litert_benchmark(d, args.threads, runs)
            else:
                got = benchmark_app(d, kind, size, args.threads, args.seconds)
            res[kind][tool].append(got)


def summary_rows(res: dict) -> list[dict]:
    rows = []
    for kind, both in res.items():
        e = {k: float(np.median([x[k] for x in both["edgecnn"]])) for k in ("median", "mean", "wall_median")}
        b = {k: float(np.median([x[k] for x in both["tool"]])) for k in ("median", "mean")}
        over = [x["python_overhead_ms"] for x in both["edgecnn"] if x["python_overhead_ms"] is not None]
        rows.append(
            {
                "artifact": kind,
                "tool": "litert-benchmark" if kind.startswith("tflite") else "benchmark_app",
                "edgecnn": e,
                "own_tool": b,
                "ratio_median": e["median"] / b["median"],
                "ratio_mean": e["mean"] / b["mean"],
                "ratio_wall_median": e["wall_median"] / b["median"],
                "python_overhead_ms": float(np.median(over)) if over else None,
                "rounds": both,
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--image-sizes", default="32,224")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--litert", action="store_true", help="also the INT8 .tflite against litert-benchmark")
    args = ap.parse_args()
    precs = [p for p in args.precisions.split(",") if p]
    sizes = [int(v) for v in args.image_sizes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="edgecnn-bapp-"))
    arts = {size: make_artifacts(args.arch, size, tmp, precs, args.litert) for size in sizes}
    res = {size: {k: {"edgecnn": [], "tool": []} for k in arts[size]} for size in sizes}
    for r in range(args.rounds):  # sizes interleaved within each round
        for size in sizes:
            one_round(r, arts[size], size, args, res[size])
    out = {size: summary_rows(res[size]) for size in sizes}
    print(
        json.dumps(
            {
                "arch": args.arch,
                "threads": args.threads,
                "seconds": args.seconds,
                "rounds": args.rounds,
                "date": time.strftime("%Y-%m-%d"),
                "rows": out,
            },
            indent=1,
        )
    )
    print(
        f"\n| {args.arch}, batch 1, {args.threads} threads | edgecnn bench median / mean ms | "
        f"own tool median / mean ms | ratio (median) | ratio (mean) | python_overhead_ms | "
        f"ratio of edgecnn's wall median |"
    )
    print("|---|---|---|---|---|---|---|")
    for size, rows in out.items():
        for r in rows:
            over = "-" if r["python_overhead_ms"] is None else f"{r['python_overhead_ms']:.3f}"
            print(
                f"| {size} px {r['artifact']} vs {r['tool']} | {r['edgecnn']['median']:.3f} / "
                f"{r['edgecnn']['mean']:.3f} | {r['own_tool']['median']:.3f} / {r['own_tool']['mean']:.3f} | "
                f"{r['ratio_median']:.3f} | {r['ratio_mean']:.3f} | {over} | {r['ratio_wall_median']:.3f} |"
            )


if __name__ == "__main__":
    main()
