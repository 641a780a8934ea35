"""Accuracy of an exported artifact in its own runtime, with its statistics. Imports no torch.

:func:`evaluate_artifact` runs an artifact over a dataset split (default: the whole
Fashion-MNIST test set, the one ``edgecnn train`` reports on, in its stored order),
preprocessing with the artifact's own ``preprocess`` metadata through
:meth:`Preprocess.apply_numpy`, and reports top-1, top-5, a percentile-bootstrap 95 %
interval of top-1, and, where references are known, top-1 agreement with the fake-quant
PyTorch graph and an exact McNemar test against the FP32 model.

References written by export (read automatically by :func:`evaluate_artifact` and
``edgecnn evaluate``): the optional metadata key ``reference``::

    "reference": {
      "reference_predictions": "reference_predictions.npy",  # int64 [N]: top-1 class per image of
                                                             #   the fake-quant PyTorch graph
      "fp32_correct": "fp32_correct.npy",                    # bool [N]: FP32 model right per image
      "split_id": "<make_splits(bundle, spec)['test'].split_id>"   # optional: which images, in order
    }

Files are relative to the artifact directory (list them in ``files`` too, so their
sha256 is checked), either may be left out, and row ``i`` is image ``i`` of the split
as :func:`edgecnn.data.take` returns it (for ``test``: ``bundle.test`` in stored order).
With ``split_id`` recorded, references made on other images are ignored with a note;
without it they are used when their length matches the split. With ``limit`` only
their first ``limit`` rows are compared.

The statistic functions :func:`bootstrap_ci`, :func:`mcnemar` and :func:`agreement` are
pure numpy/math.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecnn.errors import EdgecnnError

if TYPE_CHECKING:
    from edgecnn.runtimes.base import Session

DEFAULT_BATCH = 128
PLANNED_INPUT_FLOATS = DEFAULT_BATCH * 3 * 32 * 32  # 1.5 MiB of float32 input per call
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
CI_LEVEL = 0.95


# -- statistics -----------------------------------------------------------------------


def bootstrap_ci(
    correct, n: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED, level: float = CI_LEVEL
) -> tuple[float, float]:
    """Percentile-bootstrap ``level`` interval of the mean of ``correct`` (per-image 0/1 or scores).

    ``n`` resamples with replacement of all images, seeded. For 0/1 data the number of
    hits in a resample is drawn directly: it is Binomial(N, mean), exactly the
    distribution that resampling N images gives, at O(n) cost instead of O(n N).
    """
    x = np.asarray(correct, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    rng = np.random.default_rng(seed)
    size = x.size
    if np.isin(x, (0.0, 1.0)).all():
        means = rng.binomial(size, x.mean(), size=n) / size
    else:
        rows = max(1, (1 << 22) // size)  # about 32 MB of indices at a time
        means = np.concatenate(
            [x[rng.integers(0, size, size=(min(rows, n - i), size))].mean(axis=1) for i in range(0, n, rows)]
        )
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def binomial_two_sided_p(k: int, n: int) -> float:
    """Exact two-sided p of ``k`` successes in ``n`` fair-coin trials: min(1, 2 P(X <= min(k, n-k)))."""
    if n == 0:
        return 1.0
    m = min(k, n - k)
    term, tail = 1, 1  # C(n, 0)
    for i in range(1, m + 1):
        term = term * (n - i + 1) // i
        tail += term
    return min(1.0, 2 * tail / (1 << n)) if m < n / 2 else 1.0


def mcnemar(a_correct, b_correct) -> dict[str, Any]:
    """Exact (binomial) McNemar test of two classifiers' per-image correctness on the same images.

    ``b01``: images ``a`` gets wrong and ``b`` right; ``b10``: ``a`` right, ``b`` wrong.
    ``p_value``: two-sided, under H0 that a discordant image is equally likely either way.
    """
    a = np.asarray(a_correct, dtype=bool).reshape(-1)
    b = np.asarray(b_correct, dtype=bool).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"mcnemar needs equal lengths, got {a.size} and {b.size}")
    b01 = int(np.count_nonzero(~a & b))
    b10 = int(np.count_nonzero(a & ~b))
    return {"b01": b01, "b10": b10, "p_value": binomial_two_sided_p(b01, b01 + b10)}


def agreement(pred_a, pred_b) -> float:
    """Fraction of images on which two classifiers predict the same class."""
    a, b = np.asarray(pred_a).reshape(-1), np.asarray(pred_b).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"agreement needs equal lengths, got {a.size} and {b.size}")
    if a.size == 0:
        raise ValueError("agreement needs at least one prediction")
    return float(np.count_nonzero(a == b) / a.size)


def topk_indices(logits: np.ndarray, k: int = 5) -> np.ndarray:
    """The ``k`` best classes per row, best first (ties: the lower index first, as ``argmax``)."""
    k = min(k, logits.shape[1])
    return np.argsort(-logits, axis=1, kind="stable")[:, :k]


def topk_hits(logits: np.ndarray, labels: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(top-1 predictions, whether the label is among the top ``k``) per row."""
    top = topk_indices(logits, k)
    return top[:, 0].astype(np.int64), (top == labels[:, None]).any(axis=1)


