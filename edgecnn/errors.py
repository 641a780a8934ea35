"""Errors a user can act on.

Every problem caused by input (a name, a file, a setting) raises :class:`EdgecnnError`
with a one-line message that says what to do. The CLI prints it as ``error: ...`` and
exits with status 2; library callers catch it like any exception.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EdgecnnError(Exception):
    """A user-facing error: one line, saying what is wrong and what to do."""

    exit_code = 2

    def __init__(self, message: str):
        # Keep it to one line whatever the caller passed.
        super().__init__(" ".join(str(message).split()))


def suggest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ' Did you mean: a, b?' for the nearest names, or '' when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""
