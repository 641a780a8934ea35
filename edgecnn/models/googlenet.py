"""GoogLeNet (Inception v1) with torchvision's state_dict keys and options."""

from __future__ import annotations

from collections import namedtuple
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from edgecnn.errors import EdgecnnError
from edgecnn.models._registry import register_arch
from edgecnn.models.init import check_init, kaiming_
from edgecnn.models.weights import PUBLISHED

PAPER = "Szegedy et al. 2014, Going Deeper with Convolutions (arXiv:1409.4842)"
SMALL_INPUT_NOTE = "conv1 3x3 stride 1 (was 7x7 stride 2); everything else unchanged"

# Training-mode output with aux_logits=True, as torchvision's GoogLeNetOutputs.
GoogLeNetOutputs = namedtuple("GoogLeNetOutputs", ["logits", "aux_logits2", "aux_logits1"])

# name: (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj); "pool" marks a max-pool.
_INCEPTIONS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("inception3a", (64, 96, 128, 16, 32, 32)),
    ("inception3b", (128, 128, 192, 32, 96, 64)),
    ("maxpool3", ()),
    ("inception4a", (192, 96, 208, 16, 48, 64)),
    ("inception4b", (160, 112, 224, 24, 64, 64)),
    ("inception4c", (128, 128, 256, 24, 64, 64)),
    ("inception4d", (112, 144, 288, 32, 64, 64)),
    ("inception4e", (256, 160, 320, 32, 128, 128)),
    ("maxpool4", ()),
    ("inception5a", (256, 160, 320, 32, 128, 128)),
    ("inception5b", (384, 192, 384, 48, 128, 128)),
)


