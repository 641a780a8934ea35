"""ARM against x86: the rpi (TFLite INT8) artifacts on the emulated Raspberry Pi (QEMU user-mode,
Cortex-A72 = Pi 4 without dotprod, Cortex-A76 = Pi 5 with dotprod) against the same file in
LiteRT on this x86 host, on the first N images of the Fashion-MNIST test split.

Per artifact and CPU: top-1 agreement of the ARM run with the x86 run, how many images flipped,
the largest |logit difference| and how many logits differ at all (the outputs are dequantized
int8, so any difference is a whole number of output quantization steps), and both runs' top-1.

Usage (as root: the emulated Pi needs mount namespaces and chroot; build it first with
``sudo scripts/emulated-pi/make.sh ROOT``):

    EDGECNN_EMULATED_PI=ROOT python benchmarks/arm_agreement.py [--n 256] \
        [--trained resnet18=CKPT,googlenet=CKPT] [--random alexnet,vgg16,resnet18,googlenet]

``--trained``: float checkpoints of the quick profile (`edgecnn train ARCH`), exported here with
the recipe's PTQ. ``--random``: the quick-profile network (32 px) with seeded random weights
(torch.manual_seed(0)), saved as a checkpoint and exported the same way; its rows are labelled
"random weights". Emulation is about 100x slower than a Pi: nothing here is a latency.
Prints one JSON line per row and a Markdown table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "emulated-pi"))
import emulated_pi


def random_checkpoint(arch: str, recipe, out: Path) -> Path:
    """The quick-profile network with seeded random weights, as an edgecnn checkpoint."""
    import torch

    from edgecnn.checkpoint import save_checkpoint
    from edgecnn.data import Preprocess, load_dataset
    from edgecnn.models import create

    bundle = load_dataset(None)
    torch.manual_seed(0)
    model = create(
        arch, num_classes=len(bundle.classes), in_channels=recipe.data.channels, **recipe.model_options()
    ).eval()
    pre = Preprocess.for_dataset(bundle, recipe.data.image_size, recipe.data.channels)
    return save_checkpoint(
        out,
        arch=arch,
        model_options=dict(model.arch_options),
        state_dict=model.state_dict(),
        preprocess=pre.to_dict(),
        classes=list(bundle.classes),
        dataset=bundle.name,
    )


def test_images(artifact: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` test images, preprocessed as the artifact expects, and their labels."""
    from edgecnn.artifact import load_artifact
    from edgecnn.data import Preprocess, load_dataset, take
    from edgecnn.data.splits import Split

    bundle = load_dataset(None)
    images, labels = take(
        bundle, Split("test", "test", np.arange(len(bundle.test)), bundle.test.content_hash)
    )
    pre = Preprocess.from_dict(load_artifact(artifact).meta["preprocess"])
    return pre.apply_numpy(images[:n]), labels[:n]


def compare(host: np.ndarray, arm: np.ndarray, labels: np.ndarray) -> dict:
    ph, pa = host.argmax(1), arm.argmax(1)
    diff = np.abs(host.astype(np.float64) - arm.astype(np.float64))
    return {
        "top1_agreement": float((ph == pa).mean()),
        "flipped": np.flatnonzero(ph != pa).tolist(),
        "max_abs_logit_diff": float(diff.max()),
        "logits_differing": int((diff > 0).sum()),
        "logits": int(diff.size),
        "x86_top1": float((ph == labels).mean()),
        "arm_top1": float((pa == labels).mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="test images (the first N of the split)")
    ap.add_argument("--trained", default="", help="ARCH=CHECKPOINT,... (float quick-profile checkpoints)")
    ap.add_argument("--random", default="alexnet,vgg16,resnet18,googlenet", help="archs with random weights")
    ap.add_argument("--cpus", default="cortex-a72,cortex-a76")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--work", default=None, help="folder for checkpoints and artifacts (default $EDGECNN_HOME/arm)"
    )
    args = ap.parse_args()
    why = emulated_pi.unavailable()
    if why:
        sys.exit(f"error: {why}")

    from edgecnn import paths
    from edgecnn.export import export, model_for
    from edgecnn.recipes import load_recipe
    from edgecnn.runtimes import open_session

    work = Path(args.work or paths.home() / "arm-agreement")
    work.mkdir(parents=True, exist_ok=True)
    jobs = [
        (a, Path(c), "trained (quick)") for a, c in (s.split("=", 1) for s in args.trained.split(",") if s)
    ]
    for arch in filter(None, args.random.split(",")):
        ckpt = work / f"{arch}-random.pt"
        if not ckpt.exists():
            random_checkpoint(arch, load_recipe(arch, "quick"), ckpt)
        jobs.append((arch, ckpt, "random weights (seed 0)"))
    rows = []
    for arch, ckpt, weights in jobs:
        tag = "trained" if weights.startswith("trained") else "random"
        recipe = load_recipe(arch, "quick")
        model = model_for(arch, recipe, "tflite", checkpoint=str(ckpt), log=lambda s: None, progress=False)
        art = export(model, "rpi", recipe=recipe, out=work / f"{arch}-{tag}-rpi-int8", log=lambda s: None).dir
        x, labels = test_images(art, args.n)
        with open_session(art, threads=args.threads) as s:
            host = s.run(x)
        for cpu in args.cpus.split(","):
            t0 = time.perf_counter()
            arm = emulated_pi.run_on_pi(art, x, cpu=cpu, threads=args.threads)
            row = {
                "arch": arch,
                "weights": weights,
                "cpu": cpu,
                "n": args.n,
                **compare(host, arm, labels),
                "emulated_s": round(time.perf_counter() - t0, 1),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(
        "\n| network | weights | ARM CPU (QEMU) | top-1 agreement with x86 | images flipped | "
        "max abs logit diff | logits differing | top-1 x86 / ARM |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['arch']} | {r['weights']} | {r['cpu']} | {100 * r['top1_agreement']:.2f}% | "
            f"{len(r['flipped'])} of {r['n']} | {r['max_abs_logit_diff']:.4g} | {r['logits_differing']} of "
            f"{r['logits']} | {100 * r['x86_top1']:.1f}% / {100 * r['arm_top1']:.1f}% |"
        )


if __name__ == "__main__":
    main()
