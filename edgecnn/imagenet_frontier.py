"""The frontier of the four ImageNet networks at a deployment resolution, with no training.

``edgecnn frontier --imagenet`` (alias ``--published``) answers "which network do I ship"
in minutes: for every network, target and precision it builds the real artifact for the
target's runtime (OpenVINO IR on cpu, QDQ ONNX for TensorRT on jetson, .tflite on rpi) from
the network's own torchvision architecture (1000 classes, not the small-input variant),
quantized by the same PT2E path and scheme as a trained model (:func:`edgecnn.quantize.pt2e.ptq`),
then

- **latency**: measured on this machine for cpu (a fresh ``edgecnn bench`` process), measured
  over SSH on ``hosts[target]``, or predicted from the device profile with its error band;
- **accuracy**: quoted, not measured, by default (``accuracy_basis: "published"``): the
  published ImageNet top-1 of :mod:`edgecnn.published`, labelled with its source, or
  "not published" where no citable figure exists. Weights are then seeded random
  (latency does not depend on their values) and calibration uses a few synthetic images.
- With ``data`` (an ImageFolder of the 1000 ImageNet classes) and ``weights="imagenet"``
  (torchvision's files, sha256-checked) accuracy is *measured* instead
  (``accuracy_basis: "measured"``): calibration on the data's calib split, each artifact
  evaluated in its own runtime on the test split. Preprocessing stretches to the input
  size (edgecnn has no resize-and-centre-crop), so the figures sit a little below the
  published centre-crop ones.

Artifacts are cached under ``$EDGECNN_HOME/runs/imagenet/`` by the hash of what makes them;
the networks are built in ``jobs`` processes (largest first). Results are typed
(:class:`ImagenetRun`, each made a :class:`edgecnn.results.FrontierPoint`, and a
:class:`edgecnn.results.Frontier` of kind "imagenet"); frontier.json is written by
:func:`edgecnn.frontier.write_frontier` with the keys added in this mode.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edgecnn import outdir
from edgecnn.errors import EdgecnnError
from edgecnn.export import weight_bits
from edgecnn.results import FailedRun, Frontier, FrontierPoint, SkippedRun

IMAGENET_CLASSES = 1000
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet normalisation
IMAGENET_STD = (0.229, 0.224, 0.225)
BUILD_VERSION = 1  # bump when what a cached artifact of this mode holds changes
CALIB_BATCH = 2  # the smallest batch that captures a dynamic-batch graph (ONNX files stay batch-free)
RUNS = "imagenet"


@dataclass(frozen=True)
class Calibration:
    """Which images set the INT8 activation ranges."""

    num_images: int
    source: str
    method: str = "minmax"
    batch_size: int = CALIB_BATCH
    seed: int = 0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Accuracy:
    """A point's top-1 and what it rests on: ``basis`` "published", "measured" or "not published"."""

    basis: str
    top1: float | None = None  # fraction
    source: str | None = None
    top5: float | None = None
    ci95: tuple[float, float] | None = None
    runtime: str | None = None
    dataset: str | None = None
    test_images: int | None = None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ImagenetRun:
    """One (network, device, precision) of the frontier: its artifact, latency and accuracy."""

    arch: str
    target: str
    device: str
    runtime: str
    precision: str
    image_size: int
    accuracy: Accuracy
    latency: Mapping[str, Any] = field(repr=False)  # a bench result (measured or predicted)
    latency_where: str
    size_mb: float
    artifact: str
    fp32_top1: float | None = None
    reused: bool = False
    published_fp32: tuple[float, str] | None = None  # (top-1 %, source): the reference column

    @property
    def id(self) -> str:
        basis = "measured" if self.accuracy.basis == "measured" else "published"
        return f"{self.arch}-{self.device}-{self.runtime}-{self.precision}-{self.image_size}px-{basis}"

    def to_point(self) -> FrontierPoint:
        """The frontier's point of this run (an artifact point: ``artifact`` and ``accuracy_reference``)."""
        a, b, lat = self.accuracy, self.latency, self.latency["latency_ms"]
        band = b.get("band_ms") or [None, None]
        ci = a.ci95 or (None, None)
        measured = b["latency_source"] == "measured"
        drop = None if a.top1 is None or self.fp32_top1 is None else 100 * (self.fp32_top1 - a.top1)
        return FrontierPoint(
            id=self.id,
            arch=self.arch,
            target=self.target,
            device=self.device,
            runtime=self.runtime,
            precision=self.precision,
            image_size=self.image_size,
            dataset=a.dataset or "ImageNet (published)",
            test_images=a.test_images,
            top1=a.top1,
            top5=a.top5,
            ci95_low=ci[0],
            ci95_high=ci[1],
            fp32_top1=self.fp32_top1,
            drop_points=drop,
            agreement=None,
            accuracy_runtime=a.runtime,
            accuracy_source=a.basis,
            accuracy_reference=a.source,
            p50_ms=lat["p50"],
            p90_ms=lat["p90"],
            p99_ms=lat["p99"],
            latency_n=lat["n"],
            latency_source=b["latency_source"],
            latency_band_low_ms=None if measured else band[0],
            latency_band_high_ms=None if measured else band[1],
            latency_where=self.latency_where,
            throughput_ips=b.get("throughput_ips"),
            energy_mj=b.get("energy_mj"),
            energy_source=b.get("energy_source"),
            size_mb=self.size_mb,
            size_source="measured",
            memory_mb=b.get("peak_memory_mb") if measured else None,
            memory_source="measured" if measured and b.get("peak_memory_mb") is not None else None,
            published_imagenet_top1=self.published_fp32 and self.published_fp32[0],
            published_source=self.published_fp32 and self.published_fp32[1],
            bundle=None,
            artifact=self.artifact,
            seconds=None,
            reused=("artifact",) if self.reused else (),
        )


