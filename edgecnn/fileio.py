"""Atomic writes and hashing: nothing edgecnn writes is ever left half-written."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from edgecnn.errors import EdgecnnError

# errno -> (what happened, what to do): the write errors a user fixes on their side.
_DISK = {
    errno.ENOSPC: (
        "no space left on the device",
        "free some space (`edgecnn cache prune` removes stale entries)",
    ),
    errno.EDQUOT: ("disk quota exceeded", "free some space (`edgecnn cache prune` removes stale entries)"),
    errno.EROFS: ("read-only file system", "write somewhere writable (EDGECNN_HOME, --out)"),
    errno.EACCES: ("permission denied", "write somewhere writable (EDGECNN_HOME, --out)"),
    errno.EPERM: ("operation not permitted", "write somewhere writable (EDGECNN_HOME, --out)"),
    errno.ENOTDIR: ("a part of that path is a file, not a folder", "point EDGECNN_HOME and --out at folders"),
}


class DiskError(EdgecnnError, OSError):
    """A write that failed for want of space or permission: one line for the user, and still
    an :class:`OSError` for code that tolerates failed writes (an optional cache)."""


def disk_error(e: OSError, path: str | os.PathLike) -> OSError:
    """``e`` as a :class:`DiskError` saying what to do when it is a full disk or a denied write, else
    ``e``."""
    if isinstance(e, EdgecnnError) or e.errno not in _DISK:
        return e
    what, todo = _DISK[e.errno]
    return DiskError(
        f"cannot write {e.filename or path}: {what}; nothing half-written was kept: {todo}, "
        f"then run the same command again"
    )


@contextlib.contextmanager
def disk_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn a full disk or a denied write inside the block into a one-line :class:`DiskError`."""
    try:
        yield
    except OSError as e:
        err = disk_error(e, path)
        if err is e:
            raise
        raise err from e


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` only on success.

    The temporary file lives in the destination directory so the final ``os.replace`` is
    atomic on POSIX. On any exception the temporary file is removed and ``dest`` is
    left exactly as it was.
    """
    dest = Path(dest)
    with disk_errors(dest):
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        with disk_errors(dest):
            yield tmp_path
            os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(dest: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(dest, text.encode("utf-8"))


def atomic_write_json(dest: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(dest, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_stream(f: BinaryIO, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    for block in iter(lambda: f.read(chunk), b""):
        h.update(block)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return sha256_stream(f)
