"""Print the sha256 of every artifact file a tiny-recipe deploy writes, per target and runtime.

Issue 14's "behaviour unchanged" check: run it before and after a refactor and diff the output.
A random-weight test_resnet18 checkpoint (fixed seed) goes through calibrate -> export -> evaluate
-> bench for each (target, runtime, precision) below, in a fresh $EDGECNN_HOME under a temp folder.
With --qat the INT8 rows go through QAT; with --train the model is trained from scratch by the tiny
recipe (seeded) instead of starting from the random checkpoint, so the training loop is covered too.
With --rows TARGET/RUNTIME/PRECISION[,...] only those rows run (each in this one process: OpenVINO
numbers the Const nodes of an IR by a process-wide counter, so an FP32 IR written after INT8 work in
the same process can differ from one written alone in auto-numbered names only).
Usage: python scripts/artifact_shas.py [--qat] [--train] [--rows cpu/openvino/fp32] > shas.txt
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

ROWS = [
    ("cpu", "openvino", "int8"),
    ("cpu", "onnxruntime", "int8"),
    ("cpu", "openvino", "fp32"),
    ("rpi", "tflite", "int8"),
    ("jetson", "tensorrt", "int8"),
]


def main() -> int:
    qat = "--qat" in sys.argv[1:]
    trained = "--train" in sys.argv[1:]
    argv = sys.argv[1:]
    only = set(argv[argv.index("--rows") + 1].split(",")) if "--rows" in argv else None
    tmp = Path(tempfile.mkdtemp(prefix="edgecnn-shas-"))
    os.environ["EDGECNN_HOME"] = str(tmp / "home")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import torch
    from click.testing import CliRunner
    from tiny_recipes import int8_recipe, random_checkpoint

    from edgecnn.cli import cli

    torch.manual_seed(0)
    recipe_path, recipe = int8_recipe(tmp)
    ckpt = random_checkpoint(tmp, recipe)
    for target, runtime, precision in ROWS:
        if only is not None and f"{target}/{runtime}/{precision}" not in only:
            continue
        out = tmp / f"{target}-{runtime}-{precision}"
        args = ["deploy", "test_resnet18", "--target", target, "--runtime", runtime, "--precision", precision]
        args += ["--recipe", str(recipe_path), "--out", str(out)]
        args += [] if trained else ["--checkpoint", str(ckpt)]
        args += ["--threads", "1", "--min-seconds", "0.05"] + (["--qat"] if qat else [])
        res = CliRunner().invoke(cli, args)
        tag = f"{target}/{runtime}/{precision}{'/qat' if qat else ''}{'/train' if trained else ''}"
        if res.exit_code != 0:
            print(f"{tag}: exit {res.exit_code}: {res.output.strip()[-300:]}")
            continue
        meta = json.loads((out / "artifact" / "metadata.json").read_text())
        for name, digest in sorted(meta["files"].items()):
            print(f"{tag}  {name}  {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
