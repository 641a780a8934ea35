"""Which device edgecnn runs on, and the ``host`` profile built from detection.

Every function reads its files under ``root`` (default ``/``) so tests fake a Jetson,
a Raspberry Pi or an x86 host in a temporary directory. No torch import.

Detection: ``/etc/nv_tegra_release`` or a ``/proc/device-tree/model`` naming an NVIDIA
Jetson picks that Jetson's profile (by the profile's ``detect`` substrings); a model
naming a Raspberry Pi 4/5 picks ``rpi4``/``rpi5``; anything else is the ``host``.

The host profile's peak ops are DERIVED: cores x clock x ops/cycle/core of the best
instruction set the CPU reports (AVX2/FMA, AVX-512, VNNI, AMX, NEON dotprod). These
are nominal upper bounds; the predictor's fitted efficiencies absorb the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import re
from pathlib import Path
from typing import Any

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


def _read(root: str | Path, rel: str) -> str | None:
    try:
        return (Path(root) / rel.lstrip("/")).read_text(errors="replace")
    except OSError:
        return None


def device_tree_model(root: str | Path = "/") -> str | None:
    """``/proc/device-tree/model`` (or the sysfs file it links to) without its trailing NUL, or None."""
    text = _read(root, "proc/device-tree/model") or _read(root, "sys/firmware/devicetree/base/model")
    return text.replace("\x00", "").strip() if text else None


EMULATED_MARK = "etc/edgecnn-emulated"


def emulation(root: str | Path = "/") -> dict[str, str] | None:
    """What emulates this machine, or None for real hardware.

    A root made by ``scripts/emulated-pi/make.sh`` holds ``/etc/edgecnn-emulated`` (``key=value``
    lines: ``emulated=qemu-user``, ``qemu=...``); the CPU model QEMU plays comes from
    ``QEMU_CPU``. Latency measured on such a machine is labelled "emulated", never "measured".
    """
    text = _read(root, EMULATED_MARK)
    if text is None:
        return None
    info = dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln)
    info = {k.strip(): v.strip() for k, v in info.items()}
    info.setdefault("emulated", "yes")
    if Path(root) == Path("/") and os.environ.get("QEMU_CPU"):
        info["cpu"] = os.environ["QEMU_CPU"]
    return info


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


def cpuinfo(root: str | Path = "/") -> dict[str, Any]:
    """Model name, logical CPU count, flags and clock (MHz) from ``/proc/cpuinfo``."""
    text = _read(root, "proc/cpuinfo") or ""
    info: dict[str, Any] = {"model": None, "flags": frozenset(), "mhz": None, "processors": 0}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor":
            info["processors"] += 1
        elif key == "model name" and info["model"] is None:
            info["model"] = value
        elif key in ("flags", "Features") and not info["flags"]:
            info["flags"] = frozenset(value.split())
        elif key == "cpu MHz" and info["mhz"] is None:
            with contextlib.suppress(ValueError):
                info["mhz"] = float(value)
    if info["model"] is None:
        info["model"] = platform.processor() or platform.machine()
    return info


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
    """A short hash of CPU model, core count and ISA flags: names the host's calibration cache."""
    info = cpuinfo(root)
    text = "|".join(
        [str(info["model"]), str(info["processors"] or os.cpu_count()), " ".join(sorted(info["flags"]))]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


ASSUMED_GBPS_PER_CORE = 10.0
ASSUMED_W_PER_CORE = 5.0


def host_profile(
    root: str | Path = "/", calibration: dict[str, Any] | None = None, *, use_cache: bool = True
) -> DeviceProfile:
    """The profile of the local CPU, built from ``/proc/cpuinfo`` under ``root``.

    ``calibration`` is a ``devices calibrate`` record (measured bandwidth, efficiencies);
    by default the cached one for this host is used when ``root`` is ``/``.
    """
    info = cpuinfo(root)
    cores = info["processors"] or os.cpu_count() or 1
    ghz, clock_src = cpu_clock_ghz(root, info)
    ghz_used = ghz or 2.0
    per_cycle = isa_ops_per_cycle(info["flags"])
    if "fp32" not in per_cycle:
        per_cycle["fp32"] = (8.0, "assumed")
    if calibration is None and use_cache and Path(root) == Path("/"):
        from edgecnn.devices.calibrate import load_host_calibration

        calibration = load_host_calibration(root)
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
    bw = None
    if calibration and calibration.get("bandwidth_gbps"):
        bw = float(calibration["bandwidth_gbps"])
        sources["memory.bandwidth_gbps"] = (
            f"measured: copy bandwidth by `edgecnn devices calibrate` ({calibration.get('created', '?')})"
        )
    else:
        bw = ASSUMED_GBPS_PER_CORE * cores
        sources["memory.bandwidth_gbps"] = (
            f"assumed {ASSUMED_GBPS_PER_CORE:g} GB/s per core; `edgecnn devices calibrate` measures it"
        )
    llc, llc_src = last_level_cache_mb(root)
    if llc:
        sources["memory.cache_mb"] = f"detected: {llc_src}"
    isa = tuple(
        sorted(f for f in info["flags"] if f in {flag for t in _OPS_PER_CYCLE.values() for flag, _ in t})
    )
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686") or "sse2" in info["flags"]
    runtimes: dict[str, RuntimeSupport] = {}
    precisions = tuple(p for p in ("int8", "bf16", "fp32") if p in peaks)
    if x86:
        runtimes["openvino"] = RuntimeSupport(unit="cpu", precisions=precisions)
        runtimes["onnxruntime"] = RuntimeSupport(
            unit="cpu", precisions=tuple(p for p in ("int8", "fp32") if p in peaks)
        )
    runtimes["tflite"] = RuntimeSupport(
        unit="cpu", precisions=tuple(p for p in ("int8", "fp32") if p in peaks)
    )
    default_runtime = "openvino" if x86 else "tflite"
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
        source="detected" + (" + devices calibrate" if calibration else ""),
    )
