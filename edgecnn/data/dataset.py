"""In-memory image datasets and :func:`load_dataset`, the one entry point for ``--data``."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np

FASHION_MNIST = "fashion-mnist"


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Images as one read-only uint8 array N x H x W x C, labels as int64 N.

    ``content_hash`` identifies the data (sha256 of shape, image bytes, label bytes and
    class names); it is computed on first use and kept.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        images = np.ascontiguousarray(self.images)
        labels = np.ascontiguousarray(self.labels, dtype=np.int64)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(
                f"images must be uint8 N x H x W x C (C 1 or 3), got {images.dtype} {images.shape}"
            )
        if labels.shape != (len(images),):
            raise ValueError(f"labels must be shaped ({len(images)},), got {labels.shape}")
        if len(labels) and not (labels.min() >= 0 and labels.max() < len(self.classes)):
            raise ValueError(f"labels must lie in [0, {len(self.classes)})")
        images.flags.writeable = False  # the hash stays true to the data
        labels.flags.writeable = False
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "classes", tuple(self.classes))

    def __len__(self) -> int:
        return len(self.labels)

    @functools.cached_property
    def content_hash(self) -> str:
        h = hashlib.sha256()
        h.update(f"edgecnn.dataset/1 {self.images.shape}\n".encode())
        h.update(memoryview(self.images).cast("B"))
        h.update(memoryview(self.labels.astype("<i8", copy=False)).cast("B"))
        h.update("\n".join(self.classes).encode())
        return h.hexdigest()


@dataclass(frozen=True, eq=False)
class DatasetBundle:
    """A dataset's training pool (``train``: split further into train/val/calib) and test set."""

    name: str
    train: ImageDataset
    test: ImageDataset

    def __post_init__(self) -> None:
        if self.train.classes != self.test.classes:
            raise ValueError("train and test must have the same classes")

    @property
    def classes(self) -> tuple[str, ...]:
        return self.train.classes
