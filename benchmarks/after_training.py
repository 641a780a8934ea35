"""The work after training: deploys of one network for every target and precision, old code against new.

What the frontier runs after the float model exists (issue 17, "After training"): calibrate,
export, evaluate on the whole test split, latency measured (cpu) or predicted (rpi, jetson).
A seeded random test_resnet18 checkpoint at 32 px (tests/tiny_recipes.py) goes through
``deploy --checkpoint`` for cpu int8/fp32, rpi int8/fp32 and jetson int8/fp16/fp32 (the
frontier's combinations for one network), ``--threads 1 --min-seconds 0.05``, each tree in a fresh
process and a fresh $EDGECNN_HOME, the trees alternating (old, new, old, new, ...) so a shared
machine's load falls on both.

Usage: python benchmarks/after_training.py --old TREE --new TREE [--pairs 1]
(TREE: a checkout of edgecnn, put first on PYTHONPATH). Prints one JSON line per run and the
totals' ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS = [
    ("cpu", "int8"),
    ("cpu", "fp32"),
    ("rpi", "int8"),
    ("rpi", "fp32"),
    ("jetson", "int8"),
    ("jetson", "fp16"),
    ("jetson", "fp32"),
]


def worker(tests: str) -> None:
    """One tree's deploys in this process; prints {"rows": {...}, "total": s}."""
    tmp = Path(tempfile.mkdtemp(prefix="edgecnn-after-"))
    os.environ["EDGECNN_HOME"] = str(tmp / "home")
    sys.path.insert(0, tests)
    import torch
    from tiny_recipes import int8_recipe, random_checkpoint

    from edgecnn.deploy import BenchOptions, DeployOptions, deploy

    torch.manual_seed(0)
    _, recipe = int8_recipe(tmp)
    ckpt = random_checkpoint(tmp, recipe)
    rows, t0 = {}, time.perf_counter()
    for target, precision in ROWS:
        s = time.perf_counter()
        options = DeployOptions(
            precision=precision,
            checkpoint=str(ckpt),
            threads=1,
            bench=BenchOptions(seconds=0.05),
            out=tmp / f"{target}-{precision}",
        )
        deploy("test_resnet18", target, recipe=recipe, options=options, log=lambda s: None, progress=False)
        rows[f"{target}/{precision}"] = round(time.perf_counter() - s, 1)
    print(json.dumps({"rows": rows, "total": round(time.perf_counter() - t0, 1)}))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=False)
    ap.add_argument("--new", required=False)
    ap.add_argument("--pairs", type=int, default=1)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker)
        return 0
    tests = str(Path(__file__).resolve().parents[1] / "tests")
    totals: dict[str, list[float]] = {"old": [], "new": []}
    for i in range(a.pairs):
        for name, tree in (("old", a.old), ("new", a.new)):
            env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
            out = subprocess.run(
                [sys.executable, __file__, "--worker", tests],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            res = json.loads(out.strip().splitlines()[-1])
            totals[name].append(res["total"])
            print(json.dumps({"pair": i, "tree": name, **res}), flush=True)
    ratios = [round(n / o, 3) for o, n in zip(totals["old"], totals["new"], strict=True)]
    print(
        json.dumps({"old_total_s": totals["old"], "new_total_s": totals["new"], "ratio_new_over_old": ratios})
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
