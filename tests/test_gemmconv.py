"""Small-map convolutions as GEMMs (edgecnn.gemmconv): the lowering computes the convolution and its
gradients exactly as F.conv2d does (float64, every kernel size, stride and padding the four networks
use), routes only the layers it can compute and only on maps as small as asked, leaves the model as
it found it, and a training step with it matches one without it. Tiny tensors: seconds."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edgecnn.gemmconv import conv2d_gemm, small_maps_as_gemm
from edgecnn.trainloop import StepOptions


@pytest.mark.parametrize(
    ("k", "stride", "pad", "bias", "side"),
    [
        (3, 1, 1, True, 4),
        (3, 1, 1, False, 2),
        (3, 1, 1, True, 1),
        (1, 1, 0, True, 2),
        (1, 1, 0, False, 1),
        (3, 2, 1, True, 5),
        (5, 1, 2, True, 4),
        (7, 2, 3, False, 9),
        (11, 4, 2, True, 15),
        (3, 1, 0, True, 4),
        (1, 2, 0, False, 4),  # ResNet18's downsample
    ],
)
@pytest.mark.parametrize("channels_last", [True, False])
def test_same_values_and_gradients_as_conv2d(k, stride, pad, bias, side, channels_last):
    g = torch.Generator().manual_seed(k * 100 + side)
    x = torch.randn(3, 5, side, side, dtype=torch.float64, generator=g)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    w = torch.randn(6, 5, k, k, dtype=torch.float64, generator=g)
    b = torch.randn(6, dtype=torch.float64, generator=g) if bias else None
    leaves = [t.requires_grad_() for t in (x, w, b) if t is not None]
    ref = F.conv2d(x, w, b, (stride, stride), (pad, pad))
    out = conv2d_gemm(x, w, b, (stride, stride), (pad, pad))
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    up = torch.randn(ref.shape, dtype=torch.float64, generator=g)
    for got, want in zip(
        torch.autograd.grad(out, leaves, up), torch.autograd.grad(ref, leaves, up), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_in_bf16_autocast_as_the_training_step_runs_it():
    """Under CPU bf16 autocast (the recipes' step): a bf16 channels_last result as close to
    F.conv2d's as bf16 rounding allows, and FP32 weight and bias gradients."""
    g = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(64, 32, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(8, 64, 4, 4, generator=g).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = conv(x)
        out = conv2d_gemm(x, conv.weight, conv.bias, conv.stride, conv.padding)
    assert out.dtype == ref.dtype == torch.bfloat16
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out.float(), ref.float(), rtol=0.02, atol=0.05)
    gw, gb = torch.autograd.grad(out.float().square().sum(), [conv.weight, conv.bias])
    rw, rb = torch.autograd.grad(ref.float().square().sum(), [conv.weight, conv.bias])
    assert gw.dtype == gb.dtype == torch.float32
    torch.testing.assert_close(gw, rw, rtol=0.05, atol=0.5)
    torch.testing.assert_close(gb, rb, rtol=0.05, atol=0.5)


def test_leaves_alone_what_it_cannot_compute(monkeypatch):
    """Dilation, reflect padding, "same" padding, a subclass with its own forward, and an output map
    PyTorch refuses (its own error, not a reshape error) stay with F.conv2d."""
    import edgecnn.gemmconv as gc

    class Clamped(torch.nn.Conv2d):
        def forward(self, x):
            return super().forward(x).clamp(-1, 1)

    layers = [
        torch.nn.Conv2d(4, 4, 3, padding=2, dilation=2),
        torch.nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
        torch.nn.Conv2d(4, 4, 3, padding="same"),
        Clamped(4, 4, 3, padding=1),
    ]
    monkeypatch.setattr(gc, "conv2d_gemm", lambda *a: pytest.fail("routed"))
    x = torch.randn(2, 4, 2, 2)
    for layer in layers:
        with small_maps_as_gemm(layer, 16):
            torch.testing.assert_close(layer(x), layer.__class__.forward(layer, x))
    tiny = torch.nn.Conv2d(4, 4, 3)
    with small_maps_as_gemm(tiny, 16), pytest.raises(RuntimeError, match="Kernel size can't be greater"):
        tiny(torch.randn(1, 4, 1, 1))


def test_restores_the_layers_when_the_step_raises():
    conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    with pytest.raises(ValueError), small_maps_as_gemm(conv, 16):
        assert "forward" in conv.__dict__
        raise ValueError("a step that failed")
    assert "forward" not in conv.__dict__


class _Net(torch.nn.Module):
    """A 3x3 conv on 8x8 maps, a pool to 2x2, a 3x3 and a 1x1 conv there, a grouped conv, a head."""

    def __init__(self):
        super().__init__()
        self.big = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.small = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.point = torch.nn.Conv2d(8, 8, 1)
        self.grouped = torch.nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.head = torch.nn.Linear(8, 4)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.big(x)), 4)
        x = self.grouped(F.relu(self.point(F.relu(self.small(x)))))
        return self.head(x.mean((2, 3)))


