"""Latency statistics of a model on the machine edgecnn runs on, or a prediction for one it does not.

:func:`measure` times any callable ``run(x)``: warm-up, then timed runs until both
``min_seconds`` and ``min_runs`` are reached (or ``max_seconds``), and returns::

    latency_source      "measured"
    latency_ms          {p50, p90, p99, mean, min, max, std, n}   per run(x) call: the runtime's own
                        time of each call where it keeps one (OpenVINO's InferRequest.latency, what
                        benchmark_app reports), else the wall time of the Python call
    latency_clock       "runtime" or "wall": which of the two latency_ms is
    wall_latency_ms     the wall time of each Python call, where latency_ms is the runtime's
    python_overhead_ms  median of (wall - the runtime's own time): the Python call's cost; null
                        where the runtime keeps no time of its own (it is then inside latency_ms)
    throughput_ips      images per second (batch x calls / time)
    first_inference_ms  the first call (often slow: lazy init, caches)
    load_ms             model load time (passed by the caller), or null
    peak_memory_mb      the process's peak resident memory (VmHWM / ru_maxrss)
    threads, batch, warmup, timed_s
    energy_mj           per image; energy_source "measured-rapl" from
                        /sys/class/powercap/intel-rapl:0/energy_uj when readable (the
                        whole CPU package: other load counts too), else filled in by
                        :func:`add_energy` as "estimated" = profile power x latency
    env                 :func:`environment`: CPU, governor, load, runtime versions,
                        L4T release and nvpmodel mode on a Jetson, throttling on a Pi

:func:`bench_artifact` (an exported artifact, through :mod:`edgecnn.runtimes`) and
:func:`bench_arch` (a network on a target: measured on this host through OpenVINO, or
predicted with :mod:`edgecnn.devices.predict`) return that dict plus what was run.
A remote (SSH) bench runs :func:`bench_artifact` on the device and reads its JSON.

This module imports neither torch nor a backend at import time: it runs on a device.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.vocab import LatencySource

FORMAT = "edgecnn.bench/1"
RAPL = "sys/class/powercap/intel-rapl:0"
EMULATED_NOTE = (
    "emulated ({}, CPU model {}): this time is QEMU's, about 100x a device's; it shows the "
    "artifact runs on ARM's kernels and is never a latency figure"
)
_VERSIONED = ("numpy", "openvino", "onnxruntime", "ai-edge-litert", "tflite-runtime", "tensorrt", "torch")


def summarize(samples_ms: Any) -> dict[str, Any]:
    """Percentiles (linear interpolation, so p50 <= p90 <= p99 <= max), mean, min, max, std, n."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples")
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(a.mean()),
        "min": float(a.min()),
        "max": float(a.max()),
        "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "n": int(a.size),
    }


def _read(root: str | Path, rel: str) -> str | None:
    try:
        return (Path(root) / rel).read_text(errors="replace").strip()
    except OSError:
        return None


def peak_memory_mb(root: str | Path = "/") -> float:
    """Peak resident memory of this process: VmHWM from /proc/self/status, else ru_maxrss."""
    status = _read(root, "proc/self/status") or ""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def read_rapl_uj(root: str | Path = "/") -> tuple[int, int] | None:
    """(energy_uj, max_energy_range_uj) of the CPU package, or None when not readable."""
    e = _read(root, f"{RAPL}/energy_uj")
    if e is None or not e.isdigit():
        return None
    r = _read(root, f"{RAPL}/max_energy_range_uj")
    return int(e), int(r) if r and r.isdigit() else 0


def _rapl_delta_uj(before: tuple[int, int], after: tuple[int, int]) -> int:
    d = after[0] - before[0]
    return d + before[1] if d < 0 and before[1] else d


