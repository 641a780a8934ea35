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

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgecnn import distributed, outdir, paths
from edgecnn.data import Preprocess, SplitSpec, load_dataset, make_splits, subset
from edgecnn.data.splits import calibration_set, take
from edgecnn.errors import EdgecnnError
from edgecnn.fileio import atomic_path, atomic_write_json, sha256_file
from edgecnn.quantize import pt2e
from edgecnn.recipes import Recipe
from edgecnn.results import QuantizedGraph
from edgecnn.stage import folder, stage, stage_key
from edgecnn.train import fp32_reference_dir, predict_model, save_fp32_reference
from edgecnn.trainloop import Batches, Hooks, Loop, Run, Schedule, StepOptions

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


def _versions() -> dict:
    import torchao

    return {"torch": torch.__version__, "torchao": torchao.__version__}


def calibration_images(src: FloatSource, num_images: int) -> tuple[torch.Tensor, Any]:
    """The preprocessed calibration images (from the calib split) and the split they came from."""
    split = calibration_set(src.splits["calib"], num_images)
    images, _ = take(src.bundle, split)
    return src.preprocess.apply_torch(images), split


def fp32_reference(src: FloatSource, log) -> dict:
    """The float model's predictions on the test split: kept by its training run, else computed
    here once per float checkpoint (:func:`edgecnn.train.fp32_reference_dir`)."""
    folder = fp32_reference_dir(src.arch, src.checkpoint_sha256, src.bundle.test.content_hash)
    if (folder / "fp32.json").exists():
        return json.loads((folder / "fp32.json").read_text())
    log(f"{src.arch}: FP32 accuracy on the test split")
    images, labels = src.bundle.test.images, src.bundle.test.labels
    preds, acc = predict_model(src.model, images, labels, src.preprocess)
    return save_fp32_reference(folder, preds == labels, acc)


def _finish(stage: str, out: Path, src: FloatSource, quantized, fp32: dict, report: dict, log) -> dict:
    from edgecnn.quantize.pt2e import float_ops, save_graph

    images, labels = src.bundle.test.images, src.bundle.test.labels
    log(f"{src.arch}: fake-quant INT8 accuracy on the test split")
    preds, acc = predict_model(quantized, images, labels, src.preprocess)
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


def _cached(out: Path, stage: str, key: str, log, checkpoint: Path | None = None) -> QuantizedGraph | None:
    """The finished result of this stage run, if there is one (``--force`` skips this)."""
    path = out / f"{stage}.json"
    if path.exists() and (out / "quantized.pt2").exists():
        report = json.loads(path.read_text())
        if report.get("key") == key:
            log(
                f"{report['arch']}: reusing {stage} run {out} "
                f"(fake-quant top-1 {report['int8_fakequant']['top1']:.4f}); --force redoes it"
            )
            return QuantizedGraph.from_report(report, out, cached=True, checkpoint=checkpoint)
    return None


