"""Wall time and peak memory of `edgecnn frontier` from an empty cache, then of the same command again.

Usage:
  python benchmarks/frontier_time.py [--archs alexnet,vgg16,resnet18,googlenet] [--targets cpu,jetson,rpi]
                                     [--precisions int8,fp32] [--recipe quick] [--home DIR]
                                     [--log FILE]

Each run is a fresh `edgecnn frontier` process with EDGECNN_HOME set to --home (default: a
new empty temporary directory, so every stage, training included, runs). Peak memory is
the largest resident set of any process of the run (ru_maxrss over the waited-for
children: the frontier process and its `edgecnn bench` subprocesses). The time to the first
point is when the run's frontier.json first appears (the frontier writes it after every finished
point). From an empty cache it also lists each float training (wall time, epochs, amp, test
top-1, from the runs' train.json). Prints one JSON object and a Markdown row for
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from edgecnn.host import cpu_model


def run_once(cmd: list[str], env: dict, out: Path, log: Path | None) -> tuple[float, float | None, dict]:
    """(wall seconds, seconds until out/frontier.json first appeared or None, the --json result).
    With ``log``, the run's stderr goes there, each line prefixed with the seconds since the start."""
    t0 = time.perf_counter()
    first_point = None
    lines: list[str] = []

    def read(stream) -> None:
        for line in stream:
            lines.append(f"{time.perf_counter() - t0:8.1f}  {line}")

    with tempfile.TemporaryFile("w+") as so:
        p = subprocess.Popen(cmd, env=env, stdout=so, stderr=subprocess.PIPE, text=True)
        reader = threading.Thread(target=read, args=(p.stderr,), daemon=True)
        reader.start()
        while p.poll() is None:
            if first_point is None and (out / "frontier.json").exists():
                first_point = time.perf_counter() - t0
            time.sleep(0.5)
        took = time.perf_counter() - t0
        reader.join()
        so.seek(0)
        stdout = so.read()
    if log:
        log.write_text("".join(lines))
    if p.returncode not in (0, 1):  # 1: some combination failed; the others are in the result
        sys.exit(f"frontier failed ({p.returncode}): {lines[-1:]}")
    return took, first_point, json.loads(stdout)


def trainings(home: Path) -> list[dict]:
    """Each float training under ``home``: network, epochs, amp, wall minutes, test top-1."""
    rows = []
    for path in sorted((home / "runs" / "train").glob("*/train.json")):
        r = json.loads(path.read_text())
        rows.append(
            {
                "arch": r["arch"],
                "epochs": r["recipe"]["train"]["epochs"],
                "amp": r["amp"],
                "threads": r["threads"],
                "minutes": round(r["wall_seconds"] / 60, 2),
                "top1": r["test"]["top1"],
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", default="alexnet,vgg16,resnet18,googlenet")
    ap.add_argument("--targets", default="cpu,jetson,rpi")
    ap.add_argument("--precisions", default="int8,fp32")
    ap.add_argument("--recipe", default="quick")
    ap.add_argument("--home", default=None, help="EDGECNN_HOME (default: a new empty directory)")
    ap.add_argument("--log", default=None, help="write the first run's log here, each line timed")
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
    home.mkdir(parents=True, exist_ok=True)
    load_at_start = os.getloadavg()[0]
    empty = not any(home.iterdir())
    first, first_point, res = run_once(cmd, env, out, Path(args.log) if args.log else None)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    again, _, res2 = run_once(cmd, env, out, None)
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
        "first_point_s": None if first_point is None else round(first_point, 1),
        "trainings": trainings(home) if empty else None,
        "peak_rss_mb": round(peak_mb),
        "again_s": round(again, 1),
        "again_same_points": same,
        "machine": cpu_model(),
        "load_at_start": load_at_start,
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
        "out": str(out),
    }
    print(json.dumps(row), flush=True)
    print_tables(row)


def print_tables(row: dict) -> None:
    """The run's Markdown row, and each training's, for docs/BENCHMARKS.md."""
    first_point = row["first_point_s"]
    to_first = "-" if first_point is None else f"{first_point / 60:.1f} min"
    print(
        "\n| networks | targets | precisions | runs | first run | first point | cache at start | peak RSS "
        "| same command again |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {row['archs']} | {row['targets']} | {row['precisions']} | "
        f"{row['points']} ({row['failed']} failed) | "
        f"{row['first_s'] / 60:.1f} min | {to_first} | {'empty' if row['empty_cache'] else 'not empty'} | "
        f"{row['peak_rss_mb'] / 1024:.2f} GiB | {row['again_s']:.1f} s |"
    )
    if row["trainings"]:
        print("\n| network | epochs | amp | threads | training wall time | test top-1 |")
        print("|---|---|---|---|---|---|")
        for t in row["trainings"]:
            print(
                f"| {t['arch']} | {t['epochs']} | {t['amp']} | {t['threads']} | {t['minutes']:.1f} min | "
                f"{100 * t['top1']:.2f}% |"
            )


if __name__ == "__main__":
    main()
