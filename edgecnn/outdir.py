"""Every folder edgecnn writes: who owns it, how it is replaced, who may write it now.

The rule (README "Output folders"): a folder is edgecnn's only when edgecnn made it and left
its marker ``.edgecnn-out.json`` there, recording the command kind and every file it wrote
(sha256, size, mtime). A ``metadata.json`` or a ``report.json`` alone never makes a folder
edgecnn's. Then:

- a new or empty folder becomes edgecnn's;
- a non-empty folder without the marker is refused with a one-line error, ``--force`` too
  (``--force`` redoes edgecnn's work, it never deletes anybody else's);
- in edgecnn's folder a re-run replaces only the files edgecnn wrote; every other file
  (yours) is kept byte for byte. A file of yours where edgecnn would write, or a file
  edgecnn wrote that was changed since, is refused by name;
- a folder under ``$EDGECNN_HOME`` made before markers existed counts as edgecnn's: the
  cache is edgecnn's.

Two ways to write:

- :func:`replace` (export, deploy, frontier): the new files go to a hidden temporary folder
  beside ``out``; the user's files are hard-linked (or copied) into it, and one rename
  swaps it in. ``out`` is the old folder or the new one, never half of each.
- :func:`claim` / :func:`seal` (train, calibrate, qat): a stage that writes its folder file
  by file (each atomically) and resumes from it.

:func:`hold` takes the per-folder lock (``fcntl``, under ``$EDGECNN_HOME/locks``) for the
rest of a :func:`holding_locks` function: a second identical run says it is waiting, then
finds the first run's result. Holding the lock, it removes what a killed run left (its
``.NAME.*.tmp`` files and hidden temporary folders).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.errors import EdgecnnError
from edgecnn.fileio import atomic_write_json, disk_errors, sha256_file

MARKER = ".edgecnn-out.json"
SCHEMA = "edgecnn.out/1"
TMP_TAG = ".edgecnn-tmp-"  # hidden temporary folders: .<name>.edgecnn-tmp-XXXXXXXX
OLD_TAG = ".edgecnn-old"  # the previous folder while it is swapped out: .<name>.edgecnn-old


# ---------------------------------------------------------------- the marker


@dataclass(frozen=True)
class Marker:
    """What edgecnn wrote into a folder: ``files`` maps a relative path to its
    {sha256, size, mtime_ns}, or to None while a stage is still writing it."""

    kind: str
    files: dict[str, dict[str, Any] | None]
    command: str = ""
    created: str = ""
    legacy: bool = False  # a folder under $EDGECNN_HOME from before markers

    def to_json(self) -> dict[str, Any]:
        from edgecnn.version import __version__

        return {
            "schema": SCHEMA,
            "kind": self.kind,
            "command": self.command,
            "created": self.created,
            "edgecnn": __version__,
            "files": self.files,
        }


def read_marker(folder: Path) -> Marker | None:
    """The folder's marker, or None when it has none (or one edgecnn cannot read)."""
    try:
        d = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(d, dict) and d.get("schema") == SCHEMA and isinstance(d.get("files"), dict)):
        return None
    return Marker(
        str(d.get("kind")), dict(d["files"]), str(d.get("command") or ""), str(d.get("created") or "")
    )


COMMAND: ContextVar[str | None] = ContextVar("edgecnn_command", default=None)  # set by the CLI


def _command() -> str:
    """The command line that made a folder: the CLI's (:data:`COMMAND`), else this process's."""
    import shlex

    if cmd := COMMAND.get():
        return cmd
    return " ".join(shlex.quote(a) for a in sys.argv)


