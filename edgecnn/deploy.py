"""``edgecnn deploy``: every stage from float weights to a measured (or predicted) artifact, in one bundle.

:func:`deploy` is a composition of plain steps, each cached by the hash of its inputs (a re-run
takes seconds):

1. :func:`float_model`: training / fine-tuning with the recipe (:func:`edgecnn.train.train`);
   skipped with ``checkpoint``; ``weights`` fine-tunes from ImageNet or a file;
2. :func:`quantize` (INT8 only): PTQ calibration, or QAT (``qat``), or
   :func:`quantize_within_drop` where ``max_drop`` is given: PTQ, then PTQ with the most
   sensitive layers left in float, then QAT (:mod:`edgecnn.mixed`; :func:`priced` times each
   candidate tried for the report);
3. :func:`export_artifact`: export for the target (:func:`edgecnn.export.export`);
4. :func:`accuracy`: the artifact evaluated in the target's runtime over the whole test split,
   on the ``hosts`` over SSH or here (a TensorRT artifact runs in OpenVINO or ONNX Runtime where
   ``tensorrt`` is not importable, :func:`edgecnn.device_eval.host_runtime`: the report's
   ``accuracy.runtime`` says which runtime ran);
5. :func:`latency`: measured on each ``hosts`` entry over SSH, else measured here for target
   ``cpu`` (in a fresh ``edgecnn bench`` process, so peak memory is the runtime's own), else
   predicted from the device profile with its error band (:mod:`edgecnn.latency`).

The options other than (arch, target, recipe) travel as one :class:`DeployOptions`, checked
when it is made. The report (schema ``edgecnn.report/1``, README "deploy and report.json") is
assembled by :func:`assemble_report`; the bundle (``artifact/``, ``report.json``, ``report.md``,
``predict.py``, ``RUN.md``) is written by :func:`edgecnn.bundle.write_bundle`, in
``$EDGECNN_HOME/runs/deploy/<arch>-<target>-<precision>-<key>`` or ``out``.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn import bundle, outdir
from edgecnn.distributed import torch_threads
from edgecnn.errors import EdgecnnError
from edgecnn.results import (
    Accuracy,
    Artifact,
    BundledArtifact,
    Dataset,
    FloatModel,
    Latency,
    Published,
    Quantization,
    QuantizedGraph,
    Report,
)
from edgecnn.stage import json_result
from edgecnn.stage import stage_key as _key  # the one cache-key function
from edgecnn.vocab import LatencySource, Method, Precision, QuantStage, Runtime, Target

DEPLOY_VERSION = 1  # bump when what a stage cache holds changes


# ---------------------------------------------------------------- options


@dataclass(frozen=True)
class BenchOptions:
    """How long latency is measured (here and on ``--host`` devices)."""

    seconds: float = 2.0  # time at least this long
    runs: int = 10  # and at least this many runs


@dataclass(frozen=True)
class SshOptions:
    """How the ``--host`` devices are reached (:func:`edgecnn.remote.bench_hosts`)."""

    remote_python: str | None = None  # the device's Python with edgecnn
    config: str | None = None  # ssh -F FILE
    timeout: float | None = None  # seconds per host


@dataclass(frozen=True)
class DeployOptions:
    """Everything :func:`deploy` takes besides (arch, target, recipe); conflicting options raise
    :class:`EdgecnnError` when it is made, before any work."""

    precision: str = "int8"
    runtime: str | None = None  # default: the target's (edgecnn.export.DEFAULT_RUNTIME)
    device: str | None = None  # device profile to predict for, when not the target's default
    hosts: tuple[str, ...] = ()  # [user@]address: measure accuracy and latency there over SSH
    data: str | None = None  # ImageFolder path; None: Fashion-MNIST
    weights: str | None = None  # fine-tune from "imagenet" or a file
    checkpoint: str | None = None  # a finished float checkpoint (no training)
    method: str | None = None  # PTQ calibration method (default: the recipe's)
    qat: bool = False
    max_drop: float | None = None  # points: layers in float, then QAT, only where PTQ loses more
    out: str | os.PathLike | None = None  # bundle folder
    force: bool = False  # re-export, re-evaluate, re-measure (training and quantization stay cached)
    threads: int | None = None
    bench: BenchOptions = BenchOptions()
    ssh: SshOptions = SshOptions()

    def __post_init__(self) -> None:
        object.__setattr__(self, "hosts", tuple(self.hosts))
        _check_options(self)


def _check_options(o: DeployOptions) -> None:
    """Conflicting options, one line each, before any work."""
    if o.qat and o.max_drop is not None:
        raise EdgecnnError(
            "--qat and --max-drop conflict: --max-drop runs QAT only where PTQ misses it; pass one of them"
        )
    if o.precision != "int8" and (o.qat or o.max_drop is not None):
        raise EdgecnnError(f"--qat and --max-drop apply to int8, not {o.precision}")
    if o.max_drop is not None and not 0 <= o.max_drop < float("inf"):  # nan fails both comparisons
        raise EdgecnnError(f"--max-drop must be a finite number >= 0 points, got {o.max_drop:g}")
    if o.weights is not None and o.checkpoint is not None:
        raise EdgecnnError(
            "--weights fine-tunes a new float model and --checkpoint uses a finished one; pass one of them"
        )
    for h in o.hosts:
        if not h or h.startswith("-"):
            raise EdgecnnError(f"bad --host '{h}': pass [user@]address")


@dataclass(frozen=True)
class Run:
    """One deploy's fixed inputs, resolved: what every step reads."""

    arch: str
    target: str
    recipe: Any
    options: DeployOptions
    runtime: str  # resolved
    device: str | None  # the device profile's name for a non-cpu --device, else None
    log: Callable[[str], None] = print
    progress: bool = True

    def quiet_kw(self) -> dict[str, Any]:
        return {"log": self.log, "progress": self.progress}