def _command(args: list[str]) -> str | None:
    if shutil.which(args[0]) is None:
        return None
    try:
        out = subprocess.run(args, check=False, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _versions() -> dict[str, str]:
    out = {}
    for name in _VERSIONED:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return out


def environment(root: str | Path = "/") -> dict[str, Any]:
    """What the timing depends on: CPU, clocks governor, load, runtime versions, device state."""
    from edgecnn import __version__
    from edgecnn.devices.detect import (
        arm64_hwcaps,
        cpuinfo,
        detect_device,
        device_tree_model,
        emulation,
        l4t_release,
    )

    info = cpuinfo(root)
    env: dict[str, Any] = {
        "device": detect_device(root),
        "cpu_model": info["model"],
        "cpu_count": info["processors"] or os.cpu_count(),
        "machine": platform.machine(),
        "governor": _read(root, "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "edgecnn": __version__,
        "versions": _versions(),
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    model = device_tree_model(root)
    if model:
        env["board"] = model
    l4t = l4t_release(root)
    if l4t:
        env["l4t_release"] = l4t
    emulated = emulation(root)
    if emulated:
        env["emulated"] = emulated
    hwcaps = arm64_hwcaps() if Path(root) == Path("/") else None
    if hwcaps is not None:
        env["hwcaps"] = hwcaps
    if Path(root) == Path("/"):  # commands describe this machine only
        mode = _command(["nvpmodel", "-q"])
        if mode:
            env["nvpmodel"] = " ".join(mode.split())
        throttled = _command(["vcgencmd", "get_throttled"])
        if throttled:
            env["throttled"] = throttled.split("=")[-1]
    return env


def measure(
    run: Callable[[np.ndarray], Any],
    x: np.ndarray,
    *,
    warmup: int = 5,
    min_seconds: float = 2.0,
    min_runs: int = 10,
    max_seconds: float = 60.0,
    max_runs: int = 1_000_000,
    load_ms: float | None = None,
    threads: int | None = None,
    batch: int | None = None,
    root: str | Path = "/",
    with_env: bool = True,
    runtime_ms: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Time ``run(x)``: ``warmup`` calls (the first one reported apart), then timed calls until
    ``min_seconds`` and ``min_runs`` are both reached, stopping at ``max_seconds`` or ``max_runs``.
    ``runtime_ms()``, read after each timed call, is the runtime's own time of that call.
    """
    from edgecnn.devices.detect import emulation

    if min_runs < 1 or warmup < 0:
        raise ValueError("min_runs must be >= 1 and warmup >= 0")
    batch = batch or (int(x.shape[0]) if getattr(x, "ndim", 0) else 1)
    t0 = time.perf_counter_ns()
    run(x)
    first_ms = (time.perf_counter_ns() - t0) / 1e6
    for _ in range(max(0, warmup - 1)):
        run(x)
    samples: list[float] = []
    inner: list[float] = []
    rapl0 = read_rapl_uj(root)
    start = time.perf_counter_ns()
    deadline = start + int(max_seconds * 1e9)
    enough = start + int(min_seconds * 1e9)
    while True:
        t = time.perf_counter_ns()
        run(x)
        now = time.perf_counter_ns()
        samples.append((now - t) / 1e6)
        if runtime_ms is not None:
            inner.append(runtime_ms())
        n = len(samples)
        if (n >= min_runs and now >= enough) or now >= deadline or n >= max_runs:
            break
    timed_s = (time.perf_counter_ns() - start) / 1e9
    rapl1 = read_rapl_uj(root)
    emulated = emulation(root)
    result: dict[str, Any] = {
        "format": FORMAT,
        "latency_source": LatencySource.EMULATED if emulated else LatencySource.MEASURED,
        **_latency(samples, inner),
        "throughput_ips": batch * len(samples) / timed_s if timed_s > 0 else None,
        "first_inference_ms": first_ms,
        "load_ms": load_ms,
        "peak_memory_mb": peak_memory_mb(root),
        "threads": threads,
        "batch": batch,
        "warmup": warmup,
        "timed_s": timed_s,
        "energy_mj": None,
        "energy_source": None,
        "notes": [],
    }
    if emulated:
        result["notes"].append(EMULATED_NOTE.format(emulated.get("emulated"), emulated.get("cpu", "?")))
    if len(samples) < min_runs:
        result["notes"].append(
            f"stopped at max_seconds={max_seconds:g} after {len(samples)} of {min_runs} runs"
        )
    if rapl0 is not None and rapl1 is not None:
        uj = _rapl_delta_uj(rapl0, rapl1)
        result["energy_mj"] = uj / 1e3 / (len(samples) * batch)
        result["energy_source"] = "measured-rapl"
        result["notes"].append("RAPL energy is the whole CPU package's, other load included")
    if with_env:
        result["env"] = environment(root)
    return result


def _latency(wall: list[float], inner: list[float]) -> dict[str, Any]:
    """latency_ms from the runtime's own times where there are any (the Python call's cost apart), else
    wall."""
    if not inner:
        return {"latency_ms": summarize(wall), "latency_clock": "wall", "python_overhead_ms": None}
    overhead = float(np.median(np.asarray(wall) - np.asarray(inner)))
    return {
        "latency_ms": summarize(inner),
        "latency_clock": "runtime",
        "wall_latency_ms": summarize(wall),
        "python_overhead_ms": overhead,
    }


def add_energy(result: dict[str, Any], power_w: float, what: str) -> dict[str, Any]:
    """Fill ``energy_mj`` (per image) as ``power_w`` x p50 latency where nothing measured it."""
    if result.get("energy_mj") is None:
        batch = result.get("batch") or 1
        result["energy_mj"] = power_w * result["latency_ms"]["p50"] / batch  # W x ms = mJ
        result["energy_source"] = "estimated"
        result["energy_note"] = f"{what} power {power_w:g} W x p50 latency"
    return result


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
    from edgecnn.devices import detect_device, load_device
    from edgecnn.runtimes import open_session

    t0 = time.perf_counter()
    session = open_session(path, runtime=runtime, threads=threads)
    load_ms = (time.perf_counter() - t0) * 1e3
    try:
        fixed = session.batch
        if batch is not None and fixed is not None and batch != fixed:
            raise EdgecnnError(
                f"{path} has a fixed batch of {fixed}; bench it with --batch {fixed} "
                f"or re-export it with batch {batch}"
            )
        b = batch or fixed or 1
        x = _random_input(session.input_shape, b)
        call = session.timed_call(x)
        result = measure(
            lambda _x: call.run(),
            x,
            warmup=warmup,
            min_seconds=min_seconds,
            min_runs=min_runs,
            max_seconds=max_seconds,
            load_ms=load_ms,
            threads=threads,
            batch=b,
            root=root,
            runtime_ms=call.runtime_ms,
        )
        result["binding"] = call.binding
        info = dict(session.info)
    finally:
        session.close()
    meta = session.artifact.meta
    layout = (meta.get("input") or {}).get("layout") or "NCHW"
    image_size = x.shape[2] if layout == "NCHW" and x.ndim == 4 else (x.shape[1] if x.ndim == 4 else None)
    device = detect_device(root)
    result.update(
        {
            "arch": meta.get("arch"),
            "device": device,
            "target": meta.get("target"),
            "runtime": info.get("runtime") or meta.get("runtime"),
            "precision": meta.get("precision"),
            "image_size": image_size,
            "artifact": str(session.artifact.dir),
            "artifact_files": meta.get("files"),
            "runtime_info": info,
        }
    )
    if result["latency_source"] == "emulated":  # profile power x an emulated time means nothing
        return result
    profile = load_device(device, root=root)
    return add_energy(result, profile.power_w, f"{profile.name} profile")


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
    from edgecnn.devices import HOST, detect_device, load_device
    from edgecnn.models import arch_info

    arch_info(arch)
    profile = load_device(target, root=root)
    local = detect_device(root) == profile.name
    if predict or not local:
        from edgecnn.devices.predict import predict as run_predict

        rt, prec = profile.check(runtime, precision)
        result = run_predict(
            arch, profile, runtime=rt, precision=prec, image_size=image_size, batch=batch, threads=threads
        )
        result["format"] = FORMAT
        result["notes"] = [
            ("--predict" if predict else f"{profile.name} is not this machine")
            + ": latency predicted from the device profile, not measured"
        ]
        return add_energy(result, profile.power_w, f"{profile.name} profile")
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
    from edgecnn.devices.calibrate import openvino_network

    run, x, load_ms = openvino_network(
        arch, image_size=image_size, batch=batch, precision=prec, threads=threads
    )
    result = measure(
        run,
        x,
        warmup=warmup,
        min_seconds=min_seconds,
        min_runs=min_runs,
        max_seconds=max_seconds,
        load_ms=load_ms,
        threads=threads,
        batch=batch,
        root=root,
    )
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
