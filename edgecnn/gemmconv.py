"""Convolutions on small feature maps as one matrix multiply each (a CPU training-step kernel choice).

At the quick recipes' 32 px the deep layers of VGG16 and GoogLeNet see 4x4, 2x2 and 1x1 maps, where
oneDNN's convolution (its weight gradient above all) runs far below the rate of a plain GEMM of the
same size. With bf16 on an AMX Xeon, a 512-channel 3x3 layer's forward pass and both gradients take
6.3x less time on 2x2 maps and 2.4x less on 4x4 as ``im2col`` + ``torch.addmm`` than as ``F.conv2d``,
and 2.2x more on 8x8 (``benchmarks/conv_passes.py``, docs/BENCHMARKS.md): hence a limit on the map
size. :func:`conv2d_gemm` is that lowering: the same convolution (cross-correlation, zero
padding, stride; one group, no dilation), written with differentiable torch ops, so autograd gives its
backward (the weight gradient is one GEMM, the input gradient one GEMM and a sum of shifted slices).
:func:`small_maps_as_gemm` routes a model's eligible ``nn.Conv2d`` layers through it for as long as
the ``with`` lasts; the model, its parameters and its ``state_dict`` stay what they were, so the
network is unchanged and what is exported is the same ``nn.Conv2d``. Only the rounding differs
(bf16 products summed in another order), as between any two kernels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F


def _out_size(h: int, w: int, kernel, stride, padding) -> tuple[int, int]:
    """The output map (height, width) of a convolution without dilation, as F.conv2d computes it."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1


def conv2d_gemm(x, weight, bias, stride: tuple[int, int], padding: tuple[int, int]):
    """``F.conv2d(x, weight, bias, stride, padding)`` (groups 1, dilation 1) as one GEMM.

    The input is read as NHWC (a view when ``x`` is channels_last): the kernel's taps, shifted
    slices of the zero-padded input, are concatenated along the channels into one
    ``(N*Ho*Wo, kh*kw*C)`` matrix that multiplies the weight laid out as ``(kh*kw*C, O)``. The
    result is ``(N, O, Ho, Wo)``: a channels_last view of the GEMM's output for a channels_last
    input, a contiguous copy for any other, as ``F.conv2d`` returns. A 1x1 convolution with stride 1
    and no padding is the GEMM of the input itself.
    """
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    (sh, sw), (ph, pw) = stride, padding
    ho, wo = _out_size(h, w, (kh, kw), stride, padding)
    nhwc = x.permute(0, 2, 3, 1)
    if (kh, kw, sh, sw, ph, pw) == (1, 1, 1, 1, 0, 0):
        cols, w2 = nhwc.reshape(-1, c), weight.reshape(o, c)
    else:
        padded = F.pad(nhwc, (0, 0, pw, pw, ph, ph))
        taps = [
            padded[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw, :]
            for i in range(kh)
            for j in range(kw)
        ]
        cols = torch.cat(taps, dim=3).reshape(n * ho * wo, kh * kw * c)
        w2 = weight.permute(0, 2, 3, 1).reshape(o, kh * kw * c)
    y = torch.addmm(bias, cols, w2.t()) if bias is not None else cols @ w2.t()
    out = y.view(n, ho, wo, o).permute(0, 3, 1, 2)  # channels_last, as the input should be
    return out if x.is_contiguous(memory_format=torch.channels_last) else out.contiguous()


def _eligible(conv) -> bool:
    """A plain 2-D convolution :func:`conv2d_gemm` computes exactly the same way (not a subclass with a
    forward of its own, such as a QAT convolution with its fake-quantizer or BatchNorm)."""
    return (
        type(conv).forward is torch.nn.Conv2d.forward
        and conv.groups == 1
        and tuple(conv.dilation) == (1, 1)
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
    )


def _routed(conv, max_pixels: int):
    """``conv``'s forward, taking :func:`conv2d_gemm` where its output map has at most ``max_pixels``."""
    native = conv.forward

    def forward(x):
        ho, wo = _out_size(*x.shape[-2:], conv.kernel_size, conv.stride, conv.padding)
        if x.dim() != 4 or min(ho, wo) < 1 or ho * wo > max_pixels:  # PyTorch's own error, or too large
            return native(x)
        return conv2d_gemm(x, conv.weight, conv.bias, conv.stride, conv.padding)

    return forward


@contextlib.contextmanager
def small_maps_as_gemm(model, max_pixels: int) -> Iterator[None]:
    """While it lasts, every eligible ``nn.Conv2d`` of ``model`` whose output map has at most
    ``max_pixels`` pixels (16: 4x4 and smaller) runs as :func:`conv2d_gemm`; ``max_pixels`` 0 changes
    nothing. The layers' own ``forward`` is restored on exit, so evaluation and export after
    training see the model untouched."""
    convs = (
        [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and _eligible(m)] if max_pixels else []
    )
    own = [m.__dict__.get("forward") for m in convs]  # a forward already set on the instance
    for m in convs:
        m.forward = _routed(m, max_pixels)
    try:
        yield
    finally:
        for m, f in zip(convs, own, strict=True):
            if f is None:
                del m.forward
            else:
                m.forward = f