# ---------------------------------------------------------------- options


def check_options(*, data: str | None, weights: str | None, image_size: int, archs: Sequence[str]) -> None:
    """Conflicting options and impossible sizes, one line each, before any work."""
    from edgecnn.models import arch_info, create, min_input_size

    if weights not in (None, "imagenet"):
        raise EdgecnnError(
            f"--imagenet takes --weights imagenet (torchvision's checkpoints), not {weights!r}"
        )
    if weights and not data:
        raise EdgecnnError(
            "--weights imagenet measures accuracy, which needs --data (an ImageFolder of the "
            "1000 ImageNet classes); without both, --imagenet quotes published accuracy"
        )
    if data and not weights:
        raise EdgecnnError(
            "--data with --imagenet measures accuracy of torchvision's weights: add --weights "
            "imagenet (random weights would score chance)"
        )
    import torch

    for a in archs:
        arch_info(a)
        with torch.device("meta"):
            need = min_input_size(create(a))
        if image_size < need:
            raise EdgecnnError(f"{a} needs images of at least {need} px, got --image-size {image_size}")


def imagenet_data(data: str):
    """The ImageFolder at ``data``, refused unless it has ImageNet's 1000 classes."""
    from edgecnn.data import load_dataset

    bundle = load_dataset(data)
    if len(bundle.classes) != IMAGENET_CLASSES:
        raise EdgecnnError(
            f"--imagenet --data needs the {IMAGENET_CLASSES} ImageNet classes (folders named by "
            f"WordNet id, sorted as torchvision's class indices); {data} has "
            f"{len(bundle.classes)} classes"
        )
    return bundle


def preprocess(image_size: int):
    from edgecnn.data import Preprocess

    return Preprocess(image_size=image_size, channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD)


# ---------------------------------------------------------------- building the artifacts


@dataclass(frozen=True)
class Job:
    """The artifacts of one network, made by one build process."""

    arch: str
    image_size: int
    combos: tuple[tuple[str, str, str], ...]  # (target, runtime, precision)
    calibration: Calibration
    weights: Any = None  # None: seeded random init; a PublishedWeights: that file (fetched, checked)
    data: str | None = None
    force: bool = False
    threads: int | None = None
    calib_images: Any = None  # uint8 N x H x W x 3 from ``data`` (None: synthetic)
    class_names: tuple[str, ...] | None = None  # ``data``'s (None: "imagenet class i")


