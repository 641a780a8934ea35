"""Train the four networks with their `quick` recipe, one process each, and report
test top-1/top-5, wall time and peak memory (of that process) per network.

Usage: python benchmarks/train_quick.py [--archs alexnet,vgg16,resnet18,googlenet] [--force]
Prints one JSON object per network and a Markdown table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", default="alexnet,vgg16,resnet18,googlenet")
    ap.add_argument("--recipe", default="quick")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    exe = str(Path(sys.executable).parent / "edgecnn")
    rows = []
    for arch in args.archs.split(","):
        cmd = [exe, "train", arch, "--recipe", args.recipe, "--json"] + (["--force"] if args.force else [])
        res = subprocess.run(cmd, check=True, capture_output=True, text=True)
        rep = json.loads(res.stdout)
        print(
            json.dumps(
                {k: rep[k] for k in ("arch", "test", "wall_seconds", "peak_memory_mb", "amp", "cached")}
            ),
            flush=True,
        )
        rows.append(rep)
    print(
        "\n| network | variant | epochs | train images | test top-1 | test top-5 | wall time | peak memory |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        variant = "small-input" if r["model_options"].get("small_input") else "torchvision"
        print(
            f"| {r['arch']} | {variant} @ {r['preprocess']['image_size']} px | "
            f"{r['recipe']['train']['epochs']} | "
            f"{r['dataset']['train_images']} | {100 * r['test']['top1']:.2f}% | "
            f"{100 * r['test']['top5']:.2f}% | "
            f"{r['wall_seconds'] / 60:.1f} min | {r['peak_memory_mb'] / 1024:.2f} GiB |"
        )


if __name__ == "__main__":
    main()
