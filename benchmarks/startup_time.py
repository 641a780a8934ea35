"""Time `import edgecnn` and `edgecnn --help` in fresh processes (median of N runs).

Usage: python benchmarks/startup_time.py [--runs 10]
Prints a JSON object; docs/BENCHMARKS.md records the figures with the machine and date.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time


def timed(cmd: list[str], runs: int) -> dict:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3), "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    exe = shutil.which("edgecnn") or str(__import__("pathlib").Path(sys.executable).parent / "edgecnn")
    out = {
        "python_startup": timed([sys.executable, "-c", "pass"], args.runs),
        "import_edgecnn": timed([sys.executable, "-c", "import edgecnn"], args.runs),
        "edgecnn_help": timed([exe, "--help"], args.runs),
        "torch_imported_by_import_edgecnn": subprocess.run(
            [sys.executable, "-c", "import sys, edgecnn; print('torch' in sys.modules)"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        == "True",
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
