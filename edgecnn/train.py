"""Float training and fine-tuning with a recipe: atomic checkpoints, resume, cached results.

One call of :func:`train` is one run, identified by a key hashed from everything that
decides its result (architecture, recipe, dataset content and split, starting weights,
torch version). Its directory holds:

- ``state.pt``   the resumable state, rewritten atomically at the end of every epoch
                 and every ``checkpoint_seconds`` mid-epoch;
- ``model.pt``   the final edgecnn checkpoint (weights, model options, preprocessing,
                 class names, metrics);
- ``train.json`` the report: accuracy on the test split, wall time, peak memory.

Calling it again with the same inputs returns the cached report at once; a run that was
interrupted resumes from ``state.pt`` where it stopped.

Under ``torchrun --nproc-per-node N`` the run is data-parallel (see :mod:`edgecnn.distributed`):
the recipe's batch_size is the global batch, each process takes batch_size / N images of it,
and rank 0 alone writes the files above; the run key is the same as a single process's.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import platform
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from edgecnn import __version__, distributed, outdir, paths
from edgecnn.checkpoint import save_checkpoint
from edgecnn.data import Preprocess, SplitSpec, iterate_batches, load_dataset, make_splits, subset
from edgecnn.errors import EdgecnnError
from edgecnn.fileio import atomic_path, atomic_write_json, sha256_file
from edgecnn.host import cpu_model, has_fast_bf16
from edgecnn.metrics import TopK
from edgecnn.models import create
from edgecnn.recipes import Recipe

STATE_FORMAT = "edgecnn.train-state/1"
FILES = ("state.pt", "model.pt", "train.json")  # what a run writes into its folder


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    checkpoint: Path
    report: dict[str, Any]
    cached: bool


def _weights_id(weights: str | None) -> str | None:
    if weights is None or weights == "imagenet":
        return weights
    p = Path(weights)
    if not p.is_file():
        raise EdgecnnError(f"weights file not found: {weights}; pass an existing checkpoint or 'imagenet'")
    return "sha256:" + sha256_file(p)


def run_key(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def lr_at(step: int, total: int, warmup: int, base: float, schedule: str) -> float:
    """Linear warm-up to ``base`` over ``warmup`` steps, then constant or cosine to zero."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    if schedule == "constant":
        return base
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * base * (1.0 + math.cos(math.pi * min(1.0, t)))


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module, images, labels, preprocess: Preprocess, batch_size: int = 500
) -> dict:
    """Top-1 / top-5 of a float PyTorch model on uint8 images.

    Under torchrun every rank must call it: rank 0's buffers are broadcast, each rank scores
    its share of the images and the counts are summed.
    """
    model.eval()
    device = next(model.parameters()).device
    acc = TopK()
    if distributed.active():
        distributed.sync_buffers(model)
        d = distributed.info()
        lo, hi = distributed.shard(len(labels), d.rank, d.world_size)
        images, labels = images[lo:hi], labels[lo:hi]
    for x, y in iterate_batches(images, labels, preprocess, batch_size, shuffle=False):
        acc.update(model(x.to(device)).cpu(), y)
    if distributed.active():
        acc.n, acc.correct1, acc.correct5 = (
            int(v) for v in distributed.all_reduce_sum([acc.n, acc.correct1, acc.correct5])
        )
    return acc.as_dict()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@outdir.holding_locks