def calibrate(
    arch: str,
    recipe: Recipe,
    *,
    data: str | None = None,
    checkpoint: str | None = None,
    method: str | None = None,
    num_images: int | None = None,
    weight_bits: int = 8,
    float_layers: Sequence[str] = (),
    force: bool = False,
    threads: int | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> QuantizedGraph:
    """PTQ: calibrate activation ranges with ``method`` on the calibration set; report the drop.

    ``weight_bits=7``: weights in [-63, 63], for x86 CPUs without VNNI (see pt2e.make_quantizer).
    ``float_layers``: convolution / linear modules the quantizer leaves in float (mixed precision,
    :mod:`edgecnn.mixed`); they are part of the cache key and of the report.
    ``threads``: torch's CPU threads while it runs; the caller's count is restored after."""
    dist = distributed.setup()
    cfg = recipe.calibrate
    with distributed.torch_threads(threads or (distributed.default_threads() if dist.enabled else None)):
        return _calibrate(
            arch, recipe, data, checkpoint, method or cfg.method, num_images or cfg.num_images,
            weight_bits, sorted(set(float_layers)), force, dist, log, progress,
        )  # fmt: skip


def _calibrate(
    arch, recipe, data, checkpoint, method, n, weight_bits, float_layers, force, dist, log, progress
) -> QuantizedGraph:
    """:func:`calibrate` with its thread count set (``method``, ``n`` and ``float_layers`` resolved)."""
    cfg = recipe.calibrate
    src = float_source(arch, recipe, data=data, checkpoint=checkpoint, log=log, progress=progress)
    inputs = {
        "stage": "calibrate",
        "arch": arch,
        "method": method,
        "calib": calibration_set(src.splits["calib"], n).split_id,
        "batch": cfg.batch_size,
        "source": src.checkpoint_sha256,
        "test": src.bundle.test.content_hash,
        "scheme": pt2e.SCHEME,
        **({"weight_bits": weight_bits} if weight_bits != 8 else {}),
        **({"float_layers": float_layers} if float_layers else {}),
        **_versions(),
    }
    tags = ("-w7" if weight_bits == 7 else "") + (f"-f{len(float_layers)}" if float_layers else "")
    key, name = stage_key(inputs), f"{arch}-{method}{tags}"
    if not dist.is_main:  # under torchrun rank 0 calibrates (below); the others read its result
        return _rank0_result(folder("calibrate", name, key), key, src, dist.rank)

    def make(tmp: Path) -> None:
        _write_ptq(src, cfg.batch_size, method, n, (weight_bits, float_layers), key, tmp, log)

    made = stage(
        "calibrate",
        inputs,
        make,
        name=name,
        done=lambda d: _cached(d, "calibrate", key, lambda s: None) is not None,
        force=force,
        what=f"the {arch} calibration {name}-{key}",
    )
    distributed.barrier()
    hit = _cached(made.path, "calibrate", key, log if made.cached else (lambda s: None), src.checkpoint)
    return dataclasses.replace(hit, cached=made.cached)


def _rank0_result(out: Path, key: str, src: FloatSource, rank: int) -> QuantizedGraph:
    """What rank 0 of a torchrun job calibrated into ``out`` (read by the other ranks)."""
    distributed.barrier()
    if hit := _cached(out, "calibrate", key, lambda s: None, src.checkpoint):
        return hit
    raise EdgecnnError(
        f"rank {rank} finds no calibration result in {out}: the processes of a "
        f"torchrun job must share EDGECNN_HOME"
    )


def _write_ptq(
    src: FloatSource, batch_size: int, method: str, n: int, scheme: tuple, key: str, out: Path, log
) -> None:
    """Calibrate ``src``'s model and write the stage's files into ``out`` (``scheme``: weight bits,
    float layers)."""
    weight_bits, float_layers = scheme
    fp32 = fp32_reference(src, log)
    t0 = time.perf_counter()
    x, split = calibration_images(src, n)
    kept = f", {len(float_layers)} layer(s) left in float" if float_layers else ""
    log(f"{src.arch}: calibrating ({method}, {n} images of the calibration split{kept})")
    quantized = pt2e.ptq(
        src.model,
        x,
        method=method,
        batch_size=batch_size,
        weight_bits=weight_bits,
        float_layers=float_layers,
    )
    report = {
        "key": key,
        "method": method,
        "scheme": pt2e.SCHEME,
        "weight_bits": weight_bits,
        "float_layers": float_layers,
        "calibration": {
            "split": split.name,
            "split_id": split.split_id,
            "num_images": n,
            "batch_size": batch_size,
            "method": method,
        },
        "calibrate_seconds": round(time.perf_counter() - t0, 1),
    }
    _finish("calibrate", out, src, quantized, fp32, report, log)


@outdir.holding_locks
def qat(
    arch: str,
    recipe: Recipe,
    *,
    data: str | None = None,
    checkpoint: str | None = None,
    method: str | None = None,
    weight_bits: int = 8,
    force: bool = False,
    threads: int | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> QuantizedGraph:
    """Quantization-aware fine-tuning from calibrated scales (all layers INT8).

    ``--max-drop`` (PTQ, then PTQ with layers left in float, then this) is
    :func:`edgecnn.mixed.within_budget`.
    Under torchrun every process calls it; qat.batch_size is the global batch. ``threads``: torch's
    CPU threads while it runs; the caller's count is restored after.
    """
    dist = distributed.setup()
    if not dist.is_main:
        log, progress = (lambda s: None), False
    with distributed.torch_threads(threads or (distributed.default_threads() if dist.enabled else None)):
        ptq = calibrate(
            arch,
            recipe,
            data=data,
            checkpoint=checkpoint,
            method=method,
            weight_bits=weight_bits,
            threads=threads,
            log=log,
            progress=progress,
        )
        ptq_report = ptq.as_dict()
        src = float_source(arch, recipe, data=data, checkpoint=checkpoint, log=log, progress=False)
        train_split = _qat_split(src, recipe)
        key = _qat_key(arch, recipe, ptq_report, train_split)
        out = paths.runs_dir() / "qat" / f"{arch}-{key}"
        if dist.is_main:
            outdir.hold(out, "qat", f"the {arch} QAT run {out.name}", _files("qat"))
        hit = _cached(out, "qat", key, log, src.checkpoint) if not force and dist.is_main else None
        if hit := distributed.broadcast_object(hit):  # rank 0's look decides for all
            return hit
        with distributed.main_first():
            fp32 = fp32_reference(src, log)
        run = Run(arch, "QAT", "qat", key, out / "state.pt", STATE_FORMAT, recipe.train.checkpoint_seconds)
        loop = _qat_loop(src, recipe, ptq_report, train_split, run, weight_bits, log, progress)
        _fine_tune(loop, recipe, force, log)
        report = _qat_report(recipe, ptq_report, train_split, loop, weight_bits)
        if dist.is_main:
            report = _finish("qat", out, src, pt2e.convert(loop.model), fp32, report, log)
            outdir.seal(out, "qat")
        report = distributed.broadcast_object(report)  # the others wait for rank 0's evaluation
        return QuantizedGraph.from_report(report, out, cached=False, checkpoint=src.checkpoint)


def _qat_split(src: FloatSource, recipe: Recipe):
    """The train split, or its seeded subset of qat.train_subset images."""
    split = src.splits["train"]
    if recipe.qat.train_subset and recipe.qat.train_subset < len(split):
        split = subset(split, recipe.qat.train_subset, seed=recipe.data.seed)
    return split


def _fine_tune(loop: Loop, recipe: Recipe, force: bool, log) -> None:
    """Resume ``loop`` if a state of its run is there (``force``: start over), then run it to the end."""
    loop.resume(force, log)
    out, cfg = loop.run_info.state_path.parent, recipe.qat
    if distributed.is_main():
        outdir.claim(out, "qat", _files("qat"))
    log(
        f"{loop.run_info.name}: QAT for {loop.schedule.total} steps ({cfg.epochs} epoch(s) of "
        f"{len(loop.batches.labels)} images), lr {cfg.lr}"
    )
    loop.run()


def _qat_key(arch: str, recipe: Recipe, ptq_report: dict, train_split) -> str:
    return stage_key(
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


def _qat_loop(
    src: FloatSource, recipe: Recipe, ptq_report: dict, train_split, run: Run, weight_bits: int, log, progress
) -> Loop:
    """The fake-quant model prepared from calibrated scales, its optimizer, and the QAT hooks:
    observers and then BatchNorm frozen at their fractions of the steps, the loss every 20 steps."""
    cfg, started = recipe.qat, time.perf_counter()
    x_calib, _ = calibration_images(src, ptq_report["calibration"]["num_images"])
    images, labels = take(src.bundle, train_split)
    schedule = Schedule.plan(len(labels), cfg.batch_size, cfg.epochs, cfg.lr, section="qat")
    torch.manual_seed(recipe.train.seed)
    prepared, acts = _prepare_from_calibrated(src, x_calib, recipe, ptq_report["method"], weight_bits)
    params = [p for p in prepared.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    total = schedule.total

    def after_step(step: int, loss: torch.Tensor) -> dict | None:
        if step % 20:
            return None
        if progress:
            log(f"{src.arch}: QAT step {step}/{total} loss {loss.item():.4f}")
        return {"step": step, "loss": round(loss.item(), 4)}

    augment = None if recipe.data.augment == "none" else recipe.data.augment
    batches = Batches(images, labels, src.preprocess, cfg.batch_size, recipe.train.seed, augment)
    hooks = Hooks(before_step=_freezer(prepared, acts, cfg, total), after_step=after_step)
    options = StepOptions(label_smoothing=recipe.train.label_smoothing, check_weights=True)
    return Loop(run, prepared, opt, schedule, batches, options=options, hooks=hooks, started=started)


def _prepare_from_calibrated(src: FloatSource, x_calib, recipe: Recipe, method: str, weight_bits: int):
    """(the fake-quant graph in train mode, its activation fake-quantizers), starting from
    calibrated scales: the calibration set observed with fake-quant off and BatchNorm in eval."""
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

    batch = recipe.qat.batch_size
    prepared = pt2e.prepare_qat(src.model, x_calib[:batch], method=method, weight_bits=weight_bits)
    acts, _weights = pt2e.fake_quant_modules(prepared)
    move_exported_model_to_eval(prepared)
    for m in acts:
        m.disable_fake_quant()
    with torch.no_grad():
        for xb in x_calib.split(recipe.calibrate.batch_size):
            prepared(xb)
    for m in acts:
        m.enable_fake_quant()
    move_exported_model_to_train(prepared)
    return prepared, acts


def _freezer(prepared, acts, cfg, total: int) -> Callable[[int], None]:
    """The before-step hook that freezes the observers at ``cfg.freeze_observers`` of the steps and
    BatchNorm (running statistics from then on) at ``cfg.freeze_bn``; after a resume, at its first step."""
    from torchao.quantization.pt2e import move_exported_model_to_eval

    freeze_obs_at, freeze_bn_at = int(cfg.freeze_observers * total), int(cfg.freeze_bn * total)
    frozen: set[str] = set()

    def before_step(step: int) -> None:
        if step >= freeze_obs_at and "observers" not in frozen:
            for m in acts:
                m.disable_observer()
            frozen.add("observers")
        if step >= freeze_bn_at and "bn" not in frozen:
            move_exported_model_to_eval(prepared)  # BN uses running stats (Dropout is Identity here)
            frozen.add("bn")

    return before_step


def _qat_report(recipe: Recipe, ptq_report: dict, train_split, loop: Loop, weight_bits: int) -> dict:
    report = {
        "key": loop.run_info.key,
        "method": ptq_report["method"],
        "scheme": pt2e.SCHEME,
        "weight_bits": weight_bits,
        "calibration": ptq_report["calibration"],
        "ptq": {
            "top1": ptq_report["int8_fakequant"]["top1"],
            "drop_points": ptq_report["drop_points"],
            "dir": ptq_report["dir"],
        },
        "qat": {
            **recipe.to_dict()["qat"],
            "steps": loop.schedule.total,
            "train_images": len(loop.batches.labels),
            "train_split": train_split.split_id,
            "history": loop.history,
        },
        "qat_seconds": round(time.perf_counter() - loop.started, 1),
    }
    if distributed.info().enabled:
        report["world_size"] = distributed.info().world_size
    return report