# -- evaluation -----------------------------------------------------------------------


@dataclass(frozen=True)
class EvalSet:
    """What an evaluation runs on: the artifact, the split's uint8 images and labels, the references."""

    art: Any  # edgecnn.artifact.Artifact
    dataset: str
    split: str
    split_id: str
    images: np.ndarray  # uint8 N x H x W x C, as stored (preprocessed where the artifact runs)
    labels: np.ndarray  # int64 N
    references: dict[str, Any]  # {"source", "predictions", "fp32_correct"}
    notes: tuple[str, ...]


def load_eval_set(
    path,
    *,
    data: str | os.PathLike | None = None,
    split: str = "test",
    limit: int | None = None,
    verify: bool = True,
    split_spec=None,
    reference_predictions=None,
    fp32_correct=None,
) -> EvalSet:
    """The artifact at ``path``, the images of ``split`` of ``data`` and the references to compare with."""
    from edgecnn.artifact import load_artifact
    from edgecnn.data import SPLITS, SplitSpec, load_dataset, make_splits, take

    if split not in SPLITS:
        raise EdgecnnError(f"unknown split '{split}': use one of {', '.join(SPLITS)}")
    if limit is not None and (isinstance(limit, bool) or int(limit) < 1):
        raise EdgecnnError(f"limit must be a positive number of images, got {limit!r}")
    art = load_artifact(path, verify=verify)
    bundle = load_dataset(data)
    _check_classes(art.meta, bundle.classes, data)
    sp = make_splits(bundle, split_spec or SplitSpec())[split] if split != "test" else None
    if sp is None:  # the test split needs no spec: build it alone (make_splits would check the train pool)
        from edgecnn.data.splits import Split

        sp = Split("test", "test", np.arange(len(bundle.test)), bundle.test.content_hash)
    images, labels = take(bundle, sp)
    full = len(labels)
    if limit is not None:
        images, labels = images[: int(limit)], labels[: int(limit)]
    n = len(labels)
    if n == 0:
        raise EdgecnnError(f"the {split} split of {bundle.name} is empty")
    notes: list[str] = []
    refs = _references(art, sp.split_id, full, n, reference_predictions, fp32_correct, notes)
    return EvalSet(art, bundle.name, split, sp.split_id, images, labels, refs, tuple(notes))


def predict_topk(session, images: np.ndarray, batch_size: int | None = None, k: int = 5) -> np.ndarray:
    """The top-``k`` classes (best first) of every uint8 image, preprocessed as the session's artifact says.

    Runs where the artifact runs (a device too): numpy, the runtime and no torch.
    """
    from edgecnn.data.preprocess import Preprocess

    _check_batch_size(batch_size)
    meta = session.artifact.meta
    preprocess = Preprocess.from_dict(meta["preprocess"])
    bs = int(batch_size or _default_batch(session.batch))
    tops = []
    for s in range(0, len(images), bs):
        logits = session.run(preprocess.apply_numpy(images[s : s + bs]))
        if logits.shape[0] != len(images[s : s + bs]) or logits.shape[1] < meta["num_classes"]:
            raise EdgecnnError(
                f"{session.artifact.model_file.name} returned logits shaped "
                f"{list(logits.shape)}; expected N x {meta['num_classes']}"
            )
        tops.append(topk_indices(logits, k).astype(np.int32))
    return np.concatenate(tops)


def _check_batch_size(batch_size) -> None:
    if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) < 1):
        raise EdgecnnError(f"batch size must be positive, got {batch_size!r}")


