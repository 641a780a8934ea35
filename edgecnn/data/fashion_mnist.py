"""Fashion-MNIST: found on disk, or downloaded once and checked.

Searched in order: ``$EDGECNN_HOME/datasets/fashion-mnist`` (the cache), then
``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``), then
downloaded from the official URL into the cache. The four ``.gz`` files are parsed
strictly and their decompressed contents checked against the sha256 values below, so
the official files and Debian's re-gzipped copies (other gzip headers, same data) are
both accepted. The decoded arrays are cached as ``fashion-mnist.npz`` beside them.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgecnn import paths
from edgecnn.data.dataset import FASHION_MNIST, DatasetBundle, ImageDataset
from edgecnn.download import download as fetch
from edgecnn.errors import EdgecnnError
from edgecnn.fileio import atomic_path

BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# file -> (sha256 of the official .gz as served at BASE_URL, sha256 of its decompressed contents).
# The official .gz files have MD5 8d4fb7e6c68d591d4c3dfef9ec88bf0d, 25c81989df183df01b3e8a0aad5dffbe,
# bef4ecab320f06d8554ea6380940ec79, bb300cfdad3c16e7a12a480ee83cd310 (the README's). Debian's copies
# hold the same deflate streams under another gzip header (no file name, 2020 mtime); restoring
# the original header (name, mtime 2017-08-31) rebuilds files with exactly those MD5s, whose
# sha256 are the first column (the same values torchvision's dataset code lists).
FILES = {
    "train-images-idx3-ubyte.gz": (
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    "train-labels-idx1-ubyte.gz": (
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    "t10k-images-idx3-ubyte.gz": (
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
}
# ImageDataset.content_hash of the two splits: checks the decoded-array cache.
TRAIN_CONTENT_HASH = "ad06d49d446451ac5b363d2f7a656922f5a3c6c7b406f690c057a4543abc8ea5"
TEST_CONTENT_HASH = "211bdf4edeeda940a49a15f32c9b1f160a892ee5d296d51c0b07bfaca32a0e57"
# Mean and std of all 60,000 training images scaled to [0, 1] (47,040,000 pixels, float64,
# population std): 0.286040597 and 0.353024245, rounded to 4 decimals as channel_stats does.
MEAN = (0.2860,)
STD = (0.3530,)

CACHE_NAME = "fashion-mnist.npz"
_IDX = {3: (0x803, "images"), 1: (0x801, "labels")}


def load_fashion_mnist(
    search_dirs: Sequence[str | os.PathLike] | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    base_url: str = BASE_URL,
) -> DatasetBundle:
    """Load Fashion-MNIST: 60,000 training and 10,000 test images, 28 x 28 x 1.

    ``cache_dir`` (default ``paths.datasets_dir() / "fashion-mnist"``) receives
    downloads and the decoded-array cache; ``search_dirs`` (default: the cache, then
    ``SYSTEM_DIR``) are searched, file by file, for the four ``.gz`` files.
    """
    cache = Path(cache_dir) if cache_dir is not None else paths.datasets_dir() / FASHION_MNIST
    dirs = [Path(d) for d in search_dirs] if search_dirs is not None else [cache, SYSTEM_DIR]
    bundle = _read_cache(cache / CACHE_NAME)
    if bundle is not None:
        return bundle
    files = {name: next((d / name for d in dirs if (d / name).is_file()), None) for name in FILES}
    missing = [name for name, path in files.items() if path is None]
    for name in missing:
        if not download:
            raise _not_found(cache, base_url, "downloading is off")
        try:
            files[name] = fetch(base_url + name, cache / name, FILES[name][0])
        except EdgecnnError as e:
            raise _not_found(cache, base_url, f"downloading {name} failed: {e.__cause__ or e}") from e
    arrays = {name: _read_idx(path, FILES[name][1]) for name, path in files.items()}
    source = ", ".join(sorted({str(p.parent) for p in files.values()}))
    bundle = _bundle(
        arrays["train-images-idx3-ubyte.gz"],
        arrays["train-labels-idx1-ubyte.gz"],
        arrays["t10k-images-idx3-ubyte.gz"],
        arrays["t10k-labels-idx1-ubyte.gz"],
        source,
    )
    _write_cache(cache / CACHE_NAME, bundle)
    return bundle


def _not_found(cache: Path, base_url: str, why: str) -> EdgecnnError:
    return EdgecnnError(
        f"Fashion-MNIST not found: install it with `sudo apt-get install dataset-fashion-mnist`, "
        f"or put the four .gz files from {base_url} in {cache} ({why})"
    )


def _read_idx(path: Path, sha256: str) -> np.ndarray:
    """Decode one gzipped idx file strictly: magic number, dimensions, length, contents."""
    redo = "remove it and run again to download it, or reinstall dataset-fashion-mnist"
    try:
        with open(path, "rb") as f:
            raw = gzip.decompress(f.read())
    except (OSError, EOFError, zlib.error) as e:
        raise EdgecnnError(f"cannot read {path}: not a whole gzip file ({e}); {redo}") from None
    ndim = 3 if "images" in path.name else 1
    magic, kind = _IDX[ndim]
    if len(raw) < 4 + 4 * ndim or int.from_bytes(raw[:4], "big") != magic:
        raise EdgecnnError(f"{path} is not an idx {kind} file (bad magic number); {redo}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    header = 4 + 4 * ndim
    if len(raw) != header + int(np.prod(dims)):
        raise EdgecnnError(
            f"{path} is truncated or padded: header says {dims}, i.e. {int(np.prod(dims))} bytes of data, "
            f"found {len(raw) - header}; {redo}"
        )
    if hashlib.sha256(raw).hexdigest() != sha256:
        raise EdgecnnError(
            f"{path} is not the official Fashion-MNIST file (its contents' sha256 differs); {redo}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _bundle(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, source: str
) -> DatasetBundle:
    def ds(x: np.ndarray, y: np.ndarray) -> ImageDataset:
        return ImageDataset(FASHION_MNIST, x.reshape(*x.shape[:3], 1), y.astype(np.int64), CLASSES, source)

    return DatasetBundle(FASHION_MNIST, ds(train_x, train_y), ds(test_x, test_y))


def _read_cache(path: Path) -> DatasetBundle | None:
    """The decoded arrays, if the cache file is there and holds exactly the official data."""
    try:
        with np.load(path, allow_pickle=False) as z:
            bundle = _bundle(
                z["train_images"], z["train_labels"], z["test_images"], z["test_labels"], str(path)
            )
    except (OSError, KeyError, ValueError):
        return None
    if bundle.train.content_hash != TRAIN_CONTENT_HASH or bundle.test.content_hash != TEST_CONTENT_HASH:
        return None
    return bundle


def _write_cache(path: Path, bundle: DatasetBundle) -> None:
    """Best effort: a read-only cache only costs the gzip decoding next time."""
    with contextlib.suppress(OSError), atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            train_images=bundle.train.images[..., 0],
            train_labels=bundle.train.labels,
            test_images=bundle.test.images[..., 0],
            test_labels=bundle.test.labels,
        )
