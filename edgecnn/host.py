"""Facts about the machine edgecnn runs on (no torch import)."""

from __future__ import annotations

import functools
import platform
from pathlib import Path


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def has_fast_bf16() -> bool:
    """True where the CPU computes bf16 natively (AMX or AVX512-BF16), so bf16 autocast pays."""
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


def has_vnni() -> bool:
    """x86 with VNNI (AVX512-VNNI or AVX-VNNI): int8 dot products without int16 saturation.
    True on non-x86 machines, where the saturation question does not arise."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return True
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "avx512vnni"})
