"""Published ImageNet weights (torchvision's IMAGENET1K_V1 files) and their download cache.

Each file is pinned by its full sha256. torchvision itself only checks the first 8 hex
digits, which it puts in the file name (``resnet18-f37072fd.pth``); the full digests
below were taken from independent public manifests that pin these exact files, and each
starts with the prefix in its file name (three of the four also match the byte size
torchvision publishes as ``_file_size``). A :class:`PublishedWeights` without a full
digest (``sha256=None``) is verified the way ``torch.hub`` does it: the sha256 of the
downloaded file must start with ``sha256_prefix``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgecnn import paths
from edgecnn.download import download
from edgecnn.errors import EdgecnnError, suggest
from edgecnn.fileio import sha256_file

BASE_URL = "https://download.pytorch.org/models/"


@dataclass(frozen=True)
class PublishedWeights:
    """A published weights file with its checksum and the accuracy its publisher reports.

    ``top1``/``top5`` are the publisher's ImageNet-1k validation figures (FP32, 224 px
    centre crop), not figures measured by edgecnn.
    """

    url: str
    filename: str
    sha256: str | None
    sha256_prefix: str
    num_classes: int
    top1: float
    top5: float
    source: str

    def __post_init__(self):
        if self.sha256 is not None and not self.sha256.startswith(self.sha256_prefix):
            raise ValueError(f"sha256 of {self.filename} does not start with its prefix {self.sha256_prefix}")


def _torchvision(filename: str, sha256: str, top1: float, top5: float, enum: str) -> PublishedWeights:
    prefix = filename.rsplit("-", 1)[1].split(".")[0]
    return PublishedWeights(
        url=BASE_URL + filename,
        filename=filename,
        sha256=sha256,
        sha256_prefix=prefix,
        num_classes=1000,
        top1=top1,
        top5=top5,
        source=f"torchvision {enum}.IMAGENET1K_V1",
    )


PUBLISHED: dict[str, PublishedWeights] = {
    "alexnet": _torchvision(
        "alexnet-owt-7be5be79.pth",
        "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
        56.522,
        79.066,
        "AlexNet_Weights",
    ),
    "vgg16": _torchvision(
        "vgg16-397923af.pth",
        "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
        71.592,
        90.382,
        "VGG16_Weights",
    ),
    "resnet18": _torchvision(
        "resnet18-f37072fd.pth",
        "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec",
        69.758,
        89.078,
        "ResNet18_Weights",
    ),
    # The file also holds the (untrained) auxiliary classifiers aux1/aux2.
    "googlenet": _torchvision(
        "googlenet-1378be20.pth",
        "1378be20a8e875cf1568b8a71654e704449655e34711a959a38b04fb34905cef",
        69.778,
        89.530,
        "GoogLeNet_Weights",
    ),
}


def published_weights(arch: str) -> PublishedWeights:
    """The published ImageNet weights of ``arch``; EdgecnnError when there are none."""
    try:
        return PUBLISHED[arch]
    except KeyError:
        raise EdgecnnError(
            f"no published ImageNet weights for '{arch}'; published: {', '.join(PUBLISHED)}."
            f"{suggest(arch, PUBLISHED)}"
        ) from None


def _verified(path: Path, w: PublishedWeights) -> bool:
    digest = sha256_file(path)
    return digest == w.sha256 if w.sha256 is not None else digest.startswith(w.sha256_prefix)


def fetch_published(weights: str | PublishedWeights, *, cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the verified weights file, downloading it into the cache when needed.

    ``weights`` is an architecture name or a :class:`PublishedWeights` (whose ``url`` may
    point anywhere). The cache is ``cache_dir`` or :func:`edgecnn.paths.weights_dir`. A
    cached file is reused only when its checksum matches; a bad download leaves nothing
    behind and the error says which URL to fetch by hand and where to put it.
    """
    w = weights if isinstance(weights, PublishedWeights) else published_weights(weights)
    dest = Path(cache_dir) if cache_dir is not None else paths.weights_dir()
    dest = dest / w.filename
    if dest.is_file():
        if _verified(dest, w):
            return dest
        dest.unlink()  # stale or damaged: fetch it again
    download(w.url, dest, w.sha256)
    if w.sha256 is None and not _verified(dest, w):
        dest.unlink()
        raise EdgecnnError(
            f"checksum mismatch for {w.url}: its sha256 does not start with {w.sha256_prefix}; "
            f"the file was removed; fetch {w.url} by hand and put it at {dest}"
        )
    return dest
