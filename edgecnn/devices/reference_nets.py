"""Layer lists of networks edgecnn does not build but that published latencies are given for.

The XNNPACK authors publish Raspberry Pi 4 latencies of MobileNet v1 and v2, and Arm publishes Pi 5
ExecuTorch/XNNPACK latencies of ResNet-50 and Wide ResNet-50-2 beside ResNet18 and GoogLeNet, so
those four are fitting points of the Pi predictor. Their layers are written here from the papers
(Howard et al. 2017, table 1; Sandler et al. 2018, table 2; He et al. 2016, table 1, with the stride
on the 3x3 as torchvision's v1.5; Zagoruyko and Komodakis 2016 for the width), counted as edgecnn
counts its own networks (:mod:`edgecnn.devices.costs`): every conv (BN and ReLU/ReLU6 fused), the
pools and the classifier; residual additions are not kernels of their own, as in ResNet18. Totals at
224 px: MobileNet v1 569 M MACs and 4.2 M parameters, v2 300 M and 3.5 M, ResNet-50 4.09 G and 25.6 M,
Wide ResNet-50-2 11.4 G and 68.9 M, as torchvision and the papers give.
"""

from __future__ import annotations

from edgecnn.devices.costs import LayerCost, conv_class

# (in, out, stride) of the 13 depthwise-separable blocks of MobileNet v1
_V1 = (
    (32, 64, 1),
    (64, 128, 2),
    (128, 128, 1),
    (128, 256, 2),
    (256, 256, 1),
    (256, 512, 2),
    *((512, 512, 1),) * 5,
    (512, 1024, 2),
    (1024, 1024, 1),
)
# (expansion t, out c, repeats n, first stride s) of MobileNet v2's bottlenecks
_V2 = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _conv(
    name: str, c_in: int, c_out: int, k: int, stride: int, hw: int, batch: int, groups: int = 1
) -> tuple[LayerCost, int]:
    """A k x k convolution with 'same' padding on a hw x hw input, and its output size."""
    out = -(-hw // stride)
    macs = c_out * (c_in // groups) * k * k * out * out * batch
    params = c_out * (c_in // groups) * k * k + c_out
    act = batch * (c_in * hw * hw + c_out * out * out)
    return LayerCost(name, "conv", 2.0 * macs, params, act, conv_class(k, c_in, c_out, groups)), out


def _head(c: int, hw: int, batch: int, num_classes: int) -> list[LayerCost]:
    return [
        LayerCost("avgpool", "pool", 0.0, 0, batch * (c * hw * hw + c)),
        LayerCost(
            "classifier",
            "linear",
            2.0 * c * num_classes * batch,
            c * num_classes + num_classes,
            batch * (c + num_classes),
        ),
    ]


def mobilenet_v1(image_size: int = 224, batch: int = 1, num_classes: int = 1000) -> tuple[LayerCost, ...]:
    layers = []
    stem, hw = _conv("conv0", 3, 32, 3, 2, image_size, batch)
    layers.append(stem)
    for i, (c_in, c_out, s) in enumerate(_V1, 1):
        dw, hw2 = _conv(f"block{i}.dw", c_in, c_in, 3, s, hw, batch, groups=c_in)
        pw, _ = _conv(f"block{i}.pw", c_in, c_out, 1, 1, hw2, batch)
        layers += [dw, pw]
        hw = hw2
    return tuple(layers + _head(1024, hw, batch, num_classes))


def mobilenet_v2(image_size: int = 224, batch: int = 1, num_classes: int = 1000) -> tuple[LayerCost, ...]:
    stem, hw = _conv("conv0", 3, 32, 3, 2, image_size, batch)
    layers, c_in = [stem], 32
    for b, (t, c, n, s) in enumerate(_V2, 1):
        for j in range(n):
            stride, hidden, name = (s if j == 0 else 1), c_in * t, f"block{b}.{j}"
            if t != 1:
                layers.append(_conv(f"{name}.expand", c_in, hidden, 1, 1, hw, batch)[0])
            dw, hw2 = _conv(f"{name}.dw", hidden, hidden, 3, stride, hw, batch, groups=hidden)
            layers += [dw, _conv(f"{name}.project", hidden, c, 1, 1, hw2, batch)[0]]
            c_in, hw = c, hw2
    layers.append(_conv("conv_last", 320, 1280, 1, 1, hw, batch)[0])
    return tuple(layers + _head(1280, hw, batch, num_classes))


def _bottleneck_resnet(image_size: int, batch: int, num_classes: int, width: int) -> tuple[LayerCost, ...]:
    """ResNet-50 v1.5 (torchvision, and Hugging Face's microsoft/resnet-50: the stride on the 3x3) with
    ``width`` x 64 channels inside each first bottleneck stage (1: ResNet-50, 2: Wide ResNet-50-2)."""
    stem, hw = _conv("conv1", 3, 64, 7, 2, image_size, batch)
    pool_out = -(-hw // 2)
    layers = [stem, LayerCost("maxpool", "pool", 0.0, 0, batch * 64 * (hw * hw + pool_out * pool_out))]
    hw, c_in = pool_out, 64
    for stage, (planes, blocks, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)), 1):
        mid, out = planes * width, planes * 4
        for j in range(blocks):
            s, name = (stride if j == 0 else 1), f"layer{stage}.{j}"
            a, _ = _conv(f"{name}.conv1", c_in, mid, 1, 1, hw, batch)
            b, hw2 = _conv(f"{name}.conv2", mid, mid, 3, s, hw, batch)
            c, _ = _conv(f"{name}.conv3", mid, out, 1, 1, hw2, batch)
            layers += [a, b, c]
            if j == 0:
                layers.append(_conv(f"{name}.downsample", c_in, out, 1, s, hw, batch)[0])
            c_in, hw = out, hw2
    return tuple(layers + _head(2048, hw, batch, num_classes))


def resnet50(image_size: int = 224, batch: int = 1, num_classes: int = 1000) -> tuple[LayerCost, ...]:
    return _bottleneck_resnet(image_size, batch, num_classes, width=1)


def wide_resnet50_2(image_size: int = 224, batch: int = 1, num_classes: int = 1000) -> tuple[LayerCost, ...]:
    return _bottleneck_resnet(image_size, batch, num_classes, width=2)


REFERENCE_NETS = {
    "mobilenet_v1": mobilenet_v1,
    "mobilenet_v2": mobilenet_v2,
    "resnet50": resnet50,
    "wide_resnet50_2": wide_resnet50_2,
}