@dataclass(frozen=True)
class Measured:
    """What the accuracy or latency step found: its result dict, where, every host's entry (with
    ``hosts``), report.json's ``stages`` record and notes."""

    result: dict
    where: str
    record: dict
    hosts: list[dict] | None = None
    notes: tuple[str, ...] = ()


# ---------------------------------------------------------------- the composition


@outdir.holding_locks
def deploy(
    arch: str,
    target: str,
    *,
    recipe,
    options: DeployOptions | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> tuple[Path, Report]:
    """Run every stage for ``arch`` on ``target`` and write the bundle; return (bundle dir, report).

    ``options.force`` re-exports, re-evaluates and re-measures (training and quantization keep
    their caches: their own commands have ``--force``). With ``options.hosts`` every host is
    measured; the report's top-level latency is the first host that answered, a host that
    failed is listed with its error (all failing raises).
    """
    run = plan(arch, target, recipe, options or DeployOptions(), log=log, progress=progress)
    out = bundle_dir(run)
    outdir.hold(out, "deploy", f"the bundle {out.name}", bundle.FILES)
    t_start = time.perf_counter()
    with torch_threads(run.options.threads):  # every torch step here, restored after
        checkpoint, train_record = float_model(run)
        quant, quant_record = quantize(run, checkpoint)
        art, export_record = export_artifact(run, checkpoint, quant)
        quant = priced(run, checkpoint, quant, art.meta)
        acc = accuracy(run, art)
        lat = latency(run, art, acc.hosts)
    stages = {
        "train": train_record,
        "quantize": quant_record,
        "export": export_record,
        "evaluate": acc.record,
        "latency": lat.record,
    }
    report = assemble_report(run, art, quant, acc, lat, stages)
    report = dataclasses.replace(report, seconds=round(time.perf_counter() - t_start, 2))
    bundle.write_bundle(out, art.dir, report)
    log(f"{arch}: wrote {out}")
    return out, report


def plan(arch: str, target: str, recipe, options: DeployOptions, **kw: Any) -> Run:
    """Check (arch, target, runtime, precision, device) before any work; the resolved :class:`Run`."""
    from edgecnn.export import resolve
    from edgecnn.models import arch_info

    arch_info(arch)
    runtime = resolve(target, options.runtime, options.precision)
    device = options.device
    if device is not None:
        from edgecnn.devices import load_device

        prof = load_device(device)
        if prof.target != target:
            raise EdgecnnError(
                f"device {device} is a {prof.target} device, not {target}; pass --target {prof.target}"
            )
        device = None if target == "cpu" else prof.name
    return Run(arch, target, recipe, options, runtime, device, **kw)


def bundle_dir(run: Run) -> Path:
    """``options.out``, else ``runs/deploy/<arch>-<device or target>-<precision>-<key of the inputs>``."""
    from edgecnn import paths
    from edgecnn.train import weights_id

    o = run.options
    ckpt_id = None
    if o.checkpoint is not None:
        from edgecnn.fileio import sha256_file

        if not Path(o.checkpoint).is_file():
            raise EdgecnnError(f"checkpoint not found: {o.checkpoint}")
        ckpt_id = sha256_file(o.checkpoint)
    key = _key(
        {
            "arch": run.arch,
            "target": run.target,
            "device": run.device,
            "runtime": run.runtime,
            "precision": o.precision,
            "recipe": run.recipe.to_dict(),
            "data": str(Path(o.data).resolve()) if o.data else None,
            "weights": weights_id(o.weights),
            "checkpoint": ckpt_id,
            "method": o.method,
            "qat": o.qat,
            "max_drop": o.max_drop,
            "hosts": list(o.hosts),
        }
    )
    if o.out:
        return Path(o.out)
    return paths.runs_dir() / "deploy" / f"{run.arch}-{run.device or run.target}-{o.precision}-{key}"


# ---------------------------------------------------------------- the steps


def float_model(run: Run) -> tuple[str, dict]:
    """The float checkpoint: ``options.checkpoint``, else trained (cached) with the recipe;
    (its path, report.json's ``stages.train``)."""
    o = run.options
    if o.checkpoint is not None:
        record = {"dir": None, "key": None, "cached": True, "checkpoint": str(o.checkpoint), "given": True}
        return str(o.checkpoint), record
    from edgecnn.train import train

    tr = train(run.arch, run.recipe, data=o.data, weights=o.weights, threads=o.threads, **run.quiet_kw())
    checkpoint = str(tr.checkpoint)
    record = {
        "dir": str(tr.dir),
        "key": tr.key,
        "cached": tr.cached,
        "checkpoint": checkpoint,
    }
    return checkpoint, record


def quantize(run: Run, checkpoint: str) -> tuple[dict | None, dict | None]:
    """INT8: the quantized graph's stage report (PTQ, QAT, or :func:`quantize_within_drop`) and
    report.json's ``stages.quantize``; (None, None) for a float precision."""
    o = run.options
    if o.precision != "int8":
        return None, None
    from edgecnn.export import weight_bits
    from edgecnn.quantize import stages

    kw = {
        "data": o.data,
        "checkpoint": checkpoint,
        "method": o.method,
        "weight_bits": weight_bits(run.runtime),
        "threads": o.threads,
        **run.quiet_kw(),
    }
    if o.max_drop is not None:
        quant = quantize_within_drop(run, o.max_drop, kw)
    elif o.qat:
        quant = stages.qat(run.arch, run.recipe, **kw).as_dict()
    else:
        quant = stages.calibrate(run.arch, run.recipe, **kw).as_dict()
    record = {
        "stage": quant["stage"],
        "dir": quant["dir"],
        "key": quant["key"],
        "cached": bool(quant.get("cached")),
        "method": quant["method"],
        "qat_skipped": quant.get("qat_skipped"),
        "float_layers": list(quant.get("float_layers") or []),
        "fakequant_top1": quant["int8_fakequant"]["top1"],
        "fakequant_drop": quant["drop_points"],
    }
    return quant, record


def quantize_within_drop(run: Run, max_drop: float, kw: dict[str, Any]) -> dict:
    """``--max-drop``: PTQ, then PTQ with the most sensitive layers in float, then QAT, stopping at
    the first within ``max_drop`` top-1 points (:func:`edgecnn.mixed.within_budget`). The chosen
    stage's report, with ``budget`` (the search) and ``qat_skipped`` (why QAT did not run)."""
    from edgecnn.mixed import within_budget

    b = within_budget(run.arch, run.recipe, max_drop, **kw)
    skipped = None if b.chosen.kind == "qat" else b.describe()
    return {**b.stage_report, "budget": b, "qat_skipped": skipped}


def priced(run: Run, checkpoint: str, quant: dict | None, meta: dict) -> dict | None:
    """``--max-drop``: ``quant`` with ``budget`` as JSON, each candidate tried priced
    (:func:`edgecnn.mixed.price`, cached); where PTQ alone met the budget nothing is priced."""
    if not quant or "budget" not in quant:
        return quant
    from edgecnn.export import export
    from edgecnn.mixed import price

    b, o = quant["budget"], run.options
    doc = b.to_json()
    if len(b.candidates) == 1:
        return {**quant, "budget": {**doc, "prices": None}}

    def export_candidate(c) -> Path:
        from edgecnn.export import model_for

        graph = model_for(
            run.arch,
            run.recipe,
            run.runtime,
            data=o.data,
            checkpoint=checkpoint,
            method=o.method,
            use_qat=c.kind == "qat",
            float_layers=c.float_layers,
            log=run.log,
            progress=False,
        )  # each candidate's stage is cached: this reads it
        return export(graph, run.target, recipe=run.recipe, runtime=run.runtime, data=o.data, log=run.log).dir

    def measure() -> dict:
        rows = price(
            b,
            export_candidate,
            arch=run.arch,
            target=run.target,
            runtime=run.runtime,
            device=run.device,
            image_size=int(meta["preprocess"]["image_size"]),
            small_input=bool(meta["model_options"].get("small_input")),
            num_classes=int(meta["num_classes"]),
            threads=o.threads,
        )
        return {"rows": rows}

    key = _key(
        {
            "candidates": [c.key for c in b.candidates],
            "where": run.device or run.target,
            "runtime": run.runtime,
            "local": platform.node(),
            "threads": o.threads,
        }
    )
    prices, _, _ = json_result("budget", key, o.force, measure)
    return {**quant, "budget": {**doc, "prices": prices["rows"]}}


def export_artifact(run: Run, checkpoint: str, quant: dict | None) -> tuple[Artifact, dict]:
    """The artifact for the target of the graph :func:`quantize` chose (or of the float model for
    FP32/FP16; cached, ``force`` re-exports): (the artifact, report.json's ``stages.export``)."""
    from edgecnn.export import export

    o = run.options
    model = QuantizedGraph.from_dict(quant, checkpoint) if quant else FloatModel.given(run.arch, checkpoint)
    art = export(
        model,
        run.target,
        recipe=run.recipe,
        precision=o.precision,
        runtime=run.runtime,
        data=o.data,
        force=o.force,
        log=run.log,
    )
    return art, {"dir": str(art.dir), "key": art.meta.get("stage_key"), "cached": art.cached}


def _files_id(art) -> str:
    """The cache key of the artifact's files (their sha256s)."""
    return _key({"files": art.meta["files"]})


def accuracy(run: Run, art) -> Measured:
    """The artifact's accuracy (cached): on the ``hosts`` over SSH, else in the target's runtime here."""
    ev, cached, path, where, hosts = (
        _accuracy_on_hosts(run, art) if run.options.hosts else _accuracy_here(run, art)
    )
    record = {"dir": str(path), "key": path.stem, "cached": cached, "where": where}
    return Measured(ev, where, record, hosts)


def _accuracy_here(run: Run, art) -> tuple[dict, bool, Path, str, None]:
    """(report, cached, path, where, None). ``where``: "host" for target cpu, else
    "host-standin:RUNTIME" (this machine's kernels, or OpenVINO or ONNX Runtime for a TensorRT
    artifact, stand in for the device's: :func:`edgecnn.device_eval.host_runtime`)."""
    from edgecnn.device_eval import host_runtime

    o, target = run.options, run.target
    eval_runtime, note = host_runtime(art, run.runtime)

    def run_eval() -> dict:
        from edgecnn.evaluate import evaluate_artifact, json_report

        r = json_report(
            evaluate_artifact(art.dir, data=o.data, runtime=eval_runtime, threads=o.threads, log=run.log)
        )
        if target != "cpu":
            r["notes"] = [
                note
                or f"{eval_runtime} ran on this machine's {platform.machine()} kernels, a stand-in "
                f"for the {target}'s: deploy --host [USER@]DEVICE measures accuracy on the device",
                *r["notes"],
            ]
        return r

    key = _key({"v": DEPLOY_VERSION, "files": _files_id(art), "rt": eval_runtime, "data": str(o.data)})
    ev, cached, path = json_result("evaluate", key, o.force, run_eval)
    return ev, cached, path, "host" if target == "cpu" else f"host-standin:{eval_runtime}", None


def _accuracy_on_hosts(run: Run, art) -> tuple[dict, bool, Path, str, list[dict]]:
    """``evaluate --host`` on every host (cached): (the first good host's result, cached, path,
    its ``accuracy_where``, every host's entry). Every host failing raises (and caches nothing)."""
    o = run.options

    def run_hosts() -> dict:
        from edgecnn.device_eval import evaluate_hosts

        rs = evaluate_hosts(
            art.dir,
            o.hosts,
            data=o.data,
            threads=o.threads,
            remote_python=o.ssh.remote_python,
            ssh_config=o.ssh.config,
            timeout=o.ssh.timeout,
            log=run.log,
        )
        return {
            "hosts": [
                {"host": r.host, "result": r.result.to_json() if r.ok else None, "error": r.error} for r in rs
            ]
        }

    key = _key(
        {
            "v": DEPLOY_VERSION,
            "files": _files_id(art),
            "hosts": list(o.hosts),
            "data": str(o.data),
            "on": "device",
        }
    )
    res, cached, path = json_result("evaluate", key, o.force, run_hosts)
    good = [h["result"] for h in res["hosts"] if h["result"]]
    if not good:
        path.unlink(missing_ok=True)
        raise EdgecnnError("; ".join(h["error"] or f"{h['host']}: failed" for h in res["hosts"]))
    return good[0], cached, path, good[0]["accuracy_where"], res["hosts"]


def latency(run: Run, art, device_evals: list[dict] | None) -> Measured:
    """The artifact's latency (cached): measured on the ``hosts`` over SSH, else measured here
    for target cpu, else predicted from the device profile."""
    if run.options.hosts:
        m = _latency_on_hosts(run, art, device_evals)
    elif run.target == "cpu":
        m = _latency_here(run, art)
    else:
        m = _latency_predicted(run, art.meta)
    record = {**m.record, "source": m.result["latency_source"], "where": m.where}
    return dataclasses.replace(m, record=record)


def _latency_here(run: Run, art) -> Measured:
    from edgecnn.latency import measure_here

    o = run.options
    key = _key(
        {
            "v": DEPLOY_VERSION,
            "files": _files_id(art),
            "local": platform.node(),
            "threads": o.threads,
            "s": o.bench.seconds,
            "n": o.bench.runs,
        }
    )
    bench, cached, path = json_result(
        "latency",
        key,
        o.force,
        lambda: measure_here(art.dir, threads=o.threads, min_seconds=o.bench.seconds, min_runs=o.bench.runs),
    )
    return Measured(bench, "measured on this machine", _record(path, cached))


def _latency_predicted(run: Run, meta: dict) -> Measured:
    from edgecnn.latency import predicted

    o = run.options
    key = _key(
        {
            "v": DEPLOY_VERSION,
            "arch": run.arch,
            "target": run.device or run.target,
            "runtime": run.runtime,
            "precision": o.precision,
            "pre": meta["preprocess"],
            "opts": meta["model_options"],
            "threads": o.threads,
        }
    )
    bench, cached, path = json_result(
        "latency",
        key,
        o.force,
        lambda: predicted(run.arch, run.device or run.target, meta, threads=o.threads),
    )
    where = f"predicted for {bench['device']} from its device profile (no device measured it)"
    return Measured(bench, where, _record(path, cached))


def _latency_on_hosts(run: Run, art, device_evals: list[dict] | None) -> Measured:
    """Every host benched (cached); the first host that measured (a real device before a
    predicting one) gives the figures; a failed host is a note, every host failing raises."""
    from edgecnn.latency import measure_on_hosts

    o = run.options
    key = _key(
        {
            "v": DEPLOY_VERSION,
            "files": _files_id(art),
            "hosts": list(o.hosts),
            "threads": o.threads,
            "s": o.bench.seconds,
            "n": o.bench.runs,
        }
    )

    def run_remote() -> dict:
        return measure_on_hosts(
            art.dir,
            o.hosts,
            threads=o.threads,
            min_seconds=o.bench.seconds,
            min_runs=o.bench.runs,
            remote_python=o.ssh.remote_python,
            ssh_config=o.ssh.config,
            timeout=o.ssh.timeout,
        )

    lat, cached, path = json_result("latency", key, o.force, run_remote)
    hosts = _with_accuracy(lat["hosts"], device_evals)
    good = [h for h in hosts if h.get("result")]
    if not good:
        path.unlink(missing_ok=True)  # nothing measured: do not cache the failure
        raise EdgecnnError("; ".join(h.get("error") or f"{h.get('host')}: failed" for h in hosts))
    notes = []
    for h in hosts:
        if not h.get("result"):
            notes.append(f"host failed: {h.get('error')}")
        if h.get("accuracy_error"):
            notes.append(f"host accuracy failed: {h['accuracy_error']}")
    first = next((h for h in good if h["result"]["latency_source"] == "measured"), good[0])
    where = f"{first['result']['latency_source']} on {first['host']} over SSH"
    return Measured(first["result"], where, _record(path, cached), hosts, tuple(notes))


def _record(path: Path, cached: bool) -> dict:
    return {"dir": str(path), "key": path.stem, "cached": cached}


def _with_accuracy(bench_hosts: list[dict], device_evals: list[dict] | None) -> list[dict]:
    """Each host's bench entry with its accuracy (``accuracy``, ``accuracy_error``) beside it."""
    by_host = {e["host"]: e for e in device_evals or []}
    return [
        {
            **h,
            "accuracy": by_host.get(h["host"], {}).get("result"),
            "accuracy_error": by_host.get(h["host"], {}).get("error"),
        }
        for h in bench_hosts
    ]


# ---------------------------------------------------------------- the report


def assemble_report(
    run: Run, art, quant: dict | None, acc: Measured, lat: Measured, stages: dict[str, dict | None]
) -> Report:
    """report.json (:class:`edgecnn.results.Report`) from the steps' results; ``seconds`` is set
    by :func:`deploy` once the bundle is ready to write."""
    from edgecnn.artifact import model_size_mb
    from edgecnn.version import __version__

    meta, ev, bench = art.meta, acc.result, lat.result
    notes = [f"QAT skipped: {quant['qat_skipped']}"] if quant and quant.get("qat_skipped") else []
    notes += [*lat.notes, *(ev.get("notes") or []), *(bench.get("notes") or [])]
    return Report(
        arch=run.arch,
        target=Target(run.target),
        device=bench.get("device"),
        runtime=Runtime(run.runtime),
        precision=Precision(run.options.precision),
        image_size=int(meta["preprocess"]["image_size"]),
        num_classes=int(meta["num_classes"]),
        dataset=Dataset(ev["dataset"], ev["split"], ev["split_id"], ev["num_images"]),
        accuracy=accuracy_of(ev, quant, acc.where),
        accuracy_where=acc.where,
        **_latency_fields(bench, lat.where),
        model_size_mb=model_size_mb(art),
        quantization=None
        if quant is None
        else Quantization(
            QuantStage(quant["stage"]),
            Method(quant["method"]),
            quant.get("qat_skipped"),
            tuple(meta["float_layers"]),
            tuple(quant.get("float_layers") or ()),
            quant.get("budget"),
        ),
        published=_published(run.arch),
        artifact=BundledArtifact(bundle.ARTIFACT, str(art.dir), meta["format"], dict(meta["files"])),
        stages=stages,
        hosts=None if lat.hosts is None else tuple(lat.hosts),
        bench_env=bench.get("env"),
        notes=tuple(notes),
        tools={**meta.get("tools", {}), "edgecnn": __version__, "python": platform.python_version()},
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        seconds=None,
    )


def accuracy_of(ev: dict, quant: dict | None, where: str) -> Accuracy:
    """The report's accuracy from an evaluation (here, or a device's) and the quantization."""
    top1, fp32 = ev["top1"], ev["fp32_top1"]
    host_run = ev.get("host_run") or {}
    return Accuracy(
        top1=top1,
        top5=ev["top5"],
        fp32_top1=fp32,
        drop=None if fp32 is None else 100 * (fp32 - top1),
        ci95=tuple(ev["top1_ci"]),
        agreement=ev["agreement"],
        runtime=Runtime(ev["runtime"]),
        fakequant_top1=None if quant is None else quant["int8_fakequant"]["top1"],
        mcnemar_p=None if ev["mcnemar"] is None else ev["mcnemar"]["p_value"],
        source="measured",
        where=where,
        runtime_version=ev.get("runtime_version") or (ev.get("runtime_info") or {}).get("version"),
        machine=ev.get("machine"),
        host_agreement=host_run.get("agreement"),
        flipped=None if host_run.get("flipped") is None else tuple(host_run["flipped"]),
    )


def _latency_fields(bench: dict, where: str) -> dict[str, Any]:
    """The report's latency, throughput, memory and energy fields from a bench (or prediction) result."""
    measured = bench["latency_source"] == "measured"
    band = None if measured else bench.get("band_ms")
    return {
        "latency_ms": Latency(
            **{k: bench["latency_ms"][k] for k in ("p50", "p90", "p99", "mean", "min", "max", "n")}
        ),
        "latency_source": LatencySource(bench["latency_source"]),
        "latency_error_pct": None if measured else bench.get("error_pct"),
        "latency_band_ms": None if band is None else tuple(band),
        "latency_where": where,
        "batch": bench.get("batch") or 1,
        "throughput_ips": bench.get("throughput_ips"),
        "peak_memory_mb": bench.get("peak_memory_mb") if measured else None,
        "peak_memory_source": "measured" if measured and bench.get("peak_memory_mb") is not None else None,
        "energy_mj": bench.get("energy_mj"),
        "energy_source": bench.get("energy_source"),
    }


def _published(arch: str) -> Published | None:
    from edgecnn.models import arch_info

    p = arch_info(arch).published
    return None if p is None else Published(p.top1, p.top5, p.source)
