"""Where edgecnn keeps its cache: ``$EDGECNN_HOME`` or the user cache directory."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The root of edgecnn's cache (weights, datasets, runs).

    ``EDGECNN_HOME`` wins; else ``$XDG_CACHE_HOME/edgecnn``; else ``~/.cache/edgecnn``.
    """
    env = os.environ.get("EDGECNN_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "edgecnn"


def weights_dir() -> Path:
    return home() / "weights"


def datasets_dir() -> Path:
    return home() / "datasets"


def runs_dir() -> Path:
    return home() / "runs"
