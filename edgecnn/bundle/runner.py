#!/usr/bin/env python3
"""Classify images with this bundle's artifact (written by `edgecnn deploy`).

    python3 predict.py IMAGE [IMAGE ...]     # the top 5 classes of each image

Runs in the artifact's own runtime with the exact preprocessing it was calibrated on
(artifact/metadata.json). Needs no torch: see RUN.md for the install on the device.
A non-square image is first resized to a square with PIL.
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from edgecnn.artifact import load_artifact
from edgecnn.data.preprocess import Preprocess
from edgecnn.runtimes import open_session


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python3 predict.py IMAGE [IMAGE ...]")
    art = load_artifact(Path(__file__).resolve().parent / "artifact")
    pre = Preprocess.from_dict(art.meta["preprocess"])
    names = art.meta["class_names"]
    session = open_session(art)
    for path in sys.argv[1:]:
        try:
            img = Image.open(path).convert("L" if pre.channels == 1 else "RGB")
        except OSError as e:
            sys.exit(f"error: cannot read {path}: {e}")
        if img.width != img.height:
            img = img.resize((pre.image_size, pre.image_size), Image.BILINEAR)
        x = np.asarray(img, dtype=np.uint8)
        x = x[..., None] if x.ndim == 2 else x
        logits = session.run(pre.apply_numpy(x[None]))[0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        top = np.argsort(-p)[:5]
        print(f"{path}: " + ", ".join(f"{names[i]} {p[i]:.3f}" for i in top))


if __name__ == "__main__":
    main()
