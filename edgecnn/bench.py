"""Latency of a model on the machine edgecnn runs on, or a prediction for one it does not.

:func:`bench_artifact` (an exported artifact, through :mod:`edgecnn.runtimes`) and
:func:`bench_arch` (a network on a target: measured on this host through OpenVINO, or
predicted with :mod:`edgecnn.devices.predict`) return the dict of :func:`edgecnn.timing.measure`
(its keys are listed there) plus ``env`` (:func:`edgecnn.devices.detect.environment`: CPU,
governor, load, runtime versions, L4T release and nvpmodel mode on a Jetson, throttling on a Pi)
and what was run. A remote (SSH) bench runs :func:`bench_artifact` on the device and reads its JSON.

This module imports neither torch nor a backend at import time: it runs on a device.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.devices import HOST, detect_device, load_device
from edgecnn.devices.detect import environment
from edgecnn.errors import EdgecnnError
from edgecnn.timing import FORMAT, add_energy, measure

__all__ = ["FORMAT", "add_energy", "bench_arch", "bench_artifact"]


def _random_input(shape: tuple[int | None, ...], batch: int, seed: int = 0) -> np.ndarray:
    dims = list(shape[1:])
    if any(d is None for d in dims):
        raise EdgecnnError(
            f"the model's input {['N' if d is None else d for d in shape]} has dynamic "
            f"non-batch dimensions; re-export it with a fixed image size"
        )
    return np.random.default_rng(seed).standard_normal((batch, *dims), dtype=np.float32)


def bench_artifact(
    path: str | os.PathLike,
    *,
    runtime: str | None = None,
    threads: int | None = None,
    batch: int | None = None,
    warmup: int = 5,
    min_seconds: float = 2.0,
    min_runs: int = 10,
    max_seconds: float = 60.0,
    root: str | Path = "/",
) -> dict[str, Any]:
    """Measure an exported artifact on this machine (its sha256 is checked when it is loaded).

    The function a remote bench runs on the device: it takes a path, returns the JSON dict.
    """
    from edgecnn.runtimes import open_session

    limits = {"warmup": warmup, "min_seconds": min_seconds, "min_runs": min_runs, "max_seconds": max_seconds}
    t0 = time.perf_counter()
    session = open_session(path, runtime=runtime, threads=threads)
    load_ms = (time.perf_counter() - t0) * 1e3
    try:
        b = _batch(session, batch, path)
        x = _random_input(session.input_shape, b)
        call = session.timed_call(x)
        run = {
            "load_ms": load_ms,
            "threads": threads,
            "batch": b,
            "root": root,
            "runtime_ms": call.runtime_ms,
        }
        result = measure(lambda _x: call.run(), x, **limits, **run)
        result["env"] = environment(root)
        result["binding"] = call.binding
        info = dict(session.info)
    finally:
        session.close()
    device = detect_device(root)
    result.update(_artifact_fields(session.artifact, info, x, device))
    if result["latency_source"] == "emulated":  # profile power x an emulated time means nothing
        return result
    profile = load_device(device, root=root)
    return add_energy(result, profile.power_w, f"{profile.name} profile")


def _batch(session, batch: int | None, path) -> int:
    """The batch to time: ``batch``, else the artifact's fixed one, else 1; a clash is an error."""
    fixed = session.batch
    if batch is not None and fixed is not None and batch != fixed:
        raise EdgecnnError(
            f"{path} has a fixed batch of {fixed}; bench it with --batch {fixed} "
            f"or re-export it with batch {batch}"
        )
    return batch or fixed or 1


def _artifact_fields(artifact, info: dict, x: np.ndarray, device: str) -> dict[str, Any]:
    """What was run: the artifact's metadata, the input's image size, the session's runtime info."""
    meta = artifact.meta
    layout = (meta.get("input") or {}).get("layout") or "NCHW"
    image_size = x.shape[2] if layout == "NCHW" and x.ndim == 4 else (x.shape[1] if x.ndim == 4 else None)
    return {
        "arch": meta.get("arch"),
        "device": device,
        "target": meta.get("target"),
        "runtime": info.get("runtime") or meta.get("runtime"),
        "precision": meta.get("precision"),
        "image_size": image_size,
        "artifact": str(artifact.dir),
        "artifact_files": meta.get("files"),
        "runtime_info": info,
    }


def bench_arch(
    arch: str,
    *,
    target: str = "cpu",
    runtime: str | None = None,
    precision: str | None = None,
    image_size: int = 224,
    batch: int = 1,
    threads: int | None = None,
    predict: bool = False,
    warmup: int = 3,
    min_seconds: float = 2.0,
    min_runs: int = 10,
    max_seconds: float = 60.0,
    root: str | Path = "/",
) -> dict[str, Any]:
    """Latency of ``arch`` on ``target``: measured on this host (OpenVINO, random weights) or predicted.

    A device that is not this machine, or ``predict=True``, gives a prediction
    (``latency_source`` "predicted", with ``error_pct`` and ``band_ms``).
    """
    from edgecnn.models import arch_info

    arch_info(arch)
    profile = load_device(target, root=root)
    shape = {"image_size": image_size, "batch": batch, "threads": threads}
    if predict or detect_device(root) != profile.name:
        why = "--predict" if predict else f"{profile.name} is not this machine"
        return _predicted(arch, profile, runtime, precision, why, **shape)
    rt, prec = _openvino_here(arch, profile, runtime, precision)
    from edgecnn.devices.openvino_cpu import openvino_network

    run, x, load_ms = openvino_network(arch, precision=prec, **shape)
    limits = {"warmup": warmup, "min_seconds": min_seconds, "min_runs": min_runs, "max_seconds": max_seconds}
    result = measure(run, x, **limits, load_ms=load_ms, threads=threads, batch=batch, root=root)
    result["env"] = environment(root)
    model_note = "random weights, torch -> ONNX -> OpenVINO"
    if prec == "int8":
        model_note += ", INT8 by nncf.quantize on 32 random images (latency only)"
    result.update(
        {
            "arch": arch,
            "device": profile.name,
            "target": profile.target,
            "runtime": rt,
            "precision": prec,
            "image_size": image_size,
            "artifact": None,
            "model": model_note,
        }
    )
    return add_energy(result, profile.power_w, "host (assumed)")


def _predicted(arch: str, profile, runtime, precision, why: str, **shape) -> dict[str, Any]:
    """The prediction for ``arch`` on ``profile``, bench-shaped, with ``why`` it was not measured."""
    from edgecnn.devices.predict import predict_latency

    rt, prec = profile.check(runtime, precision)
    result = predict_latency(arch, profile, runtime=rt, precision=prec, **shape)
    result["format"] = FORMAT
    result["notes"] = [f"{why}: latency predicted from the device profile, not measured"]
    return add_energy(result, profile.power_w, f"{profile.name} profile")


def _openvino_here(arch: str, profile, runtime: str | None, precision: str | None) -> tuple[str, str]:
    """(runtime, precision) of measuring ``arch`` with no artifact: OpenVINO on the host only."""
    if profile.name != HOST:
        raise EdgecnnError(
            f"measuring {arch} on this {profile.name} needs an exported artifact: "
            f"`edgecnn export {arch} --target {profile.target}`, then `edgecnn bench ARTIFACT`; "
            f"or pass --predict"
        )
    rt = runtime or "openvino"
    prec = precision or "fp32"
    if rt != "openvino":
        raise EdgecnnError(
            f"without an artifact, bench measures {arch} through OpenVINO, not {rt}: "
            f"export an artifact for {rt} and bench it, or pass --predict"
        )
    profile.check(rt, prec)
    return rt, prec
