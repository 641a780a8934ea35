"""AlexNet, torchvision's variant ("One weird trick", no LRN), with torchvision's state_dict keys."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from edgecnn.models._registry import register_arch
from edgecnn.models.init import check_init, kaiming_
from edgecnn.models.weights import PUBLISHED

PAPER = "Krizhevsky 2014, One weird trick for parallelizing CNNs (arXiv:1404.5997)"
SMALL_INPUT_NOTE = (
    "conv1 3x3 stride 1 (was 11x11 stride 4), 1x1 avg-pool, classifier 512 wide (was 4096); "
    "the 5 convs and 3 max-pools unchanged"
)


class AlexNet(nn.Module):
    """torchvision's AlexNet; ``width_div`` and ``hidden`` shrink it for the test variant.

    ``init="torchvision"``: PyTorch's default init, as torchvision (kaiming_uniform with
    a=sqrt(5): weights about 0.4x He's scale, so without BatchNorm the signal shrinks layer by
    layer and training from scratch starts slowly). ``init="kaiming"``: every conv and linear
    kaiming_normal_(fan_in, relu) with zero bias (:func:`edgecnn.models.init.kaiming_`).
    """

    head_modules: ClassVar[tuple[str, ...]] = ("classifier.6",)
    stem_conv: ClassVar[str] = "features.0"

    def __init__(
        self,
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
        check_init("alexnet", init)
        c1, c2, c3, c4, c5 = (c // width_div for c in (64, 192, 384, 256, 256))
        hidden = hidden or (512 if small_input else 4096)
        pool = 1 if small_input else 6
        if small_input:
            stem = nn.Conv2d(in_channels, c1, kernel_size=3, stride=1, padding=1)
        else:
            stem = nn.Conv2d(in_channels, c1, kernel_size=11, stride=4, padding=2)
        self.features = nn.Sequential(
            stem,
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(c5 * pool * pool, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )
        if init == "kaiming":
            for m in self.modules():
                kaiming_(m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # N x 3 x 224 x 224 (small_input: N x 3 x 32 x 32)
        x = self.features(x)
        # N x 256 x 6 x 6 (small_input: N x 256 x 3 x 3)
        x = self.avgpool(x)
        # N x 256 x 6 x 6 (small_input: N x 256 x 1 x 1)
        x = torch.flatten(x, 1)
        return self.classifier(x)  # N x num_classes


@register_arch(
    "alexnet",
    family="alexnet",
    paper=PAPER,
    published=PUBLISHED["alexnet"],
    small_input_note=SMALL_INPUT_NOTE,
)
def alexnet(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    small_input: bool = False,
    dropout: float = 0.5,
    init: str = "torchvision",
) -> AlexNet:
    """AlexNet exactly as torchvision 0.28 builds it (61,100,840 parameters at defaults).

    ``small_input=True`` is the low-resolution (e.g. 32x32) variant and changes only the
    stem and the head: ``features[0]`` becomes Conv2d(in_channels, 64, 3, stride=1,
    padding=1) (was 11x11 stride 4 padding 2), the avg-pool becomes AdaptiveAvgPool2d(1),
    and the classifier keeps its structure (Dropout, Linear(256, 512), ReLU, Dropout,
    Linear(512, 512), ReLU, Linear(512, num_classes)) at width 512 instead of 4096. All 5
    convs and 3 max-pools are unchanged. The full variant needs inputs of at least 63 px.
    ``init`` picks the initialisation (see :class:`AlexNet`).
    """
    return AlexNet(num_classes, in_channels=in_channels, small_input=small_input, dropout=dropout, init=init)


@register_arch(
    "test_alexnet", family="alexnet", paper=PAPER, small_input_note=SMALL_INPUT_NOTE, test_variant=True
)
def tiny_alexnet(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    small_input: bool = False,
    dropout: float = 0.5,
    init: str = "torchvision",
) -> AlexNet:
    """AlexNet's topology with 1/8 of the channels and a 64-wide classifier, for tests."""
    return AlexNet(
        num_classes,
        in_channels=in_channels,
        small_input=small_input,
        dropout=dropout,
        width_div=8,
        hidden=64,
        init=init,
    )
