"""Published latencies (``devices/published/*.csv``): the cited figures the device predictor fits to.

Each row names its source (URL and title), the runtime and its version, threads, resolution,
precision and batch. Rows with ``fit = yes`` become ``[[calibration_points]]`` of the profile the
``device`` column names; the others stay in the file for the record, with the reason. None of
them was measured by edgecnn, and nothing prints one as measured.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

from edgecnn.devices.profile import DEVICES_DIR, CalibrationPoint
from edgecnn.errors import EdgecnnError

PUBLISHED_DIR = DEVICES_DIR / "published"
COLUMNS = (
    "device",
    "arch",
    "runtime",
    "runtime_version",
    "threads",
    "image_size",
    "precision",
    "batch",
    "latency_ms",
    "fit",
    "source_url",
    "source_title",
    "note",
)


@dataclass(frozen=True)
class PublishedFigure:
    """One row of a ``devices/published`` CSV."""

    device: str
    arch: str
    runtime: str
    runtime_version: str
    threads: int | None
    image_size: int
    precision: str
    batch: int
    latency_ms: float
    fit: bool
    source_url: str
    source_title: str
    note: str
    file: str

    def point(self) -> CalibrationPoint:
        return CalibrationPoint(
            arch=self.arch,
            runtime=self.runtime,
            precision=self.precision,
            latency_ms=self.latency_ms,
            measured_with=self.runtime_version,
            source=f"{self.source_title} <{self.source_url}> ({self.file})",
            batch=self.batch,
            image_size=self.image_size,
            threads=self.threads,
        )


def _row(row: dict[str, str], where: str) -> PublishedFigure:
    missing = [c for c in COLUMNS if c not in row]
    if missing:
        raise EdgecnnError(f"{where}: missing column '{missing[0]}' (columns: {', '.join(COLUMNS)})")
    try:
        fig = PublishedFigure(
            device=row["device"],
            arch=row["arch"],
            runtime=row["runtime"],
            runtime_version=row["runtime_version"],
            threads=int(row["threads"]) if row["threads"] else None,
            image_size=int(row["image_size"]),
            precision=row["precision"],
            batch=int(row["batch"]),
            latency_ms=float(row["latency_ms"]),
            fit={"yes": True, "no": False}[row["fit"]],
            source_url=row["source_url"],
            source_title=row["source_title"],
            note=row["note"],
            file=where.split(":")[0],
        )
    except (KeyError, ValueError) as e:
        raise EdgecnnError(f"{where}: bad value ({e}); fit is yes or no, numbers are numbers") from None
    if not fig.source_url or fig.latency_ms <= 0:
        raise EdgecnnError(f"{where}: every figure needs a source_url and a positive latency_ms")
    return fig


@functools.cache
def published_figures(directory: str = str(PUBLISHED_DIR)) -> tuple[PublishedFigure, ...]:
    """Every row of every ``*.csv`` in ``directory``."""
    out = []
    for path in sorted(Path(directory).glob("*.csv")):
        with path.open(newline="") as f:
            for i, row in enumerate(csv.DictReader(f), 2):
                out.append(_row(row, f"devices/published/{path.name}:{i}"))
    return tuple(out)


def published_points(device: str, runtime: str) -> tuple[CalibrationPoint, ...]:
    """The ``fit = yes`` figures of ``device`` in ``runtime``, as calibration points."""
    return tuple(
        f.point() for f in published_figures() if f.fit and f.device == device and f.runtime == runtime
    )