def _artifact_dir(job: Job, target: str, runtime: str, precision: str) -> tuple[Path, str]:
    from edgecnn import paths
    from edgecnn.export import EXPORT_VERSION, tool_versions
    from edgecnn.stage import stage_key

    w = job.weights
    key = stage_key(
        {
            "v": BUILD_VERSION,
            "export": EXPORT_VERSION,
            "arch": job.arch,
            "size": job.image_size,
            "weights": None if w is None else w.sha256 or w.sha256_prefix,
            "seed": job.calibration.seed,
            "calib": job.calibration.to_json(),
            "data": job.data,
            "target": target,
            "runtime": runtime,
            "precision": precision,
            "bits": weight_bits(runtime, precision),
            "tools": tool_versions(runtime),
        }
    )
    return (
        paths.runs_dir() / RUNS / f"{job.arch}-{job.image_size}px-{target}-{runtime}-{precision}-{key}",
        key,
    )


def _cached_artifact(d: Path, key: str) -> bool:
    from edgecnn.artifact import load_artifact

    try:
        return load_artifact(d, verify=False).meta.get("stage_key") == key
    except EdgecnnError:
        return False


def _model(job: Job):
    """The float network: seeded random init, or the published file (checksummed) loaded strictly."""
    import torch

    from edgecnn.models import arch_info, create, fetch_published

    torch.manual_seed(job.calibration.seed)
    if job.weights is None:
        return create(job.arch).eval()
    extra = {"transform_input": True} if arch_info(job.arch).family == "googlenet" else {}
    return create(job.arch, weights=fetch_published(job.weights), **extra).eval()


def _calibration_images(job: Job):
    """Preprocessed calibration tensor: the data's calib split, or seeded synthetic uint8 images."""
    import numpy as np

    pre, n = preprocess(job.image_size), job.calibration.num_images
    if job.calib_images is not None:
        return pre.apply_torch(job.calib_images)
    rng = np.random.default_rng(job.calibration.seed)
    return pre.apply_torch(rng.integers(0, 256, (n, job.image_size, job.image_size, 3), dtype=np.uint8))


def data_calibration(bundle, n: int, seed: int):
    """The first ``n`` images of ``bundle``'s calib split (disjoint from its test split), uint8."""
    from edgecnn.data import SplitSpec, make_splits
    from edgecnn.data.splits import calibration_set, take

    calib = make_splits(bundle, SplitSpec(val=0, calib=n, seed=seed))["calib"]
    return take(bundle, calibration_set(calib, n))[0]


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


class _Builder:
    """One network's graphs and ONNX files, each made once and shared by the artifacts that need it."""

    def __init__(self, job: Job, scratch: Path, log: Callable[[str], None]):
        self.job, self.scratch, self.log = job, scratch, log
        self.timings: dict[str, float] = {}
        self._graphs: dict[Any, Any] = {}
        self._onnx: dict[Any, Path] = {}
        t0 = _now()
        self.model = _model(job)
        self.calib = _calibration_images(job)
        self._lap("model_and_images", t0)

    def _lap(self, what: str, t0: tuple[float, float]) -> None:
        """Add wall and CPU (this process, all threads) seconds since ``t0`` (:func:`_now`) to ``what``."""
        w, c = self.timings.get(what, (0.0, 0.0))
        now = _now()
        self.timings[what] = (round(w + now[0] - t0[0], 2), round(c + now[1] - t0[1], 2))

    def graph(self, bits: int | None):
        """The float graph (``bits`` None) or the PTQ graph with ``bits``-bit weights."""
        if bits not in self._graphs:
            from edgecnn.quantize.pt2e import prepare_float, ptq

            t0 = _now()
            c = self.job.calibration
            self._graphs[bits] = (
                prepare_float(self.model)
                if bits is None
                else ptq(self.model, self.calib, method=c.method, batch_size=c.batch_size, weight_bits=bits)
            )
            self._lap("float_graph" if bits is None else "calibrate", t0)
        return self._graphs[bits]

    def onnx(self, bits: int | None) -> Path:
        """The ONNX export of :meth:`graph` (QDQ finalized for INT8), shared by OpenVINO/ORT/TensorRT."""
        if bits not in self._onnx:
            from edgecnn.export.onnx import export_onnx, finalize_qdq

            module = self.graph(bits)
            t0 = _now()
            path = export_onnx(module, self.calib[:CALIB_BATCH], self.scratch / f"{bits or 'float'}.onnx")
            if bits is not None:
                finalize_qdq(path)
            self._onnx[bits] = path
            self._lap("onnx_export", t0)
        return self._onnx[bits]


