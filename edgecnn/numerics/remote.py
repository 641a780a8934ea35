"""``edgecnn diagnose --host``: the layer-by-layer comparison with the artifact run on a device over SSH.

The device runs only the runtime; the comparison is made here. :func:`diagnose_hosts` loads the
artifact, its quantized graph and the test images here, and sends each device (one ``ssh``
connection, the runner of :mod:`edgecnn.remote`, as ``evaluate --host``) a tar stream of the
artifact, ``images.npz`` (the images as stored, uint8) and ``taps.json`` (each quantized
activation: name, module, scale, zero point, dequantize names). On the device,
``python -m edgecnn.numerics.remote ARTIFACT IMAGES TAPS`` (this module's :func:`main`: numpy, the
runtime and edgecnn's torch-free side, no torch) preprocesses the images with the artifact's own
metadata, opens the runtime with every tap it can find exposed
(:func:`edgecnn.numerics.expose.open_taps`) and sends back, as one JSON object, each exposed tensor
as integer codes on its tap's grid (``round(value / scale) + zero_point``, int16, zlib-compressed
batch by batch, base64), the plain session's logits (float32), the largest distance of any value
from its grid (``off_grid_steps``: every runtime computes these tensors on that grid, so a value off
it would be a finding, not rounding) and where it ran. A value is compared on its grid: float noise
below a step (OpenVINO's f32 input FakeQuantize, ~4e-5 steps) reads as identical, and the Diagnosis's
``runtime_info["off_grid_steps"]`` says how far off the grid the device's values were.

Back here :func:`edgecnn.numerics.diagnose.compare` (the same code as a local diagnosis) compares
them with the fake-quant graph and FP32, which need torch and stay here. Shipping the references to
the device instead would send more (FP32 values are float32) and need torch there. What comes back
is about N x (the network's activations) x 2 bytes before compression: 16 images of the quick
ResNet18 at 32 px are ~26 MB raw.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.numerics.tap import Tap

FORMAT = "edgecnn.device-taps/1"
IMAGES = "images.npz"
TAPS = "taps.json"


class _Packer:
    """An array sent batch by batch: int16 codes (or float32), zlib-compressed as they come."""

    def __init__(self, dtype: str):
        self.dtype, self.shape, self.n = dtype, None, 0
        self._z, self._parts = zlib.compressobj(6), []

    def add(self, a: np.ndarray) -> None:
        self.shape = list(a.shape[1:])
        self.n += len(a)
        self._parts.append(self._z.compress(np.ascontiguousarray(a, dtype=self.dtype).tobytes()))

    def done(self) -> dict[str, Any]:
        data = b"".join([*self._parts, self._z.flush()])
        return {
            "shape": [self.n, *(self.shape or [])],
            "dtype": self.dtype,
            "zlib_base64": base64.b64encode(data).decode(),
        }


def unpack(d: dict[str, Any]) -> np.ndarray:
    """The array a :class:`_Packer` sent; a damaged one is an :class:`EdgecnnError`."""
    try:
        if d["dtype"] not in ("<i2", "<f4"):
            raise ValueError(f"dtype {d['dtype']}")
        raw = zlib.decompress(base64.b64decode(d["zlib_base64"]))
        return np.frombuffer(raw, dtype=d["dtype"]).reshape(d["shape"])
    except (KeyError, TypeError, ValueError, zlib.error) as e:
        raise EdgecnnError(f"the device's tensors are damaged ({type(e).__name__}: {e})") from None


# -- on the device ------------------------------------------------------------------------------


def device_taps(
    artifact: str | os.PathLike,
    images: str | os.PathLike,
    taps: str | os.PathLike,
    *,
    runtime: str | None = None,
    threads: int | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Run the images of ``images`` (.npz) through the artifact here with the taps of ``taps`` (.json)
    exposed; the JSON-able answer."""
    from edgecnn.artifact import load_artifact
    from edgecnn.device_eval import machine_info
    from edgecnn.numerics.expose import open_taps
    from edgecnn.runtimes import open_session

    try:
        with np.load(images, allow_pickle=False) as z:
            raw = z["images"]
        wanted = [Tap.from_json(t) for t in json.loads(Path(taps).read_text())["taps"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EdgecnnError(f"cannot read what was sent to the device ({images}, {taps}): {e}") from e
    art = load_artifact(artifact)
    rt = runtime or art.runtime
    x = art.preprocess().apply_numpy(raw)
    runner = open_taps(art.model_file, rt, wanted, threads=threads, precision=art.meta.get("precision"))
    packs = {t.name: _Packer("<i2") for t in runner.taps}
    logits, off = _Packer("<f4"), dict.fromkeys(packs, 0.0)
    with open_session(art, runtime=rt, threads=threads) as plain:
        for a in range(0, len(x), batch_size):
            got = runner.run(x[a : a + batch_size])
            for t in runner.taps:
                steps = got[t.name].astype(np.float64) / t.scale
                codes = np.rint(steps)
                off[t.name] = max(off[t.name], float(np.abs(steps - codes).max(initial=0.0)))
                packs[t.name].add(np.clip(codes + t.zero_point, -32768, 32767))
            logits.add(plain.run(x[a : a + batch_size]))
    return {
        "format": FORMAT,
        "runtime": rt,
        "taps": {n: p.done() for n, p in packs.items()},
        "missing": list(runner.missing),
        "off_grid_steps": {n: round(v, 6) for n, v in off.items()},
        "plain": logits.done(),
        "runtime_info": dict(runner.info),
        "machine": machine_info(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edgecnn.numerics.remote ARTIFACT IMAGES TAPS``: what ``diagnose --host`` runs on the
    device."""
    p = argparse.ArgumentParser(
        prog="python -m edgecnn.numerics.remote",
        description="Every quantized layer of an artifact on uint8 images (.npz), as JSON integer codes.",
    )
    p.add_argument("artifact")
    p.add_argument("images")
    p.add_argument("taps")
    p.add_argument("--runtime")
    p.add_argument("--threads", type=int)
    p.add_argument("--batch-size", type=int, default=64)
    a = p.parse_args(argv)
    try:
        out = device_taps(
            a.artifact, a.images, a.taps, runtime=a.runtime, threads=a.threads, batch_size=a.batch_size
        )
    except EdgecnnError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(json.dumps(out))
    return 0


# -- on this machine ----------------------------------------------------------------------------


def exposed_from(answer: dict[str, Any], s) -> Any:
    """The device's answer as :class:`edgecnn.numerics.diagnose.Exposed` for ``compare`` (setup ``s``)."""
    from edgecnn.numerics.diagnose import Exposed

    if answer.get("format") != FORMAT:
        raise EdgecnnError(f"the device answered {answer.get('format')}, not {FORMAT}; upgrade edgecnn there")
    by_name = {t.name: t for t in s.taps}
    codes = {n: unpack(d) for n, d in answer["taps"].items() if n in by_name}
    plain = unpack(answer["plain"])
    if any(len(c) != len(s.x) for c in [*codes.values(), plain]):
        raise EdgecnnError(f"the device returned tensors for other than the {len(s.x)} images sent")
    found = [t for t in s.taps if t.name in codes]

    def values(a: int, b: int) -> dict[str, np.ndarray]:
        return {
            t.name: (codes[t.name][a:b].astype(np.float32) - t.zero_point) * np.float32(t.scale)
            for t in found
        }

    off = max(answer.get("off_grid_steps", {}).values(), default=0.0)
    info = {**answer.get("runtime_info", {}), "machine": answer.get("machine", {}), "off_grid_steps": off}
    return Exposed(found, list(answer.get("missing", [])), info, values, lambda a, b: plain[a:b])


def diagnose_hosts(
    artifact,
    hosts: Iterable[str],
    *,
    images: int,
    runtime: str | None = None,
    data=None,
    threshold: float,
    threads: int | None = None,
    batch_size: int = 64,
    graph=None,
    layers: str | None = None,
    remote_python: str | None = None,
    ssh_config=None,
    ssh_options: Sequence[str] = (),
    timeout: float | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> list:
    """:func:`edgecnn.numerics.diagnose.diagnose` with the artifact run on each host; one
    :class:`edgecnn.remote.HostResult` each, whose ``result`` is a ``Diagnosis`` with ``host`` set."""
    from edgecnn.numerics.diagnose import compare, prepare
    from edgecnn.remote import (
        _python_words,
        _tar_artifact,
        check_hosts,
        device_script,
        for_each_host,
        run_on_host,
    )

    hosts = list(hosts)
    remote_python, ssh_config = check_hosts(hosts, remote_python, ssh_config, ssh_options)
    s = prepare(artifact, images=images, runtime=runtime, data=data, graph=graph, layers=layers)
    art_dir = Path(s.art.dir).resolve()
    name = art_dir.name or "artifact"
    args = [
        f"--runtime={s.runtime}",
        f"--batch-size={batch_size}",
        *([f"--threads={threads}"] if threads else []),
    ]
    where = " ".join(f'"$d"/{shlex.quote(f)}' for f in (name, IMAGES, TAPS))
    command = f"{_python_words(remote_python)} -m edgecnn.numerics.remote {where}"
    script = device_script(command + "".join(" " + shlex.quote(a) for a in args))
    with tempfile.TemporaryDirectory(prefix="edgecnn-remote-") as tmp:
        npz, spec, tar = Path(tmp) / IMAGES, Path(tmp) / TAPS, Path(tmp) / "artifact.tar"
        np.savez_compressed(npz, images=s.images)
        spec.write_text(json.dumps({"taps": [t.to_json() for t in s.taps]}))
        _tar_artifact(art_dir, name, tar, {IMAGES: npz, TAPS: spec})
        log(f"diagnosing {name} on {', '.join(hosts)}: {len(s.taps)} quantized layers, {len(s.x)} images")

        def one(host: str):
            answer, _ = run_on_host(
                host,
                tar,
                script,
                remote_python=remote_python,
                ssh_config=ssh_config,
                ssh_options=ssh_options,
                timeout=timeout,
                expect="taps",
                what="diagnosis",
            )
            return compare(s, exposed_from(answer, s), threshold=threshold, batch_size=batch_size, host=host)

        return for_each_host(hosts, one)


if __name__ == "__main__":
    sys.exit(main())
