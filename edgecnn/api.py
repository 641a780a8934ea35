"""The Python API: the CLI's commands as functions, each returning its typed result.

>>> import edgecnn
>>> fm = edgecnn.train("resnet18", recipe="quick")          # results.FloatModel
>>> q = edgecnn.calibrate("resnet18", checkpoint=fm.checkpoint)   # results.QuantizedGraph
>>> art = edgecnn.export("resnet18", "cpu", checkpoint=fm.checkpoint)  # results.Artifact
>>> edgecnn.evaluate(art.dir).top1                          # results.Accuracy
>>> edgecnn.bench(art.dir).latency_ms.p50                   # results.Bench
>>> edgecnn.deploy("resnet18", "cpu").accuracy.top1         # results.Report

Each function takes what its command takes (a ``recipe`` is a profile name such as ``"quick"``,
a TOML path, or a loaded :class:`edgecnn.recipes.Recipe`), runs the same library code, and uses
the same caches under ``$EDGECNN_HOME``: a CLI run and an API run of the same inputs share their
stages. Errors are :class:`edgecnn.errors.EdgecnnError` with the CLI's one-line message.
``log`` receives the progress lines the CLI prints (default: none). ``frontier`` returns a
:class:`edgecnn.results.Frontier` (frontier.json), ``choose`` an :class:`edgecnn.frontier.Choice`.

Everything heavy (torch, the runtimes) is imported inside the functions: ``import edgecnn``
stays light, and ``edgecnn.bench`` / ``edgecnn.evaluate`` of an artifact need no torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecnn.results import Accuracy, Artifact, Bench, FloatModel, Frontier, QuantizedGraph, Report

if TYPE_CHECKING:
    from edgecnn.frontier import Choice

Log = Callable[[str], None] | None


def _quiet(log: Log) -> Callable[[str], None]:
    return log or (lambda s: None)


def _recipe(arch: str, recipe: Any):
    """A loaded recipe: ``recipe`` as given when it is one, else ``load_recipe(arch, recipe)``."""
    from edgecnn.models import arch_info
    from edgecnn.recipes import Recipe, load_recipe

    arch_info(arch)  # an unknown name: one line with suggestions, before any data is read
    return recipe if isinstance(recipe, Recipe) else load_recipe(arch, str(recipe))


def train(
    arch: str,
    *,
    recipe: Any = "quick",
    data: str | None = None,
    weights: str | None = None,
    reset_head: bool = False,
    out: str | os.PathLike | None = None,
    force: bool = False,
    threads: int | None = None,
    log: Log = None,
) -> FloatModel:
    """``edgecnn train``: train or fine-tune ``arch``; the float checkpoint and its run."""
    from edgecnn.train import train as run_train

    return run_train(
        arch,
        _recipe(arch, recipe),
        data=data,
        weights=weights,
        reset_head=reset_head,
        out_dir=out,
        force=force,
        threads=threads,
        log=_quiet(log),
        progress=False,
    )


def calibrate(
    arch: str,
    *,
    recipe: Any = "quick",
    data: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    method: str | None = None,
    num_images: int | None = None,
    float_layers: Sequence[str] = (),
    max_drop: float | None = None,
    force: bool = False,
    threads: int | None = None,
    log: Log = None,
) -> QuantizedGraph:
    """``edgecnn calibrate``: post-training INT8 quantization (PT2E) of ``arch``'s float model;
    ``float_layers`` stay float; ``max_drop``: the fewest most sensitive layers in float that keep
    the drop within it (:func:`edgecnn.mixed.within_budget`, no QAT)."""
    from edgecnn.quantize.stages import calibrate as run_calibrate

    kw = {
        "data": data,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "method": method,
        "num_images": num_images,
        "threads": threads,
        "log": _quiet(log),
        "progress": False,
    }
    if max_drop is not None:
        if float_layers:
            from edgecnn.errors import EdgecnnError

            raise EdgecnnError("float_layers and max_drop conflict: max_drop chooses the float layers")
        return _within_budget(arch, recipe, max_drop, allow_qat=False, **kw)
    return run_calibrate(arch, _recipe(arch, recipe), float_layers=float_layers, force=force, **kw)


def _within_budget(arch: str, recipe: Any, max_drop: float, **kw: Any) -> QuantizedGraph:
    """``--max-drop``: the graph :func:`edgecnn.mixed.within_budget` chose."""
    from edgecnn.mixed import within_budget

    b = within_budget(arch, _recipe(arch, recipe), max_drop, **kw)
    skipped = None if b.chosen.kind == "qat" else b.describe()
    return QuantizedGraph.from_dict({**b.stage_report, "qat_skipped": skipped}, kw.get("checkpoint"))


def qat(
    arch: str,
    *,
    recipe: Any = "quick",
    data: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    method: str | None = None,
    max_drop: float | None = None,
    force: bool = False,
    threads: int | None = None,
    log: Log = None,
) -> QuantizedGraph:
    """``edgecnn qat``: quantization-aware fine-tuning from the calibrated scales; ``max_drop``: PTQ,
    then PTQ with layers in float, and QAT only where both lose more (:mod:`edgecnn.mixed`)."""
    from edgecnn.quantize.stages import qat as run_qat

    kw = {
        "data": data,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "method": method,
        "threads": threads,
        "log": _quiet(log),
        "progress": False,
    }
    if max_drop is not None:
        return _within_budget(arch, recipe, max_drop, **kw)
    return run_qat(arch, _recipe(arch, recipe), force=force, **kw)


def export(
    model: str | QuantizedGraph | FloatModel,
    target: str,
    *,
    recipe: Any = "quick",
    precision: str | None = None,
    runtime: str | None = None,
    data: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    method: str | None = None,
    qat: bool = False,
    max_drop: float | None = None,
    out: str | os.PathLike | None = None,
    force: bool = False,
    log: Log = None,
) -> Artifact:
    """``edgecnn export``: the artifact folder of ``model`` for ``target`` and its metadata.

    ``model``: an architecture name (its stages run as ``edgecnn export`` runs them: ``checkpoint``,
    ``method``, ``qat``, or ``max_drop``: the graph :func:`edgecnn.mixed.within_budget` chose;
    ``precision`` default int8), or a stage's result, exported as it is: a :class:`QuantizedGraph`
    (int8) or a :class:`FloatModel` (``precision`` default fp32)."""
    from edgecnn.export import export as run_export
    from edgecnn.export import model_for, resolve, weight_bits

    arch = model if isinstance(model, str) else model.arch
    r = _recipe(arch, recipe)
    if out is not None:
        from edgecnn import outdir

        outdir.check(Path(out), "export")  # a folder of yours is refused before any work
    if isinstance(model, str):
        precision = precision or "int8"
        rt = resolve(target, runtime, precision)
        ckpt = None if checkpoint is None else str(checkpoint)
        if max_drop is not None:
            from edgecnn.deploy import DeployOptions

            DeployOptions(precision=precision, qat=qat, max_drop=max_drop)  # deploy's checks of these
            budget = {"data": data, "checkpoint": ckpt, "method": method, "weight_bits": weight_bits(rt)}
            model = _within_budget(arch, r, max_drop, log=_quiet(log), progress=False, **budget)
        else:
            model = model_for(
                arch, r, rt, precision=precision, data=data, checkpoint=ckpt, method=method, use_qat=qat,
                log=_quiet(log), progress=False,
            )  # fmt: skip
    return run_export(
        model,
        target,
        recipe=r,
        precision=precision,
        runtime=runtime,
        data=data,
        out=out,
        force=force,
        log=_quiet(log),
    )


def evaluate(
    artifact: str | os.PathLike | Artifact,
    *,
    data: str | None = None,
    runtime: str | None = None,
    threads: int | None = None,
    batch_size: int | None = None,
    limit: int | None = None,
    log: Log = None,
) -> Accuracy:
    """``edgecnn evaluate``: top-1/5 of the artifact in its runtime on this machine, with its 95%
    interval and agreement with the fake-quant graph."""
    from edgecnn.deploy import accuracy_of
    from edgecnn.evaluate import evaluate_artifact, json_report

    path = artifact.dir if isinstance(artifact, Artifact) else artifact
    ev = evaluate_artifact(
        path, data=data, runtime=runtime, threads=threads, batch_size=batch_size, limit=limit, log=_quiet(log)
    )
    return accuracy_of(json_report(ev), None, "host")


def bench(
    what: str | os.PathLike | Artifact,
    *,
    target: str | None = None,
    runtime: str | None = None,
    precision: str | None = None,
    image_size: int | None = None,
    batch: int | None = None,
    threads: int | None = None,
    predict: bool = False,
    min_seconds: float = 2.0,
    min_runs: int = 10,
    warmup: int = 5,
) -> Bench:
    """``edgecnn bench``: latency of an artifact (a folder, or an :class:`Artifact`) measured here,
    or of an architecture on ``target``: measured here through OpenVINO, or predicted."""
    from edgecnn.bench import bench_arch, bench_artifact

    timing = {"min_seconds": min_seconds, "min_runs": min_runs, "warmup": warmup}
    if isinstance(what, Artifact) or Path(what).exists():
        path = what.dir if isinstance(what, Artifact) else what
        r = bench_artifact(path, runtime=runtime, threads=threads, batch=batch, **timing)
    else:
        r = bench_arch(
            str(what),
            target=target or "cpu",
            runtime=runtime,
            precision=precision,
            image_size=image_size or 224,
            batch=batch or 1,
            threads=threads,
            predict=predict,
            **timing,
        )
    return Bench.from_bench(r)


def deploy(
    arch: str,
    target: str,
    *,
    recipe: Any = "quick",
    log: Log = None,
    **options: Any,
) -> Report:
    """``edgecnn deploy``: every stage for ``arch`` on ``target`` into a bundle; its report.json.
    ``options`` are :class:`edgecnn.deploy.DeployOptions`'s fields (``precision``, ``qat``,
    ``max_drop``, ``checkpoint``, ``out``, ``hosts``, ...); the bundle is ``report`` 's
    ``stages`` and :func:`edgecnn.deploy.bundle_dir`."""
    from edgecnn.deploy import DeployOptions
    from edgecnn.deploy import deploy as run_deploy

    _, report = run_deploy(
        arch,
        target,
        recipe=_recipe(arch, recipe),
        options=DeployOptions(**options),
        log=_quiet(log),
        progress=False,
    )
    return report


def frontier(
    archs: Sequence[str],
    targets: Sequence[str],
    *,
    out: str | os.PathLike,
    precisions: Sequence[str] = ("int8", "fp32"),
    recipe: str = "quick",
    log: Log = None,
    **options: Any,
) -> Frontier:
    """``edgecnn frontier``: deploy every arch x target x precision (cached), flag the Pareto sets and
    write the frontier folder ``out``; what frontier.json holds.
    ``targets``: targets or device names (``"cpu"``, ``"rpi4"``), as ``--targets``.
    ``options``: :class:`edgecnn.frontier.FrontierOptions`' (``cost``, ``data``, ``qat``,
    ``max_drop``, ...)."""
    from edgecnn.frontier import FrontierOptions, parse_targets, run_frontier

    opts = FrontierOptions(
        recipe_for=lambda a: _recipe(a, recipe), out=out, log=_quiet(log), progress=False, **options
    )
    _, result = run_frontier(list(archs), parse_targets(targets), list(precisions), opts)
    return result


def choose(
    device: str,
    *,
    frontiers: Sequence[str | os.PathLike] = (),
    max_latency_ms: float | None = None,
    min_accuracy: float | None = None,
    cost: str = "p50",
    latency: str = "p90",
    precision: str | None = None,
) -> Choice:
    """``edgecnn choose``: the point to ship on ``device`` within the limits, from the ``frontiers``
    folders (``--from``; default: every frontier run under ``$EDGECNN_HOME``): the choice (a
    :class:`edgecnn.results.FrontierPoint` or None), candidates, rejected, paragraph, ok."""
    from edgecnn.frontier import choose as run_choose
    from edgecnn.frontier import load_points

    return run_choose(
        load_points(list(frontiers)),
        device,
        max_latency_ms=max_latency_ms,
        min_accuracy=min_accuracy,
        cost=cost,
        latency=latency,
        precision=precision,
    )