def build_arch(job: Job, log: Callable[[str], None] | None = None) -> dict:
    """Make (or reuse) every artifact of ``job``; return {"artifacts": {"target/precision": [dir, reused]},
    "timings": {phase: (wall s, CPU s)}}. Runs in a build process (:func:`build_all`) or in this one."""
    import shutil
    import tempfile

    import torch

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    if job.threads:
        torch.set_num_threads(job.threads)
    t_start = _now()
    done: dict[str, list] = {}
    todo = []
    for target, runtime, precision in job.combos:
        d, key = _artifact_dir(job, target, runtime, precision)
        if not job.force and _cached_artifact(d, key):
            done[f"{target}/{precision}"] = [str(d), True]
        else:
            todo.append((target, runtime, precision, d, key))
    timings: dict[str, tuple[float, float]] = {}
    if todo:
        todo[0][3].parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{job.arch}.", dir=todo[0][3].parent))
        try:
            b = _Builder(job, scratch, log)
            for target, runtime, precision, d, key in todo:
                log(f"{job.arch}: building {precision} for {target} ({runtime}) at {job.image_size} px")
                bits = weight_bits(runtime, precision) if precision == "int8" else None
                b.graph(bits)  # the steps several artifacts share, timed apart
                if runtime != "tflite":
                    b.onnx(bits)
                t0 = _now()
                _write_artifact(b, target, runtime, precision, d, key)
                b._lap(f"write {runtime} {precision}", t0)
                done[f"{target}/{precision}"] = [str(d), False]
            timings = b.timings
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    now = _now()
    timings["total"] = (round(now[0] - t_start[0], 2), round(now[1] - t_start[1], 2))
    return {"arch": job.arch, "artifacts": done, "timings": timings}


def _write_artifact(b: _Builder, target: str, runtime: str, precision: str, d: Path, key: str) -> None:
    """The runtime's files through export's own writer, then metadata.json; the folder replaced whole
    (:func:`edgecnn.outdir.replace`, as export does)."""
    from edgecnn import outdir
    from edgecnn.artifact import write_metadata
    from edgecnn.export import RUNTIME_FILES, write_runtime_files
    from edgecnn.quantize.pt2e import make_quantizer

    job = b.job
    bits = weight_bits(runtime, precision) if precision == "int8" else None
    stage = None if bits is None else {"method": job.calibration.method}
    onnx_file = None if runtime == "tflite" else b.onnx(bits)
    with outdir.replace(d, "export") as tmp:
        backend_float, io = write_runtime_files(
            runtime,
            precision,
            b.graph(bits),
            b.calib[:CALIB_BATCH],
            tmp,
            stage,
            make_quantizer,
            onnx_file=onnx_file,
        )
        write_metadata(
            tmp,
            _metadata(
                job, target, runtime, precision, bits, key, list(RUNTIME_FILES[runtime]), io, backend_float
            ),
        )


