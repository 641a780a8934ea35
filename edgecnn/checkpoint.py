"""The edgecnn checkpoint: weights plus everything needed to rebuild and use the model.

A checkpoint is a ``torch.save``'d dict::

    {"format": "edgecnn.checkpoint/1", "arch": "resnet18", "model_options": {...},
     "state_dict": {...}, **extra}

``model_options`` are the keyword options of :func:`edgecnn.models.create`; ``extra`` is
whatever the caller adds (preprocessing, classes, metrics, optimizer state, epoch, ...)
and must be tensors and plain Python values, so that it loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from edgecnn.errors import EdgecnnError
from edgecnn.fileio import atomic_path

FORMAT = "edgecnn.checkpoint/1"
_RESERVED = ("format", "arch", "model_options", "state_dict")


def is_edgecnn_checkpoint(obj: Any) -> bool:
    """True for a dict written by :func:`save_checkpoint` (any format version)."""
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("format"), str)
        and obj["format"].startswith("edgecnn.checkpoint/")
        and "state_dict" in obj
    )


def save_checkpoint(
    path: str | os.PathLike,
    *,
    arch: str,
    model_options: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    **extra: Any,
) -> Path:
    """Write a checkpoint atomically: ``path`` is either the old file or the complete new one."""
    clash = [k for k in extra if k in _RESERVED]
    if clash:
        raise TypeError(f"save_checkpoint: reserved key(s) in extra: {', '.join(clash)}")
    obj = {
        "format": FORMAT,
        "arch": arch,
        "model_options": dict(model_options),
        "state_dict": dict(state_dict),
        **extra,
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


def read_torch_file(path: str | os.PathLike) -> Any:
    """``torch.load(weights_only=True)`` on CPU, with one-line errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise EdgecnnError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a torch file, unpickling refused, ...
        raise EdgecnnError(f"cannot read checkpoint {path}: {_why_unreadable(e)}") from e


def _why_unreadable(e: Exception) -> str:
    """What went wrong in torch.load, in edgecnn's words (torch's own text advises weights_only=False)."""
    text = str(e)
    redo = "re-download or re-train it"
    if isinstance(e, pickle.UnpicklingError):
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if found:
            return (
                f"it asks to import {found.group(1)} when unpickled, which can run code, so edgecnn refused "
                f"it (it loads only tensors and plain values); use weights saved as a state_dict "
                f"(torch.save(model.state_dict(), PATH)) or an edgecnn checkpoint, from a source you trust"
            )
        return f"not a PyTorch weights file, or damaged; {redo}"
    if isinstance(e, EOFError) or "zip archive" in text or "central directory" in text:
        return f"the file is empty, cut short or damaged; {redo}"
    return f"not a PyTorch weights file ({type(e).__name__}); {redo}"


def validate_checkpoint(obj: Any, path: str | os.PathLike) -> dict[str, Any]:
    """``obj`` (read from ``path``) if it is an edgecnn checkpoint this version reads, else EdgecnnError."""
    if not is_edgecnn_checkpoint(obj):
        raise EdgecnnError(
            f"cannot read checkpoint {path}: not an edgecnn checkpoint (no '{FORMAT}' format tag); "
            "re-download or re-train it"
        )
    if obj["format"] != FORMAT:
        raise EdgecnnError(
            f"checkpoint {path} has format {obj['format']}; this edgecnn reads {FORMAT}: upgrade it"
        )
    return obj


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read an edgecnn checkpoint; EdgecnnError when missing, damaged or not an edgecnn checkpoint."""
    return validate_checkpoint(read_torch_file(path), path)
