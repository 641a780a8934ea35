"""How close the quick trainings run to this CPU's arithmetic ceiling, and the floor that sets.

Usage:
  python benchmarks/train_roofline.py [--archs resnet18,googlenet,alexnet,vgg16] [--threads 2]
      [--steps 12] [--json out.json] [--profile 15]

The question it answers (issue 17): is the cold frontier's training time a throughput problem
(the step runs far below what the CPU can do) or a work problem (the recipes ask for more
arithmetic than fits in the time at any throughput)?

- **Ceiling.** The multiply-accumulate rate of a dense 3x3 convolution forward (oneDNN, channels_last,
  FP32 and bf16, on ``--threads`` threads, the best of several runs and two shapes): what this CPU
  reaches on the most favourable layer the four networks have. Not the datasheet peak (clock and
  instruction issue are not known here): a measured one. (``torch.mm`` is not used: in FP32 it goes
  to a BLAS that ran at 97 GMAC/s on a Zen 5 where the convolution reached 255.)
- **Work.** Conv2d + Linear MACs of one forward pass at the recipe's input size
  (``edgecnn.models.count_macs``), times 3 for a training step (forward, data gradient, weight
  gradient: the usual estimate; the first layer needs no data gradient, so it is slightly high),
  times the recipe's images (epochs x the train split's full batches x batch size).
- **Step.** The recipe's training step as ``edgecnn train`` runs it on this CPU (its ``amp``
  resolved as train resolves it, channels_last as the recipe says), ``--steps`` timed steps after
  two warm-up steps, wall time (the median), on ``--threads`` threads: run it on a quiet machine.

With ``--profile N``, each network's timed steps run under ``torch.profiler`` too and the N operators
with the most self CPU time are printed (the profiler adds a little to the step times).

For each network it prints the achieved rate, its fraction of the ceiling in the step's precision,
the recipe's training time at that step rate, and the floor: the recipe's work at the ceiling.
The sum of the floors is the least time the four quick trainings can take on this machine
without fewer steps (or a cheaper step than a dense convolution). Evaluation, validation and the
data pipeline are left out (a few percent: docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


CEILING_SHAPES = ((64, 256, 16), (64, 512, 8))  # (batch, channels in = out, side) of a 3x3 conv


def conv_rate(dtype, repeats: int = 7) -> float:
    """Best MACs per second of a dense 3x3 convolution, channels_last, in ``dtype``: the best over
    CEILING_SHAPES (VGG16's middle layers at 32 px, the most favourable shapes the four have)."""
    import torch
    import torch.nn.functional as F

    best_rate = 0.0
    for n, c, side in CEILING_SHAPES:
        x = torch.randn(n, c, side, side).to(dtype).to(memory_format=torch.channels_last)
        w = torch.randn(c, c, 3, 3).to(dtype).to(memory_format=torch.channels_last)
        best = best_seconds(lambda x=x, w=w: F.conv2d(x, w, padding=1), repeats)
        best_rate = max(best_rate, n * c * c * 9 * side * side / best)
    return best_rate


def best_seconds(fn, repeats: int) -> float:
    """The least wall time of ``repeats`` calls of ``fn``, after two warm-up calls."""
    fn()
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def step_variant(recipe) -> str:
    """The train_speed variant that is ``edgecnn train``'s step for this recipe on this CPU."""
    from edgecnn.train import kernels

    resolved = kernels(recipe.train, "cpu")
    parts = (
        (["bf16"] if resolved["amp"] == "bf16" else [])
        + (["cl"] if recipe.train.channels_last else [])
        + (["gemm"] if resolved["gemm_conv_pixels"] else [])
    )
    return "+".join(parts) or "eager"


def bench_arch(arch: str, steps: int, ceilings: dict[str, float], profile: int = 0) -> dict:
    from train_speed import build, make_step

    from edgecnn.models import count_macs

    model, recipe, (_, labels, _), batches = build(arch, n_batches=steps + 2)
    size, bs = recipe.data.image_size, recipe.train.batch_size
    macs = count_macs(model, (1, recipe.data.channels, size, size))
    images = recipe.train.epochs * (len(labels) // bs) * bs
    variant = step_variant(recipe)
    step = make_step(model, recipe, variant)
    for x, y in batches[:2]:
        step(x, y)
    times = []
    with profiler(profile) as prof:
        for x, y in batches[2:]:
            t = time.perf_counter()
            step(x, y)
            times.append(time.perf_counter() - t)
    if profile:
        print(f"{arch} ({variant}), {len(times)} steps:", file=sys.stderr)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=profile), file=sys.stderr)
    step_s = statistics.median(times)
    rate = 3 * macs * bs / step_s
    train_macs = 3 * macs * images
    ceiling = ceilings["bf16" if "bf16" in variant else "fp32"]
    return {
        "arch": arch,
        "variant": variant,
        "epochs": recipe.train.epochs,
        "macs_per_image": macs,
        "train_macs": train_macs,
        "step_ms": 1000 * step_s,
        "gmacs_per_s": rate / 1e9,
        "of_ceiling": rate / ceiling,
        "recipe_min": images / bs * step_s / 60,
        "floor_min": train_macs / ceiling / 60,
    }


