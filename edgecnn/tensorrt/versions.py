"""Which TensorRT edgecnn builds with, and how each major version is told a precision (plain Python).

TensorRT 10 is weakly typed: trtexec's ``--int8``/``--fp16`` (``BuilderFlag.INT8``/``FP16``)
let it pick lower-precision kernels, and an explicitly quantized (Q/DQ) graph needs them to
keep its Q/DQ layers in INT8. TensorRT 11 removed every precision flag, trtexec's included:
networks are always strongly typed and the ONNX types decide ("Migrating trtexec Usage from
TensorRT 10.x to 11.x", "Removed Python APIs and Replacements" in NVIDIA's TensorRT 11 docs;
``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` is kept there and ignored). So on 11.x an
INT8 artifact is built as written: its quantized layers in INT8 on exactly the grid of the
fake-quant graph, the few float layers outside the Q/DQ pairs in FP32; an FP16 artifact already
carries FP16 (export writes it so). ``fp16_rewrite`` (``edgecnn build-engine --fp16-outside-qdq``)
builds an INT8 artifact from its FP16 rewrite instead (:mod:`edgecnn.tensorrt.fp16`), which is
what ``--int8 --fp16`` let TensorRT 10 pick, at a measured cost: rounding the Q/DQ scales to FP16
moves the integer grid (benchmarks/fp16_rewrite_agreement.py: 97.6% top-1 agreement with the
FP32 graph on a tiny ResNet18, 97.7% from the scales alone).

JetPack 6 brings TensorRT 10 (10.3 on JetPack 6.1/6.2); NVIDIA's TensorRT 11 migration notes
say JetPack is not supported by the 11.x releases yet, so a Jetson builds the 10.x way and an
x86 GPU host with ``pip install 'edgecnn[tensorrt]'`` (``tensorrt>=10.0,<12``) may get either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from edgecnn.errors import EdgecnnError

MIN_MAJOR, MAX_TESTED_MAJOR = 10, 11  # keep in step with the tensorrt extra in pyproject.toml
# The lowest compute capability with INT8 kernels in TensorRT's support matrix (6.1, Pascal);
# a Jetson Nano (Maxwell, 5.3) has none.
INT8_MIN_CAPABILITY = (6, 1)
# trtexec precision flags on TensorRT 10: an int8 QDQ graph keeps its Q/DQ layers in INT8 and may
# run the rest in FP16; an fp16 artifact is FP16; fp32 needs none.
TRTEXEC_FLAGS_10 = {"int8": ("--int8", "--fp16"), "fp16": ("--fp16",), "fp32": ()}
BUILDER_FLAGS_10 = {"int8": ("FP16", "INT8"), "fp16": ("FP16",), "fp32": ()}


@dataclass(frozen=True, order=True)
class TrtVersion:
    major: int
    minor: int = 0
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> TrtVersion:
        """``"10.3.0.30"`` -> 10.3.0; an EdgecnnError for text that is no version."""
        m = re.match(r"\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", str(text))
        if not m:
            raise EdgecnnError(f"cannot read a TensorRT version from {text!r}")
        return cls(*(int(g) if g else 0 for g in m.groups()))

    @property
    def strongly_typed(self) -> bool:
        """TensorRT 11 and later: no precision flags, the ONNX types decide."""
        return self.major >= 11

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def trtexec_version(text: str) -> TrtVersion | None:
    """The TensorRT version in trtexec's output: its ``[TensorRT v100300]`` banner or "TensorRT version:"
    line."""
    if m := re.search(r"\[TensorRT v(\d{5,})\]", text):
        v = int(m.group(1))  # NV_TENSORRT_VERSION = major * 10000 + minor * 100 + patch
        return TrtVersion(v // 10000, v // 100 % 100, v % 100)
    if m := re.search(r"TensorRT version:\s*(\d+(?:\.\d+)*)", text):
        return TrtVersion.parse(m.group(1))
    return None


# L4T major release -> JetPack major (NVIDIA's Jetson release notes): R32 JetPack 4, R35 JetPack 5, R36
# JetPack 6.
_JETPACK = {32: 4, 34: 5, 35: 5, 36: 6}


def jetpack_release(path: str = "/etc/nv_tegra_release") -> str | None:
    """On a Jetson, its L4T release and JetPack from /etc/nv_tegra_release ("L4T R35.4.1 (JetPack 5)"); else
    None."""
    try:
        first = (Path(path).read_text(encoding="utf-8", errors="replace").splitlines() or [""])[0]
    except OSError:
        return None
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", first)
    if not m:
        return None
    jetpack = _JETPACK.get(int(m.group(1)))
    return f"L4T R{m.group(1)}.{m.group(2)}" + (f" (JetPack {jetpack})" if jetpack else "")


def check_supported(
    version: TrtVersion, log=lambda s: None, *, tegra_release: str = "/etc/nv_tegra_release"
) -> None:
    """Refuse a TensorRT older than 10 (naming the JetPack on a Jetson); say so when it is newer than
    tested."""
    if version.major < MIN_MAJOR:
        jetson = jetpack_release(tegra_release)
        raise EdgecnnError(
            f"TensorRT {version} is too old: edgecnn builds and runs engines with TensorRT {MIN_MAJOR}.x-"
            f"{MAX_TESTED_MAJOR}.x (JetPack 6 on a Jetson Orin; pip install 'edgecnn[tensorrt]' elsewhere)"
            + (f"; this Jetson runs {jetson}" if jetson else "")
        )
    if version.major > MAX_TESTED_MAJOR:
        log(
            f"TensorRT {version} is newer than edgecnn's tested range ({MIN_MAJOR}.x-{MAX_TESTED_MAJOR}.x); "
            f"building it as {MAX_TESTED_MAJOR}.x (strongly typed)"
        )


def check_precision(precision: str | None, compute_capability: str | None, gpu: str = "this GPU") -> None:
    """Refuse INT8 on a GPU without INT8 kernels (compute capability below 6.1: a Jetson Nano is 5.3)."""
    if precision != "int8" or not compute_capability:
        return
    cc = tuple(int(p) for p in str(compute_capability).split(".")[:2])
    if cc < INT8_MIN_CAPABILITY:
        need = ".".join(map(str, INT8_MIN_CAPABILITY))
        raise EdgecnnError(
            f"{gpu} has compute capability {compute_capability}, and TensorRT has no INT8 kernels below "
            f"{need} (a Jetson Nano is 5.3): export --precision fp16 for it"
        )


@dataclass(frozen=True)
class BuildPlan:
    """How one TensorRT version is told one precision."""

    version: TrtVersion
    precision: str
    trtexec_flags: tuple[str, ...]  # trtexec precision flags (10.x only)
    builder_flags: tuple[str, ...]  # names of trt.BuilderFlag members to set (10.x only)
    strongly_typed: bool
    fp16_rewrite: bool  # build from the ONNX with FP16 written outside the Q/DQ pairs (11.x, int8, opt-in)

    @property
    def variant(self) -> str | None:
        """What the engine cache key must tell apart beyond precision: the FP16 rewrite."""
        return "fp16-outside-qdq" if self.fp16_rewrite else None

    def to_json(self) -> dict:
        return {
            "tensorrt": str(self.version),
            "precision": self.precision,
            "trtexec_flags": list(self.trtexec_flags),
            "builder_flags": list(self.builder_flags),
            "strongly_typed": self.strongly_typed,
            "fp16_rewrite": self.fp16_rewrite,
        }


def build_plan(precision: str | None, version: TrtVersion, *, fp16_rewrite: bool = False) -> BuildPlan:
    """The flags (10.x) or the strongly typed build (11.x; ``fp16_rewrite``: from the FP16 rewrite) for
    ``precision``."""
    precision = precision or "fp32"
    if precision not in TRTEXEC_FLAGS_10:
        raise EdgecnnError(f"unknown precision '{precision}'; use one of {', '.join(TRTEXEC_FLAGS_10)}")
    if fp16_rewrite and (precision != "int8" or not version.strongly_typed):
        raise EdgecnnError(
            f"--fp16-outside-qdq is for an int8 artifact on TensorRT 11 (this is {precision} on TensorRT "
            f"{version}{': --int8 --fp16 let 10.x pick FP16 itself' if not version.strongly_typed else ''})"
        )
    if version.strongly_typed:
        return BuildPlan(version, precision, (), (), strongly_typed=True, fp16_rewrite=fp16_rewrite)
    return BuildPlan(
        version,
        precision,
        TRTEXEC_FLAGS_10[precision],
        BUILDER_FLAGS_10[precision],
        strongly_typed=False,
        fp16_rewrite=False,
    )
