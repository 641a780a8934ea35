"""Batches of preprocessed images, made on the fly from uint8 arrays.

Only one batch is ever held as floats. Shuffling depends on (seed, epoch) only;
augmentation on (seed, epoch, batch index), so a resumed epoch can skip batches
(``start``) without computing them and still get the same ones after.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from edgecnn.data.preprocess import Preprocess
from edgecnn.distributed import shard
from edgecnn.errors import EdgecnnError

if TYPE_CHECKING:
    import torch

AUGMENTS = ("flip", "flip+crop")
# Tags that keep the shuffle and augmentation random streams apart (and apart from the
# split permutation, seeded with [seed] alone: numpy's SeedSequence pads with zeros).
_SHUFFLE, _AUGMENT = 1, 2


def num_batches(num_images: int, batch_size: int, *, drop_last: bool = False) -> int:
    """How many batches :func:`iterate_batches` yields for ``num_images`` images."""
    return num_images // batch_size if drop_last else -(-num_images // batch_size)


def iterate_batches(
    images: np.ndarray,
    labels: np.ndarray,
    preprocess: Preprocess,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int | None = None,
    epoch: int = 0,
    augment: str | None = None,
    drop_last: bool = False,
    start: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (float32 input in ``preprocess.layout``, int64 labels) batches.

    ``images``: uint8 N x H x W x C. ``seed=None`` draws a fresh seed (not reproducible).
    ``augment``: None, ``"flip"`` (random horizontal flip) or ``"flip+crop"`` (also a
    random crop after padding with image_size/8 black pixels, i.e. 4 at 32 px).
    ``start`` skips the first batches of the epoch without preprocessing them.
    ``rank``/``world_size`` (data-parallel training): every rank walks the same batches of
    ``batch_size`` and keeps its contiguous slice of each (augmentation drawn for the whole
    batch), so the ranks' slices together are exactly the single-process batch.
    """
    import torch

    if augment is not None and augment not in AUGMENTS:
        raise EdgecnnError(f"unknown augmentation '{augment}': use one of {', '.join(AUGMENTS)} or none")
    if batch_size < 1:
        raise EdgecnnError(f"batch size must be positive, got {batch_size}")
    if len(images) != len(labels):
        raise EdgecnnError(f"{len(images)} images but {len(labels)} labels")
    if not 0 <= rank < world_size:
        raise EdgecnnError(f"rank {rank} is outside a world of {world_size} processes")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % 2**63)
    n = len(labels)
    order = np.random.default_rng([seed, epoch, _SHUFFLE]).permutation(n) if shuffle else np.arange(n)
    # Augmentation works on NCHW; the requested layout is restored after it.
    prep = dataclasses.replace(preprocess, layout="NCHW") if augment else preprocess
    for b in range(start, num_batches(n, batch_size, drop_last=drop_last)):
        idx = order[b * batch_size : (b + 1) * batch_size]
        whole = len(idx)
        lo, hi = (0, whole) if world_size == 1 else shard(whole, rank, world_size)
        idx = idx[lo:hi]
        x = prep.apply_torch(images[idx])
        y = torch.from_numpy(np.array(labels[idx], dtype=np.int64))
        if augment:
            rng = np.random.default_rng([seed, epoch, _AUGMENT, b])
            if augment == "flip+crop":
                x = _random_crop(x, preprocess, rng, whole, lo)
            flip = torch.from_numpy(np.flatnonzero(rng.random(whole)[lo:hi] < 0.5))
            x[flip] = x[flip].flip(-1)
            if preprocess.layout == "NHWC":
                x = x.permute(0, 2, 3, 1).contiguous()
        yield x, y


def _random_crop(
    x: torch.Tensor, preprocess: Preprocess, rng: np.random.Generator, whole: int, lo: int
) -> torch.Tensor:
    """Random S x S crops of N x C x S x S padded by S/8 with the value of a black pixel.

    Done as a shift of each image by (dy, dx) in [-S/8, S/8], without a padded copy. The
    shifts are drawn for the ``whole`` batch; ``x`` is its images ``lo`` to ``lo + N``.
    """
    import torch

    n, c, s, _ = x.shape
    pad = s // 8
    black = -torch.tensor(preprocess.mean) / torch.tensor(preprocess.std)
    out = black.view(1, c, 1, 1).expand(n, c, s, s).contiguous()
    for i, (dy, dx) in enumerate(rng.integers(-pad, pad + 1, size=(whole, 2))[lo : lo + n].tolist()):
        out[i, :, max(0, -dy) : s - max(0, dy), max(0, -dx) : s - max(0, dx)] = x[
            i, :, max(0, dy) : s - max(0, -dy), max(0, dx) : s - max(0, -dx)
        ]
    return out
