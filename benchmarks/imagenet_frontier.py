"""Cold wall time of `edgecnn frontier --imagenet` (4 networks x 3 targets x int8/fp32 at 224 px), where
the time goes, and the 224-px latency table beside published device figures.

Usage:
  python benchmarks/imagenet_frontier.py [--archs alexnet,vgg16,resnet18,googlenet] [--targets cpu,jetson,rpi]
                                         [--home DIR] [--from FRONTIER_DIR]

Runs one fresh `edgecnn frontier --imagenet ... --json` process with EDGECNN_HOME set to --home
(default: a new empty directory: nothing cached), records its wall time, the load average
before and after (this machine may be shared) and the per-network phase times the frontier
records (model + images, calibration, ONNX export, each runtime's writer). With --from it only
reads an existing frontier directory. Then prints the latency table: every point (cpu
measured here, the others predicted with their band) and, for the device profiles that have
published figures of the same network, runtime and precision
(devices/published/tensorrt_latency.csv: torch2trt's TensorRT FP16 figures), the prediction beside
the published figure. Those profiles were fitted to these very figures, so the comparison is
in-sample: it shows the fit, not the predictor's error. ncnn's Raspberry Pi 4 figures
(benchmarks/reference/ncnn_rpi4_latency.csv, copied from shared/reference with their sources)
are another runtime than the TFLite artifacts: shown beside the TFLite prediction, labelled,
never as a direct comparison. No published figure exists for the default devices (Pi 5,
Orin Nano) and these networks.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TENSORRT = ROOT / "devices" / "published" / "tensorrt_latency.csv"  # the predictor's own cited figures
NCNN = Path(__file__).parent / "reference" / "ncnn_rpi4_latency.csv"  # copied from shared/reference


def cold_run(args) -> tuple[Path, dict]:
    home = Path(args.home or tempfile.mkdtemp(prefix="edgecnn-imagenet-home-"))
    out = home / "frontier-224"
    env = {**os.environ, "EDGECNN_HOME": str(home)}
    cmd = [
        sys.executable,
        "-m",
        "edgecnn",
        "frontier",
        "--imagenet",
        "--archs",
        args.archs,
        "--targets",
        args.targets,
        "--precisions",
        "int8,fp32",
        "--out",
        str(out),
        "--json",
    ]
    load0 = os.getloadavg()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the frontier, its build workers and bench processes
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if p.returncode not in (0, 1) or not (out / "frontier.json").is_file():
        sys.exit(f"frontier failed ({p.returncode}): {p.stderr.strip().splitlines()[-3:]}")
    run = {
        "command": " ".join(cmd[1:]),
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "loadavg_before": load0,
        "loadavg_after": os.getloadavg(),
        "home": str(home),
    }
    return out, run


def reference_rows(archs: list[str]) -> list[dict]:
    """Published batch-1 224-px latencies of the networks asked for: TensorRT (same runtime as the
    jetson artifacts; the profiles were fitted to these rows) and ncnn on a Pi 4 (another runtime)."""
    rows = [
        {
            "device_profile": r["device"],
            "arch": r["arch"],
            "runtime": r["runtime"],
            "precision": r["precision"],
            "ms": r["latency_ms"],
            "source": r["source_url"],
        }
        for r in csv.DictReader(TENSORRT.open())
    ]
    rows += list(csv.DictReader(NCNN.open()))
    return [r for r in rows if r["arch"] in archs]


def predictions_for_reference(archs: list[str]) -> list[dict]:
    """Our prediction for each published row, for the runtime edgecnn ships on that device."""
    from edgecnn.devices.predict import predict_latency

    out = []
    for r in reference_rows(archs):
        runtime = "tflite" if r["runtime"] == "ncnn" else r["runtime"]
        pr = predict_latency(
            r["arch"], r["device_profile"], runtime=runtime, precision=r["precision"], image_size=224
        )
        out.append(
            {**r, "our_runtime": runtime, "predicted_ms": pr["latency_ms"]["p50"], "band_ms": pr["band_ms"]}
        )
    return out


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", default="alexnet,vgg16,resnet18,googlenet")
    ap.add_argument("--targets", default="cpu,jetson,rpi")
    ap.add_argument("--home", default=None)
    ap.add_argument(
        "--from", dest="src", default=None, help="read this frontier directory instead of running"
    )
    args = ap.parse_args()
    out, run = (Path(args.src), {}) if args.src else cold_run(args)
    res = json.loads((out / "frontier.json").read_text())
    run.update(cpu=cpu_model(), cores=os.cpu_count(), frontier_seconds=res["seconds"], timings=res["timings"])
    print(json.dumps(run, indent=2))
    print("\n| network | phase | wall s | CPU s |\n|---|---|---|---|")
    for arch, t in res["timings"]["per_network"].items():
        for phase, (wall, cpu) in t.items():
            print(f"| {arch} | {phase} | {wall} | {cpu} |")
    print(
        "\n| network | device | runtime | precision | p50 ms | source | accuracy (basis) "
        "|\n|---|---|---|---|---|---|---|"
    )
    for p in res["points"]:
        band = (
            f" (band {p['latency_band_low_ms']:.3g}-{p['latency_band_high_ms']:.3g})"
            if p["latency_band_low_ms"] is not None
            else ""
        )
        acc = "not published" if p["top1"] is None else f"{100 * p['top1']:.2f}% ({p['accuracy_source']})"
        print(
            f"| {p['arch']} | {p['device']} | {p['runtime']} | {p['precision']} | {p['p50_ms']:.3g}{band} | "
            f"{p['latency_source']} | {acc} |"
        )
    print(
        "\n| device profile | network | published runtime | precision | published ms | predicted ms (band) | "
        "ratio | source |\n|---|---|---|---|---|---|---|---|"
    )
    for r in predictions_for_reference(res["archs"]):
        lo, hi = r["band_ms"]
        same = r["runtime"] == r["our_runtime"]
        print(
            f"| {r['device_profile']} | {r['arch']} | "
            f"{r['runtime']}{'' if same else ' (ours: ' + r['our_runtime'] + ')'}"
            f" | {r['precision']} | {float(r['ms']):.3g} | {r['predicted_ms']:.3g} ({lo:.3g}-{hi:.3g}) | "
            f"{r['predicted_ms'] / float(r['ms']):.2f} | {r['source']} |"
        )


if __name__ == "__main__":
    main()
