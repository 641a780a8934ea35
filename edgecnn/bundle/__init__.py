"""A deploy bundle: the folder ``edgecnn deploy`` writes for one run, and what it holds.

- ``artifact/``: the exported artifact, hard-linked (or copied) from the export stage's folder;
- ``report.json``: the run's :class:`edgecnn.results.Report` (schema ``edgecnn.report/1``);
- ``report.md`` and ``RUN.md``: rendered from the report by :mod:`edgecnn.bundle.render`;
- ``predict.py``: a copy of :mod:`edgecnn.bundle.runner`, which classifies image files with the
  artifact in its runtime (no torch).

The folder follows :mod:`edgecnn.outdir`: written to a temporary folder beside ``out`` and renamed
into place, keeping the user's own files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from edgecnn import outdir
from edgecnn.bundle.render import report_md, run_md
from edgecnn.results import Report

ARTIFACT = "artifact"
REPORT = "report.json"
REPORT_MD = "report.md"
PREDICT = "predict.py"
RUN_MD = "RUN.md"
FILES = (f"{ARTIFACT}/", REPORT, REPORT_MD, PREDICT, RUN_MD)  # everything a bundle's writer owns
RUNNER = Path(__file__).with_name("runner.py")  # copied into the bundle as predict.py


def write_bundle(out: Path, art_dir: Path, report: Report) -> None:
    """Write the bundle ``out`` (atomically, see :func:`edgecnn.outdir.replace`) for ``report``."""
    from edgecnn.fileio import atomic_write_json, atomic_write_text

    with outdir.replace(out, "deploy") as tmp:
        link_or_copy(art_dir, tmp / ARTIFACT)
        atomic_write_json(tmp / REPORT, report.to_json())
        atomic_write_text(tmp / REPORT_MD, report_md(report))
        atomic_write_text(tmp / PREDICT, RUNNER.read_text())
        atomic_write_text(tmp / RUN_MD, run_md(report))


def link_or_copy(src: Path, dest: Path) -> None:
    """The files of ``src`` (not its outdir marker) in a new folder ``dest``: hard links where the
    filesystem allows, else copies."""
    dest.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.name != outdir.MARKER:
            try:
                os.link(f, dest / f.name)
            except OSError:
                shutil.copy2(f, dest / f.name)
