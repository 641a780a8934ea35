"""Parameters, multiply-accumulates and a per-layer profile, measured with forward hooks.

MACs follow torchvision's ``_ops`` convention: only Conv2d and Linear count (one
multiply-add per weight use; FLOPs = 2 x MACs). Pools, activations, batch norms and
additions count 0. A model built on the ``meta`` device profiles without computing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

_KINDS: tuple[tuple[type[nn.Module] | tuple[type[nn.Module], ...], str], ...] = (
    (nn.Conv2d, "conv"),
    (nn.Linear, "linear"),
    ((nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d), "pool"),
    (nn.BatchNorm2d, "norm"),
    ((nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Sigmoid), "activation"),
    (nn.Dropout, "dropout"),
    (nn.Identity, "identity"),
)


@dataclass(frozen=True)
class LayerProfile:
    """One leaf module's call: MACs for the whole input batch, its own parameters."""

    name: str
    kind: str
    macs: int
    params: int
    weight_bytes: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _kind(m: nn.Module) -> str:
    for types, kind in _KINDS:
        if isinstance(m, types):
            return kind
    return "other"


def _macs(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    if isinstance(m, nn.Conv2d):
        kh, kw = m.kernel_size
        return out.numel() * (m.in_channels // m.groups) * kh * kw
    if isinstance(m, nn.Linear):
        return out.numel() * m.in_features
    return 0


def profile_layers(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 224, 224)) -> list[LayerProfile]:
    """Run one eval-mode forward on zeros of ``input_shape`` and record every leaf module call.

    The model's training mode is restored afterwards. A module called twice appears twice.
    Raises RuntimeError (from PyTorch) when the input is too small for the network.
    """
    rows: list[LayerProfile] = []
    names = {m: n for n, m in model.named_modules()}

    def hook(m: nn.Module, args: tuple, out) -> None:
        inp = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if not isinstance(out, torch.Tensor) or inp is None:
            return
        own = list(m.parameters(recurse=False))
        rows.append(
            LayerProfile(
                name=names[m],
                kind=_kind(m),
                macs=_macs(m, inp, out),
                params=sum(p.numel() for p in own),
                weight_bytes=sum(p.numel() * p.element_size() for p in own),
                input_shape=tuple(inp.shape),
                output_shape=tuple(out.shape),
            )
        )

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(input_shape, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return rows


def count_macs(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 224, 224)) -> int:
    """Conv2d + Linear multiply-accumulates of one forward pass on ``input_shape``."""
    return sum(r.macs for r in profile_layers(model, input_shape))


def min_input_size(model: nn.Module, in_channels: int = 3, limit: int = 512) -> int:
    """Smallest square input side (px) the model accepts, found by bisection on shapes.

    Build the model on the ``meta`` device to make this free; on a real device it runs
    real (small) forwards.
    """

    def fits(size: int) -> bool:
        try:
            profile_layers(model, (1, in_channels, size, size))
        except RuntimeError:
            return False
        return True

    lo, hi = 1, limit  # invariant: the answer lies in [lo, hi]
    if not fits(hi):
        raise ValueError(f"model does not accept inputs up to {limit} px")
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo
