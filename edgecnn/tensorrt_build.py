"""TensorRT engines from a Jetson artifact's QDQ ONNX: build, cache, refuse foreign engines.

An engine only runs on the GPU model and TensorRT version it was built with, so engines
are cached by everything that decides them::

    key = sha256(ONNX sha256, precision, TensorRT major.minor.patch, GPU name,
                 compute capability, batch profile (min/opt/max), builder version)

under ``$EDGECNN_HOME/engines/<key>.engine``, each written atomically with a JSON sidecar
``<key>.engine.json`` recording those fields. An engine whose sidecar names another GPU or
TensorRT version is refused with an error that says so, and a damaged cache entry is
rebuilt. The key and cache logic is plain Python (no tensorrt import); :func:`build_engine`
and :func:`detect_device` need TensorRT and a GPU.

On the device (a Jetson with JetPack, or any GPU with ``pip install 'edgecnn[tensorrt]'``)::

    python -m edgecnn.tensorrt_build ARTIFACT            # or scripts/jetson/build_engine.sh
    python -m edgecnn.tensorrt_build ARTIFACT --dry-run  # print the trtexec command only

checks the artifact's sha256, builds ``ARTIFACT/model.engine`` with ``trtexec`` when present
(``--int8 --fp16`` for an int8 QDQ artifact, ``--fp16`` for fp16, shapes for the dynamic
batch of input ``input``), else with the TensorRT Python builder, writes its sidecar and
stores it in the cache, where :class:`edgecnn.runtimes.tensorrt.TensorRtSession` finds it
when it opens the artifact's model.onnx.

This module imports neither torch nor tensorrt at import time (it runs on the device).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgecnn import paths
from edgecnn.errors import EdgecnnError
from edgecnn.fileio import atomic_path, atomic_write_json, sha256_file

FORMAT = "edgecnn.trt-engine/1"
# Bump when the builder's settings change, so engines built the old way are not reused.
BUILDER_VERSION = 1
PRECISIONS = ("int8", "fp16", "fp32")
# Where JetPack installs trtexec (it is not on PATH there).
TRTEXEC_PATHS = ("/usr/src/tensorrt/bin/trtexec", "/usr/local/tensorrt/bin/trtexec")
# trtexec precision flags: an int8 QDQ graph keeps its Q/DQ layers in INT8 and may run the
# rest in FP16; an fp16 artifact is FP16; fp32 needs none.
TRTEXEC_FLAGS = {"int8": ("--int8", "--fp16"), "fp16": ("--fp16",), "fp32": ()}


@dataclass(frozen=True)
class BatchProfile:
    """The optimization profile of the dynamic batch dimension (min <= opt <= max)."""

    min: int = 1
    opt: int = 1
    max: int = 64

    def __post_init__(self):
        if not 1 <= self.min <= self.opt <= self.max:
            raise EdgecnnError(f"batch profile needs 1 <= min <= opt <= max, got {self.min}/{self.opt}/{self.max}")

    def shapes(self, dims: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) input shapes for the per-image ``dims`` (C, H, W)."""
        rest = tuple(int(d) for d in dims)
        return (self.min, *rest), (self.opt, *rest), (self.max, *rest)

    def as_dict(self) -> dict[str, int]:
        return {"min": self.min, "opt": self.opt, "max": self.max}


@dataclass(frozen=True)
class DeviceInfo:
    """What an engine is tied to: the TensorRT version and the GPU."""

    tensorrt: str
    gpu: str
    compute_capability: str

    def describe(self) -> str:
        return f"{self.gpu} (compute capability {self.compute_capability}) with TensorRT {self.tensorrt}"


@dataclass(frozen=True)
class Engine:
    """A serialized engine, where it is cached (None when it could not be stored) and its sidecar."""

    data: bytes
    path: Path | None
    meta: dict[str, Any]
    cached: bool  # True: loaded from the cache, not built now


def trt_release(version: str) -> str:
    """``major.minor.patch`` of a TensorRT version ("10.3.0.30" -> "10.3.0"): the engine-compatibility part."""
    parts = str(version).strip().split(".")
    return ".".join((parts + ["0", "0"])[:3])


