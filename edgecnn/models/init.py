"""Weight initialisation shared by the networks' ``init`` option."""

from __future__ import annotations

from torch import nn

from edgecnn.errors import EdgecnnError

INITS = ("torchvision", "kaiming")


def check_init(arch: str, init: str) -> None:
    """One ``error:`` line unless ``init`` is one of :data:`INITS`."""
    if init not in INITS:
        raise EdgecnnError(f"{arch}: init must be 'torchvision' or 'kaiming', not {init!r}")


def kaiming_(m: nn.Module) -> bool:
    """He et al. (2015) for a conv or linear layer: weight kaiming_normal_(fan_in, relu), bias zero.
    Returns whether ``m`` was one (other modules are left as they are)."""
    if not isinstance(m, nn.Conv2d | nn.Linear):
        return False
    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
    if m.bias is not None:
        nn.init.constant_(m.bias, 0)
    return True
