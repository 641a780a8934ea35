"""The map's rule that ARCHITECTURE.md states: no import cycles among edgecnn's modules, counting
imports inside functions (what scripts/archstats.py finds from the source alone)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_import_cycles():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "archstats.py"), str(ROOT)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("import cycles"))
    assert line.endswith(": 0"), out[out.index("import cycles") :]
