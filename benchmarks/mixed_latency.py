"""Latency of INT8 artifacts that differ in how many layers stay float, measured in one run.

The artifacts (e.g. PTQ, PTQ with k layers in float as `--max-drop` chose them, QAT, FP32) are
loaded together and timed round-robin (`edgecnn.mixed.interleaved_latency`: every round times each
for --seconds, the order rotating), so load from other processes hits them alike; the ratio to the
first artifact is the figure to read on a shared machine.

Usage: python benchmarks/mixed_latency.py LABEL=ARTIFACT_DIR [LABEL=ARTIFACT_DIR ...]
           [--threads 2] [--rounds 5] [--seconds 2]
Prints one JSON object per artifact and a Markdown table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("artifacts", nargs="+", metavar="LABEL=DIR")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    labels, dirs = zip(*(a.split("=", 1) for a in args.artifacts), strict=True)

    from edgecnn.artifact import load_artifact
    from edgecnn.mixed import interleaved_latency

    load_before = os.getloadavg()
    rows = interleaved_latency(dirs, threads=args.threads, rounds=args.rounds, seconds=args.seconds)
    load_after = os.getloadavg()
    base = rows[0]["p50_ms"]
    print("| artifact | runtime | layers left in float | p50 (median of rounds) | vs first | round p50s |")
    print("|---|---|---:|---:|---:|---|")
    for label, d, r in zip(labels, dirs, rows, strict=True):
        meta = load_artifact(d).meta
        kept = (meta.get("quantization") or {}).get("float_layers")
        rounds = ", ".join(f"{x:.3f}" for x in r["round_p50_ms"])
        print(
            f"| {label} | {meta['runtime']} {meta['precision']} | "
            f"{'all' if kept is None else len(kept)} | {r['p50_ms']:.3f} ms | "
            f"{r['p50_ms'] / base:.2f}x | {rounds} |"
        )
        print(json.dumps({"label": label, "dir": d, **r}), flush=True)
    print(
        f"\n{platform.node()}, {args.threads} threads, {args.rounds} rounds x {args.seconds:g} s per "
        f"artifact; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )


if __name__ == "__main__":
    main()
