"""Download a file over HTTP(S) with a sha256 check, atomically.

Used for published weights and for datasets. The file appears at ``dest`` only when it
was received whole and its sha256 matches; otherwise nothing is left behind and the
error says which URL to fetch by hand and where to put the file.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from edgecnn.errors import EdgecnnError
from edgecnn.fileio import atomic_path, sha256_file


def _by_hand(url: str, dest: Path) -> str:
    return f"fetch {url} by hand and put it at {dest}"


def download(url: str, dest: str | os.PathLike, sha256: str | None, *, timeout: float = 30.0) -> Path:
    """Fetch ``url`` to ``dest`` unless a file with the right sha256 is already there.

    Raises :class:`EdgecnnError` on a network error, an HTTP error, a truncated body
    (fewer bytes than Content-Length) or a checksum mismatch.
    """
    dest = Path(dest)
    if dest.exists() and (sha256 is None or sha256_file(dest) == sha256):
        return dest
    with atomic_path(dest) as tmp:
        h = hashlib.sha256()
        received = 0
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
                expected = resp.headers.get("Content-Length")
                while True:
                    try:
                        block = resp.read(1 << 20)
                    except Exception as e:  # http.client.IncompleteRead and friends
                        raise EdgecnnError(
                            f"download of {url} was cut off after {received} bytes ({e}); "
                            f"try again or {_by_hand(url, dest)}"
                        ) from e
                    if not block:
                        break
                    out.write(block)
                    h.update(block)
                    received += len(block)
        except urllib.error.HTTPError as e:
            raise EdgecnnError(f"could not download {url}: HTTP {e.code}; {_by_hand(url, dest)}") from e
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise EdgecnnError(f"could not download {url} ({reason}); {_by_hand(url, dest)}") from e
        if expected is not None and received != int(expected):
            raise EdgecnnError(
                f"download of {url} is truncated ({received} of {expected} bytes); "
                f"try again or {_by_hand(url, dest)}"
            )
        digest = h.hexdigest()
        if sha256 is not None and digest != sha256:
            raise EdgecnnError(
                f"checksum mismatch for {url}: got sha256 {digest[:16]}..., expected {sha256[:16]}...; "
                f"the file was not saved; {_by_hand(url, dest)}"
            )
    return dest
