"""Build TensorRT engines from a Jetson artifact's QDQ ONNX, with trtexec or the Python builder.

On the device (a Jetson with JetPack, or any GPU with ``pip install 'edgecnn[tensorrt]'``)::

    edgecnn build-engine ARTIFACT              # or scripts/jetson/build_engine.sh ARTIFACT
    edgecnn build-engine ARTIFACT --dry-run    # print the trtexec command only

checks the artifact's sha256, builds ``ARTIFACT/model.engine`` with ``trtexec`` when present
(else with the TensorRT Python builder), writes its sidecar and stores it in the engine
cache (:mod:`edgecnn.tensorrt.engine_cache`), where :class:`edgecnn.tensorrt.session.TensorRtSession`
finds it when it opens the artifact's model.onnx.

This module imports neither torch nor tensorrt at import time (it runs on the device).
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn import outdir
from edgecnn.artifact import load_artifact
from edgecnn.errors import EdgecnnError
from edgecnn.fileio import atomic_path
from edgecnn.runtimes.base import missing_backend
from edgecnn.tensorrt.engine_cache import (
    DEFAULT_PROFILE,
    BatchProfile,
    DeviceInfo,
    Engine,
    EngineCache,
    engine_key,
    engine_meta,
    engines_dir,
    sidecar_path,
    timing_cache_path,
    write_engine,
)
from edgecnn.tensorrt.fp16 import to_strongly_typed_fp16  # imports onnx only when it runs
from edgecnn.tensorrt.versions import (
    BuildPlan,
    TrtVersion,
    build_plan,
    check_precision,
    check_supported,
    trtexec_version,
)

# Where JetPack installs trtexec (it is not on PATH there).
TRTEXEC_PATHS = ("/usr/src/tensorrt/bin/trtexec", "/usr/local/tensorrt/bin/trtexec")

# -- needs TensorRT and a GPU ---------------------------------------------------------------


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise missing_backend("tensorrt") from e
    return trt


def plan_for(
    precision: str | None,
    version: str,
    log: Callable[[str], None] = lambda s: None,
    *,
    fp16_rewrite: bool = False,
) -> BuildPlan:
    """The build plan of ``precision`` on TensorRT ``version``, refusing a TensorRT older than 10."""
    v = TrtVersion.parse(version)
    check_supported(v, log)
    return build_plan(precision, v, fp16_rewrite=fp16_rewrite)


@contextmanager
def prepared_onnx(onnx: Path, plan: BuildPlan, log: Callable[[str], None] = lambda s: None):
    """Yield (the ONNX to build, its FP16 rewrite or None): ``onnx`` itself, or where the plan asks for it
    (TensorRT 11, int8, opt-in) the graph with FP16 outside its Q/DQ pairs, in a temporary directory."""
    if not plan.fp16_rewrite:
        yield onnx, None
        return
    with tempfile.TemporaryDirectory(prefix="edgecnn-trt-") as tmp:
        dest = Path(tmp) / f"{onnx.stem}.fp16.onnx"
        rewrite = to_strongly_typed_fp16(onnx, dest)
        log(
            f"TensorRT {plan.version} is strongly typed: built from {onnx.name} with FP16 outside its Q/DQ "
            f"pairs ({rewrite.kept_fp32} Q/DQ nodes kept FP32 scales)"
        )
        yield dest, rewrite


def _gpu_cuda_python() -> tuple[str, str]:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart  # cuda-python < 12.6
    err, dev = cudart.cudaGetDevice()
    if err != cudart.cudaError_t.cudaSuccess:
        raise RuntimeError(f"cudaGetDevice: {err}")
    err, props = cudart.cudaGetDeviceProperties(dev)
    if err != cudart.cudaError_t.cudaSuccess:
        raise RuntimeError(f"cudaGetDeviceProperties: {err}")
    name = props.name
    name = name.split(b"\0")[0].decode() if isinstance(name, bytes) else str(name).rstrip("\0")
    return name.strip(), f"{props.major}.{props.minor}"


def _gpu_torch() -> tuple[str, str]:
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("torch sees no CUDA GPU")
    major, minor = torch.cuda.get_device_capability()
    return torch.cuda.get_device_name(), f"{major}.{minor}"


def gpu_device(trt=None) -> DeviceInfo:
    """TensorRT version, GPU name and compute capability of this machine (cuda-python, else torch)."""
    trt = trt or import_tensorrt()
    errors = []
    for probe in (_gpu_cuda_python, _gpu_torch):
        try:
            gpu, cc = probe()
            return DeviceInfo(tensorrt=trt.__version__, gpu=gpu, compute_capability=cc)
        except Exception as e:  # noqa: BLE001 - ImportError, no GPU, driver error: try the next probe
            errors.append(f"{probe.__name__.strip('_')}: {e}")
    raise EdgecnnError(
        "cannot query the GPU for the TensorRT engine cache ("
        + "; ".join(errors)
        + "); install cuda-python (pip install cuda-python) and check the GPU driver"
    )


def _network(trt, builder, logger, onnx: Path, plan: BuildPlan):
    """The network parsed from ``onnx``: strongly typed on TensorRT 11 (where the flag is kept and
    ignored)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None) if plan.strongly_typed else None
    network = builder.create_network(0 if flag is None else 1 << int(flag))  # explicit batch: the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx.read_bytes(), str(onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgecnnError(f"TensorRT cannot parse {onnx}: {errors or 'unknown error'}")
    return network, parser


