"""What the latency predictor counts per kernel: ops, weight and activation elements, kernel class.

A kernel is one conv, linear or pool layer (batch norms and activations fuse into the preceding
conv in every runtime edgecnn targets). Its class decides which fitted compute efficiency applies:
XNNPACK, ncnn and TensorRT each have their own kernels for 3x3 and 1x1 convolutions, depthwise
convolutions, other convolutions, fully connected layers and pools, and they reach different
fractions of the peak.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgecnn.errors import EdgecnnError

FUSED_KINDS = frozenset({"norm", "activation", "dropout", "identity"})
KERNEL_CLASSES = ("conv3x3", "conv1x1", "conv_other", "depthwise", "fc", "pool")


@dataclass(frozen=True)
class LayerCost:
    """One kernel: ops (2 x MACs), weight and activation element counts (whole batch), its class."""

    name: str
    kind: str
    ops: float
    weights: int
    activations: int
    kernel: str = ""  # one of KERNEL_CLASSES; "" is derived from ``kind``

    @property
    def kernel_class(self) -> str:
        if self.kernel:
            return self.kernel
        return {"linear": "fc", "pool": "pool"}.get(self.kind, "conv_other")


def conv_class(k: int, c_in: int, c_out: int, groups: int = 1) -> str:
    """The kernel class of a k x k convolution."""
    if groups > 1 and groups == c_in == c_out:
        return "depthwise"
    return {1: "conv1x1", 3: "conv3x3"}.get(k, "conv_other") if groups == 1 else "conv_other"


def _row_class(r: Any) -> str:
    """The class of a :func:`edgecnn.models.profile_layers` row, from its MACs and shapes
    (MACs per output element = input channels per group x k x k)."""
    if r.kind != "conv":
        return {"linear": "fc", "pool": "pool"}.get(r.kind, "conv_other")
    per_out = r.macs / max(1, math.prod(r.output_shape))
    c_in, c_out = r.input_shape[1], r.output_shape[1]
    if per_out == c_in:
        return "conv1x1"
    if per_out == 9 * c_in:
        return "conv3x3"
    if c_in == c_out and per_out in (9, 25, 49):
        return "depthwise"
    return "conv_other"


def costs_from_layers(rows: Sequence[Any]) -> tuple[LayerCost, ...]:
    """Kernel costs from :func:`edgecnn.models.profile_layers` rows (fused kinds dropped)."""
    out = []
    for r in rows:
        if r.kind in FUSED_KINDS:
            continue
        act = math.prod(r.input_shape) + math.prod(r.output_shape)
        out.append(LayerCost(r.name, r.kind, 2.0 * r.macs, int(r.params), int(act), _row_class(r)))
    return tuple(out)


@functools.lru_cache(maxsize=64)
def network_costs(
    arch: str, image_size: int = 224, batch: int = 1, *, small_input: bool = False, num_classes: int = 1000
) -> tuple[LayerCost, ...]:
    """Kernel costs of ``arch`` at ``image_size`` and ``batch`` (profiled on the meta device)."""
    import torch

    from edgecnn.models import create, min_input_size, profile_layers

    with torch.device("meta"):
        model = create(arch, num_classes=num_classes, small_input=small_input)
    try:
        rows = profile_layers(model, (batch, 3, image_size, image_size))
    except RuntimeError:
        raise EdgecnnError(
            f"{arch} needs images of at least {min_input_size(model)} px, got --image-size {image_size}"
        ) from None
    return costs_from_layers(rows)
