"""Which loader a ``--data`` value names: Fashion-MNIST by name, or an ImageFolder by path."""

from __future__ import annotations

import os
from pathlib import Path

from edgecnn.data.dataset import FASHION_MNIST, DatasetBundle
from edgecnn.data.fashion_mnist import load_fashion_mnist
from edgecnn.data.imagefolder import load_imagefolder
from edgecnn.errors import EdgecnnError, suggest


def load_dataset(data: str | os.PathLike | None, *, download: bool = True) -> DatasetBundle:
    """``None`` or ``"fashion-mnist"``: Fashion-MNIST; a directory: an ImageFolder.

    A directory literally named ``fashion-mnist`` in the working directory is reached
    as ``./fashion-mnist``. ``download`` lets Fashion-MNIST be fetched when not found.
    """
    if data is None or str(data).lower() == FASHION_MNIST:
        return load_fashion_mnist(download=download)
    text = str(data)
    if Path(text).expanduser().exists() or any(c in text for c in "/\\~") or text.startswith("."):
        return load_imagefolder(Path(text).expanduser())
    raise EdgecnnError(
        f"unknown dataset '{text}': pass {FASHION_MNIST} or a path to an ImageFolder directory"
        f"{suggest(text, [FASHION_MNIST])}"
    )
