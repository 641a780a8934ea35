"""Two trainings at once on one thread each, against the same two one after the other on all threads.

Usage: python benchmarks/train_lanes.py [--pair googlenet:cl,alexnet:bf16+cl] [--steps 60] [--threads 2]

Each side of the pair is a network and a variant of its training step (see train_speed.py:
``cl``, ``bf16+cl``, ...), at its quick recipe's batch. ``sequential``: each network trains
``--steps`` steps alone with ``--threads`` threads, one after the other (the frontier today).
``lanes``: both train their ``--steps`` steps at the same time in two processes with
``threads // 2`` threads each. Wall time of each arrangement (after two warm-up steps per process,
not timed); both arrangements alternate over ``--rounds``. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import time


def worker(arch: str, variant: str, threads: int, steps: int, start, done) -> None:
    import torch
    from train_speed import build, make_step

    torch.set_num_threads(threads)
    model, recipe, _, batches = build(arch, n_batches=4)
    step = make_step(model, recipe, variant)
    for b in batches[:2]:
        step(*b)
    start.wait()
    t = time.perf_counter()
    for i in range(steps):
        step(*batches[i % len(batches)])
    done.put((arch, time.perf_counter() - t))


def arrangement(pair, threads: int, steps: int, together: bool) -> float:
    """Wall seconds for the pair's steps: together (one process per network, threads // 2 each) or
    one after the other (``threads`` each)."""
    ctx = mp.get_context("spawn")
    done = ctx.Queue()
    if together:
        start = ctx.Barrier(len(pair) + 1)
        procs = [ctx.Process(target=worker, args=(a, v, threads // 2, steps, start, done)) for a, v in pair]
        for p in procs:
            p.start()
        start.wait()
        t = time.perf_counter()
        for _ in procs:
            done.get()
        took = time.perf_counter() - t
        for p in procs:
            p.join()
        return took
    total = 0.0
    for a, v in pair:
        start = ctx.Barrier(2)
        p = ctx.Process(target=worker, args=(a, v, threads, steps, start, done))
        p.start()
        start.wait()
        total += done.get()[1]
        p.join()
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pair", default="googlenet:cl,alexnet:bf16+cl")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    pair = [tuple(x.split(":")) for x in args.pair.split(",")]
    seq, lanes = [], []
    for _ in range(args.rounds):
        seq.append(arrangement(pair, args.threads, args.steps, together=False))
        lanes.append(arrangement(pair, args.threads, args.steps, together=True))
    row = {
        "pair": args.pair,
        "steps": args.steps,
        "threads": args.threads,
        "sequential_s": [round(s, 1) for s in seq],
        "lanes_s": [round(s, 1) for s in lanes],
        "lanes_speedup": round(statistics.median(seq) / statistics.median(lanes), 3),
        "load_after": os.getloadavg()[0],
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