def score(top: np.ndarray, labels: np.ndarray, references: dict[str, Any]) -> dict[str, Any]:
    """Top-1, top-5, the bootstrap interval and the comparisons with the references, from top-k classes."""
    preds = top[:, 0].astype(np.int64)
    correct = preds == labels
    lo, hi = bootstrap_ci(correct)
    out: dict[str, Any] = {
        "top1": float(correct.mean()),
        "top5": float((top == labels[:, None]).any(axis=1).mean()),
        "top1_ci": [lo, hi],
        "ci_level": CI_LEVEL,
        "bootstrap_resamples": BOOTSTRAP_RESAMPLES,
        "reference_source": references["source"],
        "reference_top1": None,
        "agreement": None,
        "fp32_top1": None,
        "delta_top1": None,
        "mcnemar": None,
    }
    if references["predictions"] is not None:
        out["agreement"] = agreement(preds, references["predictions"])
        out["reference_top1"] = float((references["predictions"] == labels).mean())
    if references["fp32_correct"] is not None:
        fp32 = references["fp32_correct"]
        out["fp32_top1"] = float(fp32.mean())
        out["delta_top1"] = out["top1"] - out["fp32_top1"]
        out["mcnemar"] = mcnemar(fp32, correct)
    return {**out, "predictions": preds, "correct": correct}


def evaluate_artifact(
    path,
    *,
    data: str | os.PathLike | None = None,
    split: str = "test",
    batch_size: int | None = None,
    runtime: str | None = None,
    threads: int | None = None,
    reference_predictions=None,
    fp32_correct=None,
    limit: int | None = None,
    verify: bool = True,
    split_spec=None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the artifact at ``path`` over ``split`` of ``data`` and report its accuracy.

    ``data``: None (Fashion-MNIST) or an ImageFolder path, as ``--data``. ``split``:
    "test" (the whole test set, default) or "val"/"calib"/"train" of ``split_spec``
    (default :class:`SplitSpec`). ``limit``: only the first ``limit`` images.
    ``reference_predictions`` / ``fp32_correct``: arrays (or .npy paths) over the split's
    images, overriding those named in the artifact's metadata (module docstring).

    Returns a JSON-able dict plus two numpy arrays, ``predictions`` (int64 top-1 class
    per image) and ``correct`` (bool); :func:`json_report` drops the arrays.
    """
    es = load_eval_set(
        path,
        data=data,
        split=split,
        limit=limit,
        verify=verify,
        split_spec=split_spec,
        reference_predictions=reference_predictions,
        fp32_correct=fp32_correct,
    )
    return evaluate_here(es, runtime=runtime, threads=threads, batch_size=batch_size, log=log)


def evaluate_here(
    es: EvalSet,
    *,
    runtime: str | None = None,
    threads: int | None = None,
    batch_size: int | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """:func:`evaluate_artifact` of an :class:`EvalSet` already loaded, on this machine.

    With no ``threads`` every core evaluates: the predictions do not depend on the count, and
    TFLite's own default is one thread (VGG16's FP32 .tflite: 1.4x slower on 2 cores)."""
    from edgecnn.runtimes import open_session

    say = log or (lambda s: None)
    _check_batch_size(batch_size)
    meta = es.art.meta
    n = len(es.labels)
    threads = threads or os.cpu_count() or 1
    start = time.perf_counter()
    with open_session(es.art, runtime=runtime, threads=threads) as session:
        plan_batch(session, batch_size)
        bs = int(batch_size or _default_batch(session.batch))
        say(f"evaluating {es.art.dir.name} in {session.runtime} on {n} {es.dataset} {es.split} images")
        top = predict_topk(session, es.images, bs)
        info = dict(session.info)
        used_runtime = session.runtime
    seconds = time.perf_counter() - start
    return {
        "artifact": str(es.art.dir),
        "arch": meta.get("arch"),
        "target": meta.get("target"),
        "precision": meta.get("precision"),
        "runtime": used_runtime,
        "runtime_info": info,
        "dataset": es.dataset,
        "split": es.split,
        "split_id": es.split_id,
        "num_images": n,
        **score(top, es.labels, es.references),
        "batch_size": bs,
        "threads": threads,
        "seconds": round(seconds, 3),
        "notes": list(es.notes),
    }


def json_report(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` without its numpy arrays (``predictions``, ``correct``)."""
    return {k: v for k, v in result.items() if not isinstance(v, np.ndarray)}


