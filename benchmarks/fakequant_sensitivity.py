"""How stable is a fake-quant graph's top-1 under perturbations far below one quantization step?

The INT8 artifacts are compared with the fake-quant PyTorch graph they were made from (top-1
agreement, target >= 99.5%). A runtime computes the same graph with exact int32 accumulation
and its own float rounding order, so a few requantizations land one step apart. This script
measures how much that alone can move the predictions: it runs the stage's converted graph
(`quantized.pt2`) on the whole test split, then again with Gaussian noise of a given standard
deviation added to the (normalized) input, and at another batch size, and prints the top-1
agreement of each with the unperturbed run, plus the quantiles of the top-1 logit margin.

Usage:
  python benchmarks/fakequant_sensitivity.py STAGE_DIR [STAGE_DIR ...] [--noise 1e-6,1e-5,1e-4]

STAGE_DIR is a calibrate or QAT stage directory ($EDGECNN_HOME/runs/calibrate/<arch>-<method>-<key>,
printed by `edgecnn calibrate`). Runs on 1 thread; nothing is written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stages", nargs="+")
    ap.add_argument("--noise", default="1e-6,1e-5,1e-4")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from edgecnn.data import Preprocess, load_dataset
    from edgecnn.models import from_checkpoint
    from edgecnn.quantize.pt2e import load_graph

    torch.set_num_threads(1)
    print(
        "| network | stage | fake-quant top-1 | input quant step | "
        + " | ".join(f"agreement, noise {n}" for n in args.noise.split(","))
        + " | agreement, batch 7 vs 500 | "
        "margin p1 / p5 / p50 |"
    )
    print("|---|---|---:|---:|" + "---:|" * (len(args.noise.split(",")) + 2))
    for stage in args.stages:
        d = Path(stage)
        rep = json.loads(next(d.glob("*.json")).read_text())
        graph = load_graph(d / "quantized.pt2")
        _, ckpt = from_checkpoint(rep["source"]["checkpoint"])
        pre = Preprocess.from_dict(ckpt["preprocess"])
        x_all = torch.from_numpy(pre.apply_numpy(load_dataset(None).test.images))
        gen = torch.Generator().manual_seed(args.seed)

        logits = _run(graph, x_all)
        p = logits.argmax(1).numpy()
        cells = []
        for n in args.noise.split(","):
            eps = float(n)
            noisy = x_all + eps * torch.randn(x_all.shape, generator=gen)
            q = _run(graph, noisy).argmax(1).numpy()
            cells.append(f"{100 * (q == p).mean():.2f}%")
        q = _run(graph, x_all, bs=7).argmax(1).numpy()
        cells.append(f"{100 * (q == p).mean():.2f}%")
        top2 = logits.topk(2, 1).values
        margin = (top2[:, 0] - top2[:, 1]).numpy()
        m = np.quantile(margin, [0.01, 0.05, 0.5])
        step = _input_step(graph)
        print(
            f"| {rep.get('arch', d.name.split('-')[0])} | {d.name} | "
            f"{100 * rep['int8_fakequant']['top1']:.2f}% | "
            f"{step:.4g} | " + " | ".join(cells) + f" | {m[0]:.3f} / {m[1]:.3f} / {m[2]:.2f} |",
            flush=True,
        )


def _run(graph, x, bs=500):
    with torch.no_grad():
        return torch.cat([graph(x[i : i + bs]) for i in range(0, len(x), bs)])


def _input_step(graph) -> float:
    """Scale of the first quantize node of the converted graph (the input's quantization step)."""
    for node in graph.graph.nodes:
        if node.op == "call_function" and "quantize_per_tensor" in str(node.target) and len(node.args) > 1:
            s = node.args[1]
            if isinstance(s, float):
                return s
            if isinstance(s, torch.fx.Node) and s.op == "get_attr":
                return float(getattr(graph, s.target))
    return float("nan")


if __name__ == "__main__":
    main()