class BasicConv2d(nn.Module):
    """Conv (no bias) + BatchNorm(eps=0.001) + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
    ) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1),
            BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, kernel_size=1),
            # 3x3, not the paper's 5x5: torchvision's known quirk (pytorch/vision#906), kept for its weights.
            BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7, width_div: int = 1) -> None:
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128 // width_div, kernel_size=1)
        self.fc1 = nn.Linear(128 // width_div * 4 * 4, 1024 // width_div)
        self.fc2 = nn.Linear(1024 // width_div, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # aux1: N x 512 x 14 x 14, aux2: N x 528 x 14 x 14
        x = F.adaptive_avg_pool2d(x, (4, 4))
        x = torch.flatten(self.conv(x), 1)
        # N x 2048
        x = self.dropout(F.relu(self.fc1(x), inplace=True))
        # N x 1024
        return self.fc2(x)


class GoogLeNet(nn.Module):
    """torchvision's GoogLeNet; ``width_div`` shrinks it for the test variant.

    With ``aux_logits`` the two auxiliary classifiers exist and, in training mode only,
    ``forward`` returns ``GoogLeNetOutputs(logits, aux_logits2, aux_logits1)``; in eval
    mode it always returns the logits. ``transform_input`` maps ImageNet-normalised input
    to the (x - 0.5) / 0.5 scaling the ported weights expect, as torchvision does.
    ``init="torchvision"``: conv and linear weights trunc_normal(std=0.01, a=-2, b=2), as
    torchvision. ``init="kaiming"``: every conv and linear kaiming_normal_(fan_in, relu)
    (:func:`edgecnn.models.init.kaiming_`), for training from scratch.
    """

    head_modules: ClassVar[tuple[str, ...]] = ("fc", "aux1.fc2", "aux2.fc2")
    stem_conv: ClassVar[str] = "conv1.conv"

    def __init__(
        self,
        num_classes: int = 1000,
        *,
        in_channels: int = 3,
        small_input: bool = False,
        aux_logits: bool = False,
        transform_input: bool = False,
        dropout: float = 0.2,
        dropout_aux: float = 0.7,
        width_div: int = 1,
        init: str = "torchvision",
    ) -> None:
        super().__init__()
        check_init("googlenet", init)
        if transform_input and in_channels != 3:
            raise EdgecnnError(f"googlenet: transform_input needs in_channels=3 (got {in_channels})")
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        w = width_div

        if small_input:
            self.conv1 = BasicConv2d(in_channels, 64 // w, kernel_size=3, stride=1, padding=1)
        else:
            self.conv1 = BasicConv2d(in_channels, 64 // w, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64 // w, 64 // w, kernel_size=1)
        self.conv3 = BasicConv2d(64 // w, 192 // w, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        channels = 192 // w
        aux_in: dict[str, int] = {}
        for name, cfg in _INCEPTIONS:
            if not cfg:
                kernel = 3 if name == "maxpool3" else 2
                setattr(self, name, nn.MaxPool2d(kernel, stride=2, ceil_mode=True))
                continue
            ch1, ch3r, ch3, ch5r, ch5, pool = (c // w for c in cfg)
            setattr(self, name, Inception(channels, ch1, ch3r, ch3, ch5r, ch5, pool))
            channels = ch1 + ch3 + ch5 + pool
            aux_in[name] = channels

        if aux_logits:
            self.aux1 = InceptionAux(aux_in["inception4a"], num_classes, dropout=dropout_aux, width_div=w)
            self.aux2 = InceptionAux(aux_in["inception4d"], num_classes, dropout=dropout_aux, width_div=w)
        else:
            self.aux1 = None
            self.aux2 = None

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(channels, num_classes)

        for m in self.modules():
            if init == "kaiming" and kaiming_(m):
                continue
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _transform_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.transform_input:
            x_ch0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
            x_ch1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
            x_ch2 = torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
            x = torch.cat((x_ch0, x_ch1, x_ch2), 1)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:
        x = self._transform_input(x)
        # N x 3 x 224 x 224 (small_input: N x 3 x 32 x 32)
        x = self.conv1(x)
        # N x 64 x 112 x 112 (small_input: N x 64 x 32 x 32)
        x = self.maxpool1(x)
        # N x 64 x 56 x 56
        x = self.conv2(x)
        # N x 64 x 56 x 56
        x = self.conv3(x)
        # N x 192 x 56 x 56
        x = self.maxpool2(x)
        # N x 192 x 28 x 28
        x = self.inception3a(x)
        # N x 256 x 28 x 28
        x = self.inception3b(x)
        # N x 480 x 28 x 28
        x = self.maxpool3(x)
        # N x 480 x 14 x 14
        x = self.inception4a(x)
        # N x 512 x 14 x 14
        aux_on = self.aux_logits and self.training
        aux1 = self.aux1(x) if aux_on else None
        x = self.inception4b(x)
        # N x 512 x 14 x 14
        x = self.inception4c(x)
        # N x 512 x 14 x 14
        x = self.inception4d(x)
        # N x 528 x 14 x 14
        aux2 = self.aux2(x) if aux_on else None
        x = self.inception4e(x)
        # N x 832 x 14 x 14
        x = self.maxpool4(x)
        # N x 832 x 7 x 7
        x = self.inception5a(x)
        # N x 832 x 7 x 7
        x = self.inception5b(x)
        # N x 1024 x 7 x 7
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        # N x 1024
        x = self.fc(self.dropout(x))
        # N x num_classes
        return GoogLeNetOutputs(x, aux2, aux1) if aux_on else x


@register_arch(
    "googlenet",
    family="googlenet",
    paper=PAPER,
    published=PUBLISHED["googlenet"],
    small_input_note=SMALL_INPUT_NOTE,
)
def googlenet(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    small_input: bool = False,
    dropout: float = 0.2,
    aux_logits: bool = False,
    transform_input: bool = False,
    dropout_aux: float = 0.7,
    init: str = "torchvision",
) -> GoogLeNet:
    """GoogLeNet exactly as torchvision 0.28 builds it (6,624,904 parameters at defaults).

    ``small_input=True`` is the low-resolution (e.g. 32x32) variant and changes only the
    stem: ``conv1`` (a BasicConv2d) becomes 3x3 stride 1 padding 1 (64 channels; was 7x7
    stride 2 padding 3); everything else is unchanged.

    ``aux_logits=True`` adds the two auxiliary classifiers (training only; never part of
    a deployed graph). ``transform_input`` is torchvision's option: it rescales
    ImageNet-normalised input for the ported weights; :func:`edgecnn.models.create` turns
    it on with ``weights="imagenet"`` unless given, like torchvision. ``init`` picks the
    initialisation (see :class:`GoogLeNet`).
    """
    return GoogLeNet(
        num_classes,
        in_channels=in_channels,
        small_input=small_input,
        aux_logits=aux_logits,
        transform_input=transform_input,
        dropout=dropout,
        dropout_aux=dropout_aux,
        init=init,
    )


@register_arch(
    "test_googlenet", family="googlenet", paper=PAPER, small_input_note=SMALL_INPUT_NOTE, test_variant=True
)
def tiny_googlenet(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    small_input: bool = False,
    dropout: float = 0.2,
    aux_logits: bool = False,
    transform_input: bool = False,
    dropout_aux: float = 0.7,
    init: str = "torchvision",
) -> GoogLeNet:
    """GoogLeNet's topology (all nine inception blocks, four branches each) with 1/8 of the channels."""
    return GoogLeNet(
        num_classes,
        in_channels=in_channels,
        small_input=small_input,
        aux_logits=aux_logits,
        transform_input=transform_input,
        dropout=dropout,
        dropout_aux=dropout_aux,
        width_div=8,
        init=init,
    )
