"""Deterministic train / val / calib / test splits, each identified by a content hash.

A seeded permutation of the training pool gives ``val`` (its first ``spec.val``),
``calib`` (the next ``spec.calib``) and ``train`` (the rest); ``test`` is the dataset's
separate test set. So calib is disjoint from val and train, and from test by
construction. Indices keep the permutation's order, so a prefix of a split is a random
sample of it and smaller calibration sets are nested in larger ones.

``split_id`` hashes the pool's content hash, the split's name and its indices: it
names exactly which images (in which order) a split holds, whatever spec produced them.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np

from edgecnn.data.dataset import DatasetBundle
from edgecnn.errors import EdgecnnError

SPLITS = ("train", "val", "calib", "test")


@dataclass(frozen=True)
class SplitSpec:
    """How the training pool is divided: ``val`` and ``calib`` image counts, permutation seed."""

    val: int = 5000
    calib: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("val", "calib", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise EdgecnnError(f"split {name} must be a non-negative integer, got {value!r}")


@dataclass(frozen=True, eq=False)
class Split:
    """Indices into a bundle's ``pool`` ("train" or "test") dataset, and their id."""

    name: str
    pool: str
    indices: np.ndarray
    pool_hash: str

    def __post_init__(self) -> None:
        indices = np.array(self.indices, dtype=np.int64)
        indices.flags.writeable = False
        object.__setattr__(self, "indices", indices)

    def __len__(self) -> int:
        return len(self.indices)

    @functools.cached_property
    def split_id(self) -> str:
        h = hashlib.sha256(f"edgecnn.split/1 {self.pool_hash} {self.name}\n".encode())
        h.update(memoryview(self.indices.astype("<i8", copy=False)).cast("B"))
        return h.hexdigest()[:16]


def make_splits(bundle: DatasetBundle, spec: SplitSpec) -> dict[str, Split]:
    """The four splits of ``bundle`` under ``spec``, keyed by name (see :data:`SPLITS`)."""
    n = len(bundle.train)
    if spec.val + spec.calib >= n:
        raise EdgecnnError(
            f"the training pool of {bundle.name} has {n} images: val {spec.val} + calib {spec.calib} "
            f"leave none to train on; lower data.val or data.calib in the recipe"
        )
    perm = np.random.default_rng(spec.seed).permutation(n)
    cut = spec.val + spec.calib
    h = bundle.train.content_hash
    return {
        "train": Split("train", "train", perm[cut:], h),
        "val": Split("val", "train", perm[: spec.val], h),
        "calib": Split("calib", "train", perm[spec.val : cut], h),
        "test": Split("test", "test", np.arange(len(bundle.test)), bundle.test.content_hash),
    }


def subset(split: Split, n: int, seed: int = 0) -> Split:
    """A seeded random ``n`` of ``split``'s images (``split`` itself when ``n`` is its size)."""
    _check_size(split, n, f"a {split.name} subset")
    if n == len(split):
        return split
    pick = np.random.default_rng(seed).permutation(len(split))[:n]
    return Split(f"{split.name}[{n},seed={seed}]", split.pool, split.indices[pick], split.pool_hash)


def calibration_set(calib: Split, n: int) -> Split:
    """The first ``n`` images of the calib split: a random sample, nested as ``n`` grows."""
    _check_size(calib, n, "the calibration set")
    if n == len(calib):
        return calib
    return Split(f"{calib.name}[:{n}]", calib.pool, calib.indices[:n], calib.pool_hash)


def take(bundle: DatasetBundle, split: Split) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images, int64 labels) of ``split``, copied out of its pool."""
    pool = bundle.train if split.pool == "train" else bundle.test
    if pool.content_hash != split.pool_hash:
        raise EdgecnnError(f"split {split.name} ({split.split_id}) was not made from dataset {bundle.name}")
    return pool.images[split.indices], pool.labels[split.indices]


def _check_size(split: Split, n: int, what: str) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(split):
        more = " or raise data.calib in the recipe" if split.name == "calib" else ""
        raise EdgecnnError(
            f"{what} of {n} images is not possible: the {split.name} split holds {len(split)}; "
            f"ask for 1 to {len(split)}{more}"
        )
