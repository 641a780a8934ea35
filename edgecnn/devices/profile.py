"""Device profiles: ``devices/<name>.toml`` loaded into frozen dataclasses.

A profile says what a device computes with (CPU, GPU), its dense peak ops per
precision, memory bandwidth and size, typical power, which runtimes run there in which
precisions, and ``[[calibration_points]]``: published batch-1 latencies the latency
predictor fits its efficiencies to. ``[sources]`` names the source of every figure
(dotted field path -> source; "DERIVED" marks computed figures). Unknown keys, unknown
runtimes or precisions, and sources naming no figure are errors naming the key and file.

Units: peak in tera-ops/s (dense; ops = 2 x multiply-accumulates), bandwidth GB/s
(10^9 bytes/s), memory GB, power W. No torch import.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgecnn.config import from_mapping, read_toml, to_dict
from edgecnn.errors import EdgecnnError, suggest

DEVICES_DIR = Path(__file__).resolve().parent.parent / "_resources" / "devices"
RUNTIMES = ("openvino", "onnxruntime", "tflite", "tensorrt")
PRECISIONS = ("int8", "fp16", "bf16", "fp32")
KINDS = ("host", "jetson", "rpi")
HOST = "host"
# Target aliases (the DESIGN's targets): `cpu` is the host, detected at run time.
ALIASES = {"cpu": HOST, "jetson": "jetson-orin-nano", "rpi": "rpi5"}
BYTES_PER = {"int8": 1, "fp16": 2, "bf16": 2, "fp32": 4}
# Arm CPUs: INT8 ops per FP32 op that the ISA's best int8 instruction gives (the NEON pipes run
# SMMLA / SDOT / SMLAL at the rate of FMLA): i8mm 8x, dotprod 4x, plain NEON (SMLAL, widening) 2x;
# the same ratios as detect.py's ops per cycle (i8mm 128, asimddp 64, asimd 32 against FP32 16).
INT8_RATE = (
    ("i8mm", 8.0),
    ("dotprod", 4.0),
    ("asimddp", 4.0),
    ("neon", 2.0),
    ("asimd", 2.0),
)  # cpuinfo names too


def int8_rate(isa: tuple[str, ...]) -> tuple[float, str] | None:
    """(INT8 peak / FP32 peak, the ISA flag deciding it) of an Arm CPU, or None for another ISA."""
    for flag, rate in INT8_RATE:
        if flag in isa:
            return rate, flag
    return None


@dataclass(frozen=True)
class Peaks:
    """Dense peak throughput in tera-ops/s per precision (None: no native path)."""

    int8: float | None = None
    fp16: float | None = None
    bf16: float | None = None
    fp32: float | None = None

    def __post_init__(self):
        for p in PRECISIONS:
            v = getattr(self, p)
            if v is not None and v <= 0:
                raise ValueError(f"peak_tops.{p} must be positive")

    def get(self, precision: str) -> float | None:
        return getattr(self, precision)


@dataclass(frozen=True)
class ComputeUnit:
    description: str
    cores: int | None = None
    clock_ghz: float | None = None
    isa: tuple[str, ...] = ()
    peak_tops: Peaks = field(default_factory=Peaks)


@dataclass(frozen=True)
class Memory:
    """Main memory, and the last-level cache in front of it (``cache_mb``: shared by the cores the
    runtime computes on; optional, and the predictor then reads every byte at ``bandwidth_gbps``)."""

    size_gb: float
    bandwidth_gbps: float
    type: str = ""
    cache_mb: float | None = None

    def __post_init__(self):
        if self.size_gb <= 0 or self.bandwidth_gbps <= 0:
            raise ValueError("memory size_gb and bandwidth_gbps must be positive")
        if self.cache_mb is not None and self.cache_mb <= 0:
            raise ValueError("memory cache_mb must be positive")


@dataclass(frozen=True)
class RuntimeSupport:
    """One runtime on a device: the unit it computes on and the precisions it runs.

    ``transfer_from`` names the device whose fit for this runtime is used when this one
    has no calibration points; ``extra_error_pct`` widens the predictor's error band for
    a stated reason (proxy runtime, transferred fit).
    """

    unit: Literal["cpu", "gpu"]
    precisions: tuple[str, ...]
    transfer_from: str | None = None
    extra_error_pct: float = 0.0
    extra_error_reason: str = ""

    def __post_init__(self):
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad:
            raise ValueError(f"precisions: unknown '{bad[0]}' (known: {', '.join(PRECISIONS)})")
        if not self.precisions:
            raise ValueError("precisions must not be empty")
        if self.extra_error_pct < 0:
            raise ValueError("extra_error_pct must be >= 0")


@dataclass(frozen=True)
class CalibrationPoint:
    """A published (or measured) latency the predictor fits efficiencies to."""

    arch: str
    runtime: str
    precision: str
    latency_ms: float
    measured_with: str
    source: str
    batch: int = 1
    image_size: int = 224
    threads: int | None = None
    fallback: bool = False  # another runtime's figure (ncnn): fitted only when nothing else is there

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"calibration point precision '{self.precision}' is not one of {', '.join(PRECISIONS)}"
            )
        if self.latency_ms <= 0:
            raise ValueError("calibration point latency_ms must be positive")


@dataclass(frozen=True)
class LayerPoint:
    """One single layer timed on the device itself (``edgecnn devices fit --host``): a suite item of
    :mod:`edgecnn.devices.layers` (``layer``: ("conv", c_in, c_out, k, stride, size) | ("linear", in, out) |
    ("pool", channels, k, stride, size)) and its seconds per inference from the runtime's profiler."""

    layer: tuple[Any, ...]
    runtime: str
    precision: str
    seconds: float
    measured_with: str
    source: str
    threads: int | None = None

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"layer point precision '{self.precision}' is not one of {', '.join(PRECISIONS)}"
            )
        if self.seconds <= 0:
            raise ValueError("layer point seconds must be positive")
        if not self.layer or self.layer[0] not in ("conv", "linear", "pool"):
            raise ValueError(f"layer point layer {list(self.layer)} is not a conv, linear or pool spec")


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    kind: Literal["host", "jetson", "rpi"]
    target: Literal["cpu", "jetson", "rpi"]
    default_runtime: str
    default_precision: str
    power_w: float
    cpu: ComputeUnit
    memory: Memory
    runtimes: dict[str, Any]  # runtime -> RuntimeSupport (checked by parse_profile)
    sources: dict[str, Any]  # dotted figure path -> source (checked by parse_profile)
    gpu: ComputeUnit | None = None
    detect: tuple[str, ...] = ()  # substrings of /proc/device-tree/model that pick this profile
    calibration_points: tuple[CalibrationPoint, ...] = ()
    layer_points: tuple[LayerPoint, ...] = ()  # single layers timed on this very device
    source: str = ""  # the file (or "detected") the profile came from

    @property
    def aliases(self) -> tuple[str, ...]:
        return tuple(a for a, n in ALIASES.items() if n == self.name)

    def runtime(self, runtime: str | None = None) -> RuntimeSupport:
        rt = runtime or self.default_runtime
        if rt not in self.runtimes:
            raise EdgecnnError(
                f"device '{self.name}' has no runtime '{rt}'; it runs: {', '.join(self.runtimes)}"
            )
        return self.runtimes[rt]

    def unit(self, runtime: str | None = None) -> ComputeUnit:
        u = self.runtime(runtime).unit
        unit = self.gpu if u == "gpu" else self.cpu
        if unit is None:  # parse_profile rejects this; a hand-built profile may not
            raise EdgecnnError(f"device '{self.name}' runs {runtime} on its {u} but has no [{u}] table")
        return unit

    def check(self, runtime: str | None = None, precision: str | None = None) -> tuple[str, str]:
        """The (runtime, precision) to use, defaults filled in; EdgecnnError if unsupported."""
        rt = runtime or self.default_runtime
        support = self.runtime(rt)
        prec = precision or (
            self.default_precision if self.default_precision in support.precisions else support.precisions[0]
        )
        if prec not in support.precisions:
            why = ""
            if self.name == "jetson-nano" and prec == "int8":
                why = " (Maxwell sm_53 has no INT8 path in TensorRT)"
            raise EdgecnnError(
                f"device '{self.name}' runs {rt} in {', '.join(support.precisions)}, "
                f"not {prec}{why}; pass --precision {support.precisions[0]}"
            )
        return rt, prec

    def peak_ops(self, runtime: str | None, precision: str, threads: int | None = None) -> float:
        """Dense peak ops/s of the unit ``runtime`` computes on; CPU peaks scale with ``threads``."""
        unit = self.unit(runtime)
        tops = unit.peak_tops.get(precision)
        if tops is None:
            raise EdgecnnError(
                f"device '{self.name}' has no {precision} peak for its "
                f"{self.runtime(runtime).unit}; add [..peak_tops] {precision} to its profile"
            )
        ops = tops * 1e12
        if self.runtime(runtime).unit == "cpu" and threads and unit.cores:
            ops *= min(threads, unit.cores) / unit.cores
        return ops

    @property
    def bandwidth(self) -> float:
        """Memory bandwidth in bytes/s."""
        return self.memory.bandwidth_gbps * 1e9

    @property
    def cache_bytes(self) -> float | None:
        """Last-level cache in bytes, or None where the profile does not give it."""
        return self.memory.cache_mb * 2**20 if self.memory.cache_mb else None

    def to_dict(self) -> dict[str, Any]:
        d = to_dict(self)
        d["aliases"] = list(self.aliases)
        return d


