"""Float training and fine-tuning with a recipe: atomic checkpoints, resume, cached results.

One call of :func:`train` is one run, identified by a key hashed from everything that
decides its result (architecture, recipe, dataset content and split, starting weights,
torch version). Its directory holds:

- ``state.pt``   the resumable state, rewritten atomically at the end of every epoch
                 and every ``checkpoint_seconds`` mid-epoch;
- ``model.pt``   the final edgecnn checkpoint (weights, model options, preprocessing,
                 class names, metrics);
- ``train.json`` the report: accuracy on the test split, wall time, peak memory (the process's
                 high-water mark: in a frontier it also covers what ran before the training in
                 that process, the ETA's few timed steps and evaluation batches of every network included).

Its predictions on the test split are kept as the float model's reference
(:func:`fp32_reference_dir`), which the INT8 stages compare with instead of predicting again.

Calling it again with the same inputs returns the cached report at once; a run that was
interrupted resumes from ``state.pt`` where it stopped.

Under ``torchrun --nproc-per-node N`` the run is data-parallel (see :mod:`edgecnn.distributed`):
the recipe's batch_size is the global batch, each process takes batch_size / N images of it,
and rank 0 alone writes the files above; the run key is the same as a single process's.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgecnn import distributed, outdir, paths
from edgecnn.checkpoint import save_checkpoint
from edgecnn.data import Preprocess, SplitSpec, iterate_batches, load_dataset, make_splits, subset
from edgecnn.errors import EdgecnnError
from edgecnn.fileio import atomic_path, atomic_write_json, sha256_file
from edgecnn.host import cpu_model, has_amx, has_fast_bf16
from edgecnn.metrics import TopK
from edgecnn.models import create
from edgecnn.recipes import Recipe
from edgecnn.results import FloatModel
from edgecnn.stage import stage_key
from edgecnn.trainloop import Batches, EpochStats, Hooks, Loop, Run, Schedule, StepOptions
from edgecnn.version import __version__

STATE_FORMAT = "edgecnn.train-state/1"
FILES = ("state.pt", "model.pt", "train.json")  # what a run writes into its folder
ESTIMATE_EVAL_IMAGES = 128  # an estimate's timed evaluation batch (VGG16 in FP32 at 32 px: ~0.4 s)


def weights_id(weights: str | None) -> str | None:
    """What names ``--weights`` in a cache key: None, ``imagenet``, or ``sha256:`` of the file."""
    if weights is None or weights == "imagenet":
        return weights
    p = Path(weights)
    if not p.is_file():
        raise EdgecnnError(f"weights file not found: {weights}; pass an existing checkpoint or 'imagenet'")
    return "sha256:" + sha256_file(p)


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module,
    images,
    labels,
    preprocess: Preprocess,
    batch_size: int = 500,
    autocast: torch.dtype | None = None,
) -> dict:
    """Top-1 / top-5 of a float PyTorch model on uint8 images; ``autocast`` (a dtype) runs its
    forward pass under autocast, as a training step does (None: in the model's own dtype).

    Under torchrun every rank must call it: rank 0's buffers are broadcast, each rank scores
    its share of the images and the counts are summed.
    """
    model.eval()
    if distributed.active():
        distributed.sync_buffers(model)
        d = distributed.info()
        lo, hi = distributed.shard(len(labels), d.rank, d.world_size)
        images, labels = images[lo:hi], labels[lo:hi]
    _, acc = _score(model, images, labels, preprocess, batch_size, autocast)
    if distributed.active():
        acc.n, acc.correct1, acc.correct5 = (
            int(v) for v in distributed.all_reduce_sum([acc.n, acc.correct1, acc.correct5])
        )
    return acc.as_dict()


@torch.no_grad()
def predict_model(
    module: Any, images, labels, preprocess: Preprocess, batch_size: int = 250
) -> tuple[np.ndarray, dict]:
    """(top-1 prediction per image, {top1, top5, n}) of a torch module (a float model or a
    converted graph) on uint8 images; the batches go to the module's device, if it has parameters."""
    preds, acc = _score(module, images, labels, preprocess, batch_size)
    return preds, acc.as_dict()


def _score(
    module: Any, images, labels, preprocess: Preprocess, batch_size: int, autocast: torch.dtype | None = None
) -> tuple[np.ndarray, TopK]:
    """The one evaluation loop: top-1 per image and the running top-1/top-5 counts of ``module``
    (its forward pass under ``autocast``, a dtype, where one is given)."""
    params = next(iter(module.parameters()), None) if hasattr(module, "parameters") else None
    device = params.device if params is not None else torch.device("cpu")
    acc, preds = TopK(), [np.empty(0, dtype=np.int64)]
    for x, y in iterate_batches(images, labels, preprocess, batch_size, shuffle=False):
        with torch.autocast(device.type, dtype=autocast) if autocast else contextlib.nullcontext():
            logits = module(x.to(device)).float().cpu()
        acc.update(logits, y)
        preds.append(logits.argmax(1).numpy())
    return np.concatenate(preds), acc


def fp32_reference_dir(arch: str, checkpoint_sha256: str, test_hash: str) -> Path:
    """Where a float checkpoint's accuracy on a test split is kept: ``fp32.json`` ({top1, top5, n,
    correct}) and ``fp32_correct.npy`` (per image), one folder per checkpoint and test set."""
    return paths.runs_dir() / "fp32" / f"{arch}-{checkpoint_sha256[:12]}-{test_hash[:12]}"


def save_fp32_reference(folder: Path, correct: np.ndarray, acc: dict) -> dict:
    """Write ``folder``'s fp32_correct.npy, then fp32.json (each atomically); return fp32.json's dict."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "fp32_correct.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, correct)
    report = {**acc, "correct": str(folder / "fp32_correct.npy")}
    atomic_write_json(folder / "fp32.json", report)
    return report


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass(frozen=True)
class _Job:
    """What one training run reads: the data, its splits and preprocessing, the model's options."""

    bundle: Any
    splits: dict
    train_split: Any
    preprocess: Preprocess
    model_options: dict
    reset_head: bool


@outdir.holding_locks
def train(
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
) -> FloatModel:
    """Train or fine-tune ``arch`` with ``recipe`` and return the run's report.

    ``data``: None (Fashion-MNIST) or an ImageFolder path. ``weights``: None (from
    scratch), ``"imagenet"`` or a checkpoint path. ``force`` retrains from scratch even
    when a finished or interrupted run with the same key exists. Under torchrun every
    process calls it (see :mod:`edgecnn.distributed`); ``threads`` is per process, torch's count while
    it runs (the caller's count is restored after, so a stage that trains first keeps its own).
    """
    t_start = time.perf_counter()
    dist = distributed.setup()
    if not dist.is_main:
        log, progress = (lambda s: None), False
    with distributed.torch_threads(threads or distributed.default_threads()):  # restored after
        job = _job(data, recipe, weights, reset_head)
        key = stage_key(_key_payload(arch, recipe, job, weights))
        out = Path(out_dir) if out_dir else _run_dir(arch, recipe, key)
        ckpt_path = out / "model.pt"
        if dist.is_main:  # a folder of yours is refused; a second identical run waits for the first
            outdir.hold(out, "train", f"the {arch} training run {out.name}", FILES)
        if (finished := _reuse(out, key, force)) is not None:
            log(
                f"{arch}: reusing finished run {out} (test top-1 {finished['test']['top1']:.4f}); "
                "--force retrains"
            )
            return FloatModel(arch, ckpt_path, out, key, finished["test"], True, finished)

        run = Run(
            arch, "training", "train", key, out / "state.pt", STATE_FORMAT, recipe.train.checkpoint_seconds
        )
        model, options = _model(arch, recipe.train, job, weights)
        loop = _loop(arch, recipe, job, model, options, run, log, t_start)
        loop.resume(force, log)
        if dist.is_main:
            outdir.claim(out, "train", FILES)
        loop.run(progress)
        test, correct = _test(model, job, recipe.train.eval_batch_size)
        report = _report(arch, recipe, job, weights, key, loop, test)
        if dist.is_main:
            _write(out, arch, recipe, job, model, report)
            if correct is not None:  # the INT8 stages' float reference, not computed again
                reference = fp32_reference_dir(arch, sha256_file(ckpt_path), job.bundle.test.content_hash)
                save_fp32_reference(reference, correct, test)
        distributed.barrier()  # the other ranks return once model.pt exists
        log(
            f"{arch}: test top-1 {test['top1']:.4f} top-5 {test['top5']:.4f} "
            f"in {report['wall_seconds']:.0f} s -> {ckpt_path}"
        )
        return FloatModel(arch, ckpt_path, out, key, test, False, report)


@dataclass(frozen=True)
class TrainingEstimate:
    """How long :func:`train` would take here: ``steps`` optimisation steps of ``step_seconds``
    each (a batch's preparation included), the validation passes of every epoch in the step's
    precision (``val_seconds``) and the FP32 pass over the test split (``test_seconds``, also a
    measure of what evaluating the network costs), each timed on one batch after an untimed one;
    the first step's set-up not counted. All 0 when its finished run is cached."""

    steps: int
    step_seconds: float
    val_seconds: float = 0.0
    test_seconds: float = 0.0

    @property
    def seconds(self) -> float:
        return self.steps * self.step_seconds + self.val_seconds + self.test_seconds


def estimate(
    arch: str,
    recipe: Recipe,
    *,
    data: str | None = None,
    weights: str | None = None,
    reset_head: bool = False,
    threads: int | None = None,
    timed_steps: int = 3,
) -> TrainingEstimate:
    """:func:`train`'s cost on this machine, before it runs: the run's key looked up in the cache,
    else a throwaway copy of the run (same model, step options and batches) timed for a few steps
    and one evaluation batch in each precision, for the whole schedule (an interrupted run that
    will resume takes less). Writes nothing under ``$EDGECNN_HOME`` and leaves torch's random state
    as it found it. One to two seconds a network for the quick recipes (the frontier's first-run ETA)."""
    with distributed.torch_threads(threads or distributed.default_threads()), torch.random.fork_rng():
        job = _job(data, recipe, weights, reset_head)
        key = stage_key(_key_payload(arch, recipe, job, weights))
        out = _run_dir(arch, recipe, key)
        if _finished(out, key):
            return TrainingEstimate(0, 0.0)
        model, options = _model(arch, recipe.train, job, weights)
        run = Run(arch, "training", "train", key, out / "state.pt", STATE_FORMAT, float("inf"))
        loop = _loop(arch, recipe, job, model, options, run, lambda s: None, time.perf_counter())
        step_seconds = loop.time_steps(timed_steps)
        batch = min(recipe.train.eval_batch_size, ESTIMATE_EVAL_IMAGES)
        val = _seconds_per_image(model, job, batch, options.autocast) * len(job.splits["val"].indices)
        test = _seconds_per_image(model, job, batch, None) * len(job.bundle.test.labels)
        return TrainingEstimate(loop.schedule.total, step_seconds, val * loop.schedule.epochs, test)


def _seconds_per_image(model: torch.nn.Module, job: _Job, batch: int, autocast: torch.dtype | None) -> float:
    """The evaluation loop's seconds per image for ``model`` (under ``autocast``): one batch of
    ``batch`` test images timed after an untimed one of the same shape (its kernels' set-up)."""
    images, labels = job.bundle.test.images, job.bundle.test.labels
    batch = max(1, min(batch, len(labels) // 2))
    evaluate_model(model, images[:batch], labels[:batch], job.preprocess, batch, autocast)
    t = time.perf_counter()
    evaluate_model(
        model, images[batch : 2 * batch], labels[batch : 2 * batch], job.preprocess, batch, autocast
    )
    return (time.perf_counter() - t) / max(1, len(labels[batch : 2 * batch]))


def _test(model: torch.nn.Module, job: _Job, batch_size: int) -> tuple[dict, np.ndarray | None]:
    """The trained model's top-1/top-5 on the test split, and whether it got each image right
    (None under torchrun, where each rank scores a share)."""
    bundle = job.bundle
    if distributed.active():
        return evaluate_model(model, bundle.test.images, bundle.test.labels, job.preprocess, batch_size), None
    model.eval()
    preds, test = predict_model(model, bundle.test.images, bundle.test.labels, job.preprocess, batch_size)
    return test, preds == bundle.test.labels


def _job(data: str | None, recipe: Recipe, weights: str | None, reset_head: bool) -> _Job:
    with distributed.main_first():  # rank 0 downloads and caches, then the others read the cache
        bundle = load_dataset(data)
    spec = SplitSpec(val=recipe.data.val, calib=recipe.data.calib, seed=recipe.data.seed)
    splits = make_splits(bundle, spec)
    train_split = splits["train"]
    if recipe.data.train_subset:
        train_split = subset(train_split, recipe.data.train_subset, seed=recipe.data.seed)
    num_classes = len(bundle.classes)
    if weights == "imagenet" and num_classes != 1000:
        reset_head = True  # torchvision-style fine-tuning: ImageNet body, new head for these classes
    return _Job(
        bundle,
        splits,
        train_split,
        Preprocess.for_dataset(bundle, recipe.data.image_size, recipe.data.channels),
        {"num_classes": num_classes, "in_channels": recipe.data.channels, **recipe.model_options()},
        reset_head,
    )


def _key_payload(arch: str, recipe: Recipe, job: _Job, weights: str | None) -> dict:
    """Everything that decides the trained weights."""
    return {
        "arch": arch,
        "recipe": _result_settings(recipe),
        "dataset": job.bundle.train.content_hash,
        "test": job.bundle.test.content_hash,
        "train_split": job.train_split.split_id,
        "weights": weights_id(weights),
        "reset_head": job.reset_head,
        "torch": torch.__version__,
        "kernels": kernels(recipe.train, distributed.device().type),
    }


def _reuse(out: Path, key: str, force: bool) -> dict | None:
    """The report of the finished run ``key`` in ``out`` (rank 0's look decides for all), or None."""
    finished = _finished(out, key) if not force and distributed.is_main() else None
    return distributed.broadcast_object(finished)


def uses_bf16(amp: str, device_type: str = "cpu") -> bool:
    """Whether a recipe's ``amp`` trains in bf16 autocast on this device: ``auto`` means on a GPU
    or on a CPU with fast bf16 (AVX-512 BF16 or AMX)."""
    return amp == "bf16" or (amp == "auto" and (device_type == "cuda" or has_fast_bf16()))


def kernels(cfg, device_type: str) -> dict:
    """What the recipe's kernel settings resolve to on this device (they change the trained weights,
    so they are in the run's key): ``amp`` "bf16" or "off", and ``gemm_conv_pixels``, the recipe's
    where a bf16 step runs on a CPU with AMX (the one kind of step where it was measured to pay over a
    network's layers; in FP32 it loses at 4x4 maps), else 0."""
    bf16 = uses_bf16(cfg.amp, device_type)
    gemm = cfg.gemm_conv_pixels if bf16 and device_type == "cpu" and has_amx() else 0
    return {"amp": "bf16" if bf16 else "off", "gemm_conv_pixels": gemm}


def _model(arch: str, cfg, job: _Job, weights: str | None) -> tuple[torch.nn.Module, StepOptions]:
    """The model (seeded initialisation) on this rank's device, and how a step runs on it."""
    torch.manual_seed(cfg.seed)  # deterministic initialisation; a resumed run restores its RNG
    with distributed.main_first():  # ImageNet weights are downloaded once
        model = create(arch, weights=weights, reset_head=job.reset_head, **job.model_options)
    device = distributed.device()
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format)
    resolved = kernels(cfg, device.type)
    options = StepOptions(
        device=device,
        memory_format=memory_format,
        autocast=torch.bfloat16 if resolved["amp"] == "bf16" else None,
        grad_clip=cfg.grad_clip,
        label_smoothing=cfg.label_smoothing,
        gemm_conv_pixels=resolved["gemm_conv_pixels"],
    )
    return model, options


def _loop(
    arch: str, recipe: Recipe, job: _Job, model, options: StepOptions, run: Run, log, t_start: float
) -> Loop:
    """Float training: the optimizer, the schedule, and validation at the end of each epoch (in the
    step's precision: bf16 autocast where the step has it)."""
    cfg, pool = recipe.train, job.bundle.train
    images, labels = pool.images[job.train_split.indices], pool.labels[job.train_split.indices]
    schedule = Schedule.plan(
        len(labels),
        cfg.batch_size,
        cfg.epochs,
        cfg.lr,
        section="train",
        warmup_epochs=cfg.warmup_epochs,
        shape=cfg.schedule,
    )
    val_idx = job.splits["val"].indices
    val_images, val_labels = pool.images[val_idx], pool.labels[val_idx]

    def end_epoch(epoch: int, stats: EpochStats) -> dict:
        # validation in the step's precision (bf16 autocast: 2.9-3.3x less time for VGG16 and
        # AlexNet on an AMX Xeon); the test split, the run's reported top-1, stays in FP32
        val = evaluate_model(
            model, val_images, val_labels, job.preprocess, cfg.eval_batch_size, options.autocast
        )
        in_bf16 = " (bf16)" if options.autocast == torch.bfloat16 else ""
        log(
            f"{arch} epoch {epoch + 1}/{cfg.epochs}: loss {stats.loss:.4f} "
            f"train top-1 {stats.acc.top1:.4f} val top-1 {val['top1']:.4f}{in_bf16}"
        )
        return {
            "epoch": epoch + 1,
            "train_loss": stats.loss,
            "train_top1": stats.acc.top1,
            "val_top1": val["top1"],
        }

    batches = Batches(images, labels, job.preprocess, cfg.batch_size, cfg.seed, _augment(recipe))
    hooks = Hooks(start_epoch=model.train, end_epoch=end_epoch)
    return Loop(
        run, model, _optimizer(model, cfg), schedule, batches, options=options, hooks=hooks, started=t_start
    )


def _optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    """SGD or AdamW, with no weight decay on biases and normalisation parameters."""
    groups = [
        {"params": [p for p in model.parameters() if p.ndim > 1], "weight_decay": cfg.weight_decay},
        {"params": [p for p in model.parameters() if p.ndim <= 1], "weight_decay": 0.0},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def _report(
    arch: str, recipe: Recipe, job: _Job, weights: str | None, key: str, loop: Loop, test: dict
) -> dict:
    bundle, model = job.bundle, loop.model
    return {
        "format": "edgecnn.train-report/1",
        "key": key,
        "arch": arch,
        "recipe": recipe.to_dict(),
        "model_options": dict(model.arch_options),
        "weights": weights,
        "reset_head": job.reset_head,
        "dataset": {
            "name": bundle.name,
            "train_hash": bundle.train.content_hash,
            "test_hash": bundle.test.content_hash,
            "train_split": job.train_split.split_id,
            "train_images": len(job.train_split.indices),
            "test_images": len(bundle.test.labels),
        },
        "preprocess": job.preprocess.to_dict(),
        "history": loop.history,
        "test": test,
        "wall_seconds": round(loop.elapsed(), 1),
        "peak_memory_mb": round(peak_rss_mb(), 1),
        "threads": torch.get_num_threads(),
        "world_size": distributed.info().world_size,
        "device": str(loop.options.device),
        "amp": "bf16" if loop.options.autocast == torch.bfloat16 else "off",
        "gemm_conv_pixels": loop.options.gemm_conv_pixels,
        "environment": {
            "edgecnn": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
        },
    }


def _write(out: Path, arch: str, recipe: Recipe, job: _Job, model: torch.nn.Module, report: dict) -> None:
    """model.pt and train.json (rank 0), then the state goes and the folder is sealed."""
    save_checkpoint(
        out / "model.pt",
        arch=arch,
        model_options=dict(model.arch_options),
        state_dict={k: v.cpu().contiguous() for k, v in model.state_dict().items()},
        preprocess=job.preprocess.to_dict(),
        classes=list(job.bundle.classes),
        metrics=report["test"],
        dataset=job.bundle.name,
        recipe=recipe.to_dict(),
    )
    atomic_write_json(out / "train.json", report)
    (out / "state.pt").unlink(missing_ok=True)
    outdir.seal(out, "train")


def _result_settings(recipe: Recipe) -> dict:
    """The recipe minus what cannot change the trained weights (where it came from, how often to save)."""
    d = {k: v for k, v in recipe.to_dict().items() if k in ("arch", "profile", "model", "data", "train")}
    # gemm_conv_pixels: what it resolves to on this device is in the key (kernels), not the recipe's value
    skip = ("checkpoint_seconds", "eval_batch_size", "gemm_conv_pixels")
    d["train"] = {k: v for k, v in d["train"].items() if k not in skip}
    return d


def _augment(recipe: Recipe) -> str | None:
    return None if recipe.data.augment == "none" else recipe.data.augment


def _run_dir(arch: str, recipe: Recipe, key: str) -> Path:
    """Where the training run ``key`` of ``arch`` keeps its files under ``$EDGECNN_HOME``."""
    return paths.runs_dir() / "train" / f"{arch}-{recipe.profile}-{key}"


def _finished(out: Path, key: str) -> dict | None:
    """The report of the finished run ``key`` in ``out`` (its model.pt and train.json), or None
    (none, another run's, or unreadable: train again)."""
    if not (out / "model.pt").exists():
        return None
    try:
        report = json.loads((out / "train.json").read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) and report.get("key") == key and "test" in report else None
