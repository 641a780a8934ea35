"""ResNet18 (basic blocks, [2, 2, 2, 2]) with torchvision's state_dict keys."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from edgecnn.models._registry import register_arch
from edgecnn.models.weights import PUBLISHED

PAPER = "He et al. 2015, Deep Residual Learning for Image Recognition (arXiv:1512.03385)"
SMALL_INPUT_NOTE = "conv1 3x3 stride 1 (was 7x7 stride 2); the max-pool, all stages and fc unchanged"


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion: ClassVar[int] = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ResNet with basic blocks; ``width_div`` shrinks it for the test variant.

    Init as torchvision: convs kaiming_normal_(fan_out, relu), batch norms 1/0, and with
    ``zero_init_residual`` the last batch norm of each block starts at zero.
    """

    head_modules: ClassVar[tuple[str, ...]] = ("fc",)
    stem_conv: ClassVar[str] = "conv1"

    def __init__(
        self,
        layers: tuple[int, ...] = (2, 2, 2, 2),
        num_classes: int = 1000,
        *,
        in_channels: int = 3,
        small_input: bool = False,
        zero_init_residual: bool = False,
        width_div: int = 1,
    ) -> None:
        super().__init__()
        widths = [c // width_div for c in (64, 128, 256, 512)]
        self.inplanes = widths[0]
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(widths[0], layers[0])
        self.layer2 = self._make_layer(widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3] * BasicBlock.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * BasicBlock.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * BasicBlock.expansion, stride),
                nn.BatchNorm2d(planes * BasicBlock.expansion),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * BasicBlock.expansion
        layers += [BasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # N x 3 x 224 x 224 (small_input: N x 3 x 32 x 32)
        x = self.relu(self.bn1(self.conv1(x)))
        # N x 64 x 112 x 112 (small_input: N x 64 x 32 x 32)
        x = self.maxpool(x)
        # N x 64 x 56 x 56 (small_input: N x 64 x 16 x 16)
        x = self.layer1(x)
        # N x 64 x 56 x 56
        x = self.layer2(x)
        # N x 128 x 28 x 28
        x = self.layer3(x)
        # N x 256 x 14 x 14
        x = self.layer4(x)
        # N x 512 x 7 x 7 (small_input: N x 512 x 2 x 2)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        # N x 512
        return self.fc(x)  # N x num_classes


@register_arch(
    "resnet18",
    family="resnet",
    paper=PAPER,
    published=PUBLISHED["resnet18"],
    small_input_note=SMALL_INPUT_NOTE,
)
def resnet18(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    small_input: bool = False,
    zero_init_residual: bool = False,
) -> ResNet:
    """ResNet18 exactly as torchvision 0.28 builds it (11,689,512 parameters at defaults).

    ``small_input=True`` is the low-resolution (e.g. 32x32) variant and changes only the
    stem: ``conv1`` becomes a 3x3 stride 1 padding 1 conv (64 channels; was 7x7 stride 2
    padding 3). The max-pool, all four stages and ``fc`` are unchanged.
    ``zero_init_residual`` starts each block's last batch norm at zero (torchvision's option).
    """
    return ResNet(
        num_classes=num_classes,
        in_channels=in_channels,
        small_input=small_input,
        zero_init_residual=zero_init_residual,
    )


@register_arch(
    "test_resnet18", family="resnet", paper=PAPER, small_input_note=SMALL_INPUT_NOTE, test_variant=True
)
def tiny_resnet18(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    small_input: bool = False,
    zero_init_residual: bool = False,
) -> ResNet:
    """ResNet18's topology (same blocks and skips) with 1/8 of the channels, for tests."""
    return ResNet(
        num_classes=num_classes,
        in_channels=in_channels,
        small_input=small_input,
        zero_init_residual=zero_init_residual,
        width_div=8,
    )