def _add_profile(builder, config, network, onnx: Path, profile: BatchProfile) -> None:
    inp = network.get_input(0)
    shape = tuple(inp.shape)
    if any(d < 0 for d in shape):
        if any(d < 0 for d in shape[1:]):
            raise EdgecnnError(f"{onnx} has a dynamic image size {shape}; export it with a fixed one")
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(inp.name, *profile.shapes(shape[1:]))
        config.add_optimization_profile(opt_profile)


def _load_timing_cache(config, path: Path | None):
    """TensorRT's timing cache from ``path`` (a fresh one when missing or unreadable); None without a path."""
    if path is None:
        return None
    try:
        blob = path.read_bytes()
    except OSError:
        blob = b""
    cache = config.create_timing_cache(blob) if blob else None
    if cache is None:  # none yet, or one TensorRT cannot read: start an empty one
        cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, False)  # a cache from another device or version is refused, not used
    return cache


def _save_timing_cache(config, path: Path | None) -> None:
    if path is None:
        return
    cache = config.get_timing_cache()
    if cache is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(bytes(cache.serialize()))


def build_engine(
    onnx: str | os.PathLike,
    precision: str | None,
    profile: BatchProfile = DEFAULT_PROFILE,
    *,
    trt=None,
    logger=None,
    workspace_mb: int | None = None,
    timing_cache: Path | None = None,
    fp16_rewrite: bool = False,
    log: Callable[[str], None] = lambda s: None,
) -> bytes:
    """Build a serialized engine from a (QDQ) ONNX file with the TensorRT Python API.

    INT8 comes from the Q/DQ nodes (explicit quantization, no calibrator). On TensorRT 10 an
    int8 or fp16 artifact sets the FP16 (and INT8) builder flags; TensorRT 11 has none, so the
    network is strongly typed and built as written, or with ``fp16_rewrite`` from the int8
    graph with FP16 outside its Q/DQ pairs (:func:`prepared_onnx`). A dynamic batch gets
    ``profile``; ``timing_cache`` (a file) is read before and written after the build.
    """
    onnx = Path(onnx)
    trt = trt or import_tensorrt()
    plan = plan_for(precision, trt.__version__, log, fp16_rewrite=fp16_rewrite)
    logger = logger or trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    with prepared_onnx(onnx, plan, log) as (source, _):
        network, _parser = _network(trt, builder, logger, source, plan)
        config = builder.create_builder_config()
        if workspace_mb:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
        for name in plan.builder_flags:  # TensorRT 10 only; Q/DQ nodes give the INT8 scales
            config.set_flag(getattr(trt.BuilderFlag, name))
        _add_profile(builder, config, network, onnx, profile)
        _load_timing_cache(config, timing_cache)
        engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise EdgecnnError(f"TensorRT failed to build an engine from {onnx}; see its log above")
    _save_timing_cache(config, timing_cache)
    return bytes(engine)


