"""``edgecnn devices fit --host H``: a device profile fitted to layers timed on the device itself.

On this machine, one small artifact per single layer of :data:`edgecnn.devices.layers.SUITE` (a conv +
ReLU, a fully connected layer, a max-pool; random weights) is exported for the device's runtime
through edgecnn's own exporters, FP32 and INT8 (PTQ on random inputs, as ``export`` writes INT8). Each is
sent to the device over the SSH runner of :mod:`edgecnn.remote` and timed there by the runtime's own
profiler (``edgecnn bench --profile``); the layer's time is that of its conv / fully connected / pool
operators (their reorders and quantize steps belong to no layer of a network). The base profile
(peaks, bandwidth, runtimes) with these ``[[layer_points]]`` is written as a TOML file the user keeps
(atomically); the predictor then fits its efficiencies to the device's own layers
(:func:`edgecnn.devices.predict.efficiency_for`), and ``--target FILE.toml`` predicts from them.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgecnn.config import dumps_toml, to_dict, tomllib
from edgecnn.devices.layers import SUITE, label
from edgecnn.devices.profile import LayerPoint, parse_profile
from edgecnn.devices.registry import load_device
from edgecnn.errors import EdgecnnError
from edgecnn.fileio import atomic_write_text

# A short suite: a stem, 3x3 convolutions small and large, a 1x1, a big fully connected layer, a pool.
QUICK_SUITE: tuple[tuple, ...] = (
    ("conv", 3, 64, 7, 2, 224),
    ("conv", 64, 64, 3, 1, 56),
    ("conv", 256, 256, 3, 1, 14),
    ("conv", 64, 256, 1, 1, 56),
    ("linear", 4096, 4096),
    ("pool", 64, 3, 2, 112),
)
SUITES = {"quick": QUICK_SUITE, "full": SUITE}
# substrings of the op types the runtimes report for a suite item's own operator
_OPS = {
    "conv": ("conv",),
    "linear": ("gemm", "matmul", "fullyconnected", "fully_connected", "fully connected"),
    "pool": ("pool",),
}


def layer_module(spec: tuple):
    """The torch module of a suite item and an input for it (batch 1)."""
    import torch
    from torch import nn

    kind = spec[0]
    if kind == "conv":
        _, cin, cout, k, s, hw = spec
        return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2), nn.ReLU()).eval(), torch.randn(
            1, cin, hw, hw
        )
    if kind == "linear":
        return nn.Sequential(nn.Linear(spec[1], spec[2])).eval(), torch.randn(1, spec[1])
    _, c, k, s, hw = spec
    return nn.Sequential(nn.MaxPool2d(k, s)).eval(), torch.randn(1, c, hw, hw)


def build_layer_artifact(spec: tuple, runtime: str, precision: str, out: Path, target: str = "cpu") -> Path:
    """One suite item exported for ``runtime`` in ``precision`` (INT8: PTQ minmax on 8 random inputs)."""
    import torch

    from edgecnn.artifact import write_metadata
    from edgecnn.export import RUNTIME_FILES, tool_versions, write_runtime_files
    from edgecnn.quantize.pt2e import make_quantizer, prepare_float, ptq

    torch.manual_seed(0)
    module, sample = layer_module(spec)
    stage = None
    if precision == "int8":
        module, stage = ptq(module, torch.randn(8, *sample.shape[1:]), method="minmax"), {"method": "minmax"}
    else:
        module = prepare_float(module)
    out.mkdir(parents=True)
    backend_float, io = write_runtime_files(runtime, precision, module, sample, out, stage, make_quantizer)
    write_metadata(
        out,
        {
            "arch": label(spec),
            "model_options": {"layer": list(spec)},
            "num_classes": 0,
            "class_names": [],
            "target": target,
            "runtime": runtime,
            "precision": precision,
            "files": list(RUNTIME_FILES[runtime]),
            **io,
            "preprocess": {"note": "single-layer timing artifact: random inputs, no images"},
            "quantization": None,
            "float_layers": sorted(backend_float),
            "source": {"checkpoint": None, "sha256": None},
            "tools": tool_versions(runtime),
        },
    )
    return out


def layer_ms(profile: dict[str, Any], spec: tuple) -> float:
    """The suite item's own time in a ``bench --profile`` result: its conv / fully connected / pool
    operators (all layers if the runtime names none of them so)."""
    want = _OPS[spec[0]]
    own = [x["ms"] for x in profile["layers"] if any(w in x["op_type"].lower() for w in want)]
    return float(sum(own) if own else sum(x["ms"] for x in profile["layers"]))


def profile_name(base: str, host: str) -> str:
    return f"{base}-" + re.sub(r"[^A-Za-z0-9._-]+", "-", host).strip("-")


def profile_toml(base, name: str, host: str, runtime: str, points: Sequence[LayerPoint]) -> dict[str, Any]:
    """The TOML data of the calibrated profile: ``base`` as it is, renamed, with ``points``; the runtime
    measured no longer transfers from another device nor widens its band for a proxy."""
    d = to_dict(base)
    for k in ("aliases", "source", "layer_points"):
        d.pop(k, None)
    d["name"] = name
    d["description"] = f"{base.description}; calibrated on {host} by `edgecnn devices fit --host`"
    d["detect"] = []
    d["runtimes"][runtime].update(transfer_from=None, extra_error_pct=0.0, extra_error_reason="")
    d["layer_points"] = [to_dict(p) for p in points]
    return d


def fit_over_ssh(
    host: str,
    *,
    base: str,
    runtime: str | None = None,
    precisions: Sequence[str] = (),
    suite: Sequence[tuple] = QUICK_SUITE,
    out: str | Path | None = None,
    remote_python: str | None = None,
    ssh_config: str | None = None,
    ssh_options: Sequence[str] = (),
    timeout: float | None = None,
    threads: int | None = None,
    runs: int = 20,
    warmup: int = 3,
    log: Callable[[str], None] | None = None,
) -> tuple[Path, Any]:
    """Time every suite layer on ``host`` with its runtime's profiler; write the profile TOML
    (``out``, default ``<base>-<host>.toml`` here); return (its path, the loaded profile)."""
    from edgecnn.remote import check_hosts

    log = log or (lambda s: None)
    prof = load_device(base)
    rt = runtime or prof.default_runtime
    support = prof.runtime(rt)  # refuses a runtime the device does not run
    precs = tuple(precisions) or support.precisions
    for p in precs:
        prof.check(rt, p)
    ssh = {"remote_python": remote_python, "ssh_config": ssh_config, "ssh_options": ssh_options}
    check_hosts([host], remote_python, ssh_config, ssh_options)
    name = profile_name(prof.name, host)
    dest = Path(out) if out else Path(f"{name}.toml")
    when = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    timed = {"timeout": timeout, "runtime": rt, "threads": threads, "runs": runs, "warmup": warmup, **ssh}
    points = []
    with tempfile.TemporaryDirectory(prefix="edgecnn-fit-") as tmp:
        for prec in precs:
            for i, spec in enumerate(suite):
                art = build_layer_artifact(spec, rt, prec, Path(tmp) / f"{prec}-{i:02d}", prof.target)
                point = _time_layer(art, spec, prec, host, when, timed, log)
                if point is not None:
                    points.append(point)
    text = f"# Calibrated on {host} ({when}): {len(points)} single layers timed by {rt}'s profiler.\n"
    text += dumps_toml(profile_toml(prof, name, host, rt, points))
    written = parse_profile(tomllib.loads(text), str(dest))  # checked before anything is written
    atomic_write_text(dest, text)
    return dest, dataclasses.replace(written, source=str(dest))


def _time_layer(
    art: Path, spec: tuple, prec: str, host: str, when: str, timed: dict[str, Any], log: Callable[[str], None]
) -> LayerPoint | None:
    """One suite layer's artifact timed on ``host`` by its runtime's profiler (``timed``: the
    :func:`edgecnn.remote.profile_hosts` options); None where the export left an INT8 layer float."""
    from edgecnn.artifact import load_artifact
    from edgecnn.remote import profile_hosts

    rt = timed["runtime"]
    if prec == "int8" and load_artifact(art, verify=False).meta["float_layers"]:
        log(f"  {prec} {label(spec)}: skipped, the {rt} export leaves it float")  # e.g. a lone max-pool
        return None
    (r,) = profile_hosts(art, [host], **timed)
    if not r.ok:
        raise EdgecnnError(r.error)
    ms = max(layer_ms(r.result, spec), 1e-4)
    log(f"  {prec} {label(spec)}: {ms:.3f} ms ({r.result['profiler']})")
    return LayerPoint(
        layer=tuple(spec),
        runtime=rt,
        precision=prec,
        seconds=ms / 1e3,
        measured_with=f"{r.result['profiler']} on {host} ({rt} {r.result['version']})",
        source=f"measured by `edgecnn devices fit --host {host}` {when}",
        threads=timed["threads"],
    )
