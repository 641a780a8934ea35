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
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgecnn.artifact import load_artifact
from edgecnn.errors import EdgecnnError
from edgecnn.fileio import atomic_path
from edgecnn.runtimes.base import missing_backend
from edgecnn.tensorrt.engine_cache import (
    DEFAULT_PROFILE,
    PRECISIONS,
    BatchProfile,
    DeviceInfo,
    Engine,
    EngineCache,
    engine_key,
    engine_meta,
    engines_dir,
    write_engine,
)

# Where JetPack installs trtexec (it is not on PATH there).
TRTEXEC_PATHS = ("/usr/src/tensorrt/bin/trtexec", "/usr/local/tensorrt/bin/trtexec")
# trtexec precision flags: an int8 QDQ graph keeps its Q/DQ layers in INT8 and may run the
# rest in FP16; an fp16 artifact is FP16; fp32 needs none.
TRTEXEC_FLAGS = {"int8": ("--int8", "--fp16"), "fp16": ("--fp16",), "fp32": ()}

# -- needs TensorRT and a GPU ---------------------------------------------------------------


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise missing_backend("tensorrt") from e
    return trt


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


def detect_device(trt=None) -> DeviceInfo:
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


def build_engine(
    onnx: str | os.PathLike,
    precision: str | None,
    profile: BatchProfile = DEFAULT_PROFILE,
    *,
    trt=None,
    logger=None,
    workspace_mb: int | None = None,
) -> bytes:
    """Build a serialized engine from a (QDQ) ONNX file with the TensorRT Python API.

    INT8 comes from the Q/DQ nodes (explicit quantization, no calibrator); int8 and fp16
    artifacts may also use FP16 kernels. TensorRT 11 has no precision flags: there the
    network is strongly typed and the ONNX types decide. A dynamic batch gets ``profile``.
    """
    onnx = Path(onnx)
    trt = trt or import_tensorrt()
    logger = logger or trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = getattr(trt.BuilderFlag, "FP16", None), getattr(trt.BuilderFlag, "INT8", None)
    weakly_typed = all(f is not None for f in flags)
    network_flags = 0 if weakly_typed else 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(network_flags)  # explicit batch is the only mode since TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx.read_bytes(), str(onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgecnnError(f"TensorRT cannot parse {onnx}: {errors or 'unknown error'}")
    config = builder.create_builder_config()
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if weakly_typed and precision in ("int8", "fp16"):
        config.set_flag(trt.BuilderFlag.FP16)
    if weakly_typed and precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # Q/DQ nodes give the scales: no calibrator
    inp = network.get_input(0)
    shape = tuple(inp.shape)
    if any(d < 0 for d in shape):
        if any(d < 0 for d in shape[1:]):
            raise EdgecnnError(f"{onnx} has a dynamic image size {shape}; export it with a fixed one")
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(inp.name, *profile.shapes(shape[1:]))
        config.add_optimization_profile(opt_profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise EdgecnnError(f"TensorRT failed to build an engine from {onnx}; see its log above")
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
    return (cache or EngineCache()).get_or_build(
        onnx,
        precision,
        device=detect_device(trt),
        profile=profile,
        rebuild=rebuild,
        log=log,
        builder=lambda path, prec, prof: build_engine(path, prec, prof, trt=trt, logger=logger),
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
    precision: str | None,
    *,
    input_name: str,
    input_shape: Sequence[int | None],
    profile: BatchProfile = DEFAULT_PROFILE,
    workspace_mb: int | None = None,
) -> list[str]:
    """The trtexec command line that builds ``engine`` from ``onnx`` (shapes only for a dynamic batch)."""
    precision = precision or "fp32"
    if precision not in TRTEXEC_FLAGS:
        raise EdgecnnError(f"unknown precision '{precision}'; use one of {', '.join(PRECISIONS)}")
    cmd = [str(trtexec), f"--onnx={onnx}", f"--saveEngine={engine}", *TRTEXEC_FLAGS[precision]]
    dims = list(input_shape)
    if dims and (dims[0] is None or int(dims[0]) < 0):
        if any(d is None or int(d) < 0 for d in dims[1:]):
            raise EdgecnnError(
                f"input {input_name} has a dynamic image size {dims}; export it with a fixed one"
            )
        for flag, shape in zip(("--minShapes", "--optShapes", "--maxShapes"), profile.shapes(dims[1:])):
            cmd.append(f"{flag}={input_name}:{'x'.join(str(d) for d in shape)}")
    if workspace_mb:
        cmd.append(f"--memPoolSize=workspace:{int(workspace_mb)}M")
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
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build the engine of a Jetson artifact (after checking its sha256) into ``out``.

    ``builder``: ``"trtexec"``, ``"python"`` or ``"auto"`` (trtexec where found). Returns
    ``{"engine", "builder", "command", "meta"}``; with ``dry_run`` only what would run.
    """
    art = load_artifact(artifact)  # refuses files changed since export
    onnx, precision, input_name, input_shape = _artifact_inputs(art)
    engine = Path(out) if out else art.dir / "model.engine"
    if builder not in ("auto", "trtexec", "python"):
        raise EdgecnnError(f"unknown builder '{builder}'; use auto, trtexec or python")
    exe = find_trtexec(trtexec)
    if builder == "trtexec" and exe is None and not dry_run:
        raise EdgecnnError(
            "trtexec not found on PATH nor in /usr/src/tensorrt/bin; pass --trtexec PATH or --builder python"
        )
    use = "trtexec" if builder == "trtexec" or (builder == "auto" and exe) else "python"
    result: dict[str, Any] = {"engine": str(engine), "builder": use, "precision": precision}
    if use == "trtexec":
        result["command"] = trtexec_command(
            exe or "trtexec",
            onnx,
            engine,
            precision,
            input_name=input_name,
            input_shape=input_shape,
            profile=profile,
            workspace_mb=workspace_mb,
        )
    else:
        result["command"] = None
    if dry_run:
        return result

    onnx_sha = art.meta["files"][onnx.name]
    t0 = time.perf_counter()
    if use == "trtexec":
        engine.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(engine) as tmp:
            cmd = trtexec_command(
                exe,
                onnx,
                tmp,
                precision,
                input_name=input_name,
                input_shape=input_shape,
                profile=profile,
                workspace_mb=workspace_mb,
            )
            log("$ " + shlex.join(cmd))
            proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
            if proc.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
                tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
                raise EdgecnnError(f"trtexec failed (exit {proc.returncode}) building {engine}:\n{tail}")
            data = tmp.read_bytes()
        device = parse_trtexec_log(proc.stdout + proc.stderr)
        if device is None:
            try:
                device = detect_device()
            except EdgecnnError:
                device = None  # the sidecar then leaves the device fields unrecorded
    else:
        trt = import_tensorrt()
        device = detect_device(trt)
        log(f"building a {precision} engine from {onnx} for {device.describe()} (TensorRT Python builder)")
        data = build_engine(onnx, precision, profile, trt=trt, workspace_mb=workspace_mb)
    key = engine_key(onnx_sha, precision, device, profile) if device else None
    meta = engine_meta(
        key=key,
        onnx_sha256=onnx_sha,
        precision=precision,
        device=device,
        profile=profile,
        engine_sha256=hashlib.sha256(data).hexdigest(),
        builder=use,
        command=result["command"],
        build_seconds=round(time.perf_counter() - t0, 1),
        artifact={"dir": str(art.dir), "arch": art.meta.get("arch"), "input": input_name},
    )
    write_engine(engine, data, meta)
    if cache and key:
        try:
            result["cached_as"] = str(EngineCache().store(key, data, meta))
        except OSError as e:
            log(f"cannot store the engine in the cache {engines_dir()}: {e}")
    log(
        f"wrote {engine} ({len(data) / 2**20:.1f} MiB, {meta['build_seconds']} s) for "
        f"{device.describe() if device else 'an unrecorded device'}"
    )
    return {**result, "meta": meta}
