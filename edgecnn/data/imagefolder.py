"""ImageFolder datasets: ``root/<class>/<image files>``, decoded into one uint8 array.

``root`` holds either class folders (the test set is then a seeded, stratified 20% of
each class) or ``train/`` and ``test/`` (or ``val/``, used when there is no ``test/``)
with the same class folders. Class names are the sorted folder names; images are the
files with extensions png, jpg, jpeg, bmp or webp (any case), also in subfolders.

Every image is decoded to grey (when all of them are grey) or RGB and stored at one
size: its own when all images share a size of at most ``store_size`` on each side,
else stretched to ``store_size`` x ``store_size`` (default 256, enough for 224-pixel
networks). Preprocessing then resizes to the network's input size.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from edgecnn.data.dataset import DatasetBundle, ImageDataset
from edgecnn.errors import EdgecnnError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
STORE_SIZE = 256
GREY_MODES = ("1", "L", "LA")


def load_imagefolder(
    root: str | os.PathLike, *, store_size: int = STORE_SIZE, test_fraction: float = 0.2, seed: int = 0
) -> DatasetBundle:
    """Load an ImageFolder directory; every problem is a one-line :class:`EdgecnnError`."""
    root = Path(root)
    layout = "root/<class>/<images>"
    if not root.exists():
        raise EdgecnnError(f"dataset path does not exist: {root}; pass a directory laid out as {layout}")
    if not root.is_dir():
        raise EdgecnnError(f"dataset path {root} is not a directory; pass a directory laid out as {layout}")
    subdirs = {p.name for p in root.iterdir() if p.is_dir()}
    held_out = "test" if "test" in subdirs else "val" if "val" in subdirs else None
    if "train" in subdirs and held_out:
        train_files, classes = _scan(root / "train")
        test_files, test_classes = _scan(root / held_out)
        if test_classes != classes:
            only_train = sorted(set(classes) - set(test_classes)) or ["-"]
            only_test = sorted(set(test_classes) - set(classes)) or ["-"]
            raise EdgecnnError(
                f"{root}/train and {root}/{held_out} must have the same class folders "
                f"(only in train: {', '.join(only_train)}; only in {held_out}: {', '.join(only_test)})"
            )
        images, labels = _decode(train_files + test_files, store_size)
        n = len(train_files)
        train_x, train_y, test_x, test_y = images[:n], labels[:n], images[n:], labels[n:]
        train_src, test_src = root / "train", root / held_out
    else:
        files, classes = _scan(root)
        images, labels = _decode(files, store_size)
        test_idx = stratified_holdout(labels, test_fraction, seed)
        is_test = np.zeros(len(labels), dtype=bool)
        is_test[test_idx] = True
        train_x, train_y = images[~is_test], labels[~is_test]
        test_x, test_y = images[is_test], labels[is_test]
        train_src = test_src = root
    name = root.resolve().name
    return DatasetBundle(
        name,
        ImageDataset(name, train_x, train_y, classes, str(train_src)),
        ImageDataset(name, test_x, test_y, classes, str(test_src)),
    )


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a seeded ``fraction`` of each class (at least one of any class of 2+)."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = max(1, round(fraction * len(idx))) if len(idx) > 1 else 0
        picked.append(rng.permutation(idx)[:k])
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def _scan(root: Path) -> tuple[list[tuple[Path, int]], tuple[str, ...]]:
    """(file, class index) for every image under ``root``'s class folders, in sorted order."""
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if not classes:
        raise EdgecnnError(f"{root} has no class subfolders; lay it out as {root}/<class>/<images>")
    if len(classes) < 2:
        raise EdgecnnError(
            f"{root} has one class folder ({classes[0]}); a classifier needs at least 2: "
            f"add a folder of images per class"
        )
    files = []
    for label, cls in enumerate(classes):
        found = sorted(
            p
            for p in (root / cls).rglob("*")
            if p.suffix.lower() in EXTENSIONS and p.is_file() and not p.name.startswith(".")
        )
        if not found:
            raise EdgecnnError(
                f"class folder {root / cls} has no images ({', '.join(e[1:] for e in EXTENSIONS)}); "
                f"add images or remove the folder"
            )
        files += [(p, label) for p in found]
    return files, classes


def _decode(files: list[tuple[Path, int]], store_size: int) -> tuple[np.ndarray, np.ndarray]:
    """All images as one uint8 N x H x W x C array (see the module docstring), and labels."""
    from PIL import Image

    # What PIL raises on bad files, depending on the format and where the damage is.
    bad_image = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)

    def unreadable(path: Path, e: Exception) -> EdgecnnError:
        return EdgecnnError(f"cannot read image {path} ({e}); remove the file or replace it with a good copy")

    sizes, modes = set(), set()
    for path, _ in files:  # headers only: decides the stored size and colour
        try:
            with Image.open(path) as im:
                sizes.add(im.size)
                modes.add(im.mode)
        except bad_image as e:
            raise unreadable(path, e) from None
    mode = "L" if modes <= set(GREY_MODES) else "RGB"
    w, h = next(iter(sizes))
    if len(sizes) > 1 or max(w, h) > store_size:
        w = h = store_size
    images = np.empty((len(files), h, w, 1 if mode == "L" else 3), dtype=np.uint8)
    for i, (path, _) in enumerate(files):
        try:
            with Image.open(path) as im:
                im = im.convert(mode)
                if im.size != (w, h):
                    im = im.resize((w, h), Image.Resampling.BILINEAR)
                images[i] = np.asarray(im).reshape(h, w, -1)
        except bad_image as e:
            raise unreadable(path, e) from None
    return images, np.array([label for _, label in files], dtype=np.int64)
