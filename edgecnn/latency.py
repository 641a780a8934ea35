"""Latency of an artifact, three ways: measured on this machine in a fresh process, measured on
devices over SSH (:func:`edgecnn.remote.bench_hosts`), or predicted from a device profile.

Each returns ``edgecnn bench --json``'s dict (``latency_source`` "measured" or "predicted");
:mod:`edgecnn.deploy` and :mod:`edgecnn.imagenet_frontier` cache them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgecnn.errors import EdgecnnError


def measure_here(art_dir: Path, *, threads: int | None, min_seconds: float, min_runs: int) -> dict[str, Any]:
    """``edgecnn bench ARTIFACT --json`` in a fresh process: the runtime's own memory, nothing else's."""
    cmd = [sys.executable, "-m", "edgecnn", "bench", str(art_dir), "--json"]
    cmd += ["--min-seconds", str(min_seconds), "--min-runs", str(min_runs)]
    if threads:
        cmd += ["--threads", str(threads)]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgecnnError(f"benchmarking {art_dir} failed: {last.removeprefix('error: ')}")
    return json.loads(p.stdout)


def measure_on_hosts(
    art_dir: Path,
    hosts: Sequence[str],
    *,
    threads: int | None,
    min_seconds: float,
    min_runs: int,
    remote_python: str | None = None,
    ssh_config: str | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """``{"hosts": [{host, result, error}, ...]}``: the artifact benched on every host over SSH."""
    from edgecnn.remote import bench_hosts

    rs = bench_hosts(
        art_dir,
        hosts,
        remote_python=remote_python,
        ssh_config=ssh_config,
        threads=threads,
        min_seconds=min_seconds,
        min_runs=min_runs,
        timeout=timeout,
    )
    return {"hosts": [{"host": r.host, "result": r.result, "error": r.error} for r in rs]}


def predicted(arch: str, device: str, meta: dict[str, Any], *, threads: int | None) -> dict[str, Any]:
    """The artifact's latency on the device profile ``device``, predicted (with its energy estimate)."""
    from edgecnn.devices import load_device
    from edgecnn.devices.predict import predict_latency
    from edgecnn.timing import FORMAT, add_energy

    profile = load_device(device)
    r = predict_latency(
        arch,
        profile,
        runtime=meta["runtime"],
        precision=meta["precision"],
        image_size=int(meta["preprocess"]["image_size"]),
        batch=1,
        threads=threads,
        small_input=bool(meta["model_options"].get("small_input")),
        num_classes=int(meta["num_classes"]),
    )
    r["format"] = FORMAT
    return add_energy(r, profile.power_w, f"{profile.name} profile")