def _metadata(
    job: Job,
    target: str,
    runtime: str,
    precision: str,
    bits: int | None,
    key: str,
    files: list[str],
    io: dict,
    backend_float: list[str],
) -> dict:
    from edgecnn.export import EXPORT_VERSION, INT8_FORM, tool_versions
    from edgecnn.quantize.pt2e import SCHEME

    names = list(job.class_names or (f"imagenet class {i}" for i in range(IMAGENET_CLASSES)))
    w = job.weights
    return {
        "arch": job.arch,
        "model_options": {"small_input": False},
        "num_classes": IMAGENET_CLASSES,
        "class_names": names,
        "target": target,
        "runtime": runtime,
        "precision": precision,
        "files": files,
        **io,
        "preprocess": preprocess(job.image_size).to_dict(),
        "quantization": None
        if bits is None
        else {
            "weights_range": "int8 limited to [-63, 63] (7 bits): x86 without VNNI"
            if bits == 7
            else "[-127, 127]",
            **SCHEME,
            "form": INT8_FORM.get(runtime, SCHEME["activations"]),
            "calibration": {**job.calibration.to_json(), "dataset": job.data or "synthetic"},
            "qat": None,
        },
        "float_layers": backend_float,
        "source": {
            "checkpoint": None if w is None else w.url,
            "sha256": None if w is None else w.sha256,
            "weights": "seeded random init (latency only)" if w is None else w.source,
            "seed": job.calibration.seed,
        },
        "tools": tool_versions(runtime),
        "stage_key": key,
        "export_version": EXPORT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def build_all(jobs: Sequence[Job], workers: int, log: Callable[[str], None]) -> list[dict]:
    """Every job's artifacts: in this process with ``workers`` 1, else in that many spawned processes,
    the networks with the most MACs first (VGG16 would otherwise finish last, alone)."""
    if workers <= 1 or len(jobs) <= 1:
        return [_guarded(lambda j=j: build_arch(j, log), j.arch) for j in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    order = sorted(jobs, key=lambda j: -_macs(j.arch, j.image_size))
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {j.arch: pool.submit(build_arch, j) for j in order}
        return [_guarded(futures[j.arch].result, j.arch) for j in jobs]


def _guarded(make: Callable[[], dict], arch: str) -> dict:
    """A network whose build fails is reported (its combinations listed as failed); the others go on."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        return make()
    except EdgecnnError as e:
        return {"arch": arch, "artifacts": {}, "timings": {}, "error": str(e)}
    except BrokenProcessPool:
        return {
            "arch": arch,
            "artifacts": {},
            "timings": {},
            "error": "its build process died (out of memory?); run with fewer --archs at a time",
        }


def _macs(arch: str, image_size: int) -> int:
    import torch

    from edgecnn.models import count_macs, create

    with torch.device("meta"):
        return count_macs(create(arch), (1, 3, image_size, image_size))


# ---------------------------------------------------------------- latency and accuracy


def latency(
    art_dir: Path,
    arch: str,
    target: str,
    device: str | None,
    *,
    hosts: Sequence[str] = (),
    ssh: Mapping[str, Any] | None = None,
    threads: int | None = None,
    seconds: float = 2.0,
    runs: int = 10,
    force: bool = False,
) -> tuple[dict, str]:
    """(bench result, where): measured here for cpu, over SSH on ``hosts`` (``ssh``: bench_hosts'
    ``remote_python`` and ``ssh_config``), else predicted."""
    from edgecnn.artifact import load_artifact
    from edgecnn.latency import predicted
    from edgecnn.stage import stage_key

    meta = load_artifact(art_dir, verify=False).meta
    if not hosts and target != "cpu":
        r = predicted(arch, device or target, meta, threads=threads)  # model_options: small_input False
        return r, f"predicted for {r['device']} from its device profile (no device measured it)"
    timing = {"v": BUILD_VERSION, "mode": RUNS, "files": stage_key({"files": meta["files"]})}
    if hosts:
        key = {**timing, "hosts": list(hosts), "threads": threads, "s": seconds, "n": runs}
        return _measured_over_ssh(art_dir, hosts, key, ssh or {}, force)
    key = {**timing, "local": platform.node(), "threads": threads, "s": seconds, "n": runs}
    return _measured_here(art_dir, key, force), "measured on this machine"


def _measured_over_ssh(
    art_dir: Path, hosts: Sequence[str], key: dict, ssh: Mapping[str, Any], force: bool
) -> tuple[dict, str]:
    """The first host's bench result (cached under ``key``: ``threads``, seconds ``s``, runs ``n``)."""
    from edgecnn.remote import bench_hosts
    from edgecnn.stage import json_result, stage_key

    def remote() -> dict:
        rs = bench_hosts(
            art_dir, hosts, threads=key["threads"], min_seconds=key["s"], min_runs=key["n"], **ssh
        )
        return {"hosts": [{"host": r.host, "result": r.result, "error": r.error} for r in rs]}

    lat, _, path = json_result("latency", stage_key(key), force, remote)
    good = [h for h in lat["hosts"] if h.get("result")]
    if not good:
        path.unlink(missing_ok=True)  # nothing measured: do not cache the failure
        raise EdgecnnError("; ".join(h.get("error") or f"{h.get('host')}: failed" for h in lat["hosts"]))
    return good[0]["result"], f"measured on {good[0]['host']} over SSH"


def _measured_here(art_dir: Path, key: dict, force: bool) -> dict:
    """A fresh ``edgecnn bench`` process on this machine (cached under ``key``)."""
    from edgecnn.latency import measure_here
    from edgecnn.stage import json_result, stage_key

    def bench() -> dict:
        return measure_here(art_dir, threads=key["threads"], min_seconds=key["s"], min_runs=key["n"])

    return json_result("latency", stage_key(key), force, bench)[0]


def published(
    arch: str, precision: str, image_size: int, registry: Mapping | None = None, drops: Mapping | None = None
) -> Accuracy:
    """The published top-1 with its source, or basis "not published" (never a guess)."""
    from edgecnn.published import NOT_PUBLISHED, published_accuracy

    pa = published_accuracy(arch, precision, image_size, drops=drops, fp32=registry)
    if pa is None:
        return Accuracy(NOT_PUBLISHED)
    return Accuracy("published", round(pa.top1 / 100, 6), f"published ImageNet top-1: {pa.source}")


def measured(art_dir: Path, data: str, *, threads: int | None = None, force: bool = False) -> Accuracy:
    """Top-1 of the artifact in its own runtime (TensorRT's QDQ file in OpenVINO or ONNX Runtime where
    TensorRT is not importable, :func:`edgecnn.device_eval.host_runtime`: ``runtime`` says which ran)
    on the test split of ``data``."""
    from edgecnn.artifact import load_artifact
    from edgecnn.device_eval import host_runtime
    from edgecnn.evaluate import evaluate_artifact, json_report
    from edgecnn.stage import json_result, stage_key

    art = load_artifact(art_dir, verify=False)
    meta = art.meta
    rt, _ = host_runtime(art)
    key = stage_key(
        {
            "v": BUILD_VERSION,
            "mode": RUNS,
            "files": meta["files"],
            "rt": rt,
            "data": str(Path(data).resolve()),
        }
    )
    ev, _, _ = json_result(
        "evaluate",
        key,
        force,
        lambda: json_report(evaluate_artifact(art_dir, data=data, runtime=rt, threads=threads)),
    )
    return Accuracy(
        "measured",
        ev["top1"],
        f"measured in {ev['runtime']} on {ev['num_images']} {ev['dataset']} {ev['split']} images",
        ev["top5"],
        tuple(ev["top1_ci"]),
        ev["runtime"],
        ev["dataset"],
        ev["num_images"],
    )


# ---------------------------------------------------------------- the whole run


def _jobs(archs, targets, precisions, o: ImagenetOptions, calibration: Calibration, bundle, workers: int):
    """One :class:`Job` per network, and the (network, target, precision) combinations no runtime runs.
    ``bundle``: the ImageFolder of ``o.data`` (None: no data); ``workers``: build processes."""
    image_size, data, force = o.image_size, o.data, o.force
    registry = o.registry if o.weights else None
    threads = o.threads or max(1, (os.cpu_count() or 1) // workers)
    from edgecnn.export import DEFAULT_RUNTIME
    from edgecnn.frontier.run import Combo, skip_reason

    jobs, skipped = [], []
    for arch in archs:
        combos = []
        for target, device in targets:
            runtime = DEFAULT_RUNTIME[target]
            for p in precisions:
                why = skip_reason(Combo(arch, target, device, p))
                if why is not None:
                    skipped.append(SkippedRun(arch, device or target, p, why))
                elif (target, runtime, p) not in combos:
                    combos.append((target, runtime, p))
        if combos:
            w = None if registry is None else registry.get(arch)
            if registry is not None and w is None:
                raise EdgecnnError(
                    f"{arch} has no published ImageNet weights to measure; drop it from --archs"
                )
            extra = (
                {}
                if bundle is None
                else {
                    "calib_images": data_calibration(bundle, calibration.num_images, calibration.seed),
                    "class_names": tuple(bundle.classes),
                }
            )
            jobs.append(Job(arch, image_size, tuple(combos), calibration, w, data, force, threads, **extra))
    return jobs, skipped


def _point(
    job: Job,
    target: str,
    device: str | None,
    runtime: str,
    precision: str,
    art: list,
    opts: ImagenetOptions,
) -> ImagenetRun:
    """The run of one built artifact (``art``: its folder and whether it was cached): latency, accuracy."""
    from edgecnn.artifact import load_artifact, model_size_mb

    d = Path(art[0])
    loaded = load_artifact(d)  # sha256 checked once, here
    bench, where = latency(
        d,
        job.arch,
        target,
        device,
        hosts=opts.hosts.get(device or target, ()),
        ssh=opts.ssh,
        threads=opts.threads,
        seconds=opts.bench_seconds,
        runs=opts.bench_runs,
        force=opts.force,
    )
    acc = (
        measured(d, job.data, threads=opts.threads, force=opts.force)
        if job.data
        else published(job.arch, precision, job.image_size, opts.registry, opts.int8_drops)
    )
    return ImagenetRun(
        job.arch,
        target,
        bench.get("device") or device or target,
        runtime,
        precision,
        job.image_size,
        acc,
        bench,
        where,
        model_size_mb(loaded),
        str(d),
        reused=bool(art[1]),
        published_fp32=(ref.top1, ref.source) if (ref := opts.registry.get(job.arch)) else None,
    )


def _with_fp32(points: list[ImagenetRun]) -> list[ImagenetRun]:
    """Measured points carry their network's FP32 top-1 on the same device (for the drop column)."""
    fp32 = {
        (p.arch, p.device): p.accuracy.top1
        for p in points
        if p.precision == "fp32" and p.accuracy.basis == "measured"
    }
    return [
        replace(p, fp32_top1=fp32.get((p.arch, p.device))) if p.accuracy.basis == "measured" else p
        for p in points
    ]


@dataclass(frozen=True)
class ImagenetOptions:
    """How :func:`run_imagenet_frontier` runs.

    ``hosts``: {target or device as in ``targets``: [[user@]host, ...]}
    (:func:`edgecnn.frontier.parse_hosts`). ``registry`` replaces torchvision's published weights
    and FP32 figures, ``int8_drops`` the published INT8 drops (:mod:`edgecnn.published`): tests give
    tiny variants labelled figures. ``workers``: build processes (default: up to 2)."""

    out: str | os.PathLike
    image_size: int = 224
    cost: str = "p50"
    data: str | None = None
    weights: str | None = None
    hosts: Mapping[str, Sequence[str]] = field(default_factory=dict)
    remote_python: str | None = None
    ssh_config: str | None = None
    ssh_timeout: float | None = None
    calib_images: int = 8
    seed: int = 0
    workers: int | None = None
    force: bool = False
    threads: int | None = None
    bench_seconds: float = 2.0
    bench_runs: int = 10
    registry: Mapping | None = None
    int8_drops: Mapping | None = None
    log: Callable[[str], None] = print
    command: str | None = None

    @property
    def ssh(self) -> dict[str, Any]:
        return {
            "remote_python": self.remote_python,
            "ssh_config": self.ssh_config,
            "timeout": self.ssh_timeout,
        }


@outdir.holding_locks
def run_imagenet_frontier(
    archs: Sequence[str],
    targets: Sequence[tuple[str, str | None]],
    precisions: Sequence[str],
    opts: ImagenetOptions,
) -> tuple[Path, Frontier]:
    """Build, time and label every combination; write the frontier directory; return (out, result)."""
    from edgecnn import frontier as fr
    from edgecnn.models.weights import PUBLISHED

    fr.check_cost(opts.cost)
    fr.check_plot()
    out = Path(opts.out)
    check_options(data=opts.data, weights=opts.weights, image_size=opts.image_size, archs=archs)
    bundle = imagenet_data(opts.data) if opts.data else None
    outdir.hold(out, "frontier", f"the frontier {out}", fr.FILES)
    o = replace(opts, registry=PUBLISHED if opts.registry is None else opts.registry)
    calib = _calibration(o.calib_images, o.data, o.image_size, o.seed)
    workers = o.workers or max(1, min(2, os.cpu_count() or 1))
    jobs, skipped = _jobs(archs, targets, precisions, o, calib, bundle, workers)
    t0 = time.perf_counter()
    built = {b["arch"]: b for b in build_all(jobs, min(workers, len(jobs)), o.log)}
    t_built = time.perf_counter()
    runs, failed = _measure(jobs, targets, built, o)
    if not runs:
        raise EdgecnnError(
            "no combination ran: "
            + "; ".join(f"{f.arch} {f.target} {f.precision}: {f.error}" for f in failed)[:2000]
        )
    result = Frontier(
        kind="imagenet",
        accuracy_basis="measured" if o.data else "published",
        **fr.cost_fields(o.cost),
        archs=tuple(archs),
        targets=tuple(d or t for t, d in targets),
        precisions=tuple(precisions),
        image_size=o.image_size,
        weights="imagenet (torchvision, sha256-checked)"
        if o.weights
        else f"seeded random init (seed {o.seed}): latency only",
        calibration=calib.to_json(),
        int8=f"ptq ({calib.method}, {calib.num_images} images)",
        points=tuple(fr.flag_pareto([r.to_point() for r in _with_fp32(runs)], o.cost)),
        skipped=tuple(skipped),
        failed=tuple(failed),
        timings=_timings(t0, t_built, min(workers, len(jobs)), built),
        command=o.command,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        seconds=round(time.perf_counter() - t0, 2),
    )
    fr.write_frontier(out, result)
    fr.remember(result, out)
    o.log(f"wrote {out}")
    return out, result


def _calibration(calib_images: int, data: str | None, image_size: int, seed: int) -> Calibration:
    return Calibration(
        calib_images,
        f"{calib_images} images of the calib split of {data}"
        if data
        else f"{calib_images} synthetic images (seeded uniform random RGB, {image_size} px, ImageNet "
        f"normalisation)",
        seed=seed,
    )


def _timings(t0: float, t_built: float, workers: int, built: dict) -> dict:
    return {
        "build_s": round(t_built - t0, 2),
        "latency_and_accuracy_s": round(time.perf_counter() - t_built, 2),
        "workers": workers,
        "per_network": {a: b["timings"] for a, b in built.items()},
    }


def _measure(jobs, targets, built, opts: ImagenetOptions) -> tuple[list[ImagenetRun], list[FailedRun]]:
    """Latency (measured one artifact at a time, after every build finished) and accuracy per combination."""
    points, failed = [], []
    for job in jobs:
        for target, device in targets:
            for t, runtime, precision in job.combos:
                if t != target:
                    continue
                where = device or target
                opts.log(f"{job.arch} on {where}, {precision}: latency and accuracy")
                try:
                    b = built[job.arch]
                    if b.get("error"):
                        raise EdgecnnError(f"building {job.arch} failed: {b['error']}")
                    art = b["artifacts"][f"{target}/{precision}"]
                    points.append(_point(job, target, device, runtime, precision, art, opts))
                except EdgecnnError as e:
                    opts.log(f"  failed: {e}")
                    failed.append(FailedRun(job.arch, where, precision, str(e)))
    return points, failed