def engine_for_onnx(
    onnx: str | os.PathLike,
    precision: str | None,
    *,
    trt=None,
    logger=None,
    profile: BatchProfile = DEFAULT_PROFILE,
    rebuild: bool = False,
    cache: EngineCache | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> Engine:
    """The cached engine for ``onnx`` on this GPU, built (and cached) when missing."""
    trt = trt or import_tensorrt()
    device = gpu_device(trt)
    check_precision(precision, device.compute_capability, device.gpu)
    timing = timing_cache_path(device.tensorrt, device.gpu, device.compute_capability)
    return (cache or EngineCache()).get_or_build(
        onnx,
        precision,
        device=device,
        profile=profile,
        rebuild=rebuild,
        log=log,
        builder=lambda path, prec, prof: build_engine(
            path, prec, prof, trt=trt, logger=logger, timing_cache=timing, log=log
        ),
    )


# -- the Jetson bundle's build step -----------------------------------------------------------


def find_trtexec(explicit: str | None = None) -> str | None:
    """``explicit``, else trtexec on PATH, else JetPack's /usr/src/tensorrt/bin/trtexec."""
    if explicit:
        return explicit
    found = shutil.which("trtexec")
    if found:
        return found
    return next((p for p in TRTEXEC_PATHS if os.access(p, os.X_OK)), None)


def trtexec_command(
    trtexec: str,
    onnx: str | os.PathLike,
    engine: str | os.PathLike,
    plan: BuildPlan,
    *,
    input_name: str,
    input_shape: Sequence[int | None],
    profile: BatchProfile = DEFAULT_PROFILE,
    workspace_mb: int | None = None,
    timing_cache: str | os.PathLike | None = None,
) -> list[str]:
    """The trtexec command line that builds ``engine`` from ``onnx`` (shapes only for a dynamic batch).

    Precision flags only on TensorRT 10 (``plan.trtexec_flags``): TensorRT 11's trtexec has none.
    """
    cmd = [str(trtexec), f"--onnx={onnx}", f"--saveEngine={engine}", *plan.trtexec_flags]
    dims = list(input_shape)
    if dims and (dims[0] is None or int(dims[0]) < 0):
        if any(d is None or int(d) < 0 for d in dims[1:]):
            raise EdgecnnError(
                f"input {input_name} has a dynamic image size {dims}; export it with a fixed one"
            )
        for flag, shape in zip(
            ("--minShapes", "--optShapes", "--maxShapes"), profile.shapes(dims[1:]), strict=True
        ):
            cmd.append(f"{flag}={input_name}:{'x'.join(str(d) for d in shape)}")
    if workspace_mb:
        cmd.append(f"--memPoolSize=workspace:{int(workspace_mb)}M")
    if timing_cache:
        cmd.append(f"--timingCacheFile={timing_cache}")
    cmd.append("--skipInference")  # build and save only; `edgecnn bench` measures
    return cmd


_TRTEXEC_INFO = {
    "gpu": re.compile(r"Selected Device:\s*(.+?)\s*$", re.MULTILINE),
    "compute_capability": re.compile(r"Compute Capability:\s*([0-9]+\.[0-9]+)", re.MULTILINE),
    "tensorrt": re.compile(r"TensorRT version:\s*([0-9][0-9.]*[0-9])", re.MULTILINE),
}


def parse_trtexec_log(text: str) -> DeviceInfo | None:
    """The device trtexec reports in its log (its "Device Information" and version lines)."""
    found = {k: (m.group(1).strip() if (m := r.search(text)) else None) for k, r in _TRTEXEC_INFO.items()}
    if not all(found.values()):
        return None
    return DeviceInfo(
        tensorrt=found["tensorrt"], gpu=found["gpu"], compute_capability=found["compute_capability"]
    )


def probe_trtexec_version(trtexec: str) -> TrtVersion | None:
    """The TensorRT version of a trtexec binary, from the banner ``trtexec --help`` prints; None when
    unknown."""
    try:
        proc = subprocess.run([trtexec, "--help"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return trtexec_version(proc.stdout + proc.stderr)


def _probe_device() -> DeviceInfo | None:
    """This machine's GPU where tensorrt and cuda-python (or torch) can tell; else None."""
    try:
        return gpu_device()
    except EdgecnnError:
        return None


def _artifact_inputs(art) -> tuple[Path, str, str, list]:
    if art.runtime != "tensorrt" or art.model_file.suffix != ".onnx":
        raise EdgecnnError(
            f"{art.dir} is a {art.runtime} artifact ({art.model_file.name}); build engines from a "
            f"Jetson artifact: edgecnn export ARCH --target jetson"
        )
    meta_in = art.meta.get("input") or {}
    return (
        art.model_file,
        art.meta["precision"],
        meta_in.get("name") or "input",
        list(meta_in.get("shape") or []),
    )


def _choose_builder(builder: str, trtexec: str | None, dry_run: bool) -> tuple[str, str | None]:
    """("trtexec" | "python", the trtexec binary or None)."""
    if builder not in ("auto", "trtexec", "python"):
        raise EdgecnnError(f"unknown builder '{builder}'; use auto, trtexec or python")
    exe = find_trtexec(trtexec)
    if builder == "trtexec" and exe is None and not dry_run:
        raise EdgecnnError(
            "trtexec not found on PATH nor in /usr/src/tensorrt/bin; pass --trtexec PATH or --builder python"
        )
    return ("trtexec" if builder == "trtexec" or (builder == "auto" and exe) else "python"), exe


def _tensorrt_version(use: str, exe: str | None, explicit: str | None) -> str:
    """The TensorRT version the build will use: ``explicit``, else trtexec's banner, else the tensorrt
    module's."""
    if explicit:
        return str(TrtVersion.parse(explicit))
    if use == "trtexec" and exe and (v := probe_trtexec_version(exe)) is not None:
        return str(v)
    try:
        return import_tensorrt().__version__
    except EdgecnnError:
        what = (
            f"trtexec ({exe or 'not found'})" if use == "trtexec" else "the tensorrt module (not installed)"
        )
        raise EdgecnnError(
            f"cannot tell which TensorRT {what} is; pass --tensorrt-version (10.x and 11.x build differently)"
        ) from None


@dataclass(frozen=True)
class BuildRequest:
    """One engine build of an artifact's ONNX: what both builders need."""

    onnx: Path
    engine: Path
    plan: BuildPlan
    input_name: str
    input_shape: list
    profile: BatchProfile = DEFAULT_PROFILE
    workspace_mb: int | None = None
    timing_cache: Path | None = None

    def command(self, trtexec: str, onnx: str | os.PathLike | None = None, engine=None) -> list[str]:
        return trtexec_command(
            trtexec,
            onnx or self.onnx,
            engine or self.engine,
            self.plan,
            input_name=self.input_name,
            input_shape=self.input_shape,
            profile=self.profile,
            workspace_mb=self.workspace_mb,
            timing_cache=self.timing_cache,
        )


def _run_trtexec(
    exe: str, req: BuildRequest, log: Callable[[str], None]
) -> tuple[bytes, DeviceInfo | None, Any]:
    """Build ``req.engine`` with trtexec (atomically); return its bytes, the device it names, the FP16
    rewrite."""
    req.engine.parent.mkdir(parents=True, exist_ok=True)
    if req.timing_cache is not None:
        req.timing_cache.parent.mkdir(parents=True, exist_ok=True)
    with prepared_onnx(req.onnx, req.plan, log) as (source, rewrite), atomic_path(req.engine) as tmp:
        cmd = req.command(exe, onnx=source, engine=tmp)
        log("$ " + shlex.join(cmd))
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if proc.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
            raise EdgecnnError(f"trtexec failed (exit {proc.returncode}) building {req.engine}:\n{tail}")
        device = parse_trtexec_log(proc.stdout + proc.stderr) or _probe_device()
        if device is not None:  # refuse before the engine is written
            check_precision(req.plan.precision, device.compute_capability, device.gpu)
        data = tmp.read_bytes()
    return data, device, rewrite


def _run_python_builder(req: BuildRequest, log: Callable[[str], None]) -> tuple[bytes, DeviceInfo, None]:
    trt = import_tensorrt()
    device = gpu_device(trt)
    check_precision(req.plan.precision, device.compute_capability, device.gpu)
    log(
        f"building a {req.plan.precision} engine from {req.onnx} for {device.describe()} (TensorRT Python "
        "builder)"
    )
    data = build_engine(
        req.onnx,
        req.plan.precision,
        req.profile,
        trt=trt,
        workspace_mb=req.workspace_mb,
        timing_cache=req.timing_cache,
        fp16_rewrite=req.plan.fp16_rewrite,
        log=log,
    )
    return data, device, None


def _store(engine: Path, data: bytes, meta: dict, cache: bool, log: Callable[[str], None]) -> str | None:
    write_engine(engine, data, meta)
    if cache and meta.get("key"):
        try:
            return str(EngineCache().store(meta["key"], data, meta))
        except OSError as e:
            log(f"cannot store the engine in the cache {engines_dir()}: {e}")
    return None


def _store_in(
    folder: Path, engine: Path, data: bytes, meta: dict, cache: bool, log: Callable[[str], None]
) -> str | None:
    """:func:`_store`; an engine written into the artifact's own folder (the default) is recorded in
    that folder's marker under its lock, so a re-export there replaces it instead of keeping a
    stale engine beside the new ONNX as if it were the user's file."""
    try:
        names = [engine.resolve().relative_to(folder.resolve()).as_posix()]
    except ValueError:  # --out elsewhere: not the artifact folder's business
        return _store(engine, data, meta, cache, log)
    if outdir.read_marker(folder) is None:  # an artifact folder from before markers, or copied without
        return _store(engine, data, meta, cache, log)
    with outdir.lock(folder, f"the engine {engine.name}"):
        cached = _store(engine, data, meta, cache, log)
        outdir.record(folder, [*names, sidecar_path(Path(names[0])).as_posix()])
    return cached


def _sidecar(
    art,
    req: BuildRequest,
    builder: str,
    data: bytes,
    device: DeviceInfo | None,
    rewrite,
    *,
    command: list[str] | None,
    t0: float,
) -> dict[str, Any]:
    """The engine's sidecar: what it was built from, how, where, and its cache key (None without a device)."""
    onnx_sha, precision = art.meta["files"][req.onnx.name], req.plan.precision
    return engine_meta(
        key=engine_key(onnx_sha, precision, device, req.profile, req.plan.variant) if device else None,
        onnx_sha256=onnx_sha,
        precision=precision,
        device=device,
        profile=req.profile,
        engine_sha256=hashlib.sha256(data).hexdigest(),
        builder=builder,
        command=command,
        build_seconds=round(time.perf_counter() - t0, 1),
        plan=req.plan.to_json(),
        fp16_rewrite=rewrite.to_json() if rewrite else None,
        timing_cache=str(req.timing_cache) if req.timing_cache else None,
        artifact={"dir": str(art.dir), "arch": art.meta.get("arch"), "input": req.input_name},
    )


def _plan_summary(req: BuildRequest, use: str, exe: str | None, precision: str) -> dict[str, Any]:
    """What a build will do: engine path, builder, precision, plan, timing cache, trtexec command."""
    onnx, plan = req.onnx, req.plan
    return {
        "engine": str(req.engine),
        "builder": use,
        "precision": precision,
        "plan": plan.to_json(),
        "timing_cache": str(req.timing_cache or "") or None,
        # the FP16 rewrite is written to a temporary directory at build time: named by its file here
        "command": req.command(
            exe or "trtexec", onnx=onnx.with_name(f"{onnx.stem}.fp16.onnx") if plan.fp16_rewrite else None
        )
        if use == "trtexec"
        else None,
    }


def build_artifact(
    artifact: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    builder: str = "auto",
    trtexec: str | None = None,
    profile: BatchProfile = DEFAULT_PROFILE,
    workspace_mb: int | None = None,
    dry_run: bool = False,
    cache: bool = True,
    tensorrt_version: str | None = None,
    timing_cache: str | os.PathLike | None | bool = True,
    fp16_rewrite: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build the engine of a Jetson artifact (after checking its sha256) into ``out``.

    ``builder``: ``"trtexec"``, ``"python"`` or ``"auto"`` (trtexec where found). The TensorRT
    version (``tensorrt_version``, else trtexec's banner or the tensorrt module) decides the
    precision flags (10.x) or the strongly typed build (11.x; ``fp16_rewrite``: an int8 artifact
    from its FP16 rewrite, cached under its own key). ``timing_cache``: True for the
    one beside the engine cache, a path, or False for none. Returns ``{"engine", "builder",
    "command", "plan", "meta"}``; with ``dry_run`` only what would run.
    """
    art = load_artifact(artifact)  # refuses files changed since export
    onnx, precision, input_name, input_shape = _artifact_inputs(art)
    use, exe = _choose_builder(builder, trtexec, dry_run)
    plan = plan_for(precision, _tensorrt_version(use, exe, tensorrt_version), log, fp16_rewrite=fp16_rewrite)
    device = None if dry_run else _probe_device()
    if device is not None:
        check_precision(precision, device.compute_capability, device.gpu)
    if timing_cache is True:
        timing_cache = timing_cache_path(
            str(plan.version), *((device.gpu, device.compute_capability) if device else ())
        )
    req = BuildRequest(
        onnx,
        Path(out) if out else art.dir / "model.engine",
        plan,
        input_name,
        input_shape,
        profile,
        workspace_mb,
        Path(timing_cache) if timing_cache else None,
    )
    result = _plan_summary(req, use, exe, precision)
    if dry_run:
        return result
    t0 = time.perf_counter()
    run = _run_trtexec if use == "trtexec" else (lambda _exe, r, lg: _run_python_builder(r, lg))
    data, device, rewrite = run(exe, req, log)
    meta = _sidecar(art, req, use, data, device, rewrite, command=result["command"], t0=t0)
    if cached := _store_in(art.dir, req.engine, data, meta, cache, log):
        result["cached_as"] = cached
    log(
        f"wrote {req.engine} ({len(data) / 2**20:.1f} MiB, {meta['build_seconds']} s) for "
        f"{device.describe() if device else 'an unrecorded device'}"
    )
    return {**result, "meta": meta}