def _file_info(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"sha256": sha256_file(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _unchanged(path: Path, info: dict[str, Any] | None) -> bool:
    """Whether ``path`` is still the file edgecnn wrote (None: edgecnn is writing it)."""
    if path.is_symlink() or not path.is_file():
        return False
    if info is None:
        return True
    st = path.stat()
    if st.st_size != info.get("size"):
        return False
    return st.st_mtime_ns == info.get("mtime_ns") or sha256_file(path) == info.get("sha256")


def _write_marker(
    folder: Path, kind: str, files: dict[str, dict[str, Any] | None], created: str = ""
) -> None:
    m = Marker(kind, dict(sorted(files.items())), _command(), created or time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    atomic_write_json(folder / MARKER, m.to_json())


# ---------------------------------------------------------------- who owns a folder


def in_home(path: Path) -> bool:
    from edgecnn import paths

    return path.resolve().is_relative_to(paths.home().resolve())


def entries(folder: Path) -> list[str]:
    """Relative paths of the files, links and empty folders under ``folder`` (the marker left out)."""
    found: list[str] = []
    for root, dirs, files in os.walk(folder):
        r = Path(root)
        for d in list(dirs):
            if (r / d).is_symlink():
                dirs.remove(d)
                files.append(d)
        found += [(r / f).relative_to(folder).as_posix() for f in files]
        if not dirs and not files and r != folder:
            found.append(r.relative_to(folder).as_posix())
    return sorted(e for e in found if e != MARKER)


@dataclass(frozen=True)
class Status:
    """A folder as edgecnn finds it: its marker (None: new or empty), the entries not edgecnn's."""

    path: Path
    marker: Marker | None
    foreign: list[str] = field(default_factory=list)

    def ours(self) -> list[str]:
        return [] if self.marker is None else [f for f in self.marker.files if f not in self.foreign]


def _names(items: list[str], n: int = 3) -> str:
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def status(out: Path, kind: str) -> Status:
    """Who owns ``out``; refuse a file, a foreign non-empty folder, or edgecnn's folder of another kind."""
    out = Path(out)
    if out.is_symlink() and not out.exists() or out.exists() and not out.is_dir():
        raise EdgecnnError(f"--out {out} is a file, not a folder; pass a folder")
    if not out.exists():
        return Status(out, None)
    found = entries(out)
    marker = read_marker(out)
    if marker is None and found and in_home(out):
        marker = Marker(kind, dict.fromkeys(found), legacy=True)
    if not found and marker is None:
        return Status(out, None)
    if marker is None:
        raise EdgecnnError(
            f"{out} holds files edgecnn did not write ({_names(found)}; no {MARKER}): edgecnn "
            f"never writes into a folder of yours, --force included; pass a new or empty folder"
        )
    if marker.kind != kind:
        raise EdgecnnError(f"{out} holds edgecnn's {marker.kind} output, not a {kind}; pass another folder")
    ours = {f for f, info in marker.files.items() if f in found and _unchanged(out / f, info)}
    return Status(out, marker, [f for f in found if f not in ours])


def _clashes(foreign: Iterable[str], writes: Iterable[str]) -> list[str]:
    """Foreign entries edgecnn would overwrite: the same path, a file where edgecnn needs a
    folder, or one inside a path edgecnn writes as a file (``writes``: a name ending in ``/`` is a folder)."""
    files = {w for w in writes if not w.endswith("/")}
    parents = {p.as_posix() for w in writes for p in Path(w.rstrip("/") + "/x").parents} - {"."}
    return [
        f
        for f in foreign
        if f in files or f in parents or any(p.as_posix() in files for p in Path(f).parents)
    ]


def check(out: Path, kind: str, writes: Iterable[str] = ()) -> Status:
    """Refuse ``out`` before any work starts (see :func:`status`), and refuse a foreign
    entry at a path edgecnn writes (``writes``: relative paths; a folder name covers it)."""
    st = status(out, kind)
    clash = _clashes(st.foreign, writes)
    if clash:
        raise EdgecnnError(
            f"{out / clash[0]} is not a file edgecnn wrote (yours, or changed since edgecnn wrote it) "
            f"and edgecnn would write there; move it out of {out} or pass another folder"
        )
    return st


# ---------------------------------------------------------------- replacing a folder whole


def _mode_like(tmp: Path, out: Path) -> None:
    """mkdtemp makes 0700 folders: give the new folder the old one's mode, or the umask's."""
    if out.is_dir():
        mode = out.stat().st_mode & 0o7777
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o777 & ~umask
    os.chmod(tmp, mode)


def _keep(src: Path, dest: Path) -> None:
    """Put the user's entry ``src`` at ``dest`` too: a hard link (a copy where links fail)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        os.symlink(os.readlink(src), dest)
    elif src.is_dir():
        dest.mkdir(exist_ok=True)
    else:
        try:
            os.link(src, dest)
        except OSError:
            shutil.copy2(src, dest)


def _tree_info(folder: Path) -> dict[str, dict[str, Any]]:
    return {f: _file_info(folder / f) for f in entries(folder) if (folder / f).is_file()}


@contextlib.contextmanager
def replace(out: Path, kind: str) -> Iterator[Path]:
    """Yield a new hidden folder beside ``out`` to write into; on success it becomes ``out``,
    keeping the user's entries of the old ``out``; on any error ``out`` is left as it was."""
    out = Path(out)
    check(out, kind)
    with disk_errors(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{TMP_TAG}", dir=out.parent))
    try:
        with disk_errors(out):
            yield tmp
            written = _tree_info(tmp)
            st = check(out, kind, written)  # again: the user may have added files while the work ran
            _write_marker(tmp, kind, written)
            for f in st.foreign:
                _keep(out / f, tmp / f)
            _mode_like(tmp, out)
            _swap(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` onto ``out``; what appeared in the old ``out`` meanwhile is moved over."""
    recover(out)  # a swap a killed run left half done comes first
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.with_name(f".{out.name}{OLD_TAG}")
    os.replace(out, old)
    os.replace(tmp, out)
    _settle(old, out)


def _settle(old: Path, out: Path) -> None:
    """Move each entry of the swapped-out ``old`` that is not edgecnn's and not in ``out``; drop ``old``."""
    marker = read_marker(old)
    found = entries(old)
    # without a marker, a cache folder from before markers is all edgecnn's; anywhere else none of it is
    mine = set(marker.files) if marker is not None else set(found) if in_home(old) else set()
    for f in found:
        if f not in mine and not (out / f).exists() and not (out / f).is_symlink():
            (out / f).parent.mkdir(parents=True, exist_ok=True)
            os.replace(old / f, out / f)
    shutil.rmtree(old, ignore_errors=True)


def recover(out: Path) -> None:
    """Finish a swap a killed run left half done: the old folder back, or the user's files out of it."""
    old = out.with_name(f".{out.name}{OLD_TAG}")
    if not old.is_dir():
        return
    if not out.exists():
        os.replace(old, out)
    else:
        _settle(old, out)


# ---------------------------------------------------------------- writing a folder file by file


def claim(out: Path, kind: str, writes: Iterable[str]) -> None:
    """Make ``out`` edgecnn's ``kind`` folder before a stage writes ``writes`` into it file by file."""
    writes = list(writes)
    st = check(out, kind, writes)
    with disk_errors(out):
        out.mkdir(parents=True, exist_ok=True)
        files = {} if st.marker is None else {f: st.marker.files[f] for f in st.ours()}
        files.update(dict.fromkeys(writes))
        _write_marker(out, kind, files, "" if st.marker is None else st.marker.created)


def seal(out: Path, kind: str) -> None:
    """Record the sha256 of every file the stage wrote (a listed file that is gone is dropped)."""
    marker = read_marker(out)
    files = {} if marker is None else marker.files
    done = {f: _file_info(out / f) for f in files if (out / f).is_file()}
    _write_marker(out, kind, done, "" if marker is None else marker.created)


def record(out: Path, written: Iterable[str]) -> bool:
    """Add files a later command wrote into edgecnn's folder ``out`` (``build-engine``'s engine in
    an export folder) to its marker, so they are edgecnn's: a re-export then replaces them with the
    rest instead of keeping them as the user's. False, recording nothing, where ``out`` has no marker."""
    out = Path(out)
    marker = read_marker(out)
    if marker is None:
        return False
    files = {**marker.files, **{f: _file_info(out / f) for f in written}}
    _write_marker(out, marker.kind, files, marker.created)
    return True


# ---------------------------------------------------------------- locks and what killed runs left


_STACK: ContextVar[contextlib.ExitStack | None] = ContextVar("edgecnn_locks", default=None)
_HELD: dict[str, int] = {}  # lock file -> fd, for the locks this process holds


def locks_dir() -> Path:
    """``$EDGECNN_HOME/locks``, made if missing; an unusable EDGECNN_HOME is a one-line error."""
    from edgecnn import paths

    home = paths.home()
    d = home / "locks"
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        what = "is a file" if home.is_file() else (e.strerror or str(e)).lower()
        raise EdgecnnError(
            f"EDGECNN_HOME {home} {what}: edgecnn keeps its cache there; point EDGECNN_HOME at a "
            f"writable folder"
        ) from e
    return d


def lock_path_name(out: Path) -> str:
    return hashlib.sha256(str(Path(out).resolve()).encode()).hexdigest()[:20] + ".lock"


def lock_path(out: Path) -> Path:
    return locks_dir() / lock_path_name(out)


def is_locked(out: Path) -> bool:
    """Whether a running edgecnn holds ``out``'s lock now (never waits, makes no lock file)."""
    from edgecnn import paths

    path = paths.home() / "locks" / lock_path_name(out)
    if str(path) in _HELD:
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


@contextlib.contextmanager
def lock(out: Path, what: str = "") -> Iterator[None]:
    """Hold the lock of folder (or file) ``out``; say on stderr when another run holds it."""
    path = lock_path(out)
    key = str(path)
    if key in _HELD:  # this process holds it already
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise EdgecnnError(
            f"cannot lock {out} ({e.strerror}): make EDGECNN_HOME ({path.parent.parent}) writable"
        ) from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            print(
                f"edgecnn: waiting for another run (pid {holder}) that is making {what or out}; "
                f"its result is used when it finishes",
                file=sys.stderr,
                flush=True,
            )
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        _HELD[key] = fd
        yield
    finally:
        _HELD.pop(key, None)
        os.close(fd)  # closing releases the lock


def holding_locks(fn):
    """Decorate a stage function: the locks it takes with :func:`hold` are released when it returns."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with contextlib.ExitStack() as stack:
            token = _STACK.set(stack)
            try:
                return fn(*args, **kwargs)
            finally:
                _STACK.reset(token)

    return wrapper


def hold(out: Path, kind: str, what: str, writes: Iterable[str] = ()) -> None:
    """Check that ``out`` may be written (:func:`check`), take its lock until the enclosing
    :func:`holding_locks` function returns, then remove the temporaries a killed run of this
    stage left (``.NAME.*.tmp`` of ``writes``, hidden temporary folders beside ``out``)."""
    stack = _STACK.get()
    if stack is None:
        raise RuntimeError("outdir.hold() is for functions decorated with @outdir.holding_locks")
    out = Path(out)
    check(out, kind, writes)  # before waiting: a folder of yours is refused at once
    stack.enter_context(lock(out, what))
    clean(out, writes)


def stale_temporaries(out: Path, writes: Iterable[str] = ()) -> list[Path]:
    """What a killed run of the stage writing ``out`` left: ``.NAME.*.tmp`` beside each file
    it writes (inside ``out``), and hidden temporary folders ``.OUT.edgecnn-tmp-*`` beside ``out``
    (under $EDGECNN_HOME also the older ``.OUT.XXXXXXXX`` ones)."""
    out = Path(out)
    found: list[Path] = []
    names = set(writes)
    marker = read_marker(out) if out.is_dir() else None
    if marker is not None:
        names |= set(marker.files)
    for n in names:
        p = out / n
        found += [t for t in p.parent.glob(f".{p.name}.*.tmp") if t.is_file()]
    if out.parent.is_dir():
        found += [t for t in out.parent.glob(f".{out.name}{TMP_TAG}*") if t.is_dir()]
        if in_home(
            out
        ):  # what edgecnn before markers left: mkdtemp's .OUT.XXXXXXXX, the old replace_dir's .OUT.old
            found += [
                t
                for t in out.parent.glob(f".{out.name}.*")
                if t.is_dir()
                and (len(t.name) == len(out.name) + 10 or t.name == f".{out.name}.old" and out.exists())
            ]
            found += [t for t in out.parent.glob(f".{out.name}.*.tmp") if t.is_file()]
    return sorted(set(found))


def clean(out: Path, writes: Iterable[str] = ()) -> list[Path]:
    """Remove :func:`stale_temporaries` (call it holding ``out``'s lock); return what went."""
    gone = stale_temporaries(out, writes)
    for t in gone:
        if t.is_dir():
            shutil.rmtree(t, ignore_errors=True)
        else:
            t.unlink(missing_ok=True)
    if out.exists() or out.with_name(f".{out.name}{OLD_TAG}").exists():
        recover(out)
    return gone
