"""Atomic writes and hashing: nothing edgecnn writes is ever left half-written."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` only on success.

    The temporary file lives in the destination directory so the final ``os.replace`` is
    atomic on POSIX. On any exception the temporary file is removed and ``dest`` is
    left exactly as it was.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
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


def replace_dir(tmp: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Put the finished directory ``tmp`` at ``dest``, replacing a previous ``dest`` whole.

    ``dest`` is never half-written: it is the old directory until one rename swaps it out.
    """
    import shutil

    tmp, dest = Path(tmp), Path(dest)
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)
