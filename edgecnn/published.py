"""Published ImageNet top-1 of the four networks, FP32 and INT8, each figure with its source.

Nothing here was measured by edgecnn: these are the figures a no-training frontier
(``edgecnn frontier --imagenet``) quotes, and every one carries its source.

- FP32: torchvision's published top-1 of its IMAGENET1K_V1 weights (224 px centre crop of
  256 px), held in :data:`edgecnn.models.weights.PUBLISHED` beside the files' checksums.
- INT8: the FP32 figure minus a *published INT8 drop* (top-1 of the FP32 model minus top-1
  of its PTQ INT8 model, both from the same source). Rows copied from
  ``shared/reference/int8_accuracy.csv`` (status "verified" only); the INT8 methods are the
  sources' own (fbgemm x86 PTQ, Intel Neural Compressor), not edgecnn's symmetric scheme.
  AlexNet has no citable INT8 figure: its INT8 accuracy is "not published".
- Any other precision (fp16) or input size: not published.

>>> published_accuracy("resnet18", "int8").top1
69.494
>>> published_accuracy("alexnet", "int8") is None
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgecnn.models.weights import PUBLISHED

PUBLISHED_IMAGE_SIZE = 224
NOT_PUBLISHED = "not published"


@dataclass(frozen=True)
class Int8Drop:
    """One source's FP32 and PTQ INT8 ImageNet top-1 (%) of a network, and how it quantized."""

    arch: str
    fp32_top1: float
    int8_top1: float
    method: str
    source: str
    note: str = ""

    @property
    def drop(self) -> float:
        """Top-1 points lost by INT8 in that source (negative: INT8 scored higher)."""
        return round(self.fp32_top1 - self.int8_top1, 3)


INT8_DROPS: dict[str, Int8Drop] = {
    "resnet18": Int8Drop(
        "resnet18",
        69.758,
        69.494,
        "PTQ eager mode, fbgemm x86",
        "torchvision ResNet18_QuantizedWeights.IMAGENET1K_FBGEMM_V1 "
        "(torchvision/models/quantization/resnet.py)",
    ),
    "googlenet": Int8Drop(
        "googlenet",
        69.778,
        69.826,
        "PTQ eager mode, fbgemm x86",
        "torchvision GoogLeNet_QuantizedWeights.IMAGENET1K_FBGEMM_V1 "
        "(torchvision/models/quantization/googlenet.py)",
    ),
    "vgg16": Int8Drop(
        "vgg16",
        72.38,
        72.32,
        "PTQ, Intel Neural Compressor",
        "ONNX Model Zoo vgg16-12 / vgg16-12-int8 (onnx/models VGG README)",
        "the ONNX Model Zoo FP32 model is not torchvision's: its drop is applied to "
        "torchvision's FP32 figure",
    ),
}


@dataclass(frozen=True)
class PublishedAccuracy:
    """A published ImageNet top-1 (%) for one network and precision, and where it comes from."""

    arch: str
    precision: str
    top1: float
    source: str
    image_size: int = PUBLISHED_IMAGE_SIZE

    def to_json(self) -> dict:
        return asdict(self)


def published_accuracy(
    arch: str,
    precision: str,
    image_size: int = PUBLISHED_IMAGE_SIZE,
    drops: dict[str, Int8Drop] | None = None,
    fp32: dict | None = None,
) -> PublishedAccuracy | None:
    """The published top-1 of ``arch`` at ``precision``, or None where nothing citable exists.

    ``drops`` / ``fp32`` replace :data:`INT8_DROPS` / torchvision's figures (tests give tiny
    variants a labelled figure this way)."""
    fp32 = PUBLISHED if fp32 is None else fp32
    drops = INT8_DROPS if drops is None else drops
    base = fp32.get(arch)
    if base is None or image_size != PUBLISHED_IMAGE_SIZE:
        return None
    if precision == "fp32":
        return PublishedAccuracy(arch, precision, base.top1, f"{base.source}, FP32")
    d = drops.get(arch)
    if precision != "int8" or d is None:
        return None
    source = (
        f"{base.source} FP32 {base.top1:g}% minus the INT8 drop {d.drop:+.3g} points of {d.source} "
        f"({d.method}{'; ' + d.note if d.note else ''})"
    )
    return PublishedAccuracy(arch, precision, round(base.top1 - d.drop, 3), source)
