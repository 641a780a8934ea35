"""INT8 numerics: where an exported artifact departs from the quantized graph it was made from.

:mod:`edgecnn.numerics.reference` names the quantized tensors of a converted PT2E graph (its
activation quantize ops) and computes them in the fake-quant graph and in float;
:mod:`edgecnn.numerics.expose` reads the same tensors out of OpenVINO, ONNX Runtime, LiteRT and
TensorRT; :mod:`edgecnn.numerics.diagnose` compares them layer by layer (``edgecnn diagnose``),
with the runtime here or, through :mod:`edgecnn.numerics.remote`, on a device over SSH.
"""

from __future__ import annotations

import os
from pathlib import Path


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` to ``path`` atomically, in the format its suffix names (.png, .svg, .pdf), and close
    it."""
    from edgecnn.fileio import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=path.suffix.lstrip(".") or "png")
    pyplot().close(fig)
    return path


def fmt_db(x: float | None) -> str:
    """An SQNR for a table: None means the two tensors were identical."""
    return "identical" if x is None else f"{x:.1f}"
