"""Datasets, splits, preprocessing and batches.

``import edgecnn.data`` needs only numpy: torch is imported by the functions that make
tensors, PIL by the ImageFolder loader, so a device runtime can use
:meth:`Preprocess.apply_numpy` without either.
"""

from __future__ import annotations

from edgecnn.data.dataset import DatasetBundle, ImageDataset
from edgecnn.data.fashion_mnist import load_fashion_mnist
from edgecnn.data.imagefolder import load_imagefolder
from edgecnn.data.loader import iterate_batches, num_batches
from edgecnn.data.preprocess import Preprocess, channel_stats
from edgecnn.data.sources import load_dataset
from edgecnn.data.splits import SPLITS, Split, SplitSpec, calibration_set, make_splits, subset, take

__all__ = [
    "SPLITS",
    "DatasetBundle",
    "ImageDataset",
    "Preprocess",
    "Split",
    "SplitSpec",
    "calibration_set",
    "channel_stats",
    "iterate_batches",
    "load_dataset",
    "load_fashion_mnist",
    "load_imagefolder",
    "make_splits",
    "num_batches",
    "subset",
    "take",
]
