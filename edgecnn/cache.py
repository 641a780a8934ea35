"""``edgecnn cache``: what ``$EDGECNN_HOME`` holds, and pruning what nothing needs any more.

Each entry is one stage result under ``runs/<kind>/`` (or a weights file, a dataset, a
TensorRT engine, a device record) with its size, what made it and a status:

- ``kept``: a training run, a deploy bundle, a frontier result, weights, datasets, engines,
  device records and logs, a stage result made by its own command (``edgecnn export``,
  ``calibrate``, ``qat``), and everything one of those refers to (a bundle's artifact,
  calibration, accuracy and latency; an artifact's quantized graph; a QAT run's calibration);
- ``unreferenced``: a stage result made on the way to a bundle or frontier that nothing
  kept refers to any more (the recipe or edgecnn changed, the bundle went);
- ``incomplete``: a run killed before it finished that cannot resume (a calibration
  without its report, an artifact without ``metadata.json``);
- ``in use``: a running edgecnn holds its lock; never touched.

:func:`prune` removes the unreferenced and incomplete entries and the stale temporaries (what
killed runs left: ``.NAME.XXXXXXXX.tmp`` files and hidden temporary folders) whose stage is
not running. Nothing outside ``$EDGECNN_HOME`` is touched.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn import outdir, paths
from edgecnn.errors import EdgecnnError

# runs/<kind>: whether its entries are kept for their own sake (roots)
RUN_KINDS = {
    "train": True,
    "deploy": True,
    "frontier": True,
    "calibrate": False,
    "qat": False,
    "fp32": False,
    "artifacts": False,
    "onnx": False,
    "evaluate": False,
    "latency": False,
}
OTHER_KINDS = ("weights", "datasets", "engines", "devices", "logs")  # kept, listed per entry
OWN_COMMAND = {"calibrate": "calibrate", "qat": "qat", "artifacts": "export"}
# what a finished (or resumable) entry holds; an entry without any of these is incomplete
DONE = {
    "train": ("model.pt", "state.pt"),
    "calibrate": ("calibrate.json",),
    "qat": ("qat.json", "state.pt"),
    "fp32": ("fp32.json",),
    "artifacts": ("metadata.json",),
    "deploy": ("report.json",),
}
TMP_FILE = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")
TMP_DIR = re.compile(r"^\.(?P<name>.+?)(\.edgecnn-tmp-[a-z0-9_]{8}|\.[a-z0-9_]{8}|\.old|\.edgecnn-old)$")
STALE_AFTER_S = 3600  # a temporary of an unlocked writer (a download) is stale after an hour


@dataclass(frozen=True)
class Entry:
    kind: str
    path: Path
    size_bytes: int
    made_by: str
    created: str
    status: str  # kept | unreferenced | incomplete | in use
    why: str

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "made_by": self.made_by,
            "created": self.created,
            "status": self.status,
            "why": self.why,
        }


@dataclass(frozen=True)
class Temporary:
    path: Path
    size_bytes: int
    owner: Path  # the folder or file the killed run was writing
    status: str  # stale | in use

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "owner": str(self.owner),
            "status": self.status,
        }


@dataclass(frozen=True)
class Listing:
    home: Path
    entries: tuple[Entry, ...]
    temporaries: tuple[Temporary, ...]

    @property
    def total_bytes(self) -> int:
        return sum(e.size_bytes for e in self.entries) + sum(t.size_bytes for t in self.temporaries)

    def prunable(self) -> list[Entry | Temporary]:
        return [e for e in self.entries if e.status in ("unreferenced", "incomplete")] + [
            t for t in self.temporaries if t.status == "stale"
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "edgecnn.cache/1",
            "home": str(self.home),
            "total_bytes": self.total_bytes,
            "entries": [e.to_json() for e in self.entries],
            "temporaries": [t.to_json() for t in self.temporaries],
        }


@dataclass(frozen=True)
class Pruned:
    home: Path
    dry_run: bool
    removed: tuple[Entry | Temporary, ...]

    @property
    def freed_bytes(self) -> int:
        return sum(r.size_bytes for r in self.removed)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "edgecnn.cache-prune/1",
            "home": str(self.home),
            "dry_run": self.dry_run,
            "freed_bytes": self.freed_bytes,
            "removed": [r.to_json() for r in self.removed],
        }


# ---------------------------------------------------------------- reading the cache


def size_of(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_symlink() or p.is_file())


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _entries_of(home: Path) -> Iterator[tuple[str, Path]]:
    runs = home / "runs"
    for kind in RUN_KINDS:
        if (runs / kind).is_dir():
            yield from ((kind, p) for p in sorted((runs / kind).iterdir()) if not p.name.startswith("."))
    for kind in OTHER_KINDS:
        if (home / kind).is_dir():
            yield from ((kind, p) for p in sorted((home / kind).iterdir()) if not p.name.startswith("."))


def _made_by(kind: str, path: Path) -> tuple[str, str]:
    """(what made it, when) from its marker, its own record, or its kind."""
    marker = outdir.read_marker(path) if path.is_dir() else None
    if marker is not None and marker.command:
        return marker.command, marker.created
    when = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(path.lstat().st_mtime))
    if kind == "frontier":
        return str((_json(path) or {}).get("command") or "edgecnn frontier"), when
    if kind in ("evaluate", "latency"):
        return f"edgecnn deploy ({kind} stage)", when
    if kind == "fp32":
        return "edgecnn calibrate, qat or export (FP32 reference of a float model)", when
    if kind == "onnx":
        return "edgecnn export (one graph's ONNX, shared by the runtimes made from it)", when
    if kind in RUN_KINDS:
        return f"edgecnn {OWN_COMMAND.get(kind, kind)} (before markers)", when
    return f"edgecnn ({kind})", when


def _refs(kind: str, path: Path) -> list[Path]:
    """The cache entries (or outside bundles) that ``path`` refers to."""
    out: list[str | None] = []
    if kind == "deploy" or (kind == "bundle" and path.is_dir()):
        r = _json(path / "report.json") or {}
        out += [(s or {}).get("dir") for s in (r.get("stages") or {}).values() if isinstance(s, dict)]
    elif kind == "frontier":
        out += [p.get("bundle") for p in (_json(path) or {}).get("points") or [] if isinstance(p, dict)]
    elif kind == "artifacts":
        meta = _json(path / "metadata.json") or {}
        src = meta.get("source") or {}
        out += [str(Path(q).parent) for q in (src.get("quantized_graph"), src.get("checkpoint")) if q]
        if meta.get("stage_key"):  # the shared ONNX export it was made from (export.shared_onnx)
            out += [str(p) for p in path.parent.parent.glob(f"onnx/{meta['stage_key']}-*.onnx")]
    elif kind == "qat":
        out.append(((_json(path / "qat.json") or {}).get("ptq") or {}).get("dir"))
    if kind in ("calibrate", "qat", "artifacts"):  # the FP32 reference of its float model
        r = _json(path / ("metadata.json" if kind == "artifacts" else f"{kind}.json")) or {}
        sha = (r.get("source") or {}).get("sha256")
        if sha:
            out += [str(p) for p in path.parent.parent.glob(f"fp32/{r.get('arch')}-{sha[:12]}-*")]
    return [Path(p) for p in out if p]


def _kind_of(path: Path, home: Path) -> str:
    try:
        rel = path.resolve().relative_to((home / "runs").resolve())
    except ValueError:
        return "bundle"  # a deploy bundle outside the cache, named by a frontier
    return rel.parts[0] if rel.parts else ""


def _reachable(roots: Iterable[tuple[str, Path]], home: Path) -> set[Path]:
    seen: set[Path] = set()
    todo = [(k, p.resolve()) for k, p in roots]
    while todo:
        kind, p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        for q in _refs(kind, p):
            if q.exists():
                todo.append((_kind_of(q, home), q.resolve()))
    return seen


def _is_root(kind: str, path: Path) -> bool:
    if kind in OTHER_KINDS or RUN_KINDS.get(kind):
        return True
    marker = outdir.read_marker(path) if path.is_dir() else None
    own = OWN_COMMAND.get(kind)
    return bool(own and marker and marker.command.split()[1:2] == [own])


def _incomplete(kind: str, path: Path) -> bool:
    if kind in DONE:
        return not path.is_dir() or not any((path / f).exists() for f in DONE[kind])
    if kind in ("evaluate", "latency", "frontier"):
        return not isinstance(_json(path), dict)
    return False


def _status(kind: str, path: Path, kept: set[Path]) -> tuple[str, str]:
    if outdir.is_locked(path):
        return "in use", "a running edgecnn holds its lock"
    if _incomplete(kind, path):
        return "incomplete", "a run stopped before it finished and cannot resume from it"
    if _is_root(kind, path):
        return "kept", "a result of its own"
    if path.resolve() in kept:
        return "kept", "a kept result refers to it"
    return "unreferenced", "no training run, bundle, frontier or command of its own refers to it"


def _find_temporaries(home: Path) -> Iterator[tuple[Path, str]]:
    """(temporary, the name of what it was to become) anywhere under ``home`` but the locks."""
    import os

    for root, dirs, files in os.walk(home):
        r = Path(root)
        if r == home and "locks" in dirs:
            dirs.remove("locks")
        for d in list(dirs):
            if m := TMP_DIR.match(d):
                dirs.remove(d)  # what lies inside a temporary folder goes with it
                yield r / d, m.group("name")
        yield from ((r / f, m.group("name")) for f in files if (m := TMP_FILE.match(f)))


def _temporaries(home: Path) -> Iterator[Temporary]:
    runs = home / "runs"
    for p, name in _find_temporaries(home):
        inside_entry = p.parent.parent.parent == runs and p.is_file()  # runs/<kind>/<entry>/.x.XXXXXXXX.tmp
        owner = p.parent if inside_entry else p.parent / name
        if outdir.is_locked(owner):
            status = "in use"
        elif runs in p.parents or time.time() - p.lstat().st_mtime > STALE_AFTER_S:
            status = "stale"
        else:
            status = "in use"  # a download takes no lock: it may still be writing it
        yield Temporary(p, size_of(p), owner, status)


def scan(home: Path | None = None) -> Listing:
    """Every entry of ``home`` (default ``$EDGECNN_HOME``) with its status, and the temporaries."""
    home = Path(home) if home is not None else paths.home()
    if home.exists() and not home.is_dir():
        raise EdgecnnError(f"EDGECNN_HOME {home} is a file: edgecnn keeps its cache in a folder there")
    if not home.is_dir():
        return Listing(home, (), ())
    found = list(_entries_of(home))
    roots = [(k, p) for k, p in found if _is_root(k, p) and not _incomplete(k, p)]
    kept = _reachable(roots, home)
    entries = []
    for kind, p in found:
        made_by, created = _made_by(kind, p)
        status, why = _status(kind, p, kept)
        entries.append(Entry(kind, p, size_of(p), made_by, created, status, why))
    return Listing(home, tuple(entries), tuple(_temporaries(home)))


# ---------------------------------------------------------------- pruning


def _remove(item: Entry | Temporary) -> bool:
    """Remove one prunable item unless a run took its lock meanwhile; True when it went."""
    owner = item.owner if isinstance(item, Temporary) else item.path
    if outdir.is_locked(owner):
        return False
    with outdir.lock(owner, "the cache prune"):
        if isinstance(item, Temporary) and item.path.name.endswith(outdir.OLD_TAG):
            outdir.recover(owner)  # a swap cut short: the old folder goes back, or its extra files move over
        elif item.path.is_dir() and not item.path.is_symlink():
            shutil.rmtree(item.path)
        else:
            item.path.unlink(missing_ok=True)
    return True


def prune(*, dry_run: bool = False, home: Path | None = None) -> Pruned:
    """Remove the unreferenced and incomplete entries and the stale temporaries (see the module doc)."""
    listing = scan(home)
    todo = listing.prunable()
    if dry_run:
        return Pruned(listing.home, True, tuple(todo))
    return Pruned(listing.home, False, tuple(item for item in todo if _remove(item)))
