"""Which device edgecnn runs on, the ``host`` profile built from detection, and the
environment fingerprint a timing carries (:func:`environment`).

Every function reads its files under ``root`` (default ``/``) so tests fake a Jetson,
a Raspberry Pi or an x86 host in a temporary directory. No torch import.

Detection: ``/etc/nv_tegra_release`` or a ``/proc/device-tree/model`` naming an NVIDIA
Jetson picks that Jetson's profile (by the profile's ``detect`` substrings); a model
naming a Raspberry Pi 4/5 picks ``rpi4``/``rpi5``; anything else is the ``host``.

The host profile's peak ops are DERIVED: cores x clock x ops/cycle/core of the best
instruction set the CPU reports (AVX2/FMA, AVX-512, VNNI, AMX, NEON dotprod). These
are nominal upper bounds; the predictor's fitted efficiencies absorb the rest. The host's
measured bandwidth comes from the record `edgecnn devices fit` stores (:func:`load_host_fit`).
The machine's raw facts (``/proc/cpuinfo``, emulation) are read by :mod:`edgecnn.host`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from edgecnn import paths
from edgecnn.devices.profile import (
    HOST,
    ComputeUnit,
    DeviceProfile,
    Memory,
    Peaks,
    RuntimeSupport,
    device_files,
    load_profile_file,
)
from edgecnn.host import cpuinfo, emulation
from edgecnn.host import read_text as _read


def device_tree_model(root: str | Path = "/") -> str | None:
    """``/proc/device-tree/model`` (or the sysfs file it links to) without its trailing NUL, or None."""
    text = _read(root, "proc/device-tree/model") or _read(root, "sys/firmware/devicetree/base/model")
    return text.replace("\x00", "").strip() if text else None


# Linux arm64 AT_HWCAP / AT_HWCAP2 bits (arch/arm64/include/uapi/asm/hwcap.h) that decide kernels.
_HWCAP = {1: "asimd", 10: "asimdhp", 20: "asimddp", 22: "sve"}
_HWCAP2 = {1: "sve2", 13: "i8mm", 14: "bf16", 23: "sme"}


def arm64_hwcaps(auxv: str | Path = "/proc/self/auxv") -> list[str] | None:
    """The arm64 features the kernel (or QEMU user-mode) offers this process, from its auxv.

    Unlike /proc/cpuinfo this cannot be faked by a file: it is what the CPU runs. None off arm64.
    """
    if platform.machine().lower() not in ("aarch64", "arm64"):
        return None
    try:
        data = Path(auxv).read_bytes()
    except OSError:
        return None
    words = [int.from_bytes(data[i : i + 8], "little") for i in range(0, len(data) - 7, 8)]
    # strict=False: a truncated auxv may end on a lone key word; that last unpaired word is dropped.
    pairs = dict(zip(words[::2], words[1::2], strict=False))
    hw, hw2 = pairs.get(16, 0), pairs.get(26, 0)  # AT_HWCAP, AT_HWCAP2
    return [n for b, n in _HWCAP.items() if hw >> b & 1] + [n for b, n in _HWCAP2.items() if hw2 >> b & 1]


def l4t_release(root: str | Path = "/") -> str | None:
    """The L4T (JetPack) release from ``/etc/nv_tegra_release``, e.g. ``R36.4.0``."""
    text = _read(root, "etc/nv_tegra_release")
    if not text:
        return None
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"R{m.group(1)}.{m.group(2)}" if m else text.splitlines()[0].strip("# ").strip()


def detect_device(root: str | Path = "/") -> str:
    """The profile name of the machine under ``root``: a Jetson, a Raspberry Pi, or ``host``."""
    model = device_tree_model(root) or ""
    is_jetson = _read(root, "etc/nv_tegra_release") is not None or "jetson" in model.lower()
    is_pi = "raspberry pi" in model.lower()
    if not (is_jetson or is_pi):
        return HOST
    kind = "jetson" if is_jetson else "rpi"
    best, best_len = None, -1
    for name, path in device_files().items():
        prof = load_profile_file(path)
        if prof.kind != kind:
            continue
        for pat in prof.detect:  # longest match wins: "Jetson Orin Nano" beats "Jetson Nano"
            if pat.lower() in model.lower() and len(pat) > best_len:
                best, best_len = name, len(pat)
    return best or HOST


# ---- the x86 (or any) host -----------------------------------------------------------


def cpu_clock_ghz(root: str | Path = "/", info: dict[str, Any] | None = None) -> tuple[float | None, str]:
    """The CPU clock (GHz) and where it came from: cpufreq max, the model name, or cpuinfo MHz."""
    khz = _read(root, "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if khz and khz.strip().isdigit():
        return int(khz.strip()) / 1e6, "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"
    info = info or cpuinfo(root)
    m = re.search(r"@\s*([\d.]+)\s*GHz", info["model"] or "")
    if m:
        return float(m.group(1)), "the CPU model name"
    if info["mhz"]:
        return info["mhz"] / 1000, "/proc/cpuinfo 'cpu MHz' (current clock)"
    return None, "unknown"


# ops (2 x multiply-accumulates) per cycle per core, best matching instruction set first.
# Nominal: two vector FMA / dot-product pipes assumed where the ISA allows it.
_OPS_PER_CYCLE: dict[str, tuple[tuple[str, float], ...]] = {
    "fp32": (("avx512f", 64), ("fma", 32), ("avx", 16), ("sse2", 8), ("asimd", 16), ("neon", 8)),
    "int8": (
        ("amx_int8", 2048),
        ("avx512_vnni", 256),
        ("avx_vnni", 128),
        ("avx512bw", 128),
        ("avx2", 64),
        ("sse4_1", 32),
        ("i8mm", 128),
        ("asimddp", 64),
        ("asimd", 32),
    ),
    "bf16": (("amx_bf16", 1024), ("avx512_bf16", 128)),
    "fp16": (("avx512_fp16", 128), ("asimdhp", 32)),
}


def isa_ops_per_cycle(flags: frozenset[str]) -> dict[str, tuple[float, str]]:
    """Per precision: (ops/cycle/core, the flag it comes from), for precisions the ISA runs natively."""
    out = {}
    for prec, table in _OPS_PER_CYCLE.items():
        for flag, ops in table:
            if flag in flags:
                out[prec] = (ops, flag)
                break
    return out


def mem_total_gb(root: str | Path = "/") -> float | None:
    text = _read(root, "proc/meminfo") or ""
    m = re.search(r"MemTotal:\s*(\d+)\s*kB", text)
    return int(m.group(1)) / 1e6 if m else None


def last_level_cache_mb(root: str | Path = "/") -> tuple[float | None, str]:
    """Size (MiB) of the highest-level data or unified cache of cpu0, from sysfs, and its path."""
    base = Path(root) / "sys/devices/system/cpu/cpu0/cache"
    best: tuple[int, float, str] | None = None
    for d in sorted(base.glob("index*")):
        level, kind, size = (_read(root, str(d.relative_to(root) / f)) for f in ("level", "type", "size"))
        m = re.fullmatch(r"(\d+)([KMG]?)", (size or "").strip())
        if not (level and level.strip().isdigit() and m and (kind or "").strip() in ("Unified", "Data")):
            continue
        mib = int(m.group(1)) * {"": 2**-20, "K": 2**-10, "M": 1, "G": 2**10}[m.group(2)]
        if best is None or int(level) > best[0]:
            best = (int(level), mib, f"/{d.relative_to(root)}/size (L{int(level)})")
    return (best[1], best[2]) if best else (None, "not found in sysfs")


def host_key(root: str | Path = "/") -> str:
    """A short hash of CPU model, core count and ISA flags: names the host's fit record."""
    info = cpuinfo(root)
    text = "|".join(
        [str(info["model"]), str(info["processors"] or os.cpu_count()), " ".join(sorted(info["flags"]))]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


ASSUMED_GBPS_PER_CORE = 10.0
ASSUMED_W_PER_CORE = 5.0


def host_profile(
    root: str | Path = "/", fit_record: dict[str, Any] | None = None, *, use_cache: bool = True
) -> DeviceProfile:
    """The profile of the local CPU, built from ``/proc/cpuinfo`` under ``root``.

    ``fit_record`` is the record ``devices fit`` stored (measured bandwidth, efficiencies);
    by default the cached one for this host is used when ``root`` is ``/``.
    """
    info = cpuinfo(root)
    cores = info["processors"] or os.cpu_count() or 1
    ghz, clock_src = cpu_clock_ghz(root, info)
    ghz_used = ghz or 2.0
    per_cycle = isa_ops_per_cycle(info["flags"])
    if "fp32" not in per_cycle:
        per_cycle["fp32"] = (8.0, "assumed")
    if fit_record is None and use_cache and Path(root) == Path("/"):
        fit_record = load_host_fit(root)
    peaks = {p: cores * ghz_used * 1e9 * ops / 1e12 for p, (ops, _) in per_cycle.items()}
    sources = {
        "cpu.cores": "detected: processors in /proc/cpuinfo",
        "cpu.clock_ghz": f"detected: {clock_src}" if ghz else "assumed 2.0 GHz (no clock found)",
        "power_w": (
            f"assumed {ASSUMED_W_PER_CORE:g} W per core (no measured power; RAPL is used when readable)"
        ),
    }
    for p, (ops, flag) in per_cycle.items():
        sources[f"cpu.peak_tops.{p}"] = (
            f"DERIVED: {cores} cores x {ghz_used:g} GHz x {ops:g} ops/cycle/core "
            f"({flag}); a nominal upper bound"
        )
    mem = mem_total_gb(root) or 1.0
    sources["memory.size_gb"] = "detected: MemTotal in /proc/meminfo"
    bw, sources["memory.bandwidth_gbps"] = _host_bandwidth(fit_record, cores)
    llc, llc_src = last_level_cache_mb(root)
    if llc:
        sources["memory.cache_mb"] = f"detected: {llc_src}"
    isa = tuple(
        sorted(f for f in info["flags"] if f in {flag for t in _OPS_PER_CYCLE.values() for flag, _ in t})
    )
    runtimes, default_runtime = _host_runtimes(info["flags"], peaks)
    return DeviceProfile(
        name=HOST,
        description=f"this machine: {info['model']} ({cores} logical CPUs), detected",
        kind="host",
        target="cpu",
        default_runtime=default_runtime,
        default_precision="int8" if "int8" in peaks else "fp32",
        power_w=ASSUMED_W_PER_CORE * cores,
        cpu=ComputeUnit(
            description=str(info["model"]), cores=cores, clock_ghz=ghz, isa=isa, peak_tops=Peaks(**peaks)
        ),
        memory=Memory(size_gb=round(mem, 1), bandwidth_gbps=round(bw, 2), type="detected", cache_mb=llc),
        runtimes=runtimes,
        sources=sources,
        source="detected" + (" + devices fit" if fit_record else ""),
    )


def _host_bandwidth(fit_record: dict[str, Any] | None, cores: int) -> tuple[float, str]:
    """The host's memory bandwidth (GB/s) and its source: measured by `devices fit`, else assumed."""
    if fit_record and fit_record.get("bandwidth_gbps"):
        created = fit_record.get("created", "?")
        return float(
            fit_record["bandwidth_gbps"]
        ), f"measured: copy bandwidth by `edgecnn devices fit` ({created})"
    return (
        ASSUMED_GBPS_PER_CORE * cores,
        f"assumed {ASSUMED_GBPS_PER_CORE:g} GB/s per core; `edgecnn devices fit` measures it",
    )


def _host_runtimes(flags: frozenset[str], peaks: dict[str, float]) -> tuple[dict[str, RuntimeSupport], str]:
    """The runtimes the host runs, in which precisions (those with a peak), and the default one."""
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686") or "sse2" in flags
    runtimes: dict[str, RuntimeSupport] = {}
    int8_fp32 = tuple(p for p in ("int8", "fp32") if p in peaks)
    if x86:
        runtimes["openvino"] = RuntimeSupport(
            unit="cpu", precisions=tuple(p for p in ("int8", "bf16", "fp32") if p in peaks)
        )
        runtimes["onnxruntime"] = RuntimeSupport(unit="cpu", precisions=int8_fp32)
    runtimes["tflite"] = RuntimeSupport(unit="cpu", precisions=int8_fp32)
    return runtimes, "openvino" if x86 else "tflite"


# ---- the environment fingerprint of a timing ------------------------------------------

_VERSIONED = ("numpy", "openvino", "onnxruntime", "ai-edge-litert", "tflite-runtime", "tensorrt", "torch")


def _strip(text: str | None) -> str | None:
    return None if text is None else text.strip()


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
    from edgecnn.version import __version__

    info = cpuinfo(root)
    env: dict[str, Any] = {
        "device": detect_device(root),
        "cpu_model": info["model"],
        "cpu_count": info["processors"] or os.cpu_count(),
        "machine": platform.machine(),
        "governor": _strip(_read(root, "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")),
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


# ---- the host's fit record (written by `edgecnn devices fit`, read by host_profile) ---

FIT_FORMAT = "edgecnn.host-calibration/1"  # the record's format name since before the rename


def host_fit_path(root: str | Path = "/") -> Path:
    """Where `edgecnn devices fit` stores this host's record: ``$EDGECNN_HOME/devices/host-<hash>.json``."""
    return paths.home() / "devices" / f"host-{host_key(root)}.json"


def load_host_fit(root: str | Path = "/") -> dict[str, Any] | None:
    """The stored fit record of this host, or None (also when unreadable)."""
    try:
        rec = json.loads(host_fit_path(root).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("format") == FIT_FORMAT else None
