"""The stage cache: one key function, one lock, one atomic write, skip what is done.

A stage's result is a folder ``$EDGECNN_HOME/runs/<kind>/<name>-<key>``, where ``key`` is
:func:`stage_key` of everything that decides the result (its inputs). :func:`stage` makes it
at most once:

- under the folder's lock (:func:`edgecnn.outdir.lock`: a second identical run says it is
  waiting, then finds the first run's result), after removing what a killed run left;
- skipped when the folder exists and ``done(folder)`` says it is finished;
- otherwise ``make(dir)`` writes it. By default ``dir`` is a hidden temporary folder renamed
  onto the result when ``make`` returns (:func:`edgecnn.outdir.replace`: the folder is the old
  one or the new one, never half of each). A resumable stage (``writes=``) writes its files
  into the folder itself, each atomically, and resumes from them (:func:`edgecnn.outdir.claim`
  and :func:`~edgecnn.outdir.seal`).

A stage whose result is one JSON value (deploy's evaluate, latency and mixed-precision pricing,
the 224-px frontier's) uses :func:`json_result`: ``runs/<kind>/<key>.json``, the same lock and
atomic write.

Train and QAT resume inside their folders (``writes=``); calibrate and export write atomically.
TensorRT engines are keyed by :func:`stage_key` too (``tensorrt.engine_cache.engine_key``), but
live under ``$EDGECNN_HOME/engines`` with sidecars, since only the device knows their inputs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn import outdir, paths


def stage_key(inputs: Mapping[str, Any], length: int = 12) -> str:
    """The cache key of a stage's inputs: the first ``length`` hex digits of the sha256 of their
    JSON with sorted keys (a value JSON cannot hold, such as a ``Path``, as its ``str``)."""
    text = json.dumps(inputs, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def folder(kind: str, name: str, key: str, runs: str | None = None) -> Path:
    """``$EDGECNN_HOME/runs/<runs or kind>/<name>-<key>`` (``<key>`` with no name)."""
    return paths.runs_dir() / (runs or kind) / (f"{name}-{key}" if name else key)


def _sealed(out: Path) -> bool:
    """Whether a resumable stage finished ``out``: its marker records every file's sha256."""
    marker = outdir.read_marker(out)
    return marker is not None and all(info is not None for info in marker.files.values())


@dataclass(frozen=True)
class Made:
    """Where a stage's result is, its key, and whether it was found done (not made now)."""

    path: Path
    key: str
    cached: bool


def stage(
    kind: str,
    inputs: Mapping[str, Any],
    make: Callable[[Path], Any],
    *,
    name: str = "",
    runs: str | None = None,
    out: str | Path | None = None,
    done: Callable[[Path], bool] | None = None,
    force: bool = False,
    writes: Iterable[str] | None = None,
    what: str = "",
) -> Made:
    """The result of stage ``kind`` for ``inputs`` (see the module doc): made by ``make`` unless done.

    ``kind``: the marker's kind (:mod:`edgecnn.outdir`); ``runs``: the folder under ``runs/``
    when it is not ``kind``; ``out``: a folder the user chose instead; ``done``: whether an
    existing folder is this stage's finished result (default: an atomic folder is finished once it
    exists, a resumable one once :func:`edgecnn.outdir.seal` recorded its files); ``force``: make it
    again; ``writes``: the files of a resumable stage (None: an atomic folder); ``what``: how
    the wait message names it."""
    key = stage_key(inputs)
    out = Path(out) if out is not None else folder(kind, name, key, runs)
    writes = None if writes is None else list(writes)
    outdir.check(out, kind, writes or ())  # a folder of yours is refused before any wait
    with outdir.lock(out, what or f"the {kind} result {out.name}"):
        outdir.clean(out, writes or ())
        finished = done or (_sealed if writes is not None else Path.is_dir)
        if not force and out.is_dir() and finished(out):
            return Made(out, key, True)
        if writes is None:
            with outdir.replace(out, kind) as tmp:
                make(tmp)
        else:
            outdir.claim(out, kind, writes)
            make(out)
            outdir.seal(out, kind)
    return Made(out, key, False)


def json_result(kind: str, key: str, force: bool, make: Callable[[], Any]) -> tuple[Any, bool, Path]:
    """(value, cached, path) of a JSON stage result ``runs/<kind>/<key>.json``: read back unless
    ``force`` or unreadable, else ``make()`` written atomically, under the file's lock (a second
    identical run waits, then reads it)."""
    from edgecnn.fileio import atomic_write_json

    path = paths.runs_dir() / kind / f"{key}.json"
    with outdir.lock(path, f"the {kind} result {key}"):
        outdir.clean(path)
        if not force and path.is_file():
            try:
                return json.loads(path.read_text()), True, path
            except (OSError, ValueError):
                pass  # a damaged result is made again
        value = make()
        atomic_write_json(path, value)
    return value, False, path
