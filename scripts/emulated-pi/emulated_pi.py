"""Host-side helpers for the emulated Raspberry Pi (scripts/emulated-pi): where its root is,
whether it can run here, and running an artifact on it.

Used by tests/test_emulated_pi.py and benchmarks/arm_agreement.py (which put this folder on
``sys.path``). Everything here drives ``run.sh``/``sshd.sh``; nothing is emulated in Python.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ROOT_ENV = "EDGECNN_EMULATED_PI"
DEFAULT_ROOT = REPO / ".cache" / "emulated-pi" / "root"
CPUS = {"cortex-a72": "Raspberry Pi 4 (no dotprod)", "cortex-a76": "Raspberry Pi 5 (dotprod)"}

# Runs inside the Pi: the artifact through edgecnn's own TFLite session, inputs and outputs as .npy.
_RUNNER = """
import sys, numpy as np
from edgecnn.runtimes import open_session
with open_session(sys.argv[1], threads=int(sys.argv[4])) as s:
    np.save(sys.argv[3], s.run(np.load(sys.argv[2])))
"""


def root() -> Path:
    """``$EDGECNN_EMULATED_PI``, else ``.cache/emulated-pi/root`` in this checkout."""
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def unavailable(pi_root: Path | None = None) -> str | None:
    """Why the emulated Pi cannot run here (one line), or None when it can."""
    pi_root = pi_root or root()
    if not (pi_root / ".edgecnn-emulated-pi").is_file():
        return (
            f"no emulated Pi at {pi_root}: build it with `sudo scripts/emulated-pi/make.sh {pi_root}` "
            f"(or set {ROOT_ENV})"
        )
    if os.geteuid() != 0:
        return "the emulated Pi needs root (mount namespaces, chroot)"
    for tool in ("unshare", "chroot", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def run_on_pi(
    artifact: str | os.PathLike,
    x: np.ndarray,
    *,
    cpu: str,
    threads: int = 1,
    pi_root: Path | None = None,
    timeout: float = 1800,
) -> np.ndarray:
    """The artifact's float logits for ``x``, computed inside the emulated Pi on ``cpu``."""
    pi_root = pi_root or root()
    with tempfile.TemporaryDirectory(prefix="edgecnn-pi-", dir=pi_root / "tmp") as tmp:
        t = Path(tmp)
        os.chmod(t, 0o755)
        shutil.copytree(artifact, t / "artifact")
        np.save(t / "x.npy", np.ascontiguousarray(x, dtype=np.float32))
        inside = "/tmp/" + t.name
        cmd = [
            str(HERE / "run.sh"),
            str(pi_root),
            "--cpu",
            cpu,
            "--src",
            str(REPO),
            "--",
            "python3",
            "-c",
            _RUNNER,
            f"{inside}/artifact",
            f"{inside}/x.npy",
            f"{inside}/y.npy",
            str(threads),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise RuntimeError(
                f"the emulated Pi ({cpu}) failed: {(proc.stderr or proc.stdout).strip()[-2000:]}"
            )
        return np.load(t / "y.npy")


def start_sshd(alias: str, cpu: str, port: int, pi_root: Path | None = None) -> Path:
    """Start sshd in the Pi as ``alias`` on 127.0.0.1:``port``; returns the ssh config file."""
    pi_root = pi_root or root()
    proc = subprocess.run(
        [str(HERE / "sshd.sh"), str(pi_root), "--cpu", cpu, "--port", str(port), "--name", alias],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"sshd.sh failed: {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return Path(f"{pi_root}.ssh") / f"{alias}.ssh_config"


def stop_sshd(alias: str, cpu: str, pi_root: Path | None = None) -> None:
    pi_root = pi_root or root()
    subprocess.run(
        [str(HERE / "sshd.sh"), str(pi_root), "--cpu", cpu, "--name", alias, "--stop"],
        capture_output=True,
        timeout=60,
        check=False,
    )
