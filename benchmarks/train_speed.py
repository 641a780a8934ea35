"""Training throughput: each option of the training step against a plain eager FP32 NCHW loop.

Usage:
  python benchmarks/train_speed.py [--archs resnet18,googlenet,alexnet,vgg16]
      [--variants eager,cl,bf16,bf16+cl,fused] [--rounds 9] [--threads 1] [--batch-size N]

For each network at its quick recipe's settings (model options, batch size, 32 px, 3 channels,
SGD with Nesterov momentum and weight decay as edgecnn.train builds it, label smoothing, grad clip)
every variant trains its own copy of the same initial model on the same Fashion-MNIST batches.
The variants run interleaved, in rounds (one step of each variant, then the next round), so a
shared machine's load falls on all of them alike: only the ratio to ``eager`` measured in the same
run means anything. With ``--threads 1`` (the default) each step is timed by its thread's CPU
time, which a loaded machine disturbs far less than wall time (on a quiet machine the two agree);
the least over the rounds is compared (the load only adds to it). Each variant first takes two
warm-up steps (not timed); with ``compile`` the first of them is the compile time.

A variant is ``eager`` (the baseline: FP32, NCHW, eager, SGD's per-parameter loop) or a
``+``-joined set of these options, each one idea:
  cl       model and input channels_last (the quick recipes train with it today)
  bf16     bf16 autocast (CPU); weights, optimizer state and loss stay FP32
  bn32     with bf16: every BatchNorm computed in FP32 (conv and linear stay bf16)
  fused    torch.optim.SGD(fused=True)
  compile  torch.compile (inductor) of the model; backward through AOTAutograd
  gemm     convolutions on small maps as one GEMM each (edgecnn.gemmconv): at most the recipe's
           gemm_conv_pixels output pixels, 16 where it has none
e.g. ``cl``, ``bf16+cl``, ``compile+bf16+cl+fused``.

The input pipeline is timed separately (ms per batch, also interleaved): ``loader`` is
edgecnn.data.iterate_batches over the uint8 images (uint8 -> resize -> normalise -> flip, per
batch); ``cached`` holds the split preprocessed once (one grey channel, float32, 211 MB for
Fashion-MNIST's 54,000 training images) and makes a batch by an index, a copy to 3 channels and a
flip (what a preprocess-once pipeline would cost; not edgecnn code). Prints one JSON object per
network and a Markdown table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import statistics
import tempfile
import time

OPTIONS = ("cl", "bf16", "bn32", "fused", "compile", "gemm")
DEFAULT_VARIANTS = "eager,cl,bf16,bf16+cl,fused"  # compile: minutes per network, ask for it


def options(variant: str) -> set[str]:
    """The options of a variant name; SystemExit naming the unknown ones."""
    opts = set() if variant == "eager" else set(variant.split("+"))
    if opts - set(OPTIONS) or ("bn32" in opts and "bf16" not in opts) or {"compile", "gemm"} <= opts:
        raise SystemExit(
            f"error: variant {variant!r}: use eager or +-joined options of {', '.join(OPTIONS)} "
            "(bn32 with bf16; compile and gemm not together: gemm swaps layers' forward every step)"
        )
    return opts


def build(arch: str, n_batches: int = 8, batch_size: int | None = None):
    """(model, recipe, (images, labels, preprocess), batches): the quick recipe's model at seed 0
    and the first ``n_batches`` batches of the train split (epoch 0, seed 0, flipped), of the
    recipe's batch size or ``batch_size``."""
    import torch

    from edgecnn.data import Preprocess, SplitSpec, iterate_batches, load_dataset, make_splits
    from edgecnn.models import create
    from edgecnn.recipes import load_recipe

    recipe = load_recipe(arch, "quick")
    bundle = load_dataset(None)
    split = make_splits(bundle, SplitSpec(val=recipe.data.val, calib=recipe.data.calib, seed=0))["train"]
    pre = Preprocess.for_dataset(bundle, recipe.data.image_size, recipe.data.channels)
    images, labels = bundle.train.images[split.indices], bundle.train.labels[split.indices]
    batches = list(
        itertools.islice(
            iterate_batches(
                images,
                labels,
                pre,
                batch_size or recipe.train.batch_size,
                shuffle=True,
                seed=0,
                augment="flip",
                drop_last=True,
            ),
            n_batches,
        )
    )
    torch.manual_seed(0)
    opts = {"num_classes": len(bundle.classes), "in_channels": recipe.data.channels, **recipe.model_options()}
    return create(arch, **opts), recipe, (images, labels, pre), batches


def make_step(model, recipe, variant: str):
    """A closure doing one training step of ``variant`` on (x, y) with a copy of ``model``;
    returns the loss tensor. ``step.model`` and ``step.opt`` are that copy and its optimizer."""
    import torch
    import torch.nn.functional as F

    from edgecnn.gemmconv import small_maps_as_gemm

    cfg, opts = recipe.train, options(variant)
    bf16 = "bf16" in opts
    fmt = torch.channels_last if "cl" in opts else torch.contiguous_format
    model = copy.deepcopy(model).to(memory_format=fmt).train()
    if "bn32" in opts:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.forward = in_fp32(m.forward)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    extra = {"fused": True} if "fused" in opts else {}
    opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, **extra)
    net = torch.compile(model) if "compile" in opts else model
    gemm = (cfg.gemm_conv_pixels or 16) if "gemm" in opts else 0

    def step(x, y):
        x = x.to(memory_format=fmt)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), small_maps_as_gemm(model, gemm):
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        return loss.detach()

    step.model, step.opt = model, opt
    return step