def test_routes_only_small_maps_and_restores_the_model(monkeypatch):
    import edgecnn.gemmconv as gc

    net = _Net()
    keys = list(net.state_dict())
    seen = []
    real = gc.conv2d_gemm
    monkeypatch.setattr(gc, "conv2d_gemm", lambda x, *a: seen.append(tuple(x.shape[1:])) or real(x, *a))
    x = torch.randn(2, 3, 8, 8)
    with small_maps_as_gemm(net, 4):  # 2x2 maps: small and point; not big (8x8) nor grouped
        routed = net(x)
    assert seen == [(8, 2, 2), (8, 2, 2)]
    assert all("forward" not in m.__dict__ for m in net.modules())
    assert list(net.state_dict()) == keys
    torch.testing.assert_close(routed, net(x))
    seen.clear()
    with small_maps_as_gemm(net, 0):  # off
        net(x)
    assert seen == []


def test_a_training_run_with_it_matches_one_without(tmp_path, monkeypatch):
    """The same float32 run of trainloop.Loop with and without the lowering (a 3x3 conv on 4x4
    maps): the same weights up to float32 rounding (the kernels sum in another order)."""
    from test_trainloop import _loop

    import edgecnn.gemmconv as gc

    calls = []
    real = gc.conv2d_gemm
    monkeypatch.setattr(gc, "conv2d_gemm", lambda *a: calls.append(1) or real(*a))
    weights = []
    for px in (0, 16):
        torch.manual_seed(0)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3, stride=2, padding=1),
            torch.nn.ReLU(inplace=True),  # as VGG16's: an in-place op on the lowering's output
            torch.nn.Flatten(),
            torch.nn.Linear(64, 2),
        )
        loop = _loop(tmp_path / str(px), epochs=1.0, model=net, options=StepOptions(gemm_conv_pixels=px))
        loop.run()
        weights.append([p.detach().clone() for p in net.parameters()])
        assert bool(calls) == bool(px)
    for a, b in zip(*weights, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_the_recipe_key_resolves_only_for_bf16_on_an_amx_cpu(monkeypatch):
    """``gemm_conv_pixels`` applies in a bf16 step on a CPU with AMX, the one kind it was measured
    on, and nowhere else; a negative value is refused."""
    import dataclasses

    import edgecnn.train as train
    from edgecnn.recipes import TrainSection

    cfg = TrainSection(amp="bf16", gemm_conv_pixels=16)
    monkeypatch.setattr(train, "has_amx", lambda: True)
    assert train.kernels(cfg, "cpu") == {"amp": "bf16", "gemm_conv_pixels": 16}
    assert train.kernels(cfg, "cuda") == {"amp": "bf16", "gemm_conv_pixels": 0}
    assert train.kernels(dataclasses.replace(cfg, amp="off"), "cpu") == {"amp": "off", "gemm_conv_pixels": 0}
    monkeypatch.setattr(train, "has_amx", lambda: False)
    assert train.kernels(cfg, "cpu") == {"amp": "bf16", "gemm_conv_pixels": 0}
    with pytest.raises(ValueError, match="gemm_conv_pixels"):
        TrainSection(gemm_conv_pixels=-1)
