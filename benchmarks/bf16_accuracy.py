"""Does bf16 autocast cost accuracy, and where? A short controlled training run (issue 17).

Usage:
  python benchmarks/bf16_accuracy.py [--arch resnet18] [--images 16384] [--epochs 2]
      [--variants eager,bf16,bf16+bn32] [--threads 1]

Each variant (named as in train_speed.py: eager = FP32 NCHW, bf16 = bf16 autocast, bf16+bn32 =
bf16 autocast with BatchNorm in FP32, bf16+cl, ...) trains the same initial model on the
same ``--images`` images of the train split (the same seeded subset, shuffle and flips) for
``--epochs`` epochs with the quick recipe's optimizer, rate, warm-up, cosine schedule, label
smoothing and grad clip, then is evaluated in FP32 on the 10,000 test images. A reduced run:
its top-1 is below what the whole recipe reaches, and only differences between the variants
of one run mean anything (the run-to-run spread of the whole recipe is about a point).
"""

from __future__ import annotations

import argparse
import json
import time

from train_speed import build, make_step  # this folder is on sys.path when run as a script


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--images", type=int, default=16384)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--variants", default="eager,bf16,bf16+bn32")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import numpy as np
    import torch

    from edgecnn.data import iterate_batches, load_dataset
    from edgecnn.train import evaluate_model
    from edgecnn.trainloop import lr_at

    torch.set_num_threads(args.threads)
    model, recipe, (images, labels, pre), _ = build(args.arch, 0)
    cfg = recipe.train
    pick = np.random.default_rng(0).permutation(len(labels))[: args.images]  # a seeded subset
    images, labels = images[pick], labels[pick]
    steps = len(labels) // cfg.batch_size
    total, warmup = steps * args.epochs, int(cfg.warmup_epochs * steps)
    test = load_dataset(None).test
    for variant in args.variants.split(","):
        step = make_step(model, recipe, variant)
        t0, g, losses = time.perf_counter(), 0, []
        for epoch in range(args.epochs):
            for x, y in iterate_batches(
                images,
                labels,
                pre,
                cfg.batch_size,
                shuffle=True,
                seed=0,
                epoch=epoch,
                augment="flip",
                drop_last=True,
            ):
                for group in step.opt.param_groups:
                    group["lr"] = lr_at(g, total, warmup, cfg.lr, cfg.schedule)
                losses.append(float(step(x, y)))
                g += 1
        top = evaluate_model(
            step.model.to(memory_format=torch.contiguous_format), test.images, test.labels, pre
        )
        row = {
            "arch": args.arch,
            "variant": variant,
            "images": len(labels),
            "epochs": args.epochs,
            "steps": g,
            "test_top1": round(top["top1"], 4),
            "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4),
            "wall_s": round(time.perf_counter() - t0, 1),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
