"""Wall time and peak memory of `edgecnn frontier` from an empty cache, then of the same command again.

Usage:
  python benchmarks/frontier_time.py [--archs alexnet,vgg16,resnet18,googlenet] [--targets cpu,jetson,rpi]
                                     [--precisions int8,fp32] [--recipe quick] [--home DIR]

Each run is a fresh `edgecnn frontier` process with EDGECNN_HOME set to --home (default: a
new empty temporary directory, so every stage, training included, runs). Peak memory is
the largest resident set of any process of the run (ru_maxrss over the waited-for
children: the frontier process and its `edgecnn bench` subprocesses). Prints one JSON
object and a Markdown row for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(cmd: list[str], env: dict) -> tuple[float, dict]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - t0
    if p.returncode not in (0, 1):  # 1: some combination failed; the others are in the result
        sys.exit(f"frontier failed ({p.returncode}): {p.stderr.strip().splitlines()[-1:]}")
    return took, json.loads(p.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", default="alexnet,vgg16,resnet18,googlenet")
    ap.add_argument("--targets", default="cpu,jetson,rpi")
    ap.add_argument("--precisions", default="int8,fp32")
    ap.add_argument("--recipe", default="quick")
    ap.add_argument("--home", default=None, help="EDGECNN_HOME (default: a new empty directory)")
    args = ap.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="edgecnn-frontier-home-"))
    out = home / "frontier-out"
    env = {**os.environ, "EDGECNN_HOME": str(home)}
    exe = str(Path(sys.executable).parent / "edgecnn")
    cmd = [
        exe,
        "frontier",
        "--archs",
        args.archs,
        "--targets",
        args.targets,
        "--precisions",
        args.precisions,
        "--recipe",
        args.recipe,
        "--out",
        str(out),
        "--json",
    ]
    empty = not any(home.iterdir())
    first, res = run_once(cmd, env)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    again, res2 = run_once(cmd, env)
    same = [(p["id"], p["top1"], p["p50_ms"]) for p in res["points"]] == [
        (p["id"], p["top1"], p["p50_ms"]) for p in res2["points"]
    ]
    row = {
        "archs": args.archs,
        "targets": args.targets,
        "precisions": args.precisions,
        "recipe": args.recipe,
        "empty_cache": empty,
        "points": len(res["points"]),
        "failed": len(res["failed"]),
        "first_s": round(first, 1),
        "peak_rss_mb": round(peak_mb),
        "again_s": round(again, 1),
        "again_same_points": same,
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
        "out": str(out),
    }
    print(json.dumps(row), flush=True)
    print(
        "\n| networks | targets | precisions | runs | first run | cache at start | peak RSS | same command "
        "again |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.archs} | {args.targets} | {args.precisions} | {row['points']} ({row['failed']} failed) | "
        f"{first / 60:.1f} min | {'empty' if empty else 'not empty'} | {peak_mb / 1024:.2f} GiB | "
        f"{again:.1f} s |"
    )


if __name__ == "__main__":
    main()
