"""The calibrate (PTQ) and qat stages: float checkpoint -> quantized graph, cached by input hash.

Each stage writes a directory under ``runs/<stage>/``::

    quantized.pt2      the converted PT2E graph (torch.export program, dynamic batch)
    predictions.npy    its top-1 predictions on the test split (the fake-quant reference
                       every exported artifact is compared with)
    fp32_correct.npy   per-image correctness of the float model on the test split
    <stage>.json       the report: fp32 and fake-quant top-1/top-5, drop, calibration set
    state.pt           (qat) the resumable training state, rewritten atomically

Calling a stage again with the same inputs returns the cached report at once.

Under ``torchrun --nproc-per-node N`` (see :mod:`edgecnn.distributed`) ``qat`` trains the
prepared graph with DistributedDataParallel (qat.batch_size is the global batch); rank 0
alone calibrates, evaluates and writes, and the other ranks read its results.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgecnn import distributed, outdir, paths
from edgecnn.data import Preprocess, SplitSpec, iterate_batches, load_dataset, make_splits, subset
from edgecnn.data.splits import calibration_set, take
from edgecnn.errors import EdgecnnError
from edgecnn.fileio import atomic_path, atomic_write_json, sha256_file
from edgecnn.metrics import TopK
from edgecnn.recipes import Recipe

STATE_FORMAT = "edgecnn.qat-state/1"
FILES = ("quantized.pt2", "predictions.npy", "fp32_correct.npy")  # what every stage writes, + <stage>.json


def _files(stage: str) -> tuple[str, ...]:
    return (*FILES, f"{stage}.json", *(("state.pt",) if stage == "qat" else ()))


@dataclass
class FloatSource:
    """The float model a quantization stage starts from, with its data and splits."""

    arch: str
    model: torch.nn.Module
    checkpoint: Path
    checkpoint_sha256: str
    preprocess: Preprocess
    bundle: Any
    splits: dict
    class_names: list[str]
    model_options: dict


def float_source(
    arch: str,
    recipe: Recipe,
    *,
    data: str | None = None,
    checkpoint: str | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> FloatSource:
    """Load ``checkpoint`` (an edgecnn checkpoint) or train ``arch`` with ``recipe`` (cached)."""
    from edgecnn.models import from_checkpoint

    if checkpoint is None:
        from edgecnn.train import train

        checkpoint = str(train(arch, recipe, data=data, log=log, progress=progress).checkpoint)
    model, ckpt = from_checkpoint(checkpoint)
    if ckpt["arch"] != arch:
        raise EdgecnnError(
            f"{checkpoint} is a {ckpt['arch']} checkpoint, not {arch}; pass a {arch} checkpoint"
        )
    if "preprocess" not in ckpt:
        raise EdgecnnError(
            f"{checkpoint} has no preprocessing recorded; fine-tune it with `edgecnn train` first"
        )
    bundle = load_dataset(data)
    if ckpt.get("classes") and list(ckpt["classes"]) != list(bundle.classes):
        raise EdgecnnError(
            f"{checkpoint} was trained on other classes than {bundle.name}; pass the --data it was trained on"
        )
    spec = SplitSpec(val=recipe.data.val, calib=recipe.data.calib, seed=recipe.data.seed)
    return FloatSource(
        arch,
        model.eval(),
        Path(checkpoint),
        sha256_file(checkpoint),
        Preprocess.from_dict(ckpt["preprocess"]),
        bundle,
        make_splits(bundle, spec),
        list(bundle.classes),
        dict(ckpt["model_options"]),
    )


@torch.no_grad()
def predict(
    module: Any, images: np.ndarray, labels: np.ndarray, preprocess: Preprocess, batch_size: int = 250
) -> tuple[np.ndarray, dict]:
    """(top-1 predictions, {top1, top5}) of a torch module (float or converted graph)."""
    acc, preds = TopK(), []
    for x, y in iterate_batches(images, labels, preprocess, batch_size, shuffle=False):
        logits = module(x)
        acc.update(logits, y)
        preds.append(logits.argmax(1).numpy())
    return np.concatenate(preds), acc.as_dict()


def _key(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _versions() -> dict:
    import torchao

    return {"torch": torch.__version__, "torchao": torchao.__version__}


def _calibration_images(src: FloatSource, num_images: int) -> tuple[torch.Tensor, Any]:
    split = calibration_set(src.splits["calib"], num_images)
    images, _ = take(src.bundle, split)
    return src.preprocess.apply_torch(images), split


def fp32_reference(src: FloatSource, log) -> dict:
    """FP32 predictions on the test split, computed once per float checkpoint and cached."""
    cache = (
        paths.runs_dir()
        / "fp32"
        / f"{src.arch}-{src.checkpoint_sha256[:12]}-{src.bundle.test.content_hash[:12]}"
    )
    report_path = cache / "fp32.json"
    if report_path.exists():
        return json.loads(report_path.read_text())
    log(f"{src.arch}: FP32 accuracy on the test split")
    images, labels = src.bundle.test.images, src.bundle.test.labels
    preds, acc = predict(src.model, images, labels, src.preprocess)
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache / "fp32_correct.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, preds == labels)
    report = {**acc, "correct": str(cache / "fp32_correct.npy")}
    atomic_write_json(report_path, report)
    return report


def _finish(stage: str, out: Path, src: FloatSource, quantized, fp32: dict, report: dict, log) -> dict:
    from edgecnn.quantize.pt2e import float_ops, save_graph

    images, labels = src.bundle.test.images, src.bundle.test.labels
    log(f"{src.arch}: fake-quant INT8 accuracy on the test split")
    preds, acc = predict(quantized, images, labels, src.preprocess)
    sample = src.preprocess.apply_torch(images[:2])
    save_graph(quantized, sample, out / "quantized.pt2")
    with atomic_path(out / "predictions.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, preds)
    fp32_correct = np.load(fp32["correct"])
    with atomic_path(out / "fp32_correct.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, fp32_correct)
    report = {
        "stage": stage,
        "arch": src.arch,
        **report,
        "source": {"checkpoint": str(src.checkpoint), "sha256": src.checkpoint_sha256},
        "fp32": {"top1": fp32["top1"], "top5": fp32["top5"]},
        "int8_fakequant": acc,
        "drop_points": round(100 * (fp32["top1"] - acc["top1"]), 3),
        "float_ops": float_ops(quantized),
        "test_images": len(labels),
        "tools": _versions(),
    }
    atomic_write_json(out / f"{stage}.json", report)
    return report


def _cached(out: Path, stage: str, key: str, log) -> dict | None:
    """The finished report of this stage run, if there is one (``--force`` skips this)."""
    path = out / f"{stage}.json"
    if path.exists() and (out / "quantized.pt2").exists():
        report = json.loads(path.read_text())
        if report.get("key") == key:
            log(
                f"{report['arch']}: reusing {stage} run {out} "
                f"(fake-quant top-1 {report['int8_fakequant']['top1']:.4f}); --force redoes it"
            )
            return {**report, "cached": True, "dir": str(out)}
    return None


@outdir.holding_locks
def calibrate(
    arch: str,
    recipe: Recipe,
    *,
    data: str | None = None,
    checkpoint: str | None = None,
    method: str | None = None,
    num_images: int | None = None,
    weight_bits: int = 8,
    force: bool = False,
    threads: int | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> dict:
    """PTQ: calibrate activation ranges with ``method`` on the calibration set; report the drop.

    ``weight_bits=7``: weights in [-63, 63], for x86 CPUs without VNNI (see pt2e.make_quantizer)."""
    from edgecnn.quantize.pt2e import SCHEME, ptq

    dist = distributed.setup()
    if threads or dist.enabled:
        torch.set_num_threads(threads or distributed.default_threads())
    cfg = recipe.calibrate
    method = method or cfg.method
    n = num_images or cfg.num_images
    src = float_source(arch, recipe, data=data, checkpoint=checkpoint, log=log, progress=progress)
    calib_split = calibration_set(src.splits["calib"], n)
    key = _key(
        {
            "stage": "calibrate",
            "arch": arch,
            "method": method,
            "calib": calib_split.split_id,
            "batch": cfg.batch_size,
            "source": src.checkpoint_sha256,
            "test": src.bundle.test.content_hash,
            "scheme": SCHEME,
            **({"weight_bits": weight_bits} if weight_bits != 8 else {}),
            **_versions(),
        }
    )
    out = paths.runs_dir() / "calibrate" / f"{arch}-{method}{'-w7' if weight_bits == 7 else ''}-{key}"
    if not dist.is_main:  # under torchrun rank 0 calibrates (below); the others read its result
        distributed.barrier()
        if hit := _cached(out, "calibrate", key, lambda s: None):
            return hit
        raise EdgecnnError(
            f"rank {dist.rank} finds no calibration result in {out}: the processes of a "
            f"torchrun job must share EDGECNN_HOME"
        )
    outdir.hold(out, "calibrate", f"the {arch} calibration {out.name}", _files("calibrate"))
    if not force and (hit := _cached(out, "calibrate", key, log)):
        distributed.barrier()
        return hit
    fp32 = fp32_reference(src, log)
    t0 = time.perf_counter()
    x, split = _calibration_images(src, n)
    log(f"{arch}: calibrating ({method}, {n} images of the calibration split)")
    quantized = ptq(src.model, x, method=method, batch_size=cfg.batch_size, weight_bits=weight_bits)
    seconds = time.perf_counter() - t0
    outdir.claim(out, "calibrate", _files("calibrate"))
    report = {
        "key": key,
        "method": method,
        "scheme": SCHEME,
        "weight_bits": weight_bits,
        "calibration": {
            "split": split.name,
            "split_id": split.split_id,
            "num_images": n,
            "batch_size": cfg.batch_size,
            "method": method,
        },
        "calibrate_seconds": round(seconds, 1),
    }
    report = _finish("calibrate", out, src, quantized, fp32, report, log)
    outdir.seal(out, "calibrate")
    distributed.barrier()
    return {**report, "cached": False, "dir": str(out)}


def _diverged(arch: str, what: str, step: int, state_path: Path) -> None:
    kept = f"kept the last good state {state_path}" if state_path.exists() else "no state was saved yet"
    raise EdgecnnError(
        f"{arch}: QAT {what} at step {step}; stopped and {kept}; lower qat.lr in the recipe and re-run"
    )


@outdir.holding_locks
def qat(  # noqa: C901  # issue 14: split this stage
    arch: str,
    recipe: Recipe,
    *,
    data: str | None = None,
    checkpoint: str | None = None,
    method: str | None = None,
    max_drop: float | None = None,
    weight_bits: int = 8,
    force: bool = False,
    threads: int | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> dict:
    """Quantization-aware fine-tuning from calibrated scales.

    With ``max_drop`` PTQ runs first and QAT only where the PTQ drop exceeds ``max_drop``
    top-1 points; otherwise the PTQ result is returned (``"qat_skipped"`` says why).
    Under torchrun every process calls it; qat.batch_size is the global batch.
    """
    dist = distributed.setup()
    if not dist.is_main:
        log, progress = (lambda s: None), False
    ptq_report = calibrate(
        arch,
        recipe,
        data=data,
        checkpoint=checkpoint,
        method=method,
        weight_bits=weight_bits,
        force=False,
        threads=threads,
        log=log,
        progress=progress,
    )
    if max_drop is not None and ptq_report["drop_points"] <= max_drop:
        log(f"{arch}: PTQ drop {ptq_report['drop_points']:.2f} <= --max-drop {max_drop}: no QAT needed")
        return {**ptq_report, "qat_skipped": f"PTQ drop {ptq_report['drop_points']} <= max_drop {max_drop}"}
    from edgecnn.quantize.pt2e import SCHEME, convert, fake_quant_modules, prepare_qat

    if threads or dist.enabled:
        torch.set_num_threads(threads or distributed.default_threads())
    cfg, method = recipe.qat, ptq_report["method"]
    src = float_source(arch, recipe, data=data, checkpoint=checkpoint, log=log, progress=False)
    train_split = src.splits["train"]
    if cfg.train_subset and cfg.train_subset < len(train_split):
        train_split = subset(train_split, cfg.train_subset, seed=recipe.data.seed)
    key = _key(
        {
            "stage": "qat",
            "arch": arch,
            "qat": recipe.to_dict()["qat"],
            "ptq": ptq_report["key"],
            "train": train_split.split_id,
            "augment": recipe.data.augment,
            **_versions(),
        }
    )
    out = paths.runs_dir() / "qat" / f"{arch}-{key}"
    if dist.is_main:
        outdir.hold(out, "qat", f"the {arch} QAT run {out.name}", _files("qat"))
    hit = _cached(out, "qat", key, log) if not force and dist.is_main else None
    if hit := distributed.broadcast_object(hit):  # rank 0's look decides for all
        return hit
    with distributed.main_first():
        fp32 = fp32_reference(src, log)
    t0 = time.perf_counter()
    x_calib, _ = _calibration_images(src, ptq_report["calibration"]["num_images"])
    images, labels = take(src.bundle, train_split)
    steps_per_epoch = len(labels) // cfg.batch_size
    if steps_per_epoch < 1:
        raise EdgecnnError(
            f"QAT needs at least one batch of {cfg.batch_size} training images, "
            f"got {len(labels)}; lower qat.batch_size"
        )
    distributed.per_rank_batch(cfg.batch_size, "qat.batch_size")
    total = max(1, math.ceil(cfg.epochs * steps_per_epoch))
    freeze_obs_at, freeze_bn_at = int(cfg.freeze_observers * total), int(cfg.freeze_bn * total)

    torch.manual_seed(recipe.train.seed)
    prepared = prepare_qat(src.model, x_calib[: cfg.batch_size], method=method, weight_bits=weight_bits)
    acts, _weights = fake_quant_modules(prepared)
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

    # Start from calibrated scales: observe the calibration set with fake-quant off, BN in eval.
    move_exported_model_to_eval(prepared)
    for m in acts:
        m.disable_fake_quant()
    with torch.no_grad():
        for xb in x_calib.split(recipe.calibrate.batch_size):
            prepared(xb)
    for m in acts:
        m.enable_fake_quant()
    move_exported_model_to_train(prepared)

    params = [p for p in prepared.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    state_path = out / "state.pt"
    step = 0
    state = None
    if state_path.exists() and not force and dist.is_main:
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, ValueError):
            state = None
    state = distributed.broadcast_object(state)  # every rank resumes from rank 0's state
    if state and state.get("format") == STATE_FORMAT and state.get("key") == key:
        prepared.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        step = state["step"]
        log(f"{arch}: resuming QAT {out} at step {step}/{total}")
    if dist.is_main:
        outdir.claim(out, "qat", _files("qat"))
    # DistributedDataParallel over the prepared GraphModule under torchrun (gradients averaged,
    # rank 0's buffers -- BatchNorm statistics, observer ranges -- broadcast each step), else itself.
    net = distributed.wrap(prepared)

    def save_state() -> None:
        if not dist.is_main:
            return
        with atomic_path(state_path) as tmp:
            torch.save(
                {
                    "format": STATE_FORMAT,
                    "key": key,
                    "model": prepared.state_dict(),
                    "optimizer": opt.state_dict(),
                    "rng": torch.get_rng_state(),
                    "step": step,
                },
                tmp,
            )

    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=recipe.train.label_smoothing)
    augment = None if recipe.data.augment == "none" else recipe.data.augment
    last_save, history = time.perf_counter(), []
    observers_frozen = bn_frozen = False
    log(f"{arch}: QAT for {total} steps ({cfg.epochs} epoch(s) of {len(labels)} images), lr {cfg.lr}")
    while step < total:
        epoch, start = divmod(step, steps_per_epoch)
        for xb, yb in iterate_batches(
            images,
            labels,
            src.preprocess,
            cfg.batch_size,
            shuffle=True,
            seed=recipe.train.seed,
            epoch=epoch,
            augment=augment,
            drop_last=True,
            start=start,
            rank=dist.rank,
            world_size=dist.world_size,
        ):
            if step >= freeze_obs_at and not observers_frozen:
                for m in acts:
                    m.disable_observer()
                observers_frozen = True
            if step >= freeze_bn_at and not bn_frozen:
                move_exported_model_to_eval(prepared)  # BN uses running stats (Dropout is Identity here)
                bn_frozen = True
            lr = 0.5 * cfg.lr * (1 + math.cos(math.pi * step / total))
            for g in opt.param_groups:
                g["lr"] = lr
            loss = loss_fn(net(xb), yb)
            if not torch.isfinite(distributed.mean_over_ranks(loss)):  # all ranks stop together
                _diverged(arch, f"loss became {loss.item()}", step, state_path)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if not all(torch.isfinite(p).all() for p in params):  # NaN weights break the observers first
                _diverged(arch, "weights became NaN/inf", step, state_path)
            step += 1
            if step % 20 == 0:
                history.append({"step": step, "loss": round(loss.item(), 4)})
                if progress:
                    log(f"{arch}: QAT step {step}/{total} loss {loss.item():.4f}")
            if time.perf_counter() - last_save > recipe.train.checkpoint_seconds or step == total:
                save_state()
                last_save = time.perf_counter()
            if step >= total:
                break
    report = {
        "key": key,
        "method": method,
        "scheme": SCHEME,
        "weight_bits": weight_bits,
        "calibration": ptq_report["calibration"],
        "ptq": {
            "top1": ptq_report["int8_fakequant"]["top1"],
            "drop_points": ptq_report["drop_points"],
            "dir": ptq_report["dir"],
        },
        "qat": {
            **recipe.to_dict()["qat"],
            "steps": total,
            "train_images": len(labels),
            "train_split": train_split.split_id,
            "history": history,
        },
        "qat_seconds": round(time.perf_counter() - t0, 1),
    }
    if dist.enabled:
        report["world_size"] = dist.world_size
    if dist.is_main:
        report = _finish("qat", out, src, convert(prepared), fp32, report, log)
        outdir.seal(out, "qat")
    report = distributed.broadcast_object(report)  # the others wait for rank 0's evaluation
    return {**report, "cached": False, "dir": str(out)}
