"""The TensorRT engine cache: keys, sidecars, refusal of foreign engines (plain Python).

An engine only runs on the GPU model and TensorRT version it was built with, so engines
are cached by everything that decides them::

    key = sha256(ONNX sha256, precision, TensorRT major.minor.patch, GPU name,
                 compute capability, batch profile (min/opt/max), builder version)

under ``$EDGECNN_HOME/engines/<key>.engine``, each written atomically with a JSON sidecar
``<key>.engine.json`` recording those fields. An engine whose sidecar names another GPU or
TensorRT version is refused with an error that says so, and a damaged cache entry is
rebuilt. Beside them, ``timing/<TensorRT>-<GPU>.cache`` keeps TensorRT's timing cache (the
kernel timings a build measured), so the next build on that GPU and TensorRT skips most of
its autotuning. Nothing here imports tensorrt: :mod:`edgecnn.tensorrt.build` builds,
:mod:`edgecnn.tensorrt.session` runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgecnn import paths
from edgecnn.errors import EdgecnnError
from edgecnn.fileio import atomic_path, atomic_write_json, sha256_file
from edgecnn.stage import stage_key

FORMAT = "edgecnn.trt-engine/1"
# Bump when the builder's settings change, so engines built the old way are not reused.
BUILDER_VERSION = 1
PRECISIONS = ("int8", "fp16", "fp32")


@dataclass(frozen=True)
class BatchProfile:
    """The optimization profile of the dynamic batch dimension (min <= opt <= max)."""

    min: int = 1
    opt: int = 1
    max: int = 64

    def __post_init__(self):
        if not 1 <= self.min <= self.opt <= self.max:
            raise EdgecnnError(
                f"batch profile needs 1 <= min <= opt <= max, got {self.min}/{self.opt}/{self.max}"
            )

    def shapes(self, dims: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) input shapes for the per-image ``dims`` (C, H, W)."""
        rest = tuple(int(d) for d in dims)
        return (self.min, *rest), (self.opt, *rest), (self.max, *rest)

    def as_dict(self) -> dict[str, int]:
        return {"min": self.min, "opt": self.opt, "max": self.max}


DEFAULT_PROFILE = BatchProfile()


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
    """``major.minor.patch`` of a TensorRT version ("10.3.0.30" -> "10.3.0"): the engine-compatibility
    part."""
    parts = str(version).strip().split(".")
    return ".".join((parts + ["0", "0"])[:3])


def engine_key(
    onnx_sha256: str,
    precision: str | None,
    device: DeviceInfo,
    profile: BatchProfile = DEFAULT_PROFILE,
    variant: str | None = None,
) -> str:
    """The cache key of the engine built from ``onnx_sha256`` at ``precision`` on ``device``
    (``variant``: a build of another form of that ONNX, such as its FP16 rewrite).

    :func:`edgecnn.stage.stage_key` of these inputs, 20 digits: an engine is keyed on facts only
    the device knows (TensorRT, GPU), and lives under ``engines/`` with its sidecar, not ``runs/``."""
    payload = {
        "format": FORMAT,
        "builder": BUILDER_VERSION,
        "onnx": onnx_sha256,
        "precision": precision or "fp32",
        "tensorrt": trt_release(device.tensorrt),
        "gpu": device.gpu,
        "compute_capability": device.compute_capability,
        "profile": profile.as_dict(),
    }
    if variant:
        payload["variant"] = variant
    return stage_key(payload, length=20)


def sidecar_path(engine: str | os.PathLike) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    p = Path(engine)
    return p.with_name(p.name + ".json")


def engines_dir() -> Path:
    return paths.home() / "engines"


def timing_cache_path(tensorrt: str, gpu: str | None = None, compute_capability: str | None = None) -> Path:
    """Where the timing cache of this TensorRT release (and GPU, when known) lives, beside the engines."""
    parts = [
        f"trt{trt_release(tensorrt)}",
        gpu or "",
        f"sm{compute_capability}" if compute_capability else "",
    ]
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", "-".join(p for p in parts if p)).strip("-")
    return engines_dir() / "timing" / f"{slug}.cache"


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
            f"(edgecnn build-engine ARTIFACT, or delete it and open the artifact's model.onnx)"
        )


def engine_meta(
    *,
    key: str | None,
    onnx_sha256: str,
    precision: str | None,
    device: DeviceInfo | None,
    profile: BatchProfile,
    engine_sha256: str,
    builder: str,
    **extra: Any,
) -> dict[str, Any]:
    """The sidecar of one engine."""
    dev = asdict(device) if device else {"tensorrt": None, "gpu": None, "compute_capability": None}
    return {
        "format": FORMAT,
        "key": key,
        "onnx_sha256": onnx_sha256,
        "precision": precision or "fp32",
        **dev,
        "profile": profile.as_dict(),
        "builder_version": BUILDER_VERSION,
        "builder": builder,
        "engine_sha256": engine_sha256,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }


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

    def get_or_build(
        self,
        onnx: str | os.PathLike,
        precision: str | None,
        *,
        device: DeviceInfo,
        builder: Builder,
        profile: BatchProfile = DEFAULT_PROFILE,
        rebuild: bool = False,
        log: Callable[[str], None] = lambda s: None,
    ) -> Engine:
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
        meta = engine_meta(
            key=key,
            onnx_sha256=onnx_sha,
            precision=precision,
            device=device,
            profile=profile,
            engine_sha256=hashlib.sha256(data).hexdigest(),
            builder="python",
            build_seconds=round(time.perf_counter() - t0, 1),
            onnx=str(onnx),
        )
        try:
            path = self.store(key, data, meta)
        except OSError as e:
            log(f"TensorRT: cannot cache the engine in {self.root} ({e}); it is rebuilt next time")
            path = None
        return Engine(data, path, meta, cached=False)