def plan_batch(session: Session, batch_size: int | None) -> None:
    """With no ``batch_size`` asked for, let a session whose model has a small fixed batch (TFLite's 1) run
    :data:`DEFAULT_BATCH` images a call, fewer where they would exceed :data:`PLANNED_INPUT_FLOATS` (a
    224-px RGB image: 2 a call, for a Pi's memory; the input's size only, not the activations'); the
    same logits, fewer calls (:meth:`Session.set_batch`; checked on x86's XNNPACK kernels, not on
    ARM's)."""
    if batch_size is not None or not session.batch:
        return
    per_image = int(np.prod([d or 1 for d in session.input_shape[1:]]))
    planned = max(1, min(DEFAULT_BATCH, PLANNED_INPUT_FLOATS // per_image))
    if planned > session.batch:
        session.set_batch(planned)


def _default_batch(fixed: int | None) -> int:
    if fixed:  # a whole number of the model's batches
        return fixed * max(1, DEFAULT_BATCH // fixed)
    return DEFAULT_BATCH


def _check_classes(meta: dict[str, Any], classes: tuple[str, ...], data) -> None:
    names = meta.get("class_names") or []
    where = data or "Fashion-MNIST"
    if names and list(names) != list(classes):
        raise EdgecnnError(
            f"the artifact was trained on classes {_short(names)} but {where} has "
            f"{_short(classes)}; evaluate it on the dataset it was trained on"
        )
    if meta["num_classes"] != len(classes):
        raise EdgecnnError(f"the artifact has {meta['num_classes']} classes but {where} has {len(classes)}")


def _short(names) -> str:
    names = list(names)
    return ", ".join(names[:4]) + (f", ... ({len(names)})" if len(names) > 4 else "")


def _load_array(value, what: str, base: Path | None = None) -> np.ndarray:
    if isinstance(value, (str, os.PathLike)):
        p = Path(value)
        if base is not None and not p.is_absolute():
            p = base / p
        try:
            value = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise EdgecnnError(f"cannot read {what} from {p}: {e}") from e
    return np.asarray(value).reshape(-1)


def _fit(arr: np.ndarray | None, what: str, full: int, n: int, strict: bool, notes: list[str]):
    """``arr`` cut to the evaluated images, or None (with a note) when it does not fit."""
    if arr is None:
        return None
    if len(arr) == full:
        return arr[:n]
    if len(arr) == n:
        return arr
    msg = f"{what} has {len(arr)} rows but the split has {full} images"
    if strict:
        raise EdgecnnError(f"{msg}{f' ({n} evaluated)' if n != full else ''}; pass one row per image")
    notes.append(f"{msg}: ignored")
    return None


def _references(art, split_id: str, full: int, n: int, ref_pred, ref_fp32, notes: list[str]) -> dict:
    """Reference arrays from the arguments, else from metadata ``reference``."""
    source = None
    meta_ref = art.meta.get("reference") or {}
    if ref_pred is None and ref_fp32 is None and meta_ref:
        recorded = meta_ref.get("split_id")
        if recorded and recorded != split_id:
            notes.append(
                f"the artifact's reference predictions were made on other images "
                f"(split {recorded}, evaluated {split_id}): no agreement or McNemar test"
            )
            return {"source": None, "predictions": None, "fp32_correct": None}
        ref_pred = meta_ref.get("reference_predictions")
        ref_fp32 = meta_ref.get("fp32_correct")
        source, strict, base = "metadata", False, art.dir
    else:
        strict, base = True, None
        if ref_pred is not None or ref_fp32 is not None:
            source = "argument"
    pred = _load_array(ref_pred, "reference predictions", base) if ref_pred is not None else None
    fp32 = _load_array(ref_fp32, "FP32 correctness", base) if ref_fp32 is not None else None
    if pred is not None and not np.issubdtype(pred.dtype, np.integer):
        raise EdgecnnError(f"reference predictions must be integer class indices, got {pred.dtype}")
    if fp32 is not None:
        if fp32.dtype != bool and not np.isin(fp32, (0, 1)).all():
            raise EdgecnnError("FP32 correctness must be booleans (or 0/1) per image")
        fp32 = fp32.astype(bool)
    pred = _fit(pred, "reference predictions", full, n, strict, notes)
    fp32 = _fit(fp32, "FP32 correctness", full, n, strict, notes)
    if pred is None and fp32 is None:
        source = None
    return {"source": source, "predictions": pred, "fp32_correct": fp32}
