"""How far bf16 autocast moves a training step from exact arithmetic, layer by layer (issue 17).

Usage:
  python benchmarks/bf16_grads.py [--arch resnet18] [--batches 3] [--warm-steps 0] [--threads 1]

One network at its quick recipe's settings (batch 128, 32 px Fashion-MNIST, flip), its
initial weights (after ``--warm-steps`` FP32 SGD steps at the recipe's rate, to leave the
initialisation), dropout off (its masks are random). For each batch, the gradients of a
float64 step are the reference; each variant's gradients are compared with them per parameter
tensor (relative L2 error), and so is the BatchNorm running statistics update. Variants:
  fp32       FP32 eager (the error FP32 itself makes: the floor)
  bf16       bf16 autocast, NCHW (what amp = "bf16" trains with)
  bf16+cl    the same, channels_last (the quick recipes' layout)
  bf16+bn32  bf16 autocast with every BatchNorm computed in FP32 (conv/linear stay bf16)
  bf16+fc32  bf16 autocast with the classifier (last Linear) in FP32
Prints one JSON object per variant: the median over batches of each layer's error, the worst
layers, and the groups' medians (conv weights, BatchNorm weights/biases, the classifier).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics

from train_speed import build, in_fp32  # this folder is on sys.path when run as a script

VARIANTS = ("fp32", "bf16", "bf16+cl", "bf16+bn32", "bf16+fc32")


def grads(model, x, y, variant: str, label_smoothing: float):
    """(gradients by name, BN running stats after the step by name) of one step of ``variant``."""
    import torch
    import torch.nn.functional as F

    m = copy.deepcopy(model)
    cl = variant == "bf16+cl"
    if variant == "fp64":
        m, x = m.double(), x.double()
    if cl:
        m, x = m.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    for mod in m.modules():
        if (variant == "bf16+bn32" and isinstance(mod, torch.nn.modules.batchnorm._BatchNorm)) or (
            variant == "bf16+fc32" and mod is [q for q in m.modules() if isinstance(q, torch.nn.Linear)][-1]
        ):
            mod.forward = in_fp32(mod.forward)
    m.train()
    for mod in m.modules():  # no random dropout masks: the variants must see the same network
        if isinstance(mod, torch.nn.Dropout):
            mod.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant.startswith("bf16")):
        logits = m(x)
    loss = F.cross_entropy(
        logits.to(x.dtype) if variant == "fp64" else logits.float(), y, label_smoothing=label_smoothing
    )
    loss.backward()
    g = {n: p.grad.detach().double() for n, p in m.named_parameters()}
    stats = {
        n: b.detach().double() for n, b in m.named_buffers() if n.endswith(("running_mean", "running_var"))
    }
    return g, stats, float(loss.detach())


def rel(a, b) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--warm-steps", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    model, recipe, _, batches = build(args.arch, args.batches + args.warm_steps)
    ls = recipe.train.label_smoothing
    if args.warm_steps:
        opt = torch.optim.SGD(model.parameters(), lr=recipe.train.lr, momentum=0.9)
        for x, y in batches[: args.warm_steps]:
            opt.zero_grad()
            F.cross_entropy(model(x), y, label_smoothing=ls).backward()
            opt.step()
    errors = {v: {} for v in args.variants.split(",")}
    stat_errors = {v: {} for v in errors}
    for x, y in batches[args.warm_steps :]:
        ref, ref_stats, ref_loss = grads(model, x, y, "fp64", ls)
        for v in errors:
            g, stats, loss = grads(model, x, y, v, ls)
            for n in ref:
                errors[v].setdefault(n, []).append(rel(g[n], ref[n]))
            for n in ref_stats:
                stat_errors[v].setdefault(n, []).append(rel(stats[n], ref_stats[n]))
            errors[v].setdefault("(loss)", []).append(abs(loss - ref_loss) / abs(ref_loss))
    for v, per in errors.items():
        med = {n: statistics.median(e) for n, e in per.items()}
        groups = {
            "conv/linear weights": [
                e for n, e in med.items() if n.endswith("weight") and _is_matrix(model, n)
            ],
            "bn weights": [e for n, e in med.items() if n.endswith("weight") and not _is_matrix(model, n)],
            "biases": [e for n, e in med.items() if n.endswith("bias")],
            "bn running stats": [statistics.median(e) for e in stat_errors[v].values()],
        }
        print(
            json.dumps(
                {
                    "arch": args.arch,
                    "variant": v,
                    "warm_steps": args.warm_steps,
                    "batches": args.batches,
                    "loss_rel_error": round(med.pop("(loss)"), 8),
                    "group_median": {k: round(statistics.median(e), 6) for k, e in groups.items() if e},
                    "group_max": {k: round(max(e), 6) for k, e in groups.items() if e},
                    "worst": sorted(((round(e, 5), n) for n, e in med.items()), reverse=True)[:5],
                }
            ),
            flush=True,
        )


def _is_matrix(model, name: str) -> bool:
    return dict(model.named_parameters())[name].ndim > 1


if __name__ == "__main__":
    main()