def in_fp32(forward):
    """``forward`` run in FP32 with autocast off (its input cast up)."""
    import torch

    def run(x):
        with torch.autocast("cpu", enabled=False):
            return forward(x.float())

    return run


def pipelines(data, bs: int):
    """name -> a function making batch ``b`` (of ``bs`` images) of epoch 0, for the two input pipelines."""
    import dataclasses

    import numpy as np
    import torch

    from edgecnn.data import iterate_batches

    images, labels, pre = data
    # The split preprocessed once, as one grey channel (the quick recipes copy grey to 3).
    grey = dataclasses.replace(pre, channels=1, mean=pre.mean[:1], std=pre.std[:1])
    held = torch.cat([grey.apply_torch(images[i : i + 4096]) for i in range(0, len(images), 4096)])
    order = np.random.default_rng(0).permutation(len(labels))

    def loader(b):
        return next(iterate_batches(images, labels, pre, bs, shuffle=True, seed=0, augment="flip", start=b))

    def preprocessed_once(b):
        idx = torch.from_numpy(order[b * bs : (b + 1) * bs])
        x = held[idx].repeat(1, pre.channels, 1, 1)
        flip = torch.from_numpy(np.flatnonzero(np.random.default_rng([0, b]).random(len(idx)) < 0.5))
        x[flip] = x[flip].flip(-1)
        return x, torch.from_numpy(labels[idx.numpy()])

    return {"loader": loader, "cached": preprocessed_once}, held


def bench_arch(arch: str, variants: list[str], rounds: int, threads: int, batch_size: int | None) -> dict:
    model, recipe, data, batches = build(arch, batch_size=batch_size)
    bs = len(batches[0][1])
    t0 = time.perf_counter()
    fns = {v: make_step(model, recipe, v) for v in variants}
    first: dict[str, float] = {}
    for v, fn in fns.items():  # warm-up; the first step of a compiled model compiles it
        t = time.perf_counter()
        fn(*batches[0])
        first[v] = time.perf_counter() - t
        fn(*batches[1])
    t = time.perf_counter()
    pipes, cached = pipelines(data, bs)
    cache_seconds = time.perf_counter() - t
    times: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    data_ms: dict[str, list[float]] = {p: [] for p in pipes}
    for r in range(rounds):  # one step of each variant in turn: the load changes slower than that
        for v, fn in fns.items():
            x, y = batches[(2 + r) % len(batches)]
            t, c = time.perf_counter(), time.thread_time()
            fn(x, y)
            cpu[v].append(time.thread_time() - c)
            times[v].append(time.perf_counter() - t)
        for p, make in pipes.items():
            t = time.thread_time()
            make(r)
            data_ms[p].append(1000 * (time.thread_time() - t))
    # With one thread, the thread's CPU time is the step's cost on a loaded machine, where wall
    # time mostly measures how long the other processes held the cores. Other processes only
    # add to it (caches, memory bandwidth), so the least of the rounds is compared; the medians
    # and every round are reported as well.
    step_s = {v: min(ts) for v, ts in (cpu if threads == 1 else times).items()}
    base = step_s.get("eager")
    return {
        "arch": arch,
        "batch_size": bs,
        "images_per_s": {v: round(bs / s, 1) for v, s in step_s.items()},
        "ratio_to_eager": {v: round(base / s, 3) for v, s in step_s.items()} if base else {},
        "timed_by": "least thread CPU time" if threads == 1 else "least wall time",
        "wall_ms_median": {v: round(1000 * statistics.median(ts), 1) for v, ts in times.items()},
        "cpu_ms_median": {v: round(1000 * statistics.median(ts), 1) for v, ts in cpu.items()},
        "cpu_ms_rounds": {v: [round(1000 * t) for t in ts] for v, ts in cpu.items()},
        "first_step_s": {v: round(s, 2) for v, s in first.items()},
        "compile_s": {v: round(first[v] - step_s[v], 1) for v in variants if "compile" in options(v)},
        "data_ms_per_batch": {p: round(min(ms), 2) for p, ms in data_ms.items()},
        "cache_build_s": round(cache_seconds, 2),
        "cache_mb": round(cached.nbytes / 2**20, 1),
        "setup_s": round(time.perf_counter() - t0, 1),
        "rounds": rounds,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", default="resnet18,googlenet,alexnet,vgg16")
    ap.add_argument("--variants", default=DEFAULT_VARIANTS)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, help="instead of each recipe's batch size")
    args = ap.parse_args()
    variants = args.variants.split(",")
    for v in variants:
        options(v)
    # A cold inductor cache, so compile_s is what a first run pays.
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="edgecnn-inductor-"))
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    for arch in args.archs.split(","):
        row = bench_arch(arch, variants, args.rounds, args.threads, args.batch_size)
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(f"\nload average at the end: {os.getloadavg()}")
    print("\n| network | batch | " + " | ".join(variants) + " | data ms/batch: loader / cached |")
    print("|---|---|" + "---|" * (len(variants) + 1))
    for r in rows:
        ratio = r["ratio_to_eager"]  # empty without the eager variant
        cells = [
            f"{r['images_per_s'][v]:.0f} img/s" + (f" ({ratio[v]:.2f}x)" if ratio else "") for v in variants
        ]
        d = r["data_ms_per_batch"]
        cells.append(f"{d['loader']} / {d['cached']}")
        print(f"| {r['arch']} | {r['batch_size']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
