"""How far the FP16 rewrite that TensorRT 11 builds INT8 artifacts from moves a network's outputs.

TensorRT 11 is strongly typed, so edgecnn builds an INT8 (QDQ) artifact from a copy of its graph
with FP16 outside the Q/DQ pairs (:mod:`edgecnn.tensorrt.fp16`). This runs both graphs in ONNX
Runtime (CPU, as written: ORT's own QDQ fusions take float32 scales only) over a Jetson INT8
artifact's whole test split and reports each top-1, their top-1 agreement, and the largest logit
difference relative to the logits' range. ONNX Runtime computes the FP16 graph's kernels in FP32
on FP16-rounded tensors, so this measures the rounding the rewrite writes into the graph
(weights, biases, scales, every activation between layers), not FP16 accumulation on a GPU::

    python benchmarks/fp16_rewrite_agreement.py ARTIFACT [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def _session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _logits(session, images: np.ndarray, batch: int = 256) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.concatenate(
        [session.run(None, {name: images[i : i + batch]})[0] for i in range(0, len(images), batch)]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "artifact", type=Path, help="a Jetson INT8 artifact (edgecnn export ARCH --target jetson)"
    )
    ap.add_argument("--limit", type=int, default=None, help="only the first N test images")
    args = ap.parse_args(argv)
    from edgecnn.artifact import load_artifact
    from edgecnn.data import Preprocess, load_dataset
    from edgecnn.tensorrt.fp16 import to_strongly_typed_fp16

    art = load_artifact(args.artifact)
    test = load_dataset(None).test
    n = min(args.limit or len(test.labels), len(test.labels))
    x = Preprocess.from_dict(art.meta["preprocess"]).apply_numpy(test.images[:n])
    labels = np.asarray(test.labels[:n])
    with tempfile.TemporaryDirectory() as tmp:
        rewrite = to_strongly_typed_fp16(art.model_file, Path(tmp) / "fp16.onnx")
        y16 = _logits(_session(Path(tmp) / "fp16.onnx"), x)
    y32 = _logits(_session(art.model_file), x)
    p32, p16 = y32.argmax(1), y16.argmax(1)
    out = {
        "artifact": str(art.dir),
        "arch": art.meta.get("arch"),
        "images": n,
        "rewrite": rewrite.to_json(),
        "top1_fp32_graph": float((p32 == labels).mean()),
        "top1_fp16_rewrite": float((p16 == labels).mean()),
        "top1_agreement": float((p32 == p16).mean()),
        "max_logit_diff_over_range": float(np.abs(y16 - y32).max() / (y32.max() - y32.min())),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
