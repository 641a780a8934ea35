"""What reaches the terminal: one ``error:`` line per failure, and no third-party noise.

Every failure a user can cause ends as one line on stderr starting ``error:`` (exit 2):
edgecnn's own :class:`EdgecnnError`, Click's usage errors (with the ``--help`` to read),
and Ctrl-C (exit 130, saying that the same command resumes).

Libraries print on their own: torchao's failed ``.so`` loads, torch's ``W...`` log lines,
TensorFlow/LiteRT's absl and oneDNN lines (C++ writing to file descriptor 2), progress
bars. :func:`capture_noise` sends all of it to a log file under ``$EDGECNN_HOME/logs``:
fd 2 is pointed at the log, and ``sys.stderr`` becomes a router that gives the terminal
what edgecnn, Click and Rich write, and the log what anything else writes from Python
(``logging``, ``warnings``, ``tqdm``, ...). ``edgecnn --verbose`` leaves stderr alone.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from edgecnn.errors import EdgecnnError

INTERRUPTED = (
    "interrupted; run the same command again to go on from where it stopped (finished stages are reused)"
)
INTERRUPTED_EXIT = 130
# Python modules whose writes to sys.stderr are edgecnn's own messages (or a traceback).
_OURS = ("edgecnn", "click", "rich", "traceback")


def fail(message: str, exit_code: int = 2):
    """Print ``error: message`` as one line on stderr and exit."""
    click.echo(f"error: {' '.join(str(message).split())}", err=True)
    sys.exit(exit_code)


def _usage_hint(e: click.UsageError) -> str:
    path = e.ctx.command_path if e.ctx is not None else "edgecnn"
    if isinstance(e, click.NoSuchOption) and e.option_name in ("--verbose", "-v") and path != "edgecnn":
        return f"--verbose goes before the command: edgecnn --verbose {path.split(' ', 1)[1]} ..."
    return f"{e.format_message().rstrip()} (see '{path} --help')"


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn every error a user can cause inside the block into one ``error:`` line and its exit status."""
    try:
        yield
    except EdgecnnError as e:
        fail(str(e), e.exit_code)
    except click.exceptions.NoArgsIsHelpError as e:  # `edgecnn` alone: the help, not an error
        click.echo(e.ctx.get_help())
        sys.exit(0)
    except click.UsageError as e:
        fail(_usage_hint(e), 2)
    except click.ClickException as e:  # e.g. a file Click could not open
        fail(e.format_message(), 2)
    except (KeyboardInterrupt, click.Abort):
        fail(INTERRUPTED, INTERRUPTED_EXIT)


class _Router(io.TextIOBase):
    """``sys.stderr`` while noise is captured: edgecnn's writes to the terminal, the rest to the log."""

    def __init__(self, terminal: io.TextIOBase, log: io.TextIOBase):
        self._terminal, self._log = terminal, log

    @property
    def encoding(self) -> str:
        return self._terminal.encoding

    @property
    def errors(self) -> str | None:
        return self._terminal.errors

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._terminal.isatty()

    def fileno(self) -> int:
        return self._terminal.fileno()

    def write(self, s: str) -> int:
        try:
            module = sys._getframe(1).f_globals.get("__name__") or ""
        except ValueError:  # called from C with no Python frame: the interpreter's own traceback
            module = ""
        ours = not module or module.split(".")[0] in _OURS
        return (self._terminal if ours else self._log).write(s)

    def retarget(self, stream: io.TextIOBase) -> None:
        """Send everything to ``stream`` from now on (the capture has ended)."""
        self._terminal = self._log = stream

    def flush(self) -> None:
        self._log.flush()
        self._terminal.flush()


def _log_path(command: str) -> Path:
    from edgecnn import paths

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return paths.home() / "logs" / f"{stamp}-{command}-{os.getpid()}.log"


def capture_noise(command: str) -> Callable[[], None] | None:
    """Send third-party output (fd 2 and non-edgecnn Python writes) to a log; return the undo.

    Nothing is captured (None) where stderr is no real file (Click's test runner, pytest's
    capture) or no log can be made; the undo deletes the log again if nothing was written.
    """
    try:
        if sys.stderr.fileno() != 2:
            return None
        path = _log_path(command)
        path.parent.mkdir(parents=True, exist_ok=True)
        log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):  # no stderr, or no file behind it
        return None
    original = sys.stderr
    original.flush()
    saved = os.dup(2)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    terminal = io.TextIOWrapper(
        os.fdopen(saved, "wb", buffering=0),
        encoding=original.encoding,
        errors=original.errors,
        line_buffering=True,
        write_through=True,
    )

    router = sys.stderr = _Router(terminal, original)

    def undo() -> None:
        router.flush()
        sys.stderr = original
        os.dup2(terminal.fileno(), 2)
        router.retarget(original)  # a logging handler made meanwhile still holds the router
        terminal.close()
        with contextlib.suppress(OSError):
            if path.stat().st_size == 0:
                path.unlink()

    return undo
