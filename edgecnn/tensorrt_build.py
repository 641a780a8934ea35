"""``python -m edgecnn.tensorrt_build ARTIFACT ...``: kept for bundles whose RUN.md names it.

It is ``edgecnn build-engine ARTIFACT ...``; the code lives in :mod:`edgecnn.tensorrt`.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from edgecnn.cli import cli

    cli(["build-engine", *sys.argv[1:]], prog_name="edgecnn")