def _figure_paths(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted paths of every numeric figure of a profile (the things ``[sources]`` must name)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            if f.name not in ("calibration_points", "layer_points"):
                out.update(_figure_paths(v, path + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[path] = v
    return out


def figure_paths(profile: DeviceProfile) -> dict[str, Any]:
    """The figures of ``profile`` needing a source: peaks, clocks, cores, memory, power."""
    return {k: v for k, v in _figure_paths(profile).items() if v is not None}


def parse_profile(data: dict[str, Any], source: str) -> DeviceProfile:
    """Validate a parsed TOML table into a :class:`DeviceProfile` (errors name key and ``source``)."""
    data = dict(data)
    runtimes = _parse_runtimes(data.get("runtimes", {}), source)
    sources = data.get("sources", {})
    if not isinstance(sources, dict) or not all(isinstance(v, str) for v in sources.values()):
        raise EdgecnnError(f"{source} [sources] must map figure paths to strings")
    data["runtimes"], data["sources"] = {}, {}
    data.setdefault("source", source)
    p = from_mapping(DeviceProfile, data, source)
    p = dataclasses.replace(p, runtimes=runtimes, sources=dict(sources))
    _check_runtimes(p, source)
    _check_int8_rate(p.cpu, source)
    _check_points(p, source)
    figures = _figure_paths(p)
    for key in sources:
        if key not in figures:
            raise EdgecnnError(
                f"unknown key '{key}' in {source} [sources]: it names no figure of the profile."
                f"{suggest(key, figures)}"
            )
    return p


def _parse_runtimes(raw: Any, source: str) -> dict[str, RuntimeSupport]:
    """The ``[runtimes.<name>]`` tables: known runtimes only, each a table."""
    if not isinstance(raw, dict) or not raw:
        raise EdgecnnError(f"{source} needs a [runtimes.<name>] table (runtimes: {', '.join(RUNTIMES)})")
    runtimes = {}
    for rt, table in raw.items():
        if rt not in RUNTIMES:
            raise EdgecnnError(
                f"unknown runtime '{rt}' in {source} [runtimes].{suggest(rt, RUNTIMES)} "
                f"Known: {', '.join(RUNTIMES)}"
            )
        if not isinstance(table, dict):
            raise EdgecnnError(f"{source} [runtimes.{rt}] must be a table")
        runtimes[rt] = from_mapping(RuntimeSupport, table, f"{source} [runtimes.{rt}]")
    return runtimes


def _check_runtimes(p: DeviceProfile, where: str) -> None:
    """The defaults name a listed runtime and precision; each runtime's unit has a peak per precision."""
    runtimes = p.runtimes
    if p.default_runtime not in runtimes:
        raise EdgecnnError(
            f"{where}: default_runtime '{p.default_runtime}' has no [runtimes.{p.default_runtime}] table"
        )
    if p.default_precision not in runtimes[p.default_runtime].precisions:
        raise EdgecnnError(
            f"{where}: default_precision '{p.default_precision}' is not among "
            f"[runtimes.{p.default_runtime}] precisions"
        )
    for rt, support in runtimes.items():
        unit = p.gpu if support.unit == "gpu" else p.cpu
        if unit is None:
            raise EdgecnnError(
                f"{where} [runtimes.{rt}] runs on the {support.unit} but there is no [{support.unit}] table"
            )
        for prec in support.precisions:
            if unit.peak_tops.get(prec) is None:
                raise EdgecnnError(
                    f"{where} [runtimes.{rt}] lists {prec} but [{support.unit}.peak_tops] has no {prec}"
                )


def _check_points(p: DeviceProfile, where: str) -> None:
    """Calibration and layer points name a listed runtime (and, for the former, a precision with a peak)."""
    runtimes = p.runtimes
    for i, cp in enumerate(p.calibration_points):
        if cp.runtime not in runtimes:
            raise EdgecnnError(
                f"{where} calibration_points[{i}]: runtime '{cp.runtime}' has no [runtimes.{cp.runtime}]"
            )
        unit = p.gpu if runtimes[cp.runtime].unit == "gpu" else p.cpu
        if unit is None or unit.peak_tops.get(cp.precision) is None:
            raise EdgecnnError(f"{where} calibration_points[{i}]: no {cp.precision} peak for {cp.runtime}")
    for i, lp in enumerate(p.layer_points):
        if lp.runtime not in runtimes:
            raise EdgecnnError(
                f"{where} layer_points[{i}]: runtime '{lp.runtime}' has no [runtimes.{lp.runtime}]"
            )


def _check_int8_rate(cpu: ComputeUnit, where: str) -> None:
    """An Arm CPU's INT8 peak must be the FP32 peak times the rate its ISA flags give (dotprod, i8mm)."""
    rate = int8_rate(cpu.isa)
    i8, f32 = cpu.peak_tops.int8, cpu.peak_tops.fp32
    if rate is None or i8 is None or f32 is None:
        return
    if abs(i8 / f32 / rate[0] - 1) > 0.05:
        raise EdgecnnError(
            f"{where} [cpu.peak_tops]: int8 {i8} is {i8 / f32:.2f}x fp32 {f32}, but isa "
            f"{list(cpu.isa)} gives {rate[0]:g}x ('{rate[1]}'); fix the peak or the isa flags"
        )


def device_files() -> dict[str, Path]:
    """Profile name -> TOML file, for every ``devices/*.toml``."""
    return {p.stem: p for p in sorted(DEVICES_DIR.glob("*.toml"))}


@functools.cache
def _load_file(path: str) -> DeviceProfile:
    p = Path(path)
    shipped = p.parent.resolve() == DEVICES_DIR.resolve()
    shown = f"devices/{p.name}" if shipped else str(p)
    prof = parse_profile(read_toml(p), shown)
    if shipped and prof.name != p.stem:
        raise EdgecnnError(f"{shown}: name '{prof.name}' must equal the file name '{p.stem}'")
    return prof


def load_profile_file(path: str | Path) -> DeviceProfile:
    return _load_file(str(Path(path).absolute()))


def list_devices(include_host: bool = True) -> list[str]:
    """Every profile name: the TOML profiles, then ``host``."""
    return [*device_files(), *([HOST] if include_host else [])]


def resolve_name(name: str) -> str:
    """The profile name for ``name`` (an alias, a profile name); EdgecnnError suggesting the nearest."""
    n = ALIASES.get(name, name)
    known = list_devices()
    if n not in known:
        raise EdgecnnError(
            f"unknown device '{name}'.{suggest(name, [*known, *ALIASES])} "
            f"Known: {', '.join(known)} (aliases: {', '.join(f'{a}={b}' for a, b in ALIASES.items())})"
        )
    return n