def engine_key(onnx_sha256: str, precision: str | None, device: DeviceInfo,
               profile: BatchProfile = BatchProfile()) -> str:
    """The cache key of the engine built from ``onnx_sha256`` at ``precision`` on ``device``."""
    payload = {"format": FORMAT, "builder": BUILDER_VERSION, "onnx": onnx_sha256,
               "precision": precision or "fp32", "tensorrt": trt_release(device.tensorrt), "gpu": device.gpu,
               "compute_capability": device.compute_capability, "profile": profile.as_dict()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def sidecar_path(engine: str | os.PathLike) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    p = Path(engine)
    return p.with_name(p.name + ".json")


def engines_dir() -> Path:
    return paths.home() / "engines"


def check_compatible(meta: dict[str, Any], device: DeviceInfo, engine: str | os.PathLike) -> None:
    """Refuse an engine whose sidecar names another TensorRT release or GPU than ``device``.

    Fields the sidecar leaves out (None) are not checked.
    """
    built_trt, built_gpu, built_cc = meta.get("tensorrt"), meta.get("gpu"), meta.get("compute_capability")
    clashes = []
    if built_trt and trt_release(built_trt) != trt_release(device.tensorrt):
        clashes.append("TensorRT")
    if built_gpu and built_gpu != device.gpu:
        clashes.append("GPU")
    if built_cc and str(built_cc) != str(device.compute_capability):
        clashes.append("compute capability")
    if clashes:
        raise EdgecnnError(
            f"engine {engine} was built for {built_gpu or 'an unrecorded GPU'} (compute capability "
            f"{built_cc or '?'}) on TensorRT {built_trt or '?'}; this device has {device.describe()} "
            f"({', '.join(clashes)} differ); engines only run where they were built: rebuild it here "
            f"(scripts/jetson/build_engine.sh ARTIFACT, or delete it and open the artifact's model.onnx)")


def engine_meta(*, key: str | None, onnx_sha256: str, precision: str | None, device: DeviceInfo | None,
                profile: BatchProfile, engine_sha256: str, builder: str, **extra: Any) -> dict[str, Any]:
    """The sidecar of one engine."""
    dev = asdict(device) if device else {"tensorrt": None, "gpu": None, "compute_capability": None}
    return {"format": FORMAT, "key": key, "onnx_sha256": onnx_sha256, "precision": precision or "fp32",
            **dev, "profile": profile.as_dict(), "builder_version": BUILDER_VERSION, "builder": builder,
            "engine_sha256": engine_sha256, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}


def write_engine(path: str | os.PathLike, data: bytes, meta: dict[str, Any]) -> Path:
    """Write the engine, then its sidecar, each atomically: a sidecar means a complete engine."""
    path = Path(path)
    sidecar_path(path).unlink(missing_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    atomic_write_json(sidecar_path(path), meta)
    return path


def read_sidecar(engine: str | os.PathLike) -> dict[str, Any] | None:
    """The engine's sidecar, or None when it has none or it cannot be read."""
    side = sidecar_path(engine)
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def check_engine_file(engine: str | os.PathLike, device: DeviceInfo) -> dict[str, Any] | None:
    """Before deserializing an engine file: refuse it when its sidecar names another device."""
    meta = read_sidecar(engine)
    if meta is not None:
        check_compatible(meta, device, engine)
    return meta


Builder = Callable[[Path, "str | None", BatchProfile], bytes]


class EngineCache:
    """Engines under ``root`` (default ``$EDGECNN_HOME/engines``) by :func:`engine_key`."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else engines_dir()

    def path(self, key: str) -> Path:
        return self.root / f"{key}.engine"

    def load(self, key: str, device: DeviceInfo) -> Engine | None:
        """The cached engine for ``key``; None when missing or damaged; EdgecnnError when foreign."""
        path = self.path(key)
        meta = read_sidecar(path)
        if meta is None or not path.is_file():
            return None
        check_compatible(meta, device, path)
        if meta.get("key") != key:
            return None
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != meta.get("engine_sha256"):
            return None  # cut short or changed: rebuilt by the caller
        return Engine(data, path, meta, cached=True)

    def store(self, key: str, data: bytes, meta: dict[str, Any]) -> Path:
        return write_engine(self.path(key), data, {**meta, "key": key})

    def get_or_build(self, onnx: str | os.PathLike, precision: str | None, *, device: DeviceInfo,
                     builder: Builder, profile: BatchProfile = BatchProfile(), rebuild: bool = False,
                     log: Callable[[str], None] = lambda s: None) -> Engine:
        """The engine for ``onnx`` on ``device``: from the cache, else ``builder(onnx, precision, profile)``.

        ``rebuild`` skips the cache (the new engine replaces the entry). A cache that cannot
        be written is logged and the engine returned all the same.
        """
        onnx = Path(onnx)
        if precision is not None and precision not in PRECISIONS:
            raise EdgecnnError(f"unknown precision '{precision}'; use one of {', '.join(PRECISIONS)}")
        onnx_sha = sha256_file(onnx)
        key = engine_key(onnx_sha, precision, device, profile)
        if not rebuild and (hit := self.load(key, device)) is not None:
            log(f"TensorRT: using the cached engine {hit.path}")
            return hit
        log(f"TensorRT: building a {precision or 'fp32'} engine from {onnx.name} for {device.describe()}")
        t0 = time.perf_counter()
        data = bytes(builder(onnx, precision, profile))
        meta = engine_meta(key=key, onnx_sha256=onnx_sha, precision=precision, device=device, profile=profile,
                           engine_sha256=hashlib.sha256(data).hexdigest(), builder="python",
                           build_seconds=round(time.perf_counter() - t0, 1), onnx=str(onnx))
        try:
            path = self.store(key, data, meta)
        except OSError as e:
            log(f"TensorRT: cannot cache the engine in {self.root} ({e}); it is rebuilt next time")
            path = None
        return Engine(data, path, meta, cached=False)


# -- needs TensorRT and a GPU ---------------------------------------------------------------


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as e:
        from edgecnn.runtimes.base import missing_backend

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
    raise EdgecnnError("cannot query the GPU for the TensorRT engine cache (" + "; ".join(errors) +
                       "); install cuda-python (pip install cuda-python) and check the GPU driver")


def build_engine(onnx: str | os.PathLike, precision: str | None, profile: BatchProfile = BatchProfile(), *,
                 trt=None, logger=None, workspace_mb: int | None = None) -> bytes:
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


def engine_for_onnx(onnx: str | os.PathLike, precision: str | None, *, trt=None, logger=None,
                    profile: BatchProfile = BatchProfile(), rebuild: bool = False, cache: EngineCache | None = None,
                    log: Callable[[str], None] = lambda s: None) -> Engine:
    """The cached engine for ``onnx`` on this GPU, built (and cached) when missing."""
    trt = trt or import_tensorrt()
    return (cache or EngineCache()).get_or_build(
        onnx, precision, device=detect_device(trt), profile=profile, rebuild=rebuild, log=log,
        builder=lambda path, prec, prof: build_engine(path, prec, prof, trt=trt, logger=logger))


# -- the Jetson bundle's build step -----------------------------------------------------------


def find_trtexec(explicit: str | None = None) -> str | None:
    """``explicit``, else trtexec on PATH, else JetPack's /usr/src/tensorrt/bin/trtexec."""
    if explicit:
        return explicit
    found = shutil.which("trtexec")
    if found:
        return found
    return next((p for p in TRTEXEC_PATHS if os.access(p, os.X_OK)), None)


def trtexec_command(trtexec: str, onnx: str | os.PathLike, engine: str | os.PathLike, precision: str | None, *,
                    input_name: str, input_shape: Sequence[int | None], profile: BatchProfile = BatchProfile(),
                    workspace_mb: int | None = None) -> list[str]:
    """The trtexec command line that builds ``engine`` from ``onnx`` (shapes only for a dynamic batch)."""
    precision = precision or "fp32"
    if precision not in TRTEXEC_FLAGS:
        raise EdgecnnError(f"unknown precision '{precision}'; use one of {', '.join(PRECISIONS)}")
    cmd = [str(trtexec), f"--onnx={onnx}", f"--saveEngine={engine}", *TRTEXEC_FLAGS[precision]]
    dims = list(input_shape)
    if dims and (dims[0] is None or int(dims[0]) < 0):
        if any(d is None or int(d) < 0 for d in dims[1:]):
            raise EdgecnnError(f"input {input_name} has a dynamic image size {dims}; export it with a fixed one")
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
    return DeviceInfo(tensorrt=found["tensorrt"], gpu=found["gpu"], compute_capability=found["compute_capability"])


def _artifact_inputs(art) -> tuple[Path, str, str, list]:
    if art.runtime != "tensorrt" or art.model_file.suffix != ".onnx":
        raise EdgecnnError(f"{art.dir} is a {art.runtime} artifact ({art.model_file.name}); build engines from a "
                           f"Jetson artifact: edgecnn export ARCH --target jetson")
    meta_in = art.meta.get("input") or {}
    return art.model_file, art.meta["precision"], meta_in.get("name") or "input", list(meta_in.get("shape") or [])


def build_artifact(artifact: str | os.PathLike, *, out: str | os.PathLike | None = None, builder: str = "auto",
                   trtexec: str | None = None, profile: BatchProfile = BatchProfile(), workspace_mb: int | None = None,
                   dry_run: bool = False, cache: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build the engine of a Jetson artifact (after checking its sha256) into ``out``.

    ``builder``: ``"trtexec"``, ``"python"`` or ``"auto"`` (trtexec where found). Returns
    ``{"engine", "builder", "command", "meta"}``; with ``dry_run`` only what would run.
    """
    from edgecnn.artifact import load_artifact

    art = load_artifact(artifact)  # refuses files changed since export
    onnx, precision, input_name, input_shape = _artifact_inputs(art)
    engine = Path(out) if out else art.dir / "model.engine"
    if builder not in ("auto", "trtexec", "python"):
        raise EdgecnnError(f"unknown builder '{builder}'; use auto, trtexec or python")
    exe = find_trtexec(trtexec)
    if builder == "trtexec" and exe is None and not dry_run:
        raise EdgecnnError("trtexec not found on PATH nor in /usr/src/tensorrt/bin; pass --trtexec PATH or "
                           "--builder python")
    use = "trtexec" if builder == "trtexec" or (builder == "auto" and exe) else "python"
    result: dict[str, Any] = {"engine": str(engine), "builder": use, "precision": precision}
    if use == "trtexec":
        result["command"] = trtexec_command(exe or "trtexec", onnx, engine, precision, input_name=input_name,
                                            input_shape=input_shape, profile=profile, workspace_mb=workspace_mb)
    else:
        result["command"] = None
    if dry_run:
        return result

    onnx_sha = art.meta["files"][onnx.name]
    t0 = time.perf_counter()
    if use == "trtexec":
        engine.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(engine) as tmp:
            cmd = trtexec_command(exe, onnx, tmp, precision, input_name=input_name, input_shape=input_shape,
                                  profile=profile, workspace_mb=workspace_mb)
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
    meta = engine_meta(key=key, onnx_sha256=onnx_sha, precision=precision, device=device, profile=profile,
                       engine_sha256=hashlib.sha256(data).hexdigest(), builder=use,
                       command=result["command"], build_seconds=round(time.perf_counter() - t0, 1),
                       artifact={"dir": str(art.dir), "arch": art.meta.get("arch"), "input": input_name})
    write_engine(engine, data, meta)
    if cache and key:
        try:
            result["cached_as"] = str(EngineCache().store(key, data, meta))
        except OSError as e:
            log(f"cannot store the engine in the cache {engines_dir()}: {e}")
    log(f"wrote {engine} ({len(data) / 2**20:.1f} MiB, {meta['build_seconds']} s) for "
        f"{device.describe() if device else 'an unrecorded device'}")
    return {**result, "meta": meta}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m edgecnn.tensorrt_build",
        description="Build the TensorRT engine of a Jetson artifact (edgecnn export ARCH --target jetson) on the "
                    "device: checks the artifact's sha256, runs trtexec (or the TensorRT Python builder), writes "
                    "ARTIFACT/model.engine + model.engine.json and stores it in $EDGECNN_HOME/engines.")
    ap.add_argument("artifact", help="artifact directory (or its metadata.json / model.onnx)")
    ap.add_argument("--out", default=None, help="engine file (default: ARTIFACT/model.engine)")
    ap.add_argument("--builder", choices=("auto", "trtexec", "python"), default="auto",
                    help="trtexec where found (auto), or the TensorRT Python API")
    ap.add_argument("--trtexec", default=None, metavar="PATH", help="trtexec binary (default: PATH, then "
                    "/usr/src/tensorrt/bin/trtexec)")
    ap.add_argument("--min-batch", type=int, default=BatchProfile.min)
    ap.add_argument("--opt-batch", type=int, default=BatchProfile.opt)
    ap.add_argument("--max-batch", type=int, default=BatchProfile.max)
    ap.add_argument("--workspace-mb", type=int, default=None, help="builder workspace limit (MiB)")
    ap.add_argument("--no-cache", action="store_true", help="do not also store the engine in $EDGECNN_HOME/engines")
    ap.add_argument("--dry-run", action="store_true", help="check the artifact and print the command; build nothing")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    try:
        profile = BatchProfile(args.min_batch, args.opt_batch, args.max_batch)
        r = build_artifact(args.artifact, out=args.out, builder=args.builder, trtexec=args.trtexec, profile=profile,
                           workspace_mb=args.workspace_mb, dry_run=args.dry_run, cache=not args.no_cache,
                           log=(lambda s: print(s, file=sys.stderr)) if args.json else print)
    except EdgecnnError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    if args.json:
        print(json.dumps(r, indent=2))
    elif args.dry_run:
        print(shlex.join(r["command"]) if r["command"] else
              f"TensorRT Python builder: {r['precision']} engine -> {r['engine']} "
              f"(batch {profile.min}/{profile.opt}/{profile.max})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
