"""The one preprocessing definition shared by training, calibration, evaluation and export.

:class:`Preprocess` turns a batch of uint8 images (N x H x W x C) into the float32 input
of a network: scale to [0, 1], convert channels, resize, normalise, lay out. It has two
implementations that agree to 1e-5: :meth:`Preprocess.apply_torch` for training and
:meth:`Preprocess.apply_numpy` for device runtimes without torch (a Raspberry Pi). Its
:meth:`Preprocess.to_dict` is written into every artifact's metadata.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecnn.config import from_mapping
from edgecnn.errors import EdgecnnError

if TYPE_CHECKING:
    import torch

    from edgecnn.data.dataset import DatasetBundle, ImageDataset

# ITU-R BT.601 luma, as PIL's convert("L"): how RGB images become one channel.
LUMA = (0.299, 0.587, 0.114)
LAYOUTS = ("NCHW", "NHWC")
INTERPOLATIONS = ("bilinear",)
RESIZES = ("stretch",)


@dataclass(frozen=True)
class Preprocess:
    """uint8 N x H x W x C images -> float32 network input.

    Steps: RGB -> grey by BT.601 luma when ``channels`` is 1, grey -> 3 channels by
    replication when it is 3; ``(x * scale - mean[c]) / std[c]``; resize to
    ``image_size`` x ``image_size`` (``resize="stretch"``: aspect ratio not kept) by
    bilinear interpolation as ``torch.nn.functional.interpolate`` does it
    (align_corners=False, no antialias); output in ``layout``.
    """

    image_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"
    layout: str = "NCHW"
    scale: float = 1 / 255
    resize: str = "stretch"

    def __post_init__(self) -> None:
        # JSON gives lists: store tuples of floats so the object stays hashable and frozen.
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or self.image_size < 8:
            raise EdgecnnError(f"preprocess image_size must be an integer >= 8, got {self.image_size!r}")
        if self.channels not in (1, 3):
            raise EdgecnnError(f"preprocess channels must be 1 or 3, got {self.channels!r}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise EdgecnnError(
                f"preprocess mean and std need one value per channel ({self.channels}), "
                f"got {len(self.mean)} and {len(self.std)}"
            )
        if not all(s > 0 for s in self.std):
            raise EdgecnnError(f"preprocess std must be positive, got {self.std}")
        for name, value, allowed in (
            ("interpolation", self.interpolation, INTERPOLATIONS),
            ("layout", self.layout, LAYOUTS),
            ("resize", self.resize, RESIZES),
        ):
            if value not in allowed:
                raise EdgecnnError(f"preprocess {name} must be one of {', '.join(allowed)}, got {value!r}")
        if not self.scale > 0:
            raise EdgecnnError(f"preprocess scale must be positive, got {self.scale!r}")

    # -- (de)serialisation ------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        """Inverse of :meth:`to_dict`; an unknown or mistyped key is an :class:`EdgecnnError`."""
        if not isinstance(data, dict):
            raise EdgecnnError(f"preprocess metadata must be a mapping, got {type(data).__name__}")
        return from_mapping(cls, data, "preprocess")

    @classmethod
    def for_dataset(cls, dataset: DatasetBundle | ImageDataset, image_size: int, channels: int) -> Preprocess:
        """Preprocessing with mean/std of ``dataset``'s training images (a bundle's train pool).

        Statistics are per output channel, over all stored training pixels scaled to
        [0, 1], rounded to 4 decimals (official Fashion-MNIST: hard-coded values).
        """
        from edgecnn.data import fashion_mnist

        train = getattr(dataset, "train", dataset)
        if train.content_hash == fashion_mnist.TRAIN_CONTENT_HASH:
            mean, std = fashion_mnist.MEAN, fashion_mnist.STD
        else:
            mean, std = channel_stats(train.images, channels=1 if channels == 1 else train.images.shape[-1])
        if channels == 3 and len(mean) == 1:
            mean, std = mean * 3, std * 3
        return cls(image_size=image_size, channels=channels, mean=mean, std=std)

    # -- application ------------------------------------------------------------------

    def apply_numpy(self, batch: np.ndarray) -> np.ndarray:
        """uint8 N x H x W x C (C = 1 or 3) -> float32 array in ``layout``; needs no torch."""
        x = _check_batch(np.asarray(batch)).astype(np.float32)  # N x H x W x C
        if self.channels == 1 and x.shape[-1] == 3:
            w = np.asarray(LUMA, dtype=np.float32)
            x = (x[..., 0:1] * w[0] + x[..., 1:2] * w[1]) + x[..., 2:3] * w[2]
        elif self.channels == 3 and x.shape[-1] == 1:
            x = np.repeat(x, 3, axis=-1)
        a, b = self._affine()
        x = x * a + b
        size = self.image_size
        if x.shape[2] != size:
            i0, i1, l0, l1 = _linear_taps(x.shape[2], size)
            x = x[:, :, i0, :] * l0[:, None] + x[:, :, i1, :] * l1[:, None]
        if x.shape[1] != size:
            i0, i1, l0, l1 = _linear_taps(x.shape[1], size)
            x = x[:, i0] * l0[:, None, None] + x[:, i1] * l1[:, None, None]
        if self.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x)

    def apply_torch(self, batch: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 N x H x W x C (numpy or tensor) -> float32 tensor in ``layout``."""
        import torch
        import torch.nn.functional as F

        if isinstance(batch, np.ndarray):
            # A read-only array (a dataset's) would make from_numpy warn; batches are small.
            batch = torch.from_numpy(batch if batch.flags.writeable else batch.copy())
        # Contiguous NCHW throughout: torch's channels-last resize kernel rounds differently.
        x = _check_batch(batch).permute(0, 3, 1, 2).contiguous().float()  # N x C x H x W
        a, b = self._affine()
        replicate = self.channels == 3 and x.shape[1] == 1
        if self.channels == 1 and x.shape[1] == 3:
            w = LUMA
            x = (x[:, 0:1] * w[0] + x[:, 1:2] * w[1]) + x[:, 2:3] * w[2]
        elif replicate and (a == a[0]).all() and (b == b[0]).all():
            a, b = a[:1], b[:1]  # the same result per channel: compute one, copy it at the end
        elif replicate:
            x, replicate = x.expand(-1, 3, -1, -1), False
        a_t, b_t = (torch.from_numpy(v).to(x.device).view(1, -1, 1, 1) for v in (a, b))
        x = x * a_t + b_t
        size = self.image_size
        if x.shape[2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
        if replicate:
            x = x.repeat(1, 3, 1, 1)
        if self.layout == "NHWC":
            x = x.permute(0, 2, 3, 1).contiguous()
        return x

    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        """float32 (a, b) with ``x * a + b == (x * scale - mean) / std`` per channel.

        Applied before resizing, usually on the smaller image (resizing is linear with
        weights summing to 1, so the order changes the result by float rounding only).
        """
        std = np.asarray(self.std)
        return (self.scale / std).astype(np.float32), (-np.asarray(self.mean) / std).astype(np.float32)


def _check_batch(x: Any) -> Any:
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or str(x.dtype) not in ("uint8", "torch.uint8"):
        raise EdgecnnError(
            f"preprocess expects uint8 images shaped N x H x W x C with C 1 or 3, "
            f"got {x.dtype} {tuple(x.shape)}"
        )
    return x


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of 1-D linear resizing, exactly as torch computes them.

    align_corners=False: ``src = scale * (dst + 0.5) - 0.5`` with ``scale = n_in / n_out``
    in float32, clamped at 0; the right tap is clamped to the last pixel. torch's
    compiled kernel evaluates ``src`` as one fused multiply-add (rounded once to float32);
    float64 holds the product of two float32 values exactly, so doing it there and
    rounding once gives the same weights (up to 1e-4 apart from two roundings).
    """
    scale = np.float64(np.float32(n_in) / np.float32(n_out))
    src = (scale * (np.arange(n_out, dtype=np.float64) + 0.5) - 0.5).astype(np.float32)
    src = np.maximum(src, np.float32(0))
    i0 = src.astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    l1 = src - i0.astype(np.float32)
    l0 = np.float32(1) - l1
    return i0, i1, l0, l1


def channel_stats(
    images: np.ndarray, channels: int, chunk: int = 4096
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) of uint8 N x H x W x C images scaled to [0, 1].

    ``channels=1`` with RGB images gives the statistics of their BT.601 luma. Runs in
    chunks (no float copy of the dataset); rounded to 4 decimals, std at least 1e-4.
    """
    c_in = images.shape[-1]
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    count = 0
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].astype(np.float64) / 255.0
        if channels == 1 and c_in == 3:
            x = x @ np.asarray(LUMA)[:, None]
        x = x.reshape(-1, channels)
        total += x.sum(axis=0)
        total_sq += np.square(x).sum(axis=0)
        count += len(x)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
    return (tuple(round(float(m), 4) for m in mean), tuple(max(round(float(s), 4), 1e-4) for s in std))
