"""Facts about the machine edgecnn runs on, read from ``/proc`` and ``/etc`` (no torch import).

The one place ``/proc/cpuinfo`` is parsed. Functions taking ``root`` read their files under it
(default ``/``), so tests fake a Jetson, a Raspberry Pi or an x86 host in a temporary directory.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from pathlib import Path
from typing import Any

EMULATED_MARK = "etc/edgecnn-emulated"


def read_text(root: str | Path, rel: str) -> str | None:
    """The file ``rel`` under ``root`` (undecodable bytes replaced), or None when unreadable."""
    try:
        return (Path(root) / rel.lstrip("/")).read_text(errors="replace")
    except OSError:
        return None


def cpuinfo(root: str | Path = "/") -> dict[str, Any]:
    """Model name, logical CPU count, flags and clock (MHz) from ``/proc/cpuinfo``."""
    text = read_text(root, "proc/cpuinfo") or ""
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


def emulation(root: str | Path = "/") -> dict[str, str] | None:
    """What emulates this machine, or None for real hardware.

    A root made by ``scripts/emulated-pi/make.sh`` holds ``/etc/edgecnn-emulated`` (``key=value``
    lines: ``emulated=qemu-user``, ``qemu=...``); the CPU model QEMU plays comes from
    ``QEMU_CPU``. Latency measured on such a machine is labelled "emulated", never "measured".
    """
    text = read_text(root, EMULATED_MARK)
    if text is None:
        return None
    info = dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln)
    info = {k.strip(): v.strip() for k, v in info.items()}
    info.setdefault("emulated", "yes")
    if Path(root) == Path("/") and os.environ.get("QEMU_CPU"):
        info["cpu"] = os.environ["QEMU_CPU"]
    return info


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where there is none)."""
    return cpuinfo()["flags"]


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    return cpuinfo()["model"]


def has_fast_bf16() -> bool:
    """True where the CPU computes bf16 natively (AMX or AVX512-BF16), so bf16 autocast pays."""
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


def has_amx() -> bool:
    """True on a CPU with AMX tiles for bf16 (Intel Sapphire Rapids and later)."""
    return "amx_bf16" in cpu_flags()


def has_vnni() -> bool:
    """x86 with VNNI (AVX512-VNNI or AVX-VNNI): int8 dot products without int16 saturation.
    True on non-x86 machines, where the saturation question does not arise."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return True
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "avx512vnni"})
