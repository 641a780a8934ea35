"""VGG16 (configuration D, no batch norm) with torchvision's state_dict keys."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from edgecnn.models._registry import register_arch
from edgecnn.models.init import check_init, kaiming_
from edgecnn.models.weights import PUBLISHED

PAPER = "Simonyan & Zisserman 2014, Very Deep Convolutional Networks (arXiv:1409.1556)"
SMALL_INPUT_NOTE = (
    "1x1 avg-pool and a classifier 512 wide (was 7x7 and 4096); all 13 convs and 5 max-pools unchanged"
)
# Configuration "D": conv widths, "M" = 2x2 max-pool.
VGG16_CFG: tuple[int | str, ...] = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
)


def make_layers(cfg: tuple[int | str, ...], in_channels: int = 3, width_div: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            out = int(v) // width_div
            layers += [nn.Conv2d(in_channels, out, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = out
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """torchvision's VGG; ``width_div`` and ``hidden`` shrink it for the test variant.

    ``init="torchvision"``: convs kaiming_normal_(fan_out, relu) with zero bias, linears
    normal(0, 0.01) with zero bias, as torchvision. ``init="kaiming"``: every conv and
    linear kaiming_normal_(fan_in, relu) with zero bias (He et al. 2015), which keeps the
    activations' scale through the 16 layers: without BatchNorm, VGG16 trained from
    scratch with torchvision's init stays at chance for hundreds of steps.
    """

    head_modules: ClassVar[tuple[str, ...]] = ("classifier.6",)
    stem_conv: ClassVar[str] = "features.0"

    def __init__(
        self,
        cfg: tuple[int | str, ...] = VGG16_CFG,
        num_classes: int = 1000,
        *,
        in_channels: int = 3,
        small_input: bool = False,
        dropout: float = 0.5,
        width_div: int = 1,
        hidden: int | None = None,
        init: str = "torchvision",
    ) -> None:
        super().__init__()
        check_init("vgg", init)
        self.features = make_layers(cfg, in_channels, width_div)
        last = 512 // width_div
        hidden = hidden or (512 if small_input else 4096)
        pool = 1 if small_input else 7
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        self.classifier = nn.Sequential(
            nn.Linear(last * pool * pool, hidden),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if init == "kaiming" and kaiming_(m):
                continue
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # N x 3 x 224 x 224 (small_input: N x 3 x 32 x 32)
        x = self.features(x)
        # N x 512 x 7 x 7 (small_input: N x 512 x 1 x 1)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        # N x 25088 (small_input: N x 512)
        return self.classifier(x)  # N x num_classes


@register_arch(
    "vgg16", family="vgg", paper=PAPER, published=PUBLISHED["vgg16"], small_input_note=SMALL_INPUT_NOTE
)
def vgg16(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    small_input: bool = False,
    dropout: float = 0.5,
    init: str = "torchvision",
) -> VGG:
    """VGG16 exactly as torchvision 0.28 builds it (138,357,544 parameters at defaults).

    ``small_input=True`` is the low-resolution (e.g. 32x32) variant and changes only the
    head: the avg-pool becomes AdaptiveAvgPool2d(1) and the classifier keeps torchvision's
    structure and module names (Linear(512, 512), ReLU, Dropout, Linear(512, 512), ReLU,
    Dropout, Linear(512, num_classes)) at width 512 instead of 4096. The stem and all 13
    3x3 convs and 5 max-pools are unchanged (VGG has no stride in its stem). Both variants
    need inputs of at least 32 px. ``init`` picks the initialisation (see :class:`VGG`);
    it changes no module.
    """
    return VGG(
        num_classes=num_classes, in_channels=in_channels, small_input=small_input, dropout=dropout, init=init
    )


@register_arch("test_vgg16", family="vgg", paper=PAPER, small_input_note=SMALL_INPUT_NOTE, test_variant=True)
def tiny_vgg16(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    small_input: bool = False,
    dropout: float = 0.5,
    init: str = "torchvision",
) -> VGG:
    """VGG16's topology with 1/8 of the channels and a 64-wide classifier, for tests."""
    return VGG(
        num_classes=num_classes,
        in_channels=in_channels,
        small_input=small_input,
        dropout=dropout,
        width_div=8,
        hidden=64,
        init=init,
    )