def train(  # noqa: C901  # issue 14: split this stage
    arch: str,
    recipe: Recipe,
    *,
    data: str | None = None,
    weights: str | None = None,
    reset_head: bool = False,
    out_dir: str | Path | None = None,
    force: bool = False,
    threads: int | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> TrainResult:
    """Train or fine-tune ``arch`` with ``recipe`` and return the run's report.

    ``data``: None (Fashion-MNIST) or an ImageFolder path. ``weights``: None (from
    scratch), ``"imagenet"`` or a checkpoint path. ``force`` retrains from scratch even
    when a finished or interrupted run with the same key exists. Under torchrun every
    process calls it (see :mod:`edgecnn.distributed`); ``threads`` is per process.
    """
    t_start = time.perf_counter()
    dist = distributed.setup()
    if not dist.is_main:
        log, progress = (lambda s: None), False
    torch.set_num_threads(threads or distributed.default_threads())
    with distributed.main_first():  # rank 0 downloads and caches, then the others read the cache
        bundle = load_dataset(data)
    spec = SplitSpec(val=recipe.data.val, calib=recipe.data.calib, seed=recipe.data.seed)
    splits = make_splits(bundle, spec)
    train_split = splits["train"]
    if recipe.data.train_subset:
        train_split = subset(train_split, recipe.data.train_subset, seed=recipe.data.seed)
    num_classes = len(bundle.classes)
    preprocess = Preprocess.for_dataset(bundle, recipe.data.image_size, recipe.data.channels)
    if weights == "imagenet" and num_classes != 1000:
        reset_head = True  # torchvision-style fine-tuning: ImageNet body, new head for these classes
    model_options = {
        "num_classes": num_classes,
        "in_channels": recipe.data.channels,
        **recipe.model_options(),
    }

    key_payload = {
        "arch": arch,
        "recipe": _result_settings(recipe),
        "dataset": bundle.train.content_hash,
        "test": bundle.test.content_hash,
        "train_split": train_split.split_id,
        "weights": _weights_id(weights),
        "reset_head": reset_head,
        "torch": torch.__version__,
    }
    key = run_key(key_payload)
    out = Path(out_dir) if out_dir else paths.runs_dir() / "train" / f"{arch}-{recipe.profile}-{key}"
    state_path, ckpt_path, report_path = (out / f for f in FILES)
    if dist.is_main:  # a folder of yours is refused; a second identical run waits for the first
        outdir.hold(out, "train", f"the {arch} training run {out.name}", FILES)

    finished = None
    if not force and dist.is_main and ckpt_path.exists() and report_path.exists():
        finished = _finished(report_path, key)
    finished = distributed.broadcast_object(finished)  # rank 0's look decides for all
    if finished is not None:
        log(
            f"{arch}: reusing finished run {out} (test top-1 {finished['test']['top1']:.4f}); --force "
            "retrains"
        )
        return TrainResult(out, ckpt_path, finished, cached=True)

    cfg = recipe.train
    torch.manual_seed(cfg.seed)  # deterministic initialisation; a resumed run restores its RNG below
    with distributed.main_first():  # ImageNet weights are downloaded once
        model = create(arch, weights=weights, reset_head=reset_head, **model_options)
    device = distributed.device()
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format)
    use_bf16 = cfg.amp == "bf16" or (cfg.amp == "auto" and (device.type == "cuda" or has_fast_bf16()))
    params_decay = [p for p in model.parameters() if p.ndim > 1]
    params_no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [
        {"params": params_decay, "weight_decay": cfg.weight_decay},
        {"params": params_no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    else:
        opt = torch.optim.AdamW(groups, lr=cfg.lr)

    pool = bundle.train
    train_images, train_labels = pool.images[train_split.indices], pool.labels[train_split.indices]
    steps_per_epoch = len(train_labels) // cfg.batch_size
    if steps_per_epoch < 1:
        raise EdgecnnError(
            f"the training split has {len(train_labels)} images, fewer than one batch of {cfg.batch_size}; "
            "lower train.batch_size in the recipe or bring more data"
        )
    distributed.per_rank_batch(cfg.batch_size)  # each rank takes batch_size / world_size of every batch
    total_steps = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch)

    epoch, step_in_epoch, history, elapsed_before = 0, 0, [], 0.0
    state = None
    if dist.is_main and state_path.exists() and not force:
        state = _load_state(state_path, key)
    elif dist.is_main and force and state_path.exists():
        state_path.unlink()
    state = distributed.broadcast_object(state)  # every rank resumes from rank 0's state
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        epoch, step_in_epoch = state["epoch"], state["step_in_epoch"]
        history, elapsed_before = state["history"], state["elapsed"]
        log(f"{arch}: resuming {out} at epoch {epoch + 1}, step {step_in_epoch}/{steps_per_epoch}")

    if dist.is_main:
        outdir.claim(out, "train", FILES)
    net = distributed.wrap(model)  # DistributedDataParallel under torchrun, else the model itself

    def save_state(ep: int, st: int) -> None:
        if not dist.is_main:
            return
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            return  # never replace the last good state with diverged weights
        with atomic_path(state_path) as tmp:
            torch.save(
                {
                    "format": STATE_FORMAT,
                    "key": key,
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "rng": torch.get_rng_state(),
                    "epoch": ep,
                    "step_in_epoch": st,
                    "history": history,
                    "elapsed": elapsed_before + time.perf_counter() - t_start,
                },
                tmp,
            )

    val_idx = splits["val"].indices
    val_images, val_labels = pool.images[val_idx], pool.labels[val_idx]
    bar = _Progress(enabled=progress)
    last_save = time.perf_counter()
    with bar:
        while epoch < cfg.epochs:
            net.train()
            running = TopK()
            loss_sum, loss_n = 0.0, 0
            batches = iterate_batches(
                train_images,
                train_labels,
                preprocess,
                cfg.batch_size,
                shuffle=True,
                seed=cfg.seed,
                epoch=epoch,
                augment=_augment(recipe),
                drop_last=True,
                start=step_in_epoch,
                rank=dist.rank,
                world_size=dist.world_size,
            )
            task = bar.start(f"{arch} epoch {epoch + 1}/{cfg.epochs}", steps_per_epoch, step_in_epoch)
            for x, y in batches:
                gstep = epoch * steps_per_epoch + step_in_epoch
                lr = lr_at(gstep, total_steps, warmup, cfg.lr, cfg.schedule)
                for g in opt.param_groups:
                    g["lr"] = lr
                x, y = x.to(device, memory_format=memory_format, non_blocking=True), y.to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    logits = net(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
                seen = distributed.mean_over_ranks(loss)  # the loss itself for one process
                if not torch.isfinite(seen):  # all ranks stop together
                    where = state_path if state_path.exists() else "none (no epoch finished yet)"
                    raise EdgecnnError(
                        f"{arch}: training loss became {loss.item()} at epoch {epoch + 1} step "
                        f"{step_in_epoch}; stopped; last good state: {where}; lower train.lr in the recipe "
                        f"and run again"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                step_in_epoch += 1
                loss_sum += seen.item() * len(y)
                loss_n += len(y)
                running.update(logits.detach(), y)
                bar.advance(task, loss=loss_sum / loss_n, acc=running.top1, lr=lr)
                if time.perf_counter() - last_save > cfg.checkpoint_seconds:
                    save_state(epoch, step_in_epoch)
                    last_save = time.perf_counter()
            if dist.enabled:
                running.n, running.correct1, running.correct5 = (
                    int(v)
                    for v in distributed.all_reduce_sum([running.n, running.correct1, running.correct5])
                )
            val = evaluate_model(model, val_images, val_labels, preprocess, cfg.eval_batch_size)
            history.append(
                {
                    "epoch": epoch + 1,
                    "train_loss": loss_sum / max(1, loss_n),
                    "train_top1": running.top1,
                    "val_top1": val["top1"],
                }
            )
            log(
                f"{arch} epoch {epoch + 1}/{cfg.epochs}: loss {loss_sum / max(1, loss_n):.4f} "
                f"train top-1 {running.top1:.4f} val top-1 {val['top1']:.4f}"
            )
            epoch, step_in_epoch = epoch + 1, 0
            save_state(epoch, 0)
            last_save = time.perf_counter()

    test = evaluate_model(model, bundle.test.images, bundle.test.labels, preprocess, cfg.eval_batch_size)
    wall = elapsed_before + time.perf_counter() - t_start
    report = {
        "format": "edgecnn.train-report/1",
        "key": key,
        "arch": arch,
        "recipe": recipe.to_dict(),
        "model_options": dict(model.arch_options),
        "weights": weights,
        "reset_head": reset_head,
        "dataset": {
            "name": bundle.name,
            "train_hash": bundle.train.content_hash,
            "test_hash": bundle.test.content_hash,
            "train_split": train_split.split_id,
            "train_images": len(train_labels),
            "test_images": len(bundle.test.labels),
        },
        "preprocess": preprocess.to_dict(),
        "history": history,
        "test": test,
        "wall_seconds": round(wall, 1),
        "peak_memory_mb": round(peak_rss_mb(), 1),
        "threads": torch.get_num_threads(),
        "world_size": dist.world_size,
        "device": str(device),
        "amp": "bf16" if use_bf16 else "off",
        "environment": {
            "edgecnn": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
        },
    }
    if dist.is_main:
        save_checkpoint(
            ckpt_path,
            arch=arch,
            model_options=dict(model.arch_options),
            state_dict={k: v.cpu().contiguous() for k, v in model.state_dict().items()},
            preprocess=preprocess.to_dict(),
            classes=list(bundle.classes),
            metrics=test,
            dataset=bundle.name,
            recipe=recipe.to_dict(),
        )
        atomic_write_json(report_path, report)
        state_path.unlink(missing_ok=True)
        outdir.seal(out, "train")
    distributed.barrier()  # the other ranks return once model.pt exists
    log(f"{arch}: test top-1 {test['top1']:.4f} top-5 {test['top5']:.4f} in {wall:.0f} s -> {ckpt_path}")
    return TrainResult(out, ckpt_path, report, cached=False)


def _result_settings(recipe: Recipe) -> dict:
    """The recipe minus what cannot change the trained weights (where it came from, how often to save)."""
    d = {k: v for k, v in recipe.to_dict().items() if k in ("arch", "profile", "model", "data", "train")}
    d["train"] = {k: v for k, v in d["train"].items() if k not in ("checkpoint_seconds", "eval_batch_size")}
    return d


def _augment(recipe: Recipe) -> str | None:
    return None if recipe.data.augment == "none" else recipe.data.augment


def _finished(report_path: Path, key: str) -> dict | None:
    """The report of the finished run ``key``, or None (another run's, or unreadable: train again)."""
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) and report.get("key") == key and "test" in report else None


def _load_state(path: Path, key: str) -> dict | None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError):
        # a state file cut short by a crash: start over rather than fail
        return None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("key") != key:
        return None
    return state


class _Progress:
    """A rich progress bar on a terminal; nothing otherwise (the epoch lines are logged)."""

    def __init__(self, enabled: bool):
        self._p = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            console = Console(stderr=True)
            if console.is_terminal:
                self._p = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn(
                        "loss {task.fields[loss]:.3f} acc {task.fields[acc]:.3f} lr {task.fields[lr]:.4f}"
                    ),
                    TimeRemainingColumn(),
                    console=console,
                    transient=True,
                )

    def __enter__(self):
        if self._p:
            self._p.__enter__()
        return self

    def __exit__(self, *exc):
        if self._p:
            self._p.__exit__(*exc)

    def start(self, description: str, total: int, completed: int):
        if not self._p:
            return None
        return self._p.add_task(description, total=total, completed=completed, loss=0.0, acc=0.0, lr=0.0)

    def advance(self, task, **fields) -> None:
        if self._p is not None and task is not None:
            self._p.update(task, advance=1, **fields)
