"""Each pass of a 3x3 convolution at VGG16's 32-px layer shapes, against a matrix multiply of the same size.

Usage:
  python benchmarks/conv_passes.py [--batch 64] [--threads 2] [--dtypes bf16] [--layouts cl,nchw]
      [--repeats 5] [--json out.json]

The question it answers (issue 17): where does a quick training's step lose the CPU's convolution
ceiling (benchmarks/train_roofline.py)? For each of VGG16's five 3x3 stages at a 32-px input
(64 ch at 32x32, 128 at 16x16, 256 at 8x8, 512 at 4x4, 512 at 2x2; ResNet18's and GoogLeNet's
torchvision stems bring their layers to 8x8 and below at 32 px), padding 1, stride 1, ``--batch``
images, it times the three passes a training step runs, each through PyTorch's CPU convolution
(oneDNN): forward, data gradient and weight gradient (``aten.convolution_backward`` with one
output asked for). Beside them, ``torch.mm`` of the weight gradient's matrix product, (C_out x
N*H*W) @ (N*H*W x C_in*9), in the same dtype: the same multiply-accumulates as one GEMM, without
the convolution's layout and padding. Then a whole training pass of the layer (forward, then both
gradients through autograd) two ways: PyTorch's convolution, and ``edgecnn.gemmconv.conv2d_gemm``
(im2col + one GEMM: what the quick recipes' ``gemm_conv_pixels`` routes small maps through); their
rates count the three passes' MACs. Best of ``--repeats`` after two warm-up calls, wall time, on
``--threads`` threads; run it on a quiet machine. Prints one JSON object and a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

STAGES = ((64, 32), (128, 16), (256, 8), (512, 4), (512, 2))  # (channels in = out, side): VGG16 @ 32 px
DTYPES = {"bf16": "bfloat16", "fp32": "float32"}


def stage_rates(batch: int, channels: int, side: int, dtype, channels_last: bool, repeats: int) -> dict:
    """GMAC/s of the forward, data-gradient and weight-gradient passes and of the equivalent GEMM."""
    import torch
    import torch.nn.functional as F
    from train_roofline import best_seconds

    from edgecnn.gemmconv import conv2d_gemm

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch, channels, side, side).to(dtype).to(memory_format=fmt)
    w = (torch.randn(channels, channels, 3, 3) / (3 * channels**0.5)).to(dtype).to(memory_format=fmt)
    g = F.conv2d(x, w, padding=1).normal_()
    conv_args = (None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1)

    def grad(which: int):
        mask = [i == which for i in range(3)]
        return lambda: torch.ops.aten.convolution_backward(g, x, w, *conv_args, mask)

    def training_pass(conv):
        def run():
            conv(x.detach().requires_grad_(), w.detach().requires_grad_()).backward(g)

        return run

    rows = batch * side * side
    a = torch.randn(channels, rows).to(dtype)
    b = torch.randn(rows, channels * 9).to(dtype)
    macs = batch * side * side * channels * channels * 9
    seconds = {
        "forward": best_seconds(lambda: F.conv2d(x, w, padding=1), repeats),
        "data_grad": best_seconds(grad(0), repeats),
        "weight_grad": best_seconds(grad(1), repeats),
        "gemm": best_seconds(lambda: a @ b, repeats),
        "conv_pass": best_seconds(training_pass(lambda x, w: F.conv2d(x, w, padding=1)), repeats),
        "gemmconv_pass": best_seconds(
            training_pass(lambda x, w: conv2d_gemm(x, w, None, (1, 1), (1, 1))), repeats
        ),
    }
    return {
        "channels": channels,
        "side": side,
        "layout": "cl" if channels_last else "nchw",
        "gmacs": macs / 1e9,
        "ms": {k: 1000 * s for k, s in seconds.items()},
        "gmacs_per_s": {k: macs * (3 if k.endswith("_pass") else 1) / s / 1e9 for k, s in seconds.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtypes", default="bf16", help="comma-separated: bf16, fp32")
    ap.add_argument("--layouts", default="cl,nchw", help="comma-separated: cl, nchw")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    unknown = set(args.dtypes.split(",")) - set(DTYPES)
    if unknown or set(args.layouts.split(",")) - {"cl", "nchw"}:
        raise SystemExit("error: --dtypes takes bf16,fp32 and --layouts cl,nchw")

    import torch
    from train_roofline import emit

    from edgecnn.host import cpu_model

    torch.set_num_threads(args.threads)
    out = {"cpu": cpu_model(), "threads": args.threads, "batch": args.batch, "rows": []}
    for name in args.dtypes.split(","):
        for layout in args.layouts.split(","):
            dtype = getattr(torch, DTYPES[name])
            for c, side in STAGES:
                row = stage_rates(args.batch, c, side, dtype, layout == "cl", args.repeats)
                out["rows"].append({"dtype": name, **row})
    emit(out, args.json, print_table)


def print_table(out: dict) -> None:
    print(f"\n{out['cpu']}, {out['threads']} threads, batch {out['batch']}; GMAC/s (ms)\n")
    passes = (
        "forward",
        "data gradient",
        "weight gradient",
        "GEMM of the weight gradient's size",
        "all three: convolution",
        "all three: as GEMM (gemmconv)",
    )
    print("| dtype | layout | layer | " + " | ".join(passes) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    keys = ("forward", "data_grad", "weight_grad", "gemm", "conv_pass", "gemmconv_pass")
    for r in out["rows"]:
        cells = [f"{r['gmacs_per_s'][k]:.0f} ({r['ms'][k]:.2f})" for k in keys]
        layer = f"{r['channels']}->{r['channels']} @ {r['side']}x{r['side']}"
        print(f"| {r['dtype']} | {r['layout']} | {layer} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
