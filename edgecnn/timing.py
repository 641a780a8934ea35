"""Timing primitives: time a callable, summarize the samples, read memory and energy counters.

:func:`measure` times any callable ``run(x)``: warm-up, then timed runs until both
``min_seconds`` and ``min_runs`` are reached (or ``max_seconds``), and returns::

    latency_source      "measured" ("emulated" on a QEMU root, see :func:`edgecnn.host.emulation`)
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

The environment fingerprint (``env``) is :func:`edgecnn.devices.detect.environment`, which the
callers (:mod:`edgecnn.bench`, ``devices fit``) add. A leaf: imports only numpy,
:mod:`edgecnn.host` and :mod:`edgecnn.vocab`, so device profiles and the bench both build on it.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.host import emulation, read_text
from edgecnn.vocab import LatencySource

FORMAT = "edgecnn.bench/1"
RAPL = "sys/class/powercap/intel-rapl:0"
EMULATED_NOTE = (
    "emulated ({}, CPU model {}): this time is QEMU's, about 100x a device's; it shows the "
    "artifact runs on ARM's kernels and is never a latency figure"
)


def _read(root: str | Path, rel: str) -> str | None:
    text = read_text(root, rel)
    return None if text is None else text.strip()


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


def median_seconds(fn: Callable[[], Any], seconds: float, min_runs: int = 3) -> float:
    """Median seconds per call of ``fn`` over about ``seconds`` (after one warm-up call; at most
    10 x ``seconds`` in all)."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > 10 * seconds:
            break
    return float(np.median(times))


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
    runtime_ms: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Time ``run(x)``: ``warmup`` calls (the first one reported apart), then timed calls until
    ``min_seconds`` and ``min_runs`` are both reached, stopping at ``max_seconds`` (never before
    ``min_seconds``: a longer measurement asked for is one) or ``max_runs``.
    ``runtime_ms()``, read after each timed call, is the runtime's own time of that call.
    """
    if min_runs < 1 or warmup < 0:
        raise ValueError("min_runs must be >= 1 and warmup >= 0")
    batch = batch or (int(x.shape[0]) if getattr(x, "ndim", 0) else 1)
    t0 = time.perf_counter_ns()
    run(x)
    first_ms = (time.perf_counter_ns() - t0) / 1e6
    for _ in range(max(0, warmup - 1)):
        run(x)
    rapl0 = read_rapl_uj(root)
    samples, inner, timed_s = _timed_runs(run, x, min_seconds, min_runs, max_seconds, max_runs, runtime_ms)
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
        _add_rapl_energy(result, _rapl_delta_uj(rapl0, rapl1), images=len(samples) * batch)
    return result


def _add_rapl_energy(result: dict[str, Any], uj: int, images: int) -> None:
    result["energy_mj"] = uj / 1e3 / images
    result["energy_source"] = "measured-rapl"
    result["notes"].append("RAPL energy is the whole CPU package's, other load included")


def _timed_runs(
    run: Callable[[np.ndarray], Any],
    x: np.ndarray,
    min_seconds: float,
    min_runs: int,
    max_seconds: float,
    max_runs: int,
    runtime_ms: Callable[[], float] | None,
) -> tuple[list[float], list[float], float]:
    """(wall ms per call, the runtime's own ms per call, seconds in all) of the timed calls."""
    samples: list[float] = []
    inner: list[float] = []
    start = time.perf_counter_ns()
    deadline = start + int(max(max_seconds, min_seconds) * 1e9)
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
    return samples, inner, (time.perf_counter_ns() - start) / 1e9


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