def profiler(on: int):
    """torch.profiler over the CPU when ``on``, else a context that does nothing."""
    import contextlib

    from torch.profiler import ProfilerActivity, profile

    return profile(activities=[ProfilerActivity.CPU]) if on else contextlib.nullcontext()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default="resnet18,googlenet,alexnet,vgg16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="print the N costliest operators")
    args = ap.parse_args()

    import torch

    from edgecnn.host import cpu_model

    torch.set_num_threads(args.threads)
    ceilings = {"fp32": conv_rate(torch.float32), "bf16": conv_rate(torch.bfloat16)}
    rows = [bench_arch(a, args.steps, ceilings, args.profile) for a in args.archs.split(",")]
    out = {
        "cpu": cpu_model(),
        "threads": args.threads,
        "ceiling_gmacs_per_s": {k: v / 1e9 for k, v in ceilings.items()},
        "rows": rows,
    }
    emit(out, args.json, print_table)


def emit(out: dict, path: str | None, print_table) -> None:
    """Print ``out`` as JSON, also write it to ``path`` when given, then print its Markdown table."""
    print(json.dumps(out, indent=2))
    if path:
        with open(path, "w") as f:
            json.dump(out, f, indent=2)
    print_table(out)


def print_table(out: dict) -> None:
    c = out["ceiling_gmacs_per_s"]
    print(
        f"\n{out['cpu']}, {out['threads']} threads; ceiling (a 3x3 convolution): "
        f"FP32 {c['fp32']:.0f}, bf16 {c['bf16']:.0f} GMAC/s\n"
    )
    cols = ("network", "step", "epochs", "MMACs/image", "step (ms)", "GMAC/s", "of ceiling")
    print("| " + " | ".join(cols) + " | recipe at this step | floor at the ceiling |")
    print("|---" * (len(cols) + 2) + "|")
    for r in out["rows"]:
        cells = (r["arch"], r["variant"], r["epochs"], f"{r['macs_per_image'] / 1e6:.0f}")
        cells += (f"{r['step_ms']:.0f}", f"{r['gmacs_per_s']:.0f}", f"{100 * r['of_ceiling']:.0f}%")
        cells += (f"{r['recipe_min']:.1f} min", f"{r['floor_min']:.1f} min")
        print("| " + " | ".join(str(c) for c in cells) + " |")
    total = sum(r["recipe_min"] for r in out["rows"]), sum(r["floor_min"] for r in out["rows"])
    print(f"| total | | | | | | | {total[0]:.1f} min | {total[1]:.1f} min |")


if __name__ == "__main__":
    main()
