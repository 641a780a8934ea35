"""Accuracy of an exported artifact measured on a device over SSH; the statistics are computed here.

>>> from edgecnn.device_eval import evaluate_hosts
>>> for r in evaluate_hosts("runs/export/resnet18-rpi-int8", ["pi@raspberrypi.local"]):  # doctest: +SKIP
...     print(r.host, r.error or r.result.top1)

:func:`evaluate_hosts` loads the artifact and the split here (default: the whole test
set), runs the artifact here too (the host run every device is compared with; a TensorRT
artifact runs in OpenVINO or ONNX Runtime where TensorRT is missing, :func:`host_runtime`, and
says so), and sends each device over one ``ssh`` connection (the runner of
:mod:`edgecnn.remote`, as ``bench --host``) a tar stream holding the artifact and
``images.npz``: the split's images as stored, uint8 N x H x W x C, compressed
(``numpy.savez_compressed``). The labels stay here.

On the device, ``python -m edgecnn.device_eval ARTIFACT IMAGES`` (this module's
:func:`main`; numpy, the runtime and edgecnn's torch-free side, no torch) preprocesses the
images with the artifact's own ``preprocess`` metadata (:meth:`Preprocess.apply_numpy`, the
same code the host's ``evaluate`` runs), runs them in the artifact's runtime (a TensorRT
ONNX artifact builds its engine there and caches it in the device's ``$EDGECNN_HOME/engines``,
keyed as :mod:`edgecnn.tensorrt.engine_cache` says) and prints one JSON object: the top-5 classes
per image (int32, zlib, base64) and where it ran (host name, uname, CPU, board, runtime and
version).

Back here, :func:`edgecnn.evaluate.score` gives top-1, top-5, the bootstrap interval,
agreement with the fake-quant graph and McNemar against FP32 (the same code as
``edgecnn evaluate``), plus agreement with the host run and the images whose top-1 flipped.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shlex
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.evaluate import EvalSet, load_eval_set, mcnemar, score
from edgecnn.host import has_vnni
from edgecnn.remote import (
    _python_words,
    _tar_artifact,
    check_hosts,
    device_script,
    for_each_host,
    run_on_host,
)

if TYPE_CHECKING:
    from edgecnn.artifact import Artifact

FORMAT = "edgecnn.device-predictions/1"
IMAGES = "images.npz"
FLIPPED_SHOWN = 20  # flipped images listed in text output (--json lists all)


@dataclass(frozen=True)
class DeviceAccuracy:
    """Accuracy of an artifact measured on ``host``, with the comparisons computed on this machine.

    The keys of :meth:`to_json` are those of ``edgecnn evaluate --json`` plus ``host``,
    ``accuracy_where`` ("device:HOST"), ``machine``, ``runtime_version``, ``host_run`` and
    ``wall_s``.
    """

    host: str
    machine: dict[str, Any]  # hostname, uname, machine, cpu_model, board, device, python, edgecnn
    runtime: str
    runtime_version: str | None
    runtime_info: dict[str, Any]
    artifact: str
    arch: str | None
    target: str | None
    precision: str | None
    dataset: str
    split: str
    split_id: str
    num_images: int
    top1: float
    top5: float
    top1_ci: tuple[float, float]
    ci_level: float
    bootstrap_resamples: int
    reference_source: str | None
    reference_top1: float | None
    agreement: float | None  # with the fake-quant PyTorch graph
    fp32_top1: float | None
    delta_top1: float | None
    mcnemar: dict[str, Any] | None  # against FP32
    host_run: HostRun | None
    seconds: float  # inference on the device, model load included
    wall_s: float  # the whole ssh round trip
    notes: tuple[str, ...]

    @property
    def accuracy_where(self) -> str:
        # an emulated Pi (scripts/emulated-pi) is a stand-in running ARM's kernels, not the device
        return f"{'emulated' if self.machine.get('emulated') else 'device'}:{self.host}"

    def to_json(self) -> dict[str, Any]:
        d = json.loads(json.dumps(asdict(self)))  # tuples as lists: plain JSON data
        d["accuracy_where"] = self.accuracy_where
        return d


@dataclass(frozen=True)
class HostRun:
    """The same artifact run on this machine: agreement with the device and the images that flipped."""

    runtime: str
    top1: float
    agreement: float
    flipped: tuple[int, ...]  # image indices whose top-1 differs between device and host
    mcnemar: dict[str, Any]  # host run (a) against the device (b)


# -- on the device ------------------------------------------------------------------------------


def predict_file(
    artifact: str | os.PathLike,
    images: str | os.PathLike,
    *,
    runtime: str | None = None,
    threads: int | None = None,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Run the uint8 images of ``images`` (.npz) through the artifact here; the JSON-able answer."""
    from edgecnn.devices.detect import environment
    from edgecnn.evaluate import plan_batch, predict_topk
    from edgecnn.runtimes import open_session

    try:
        with np.load(images, allow_pickle=False) as z:
            x = z["images"]
    except (OSError, ValueError, KeyError) as e:
        raise EdgecnnError(f"cannot read the images sent to the device ({images}): {e}") from e
    start = time.perf_counter()
    with open_session(artifact, runtime=runtime, threads=threads) as session:
        plan_batch(session, batch_size)
        top = predict_topk(session, x, batch_size)
        info, used = dict(session.info), session.runtime
    seconds = time.perf_counter() - start
    env = environment()
    return {
        "format": FORMAT,
        "topk": _pack(top),
        "runtime": used,
        "runtime_info": info,
        "runtime_version": _runtime_version(info, env["versions"]),
        "machine": machine_info(env),
        "seconds": round(seconds, 3),
    }


def machine_info(env: dict[str, Any] | None = None) -> dict[str, Any]:
    """Where a device run happened: host name, uname and the fingerprint's machine fields."""
    from edgecnn.bench import environment

    env = env or environment()
    return {
        "hostname": platform.node(),
        "uname": " ".join(platform.uname()[:3] + (platform.uname()[4],)),
        **{
            k: env.get(k)
            for k in (
                "machine",
                "cpu_model",
                "cpu_count",
                "board",
                "device",
                "python",
                "edgecnn",
                "l4t_release",
                "nvpmodel",
                "emulated",
                "hwcaps",
            )
        },
    }


def _runtime_version(info: dict[str, Any], versions: dict[str, str]) -> str | None:
    if info.get("version"):
        return str(info["version"])
    package = str(info.get("package") or "").replace("_", "-")
    return versions.get(package)


def _pack(a: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(a, dtype="<i4")
    return {
        "shape": list(a.shape),
        "dtype": "int32",
        "zlib_base64": base64.b64encode(zlib.compress(a.tobytes())).decode(),
    }


def unpack(d: dict[str, Any]) -> np.ndarray:
    """The array :func:`_pack` sent; a damaged one is an :class:`EdgecnnError`."""
    try:
        raw = zlib.decompress(base64.b64decode(d["zlib_base64"]))
        return np.frombuffer(raw, dtype="<i4").reshape(d["shape"]).astype(np.int64)
    except (KeyError, TypeError, ValueError, zlib.error) as e:
        raise EdgecnnError(f"the device's predictions are damaged ({type(e).__name__}: {e})") from None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edgecnn.device_eval ARTIFACT IMAGES``: what ``evaluate --host`` runs on the device."""
    p = argparse.ArgumentParser(
        prog="python -m edgecnn.device_eval",
        description="Top-5 classes of uint8 images (.npz) through an artifact, as JSON.",
    )
    p.add_argument("artifact")
    p.add_argument("images")
    p.add_argument("--runtime")
    p.add_argument("--threads", type=int)
    p.add_argument("--batch-size", type=int)
    a = p.parse_args(argv)
    try:
        out = predict_file(
            a.artifact, a.images, runtime=a.runtime, threads=a.threads, batch_size=a.batch_size
        )
    except EdgecnnError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(json.dumps(out))
    return 0


# -- on this machine ----------------------------------------------------------------------------


def evaluate_hosts(
    path: str | os.PathLike,
    hosts: Iterable[str],
    *,
    data: str | os.PathLike | None = None,
    split: str = "test",
    limit: int | None = None,
    batch_size: int | None = None,
    runtime: str | None = None,
    threads: int | None = None,
    compare_host: bool = True,
    remote_python: str | None = None,
    ssh_config: str | os.PathLike | None = None,
    ssh_options: Sequence[str] = (),
    timeout: float | None = None,
    log: Callable[[str], None] | None = None,
) -> list:
    """Measure the artifact's accuracy on every host at once; one :class:`edgecnn.remote.HostResult` each.

    A host's ``result`` is a :class:`DeviceAccuracy`. ``compare_host`` also runs the
    artifact here (:func:`host_runtime`) for agreement and flips. Arguments as
    :func:`edgecnn.evaluate.evaluate_artifact` and :func:`edgecnn.remote.bench_hosts`.
    """
    hosts = list(hosts)
    remote_python, ssh_config = check_hosts(hosts, remote_python, ssh_config, ssh_options)
    es = load_eval_set(path, data=data, split=split, limit=limit)
    local = _host_run(es, runtime, threads, batch_size, log) if compare_host else None
    art_dir = Path(es.art.dir).resolve()
    name = art_dir.name or "artifact"
    args = [
        f"--{k.replace('_', '-')}={v}"
        for k, v in (("runtime", runtime), ("threads", threads), ("batch_size", batch_size))
        if v is not None
    ]
    script = _script(name, remote_python, args)
    with tempfile.TemporaryDirectory(prefix="edgecnn-remote-") as tmp:
        npz, tar = Path(tmp) / IMAGES, Path(tmp) / "artifact.tar"
        np.savez_compressed(npz, images=es.images)
        _tar_artifact(art_dir, name, tar, {IMAGES: npz})
        if log:
            log(
                f"evaluating {name} on {', '.join(hosts)}: {len(es.labels)} images "
                f"({tar.stat().st_size / 1e3:,.0f} kB sent to each)"
            )

        def one(host: str) -> DeviceAccuracy:
            answer, wall_s = run_on_host(
                host,
                tar,
                script,
                remote_python=remote_python,
                ssh_config=ssh_config,
                ssh_options=ssh_options,
                timeout=timeout,
                expect="topk",
                what="evaluation",
            )
            return device_accuracy(host, answer, es, local, wall_s)

        return for_each_host(hosts, one)


def _script(name: str, remote_python: str, args: Sequence[str]) -> str:
    command = (
        f'{_python_words(remote_python)} -m edgecnn.device_eval "$d"/{shlex.quote(name)} "$d"/{IMAGES}'
        + "".join(" " + shlex.quote(a) for a in args)
    )
    return device_script(command)


def host_runtime(art: Artifact, runtime: str | None = None) -> tuple[str, str | None]:
    """(the runtime that runs the :class:`~edgecnn.artifact.Artifact` ``art`` (or deploy's
    :class:`edgecnn.results.Artifact`: the same ``meta``, ``model_file`` and ``runtime``) in ``runtime``
    (default: its own) here, a note when it is a stand-in).

    TensorRT's QDQ ONNX runs here where TensorRT is not importable: in OpenVINO where it reads the
    file as TensorRT does (:func:`_openvino_reads_as_tensorrt`), else in ONNX Runtime, which keeps the
    QDQ semantics exactly but runs a convolution followed by a ReLU in FP32 between its
    DequantizeLinear and QuantizeLinear (its QDQ selectors do not fuse them): VGG16's 10,000 test
    images in 47 s against OpenVINO's 4.2 (docs/BENCHMARKS.md, machine F).
    """
    import importlib.util

    runtime = runtime or art.runtime
    if runtime != "tensorrt" or importlib.util.find_spec("tensorrt") is not None:
        return runtime, None
    standin = "openvino" if _openvino_reads_as_tensorrt(art) else "onnxruntime"
    return standin, (
        f"tensorrt is not importable here: the same QDQ/ONNX file ran in {standin} "
        f"(a stand-in, not the Jetson's TensorRT)"
    )


def _openvino_reads_as_tensorrt(art: Artifact) -> bool:
    """Whether OpenVINO stands in for TensorRT on this file: an INT8 QDQ graph, which OpenVINO runs as
    integer convolutions as TensorRT does, on an x86 CPU with VNNI (without it 8-bit products can
    saturate), with no Add of two dequantized tensors (a residual add: OpenVINO's low-precision
    transformations compute it their own way; ResNet18 agreed with its fake-quant graph on 99.11% of
    the test split in OpenVINO, 99.97% in ONNX Runtime; VGG16, AlexNet and GoogLeNet on 99.98-100% in
    both)."""
    import importlib.util

    if art.meta.get("precision") != "int8" or art.model_file.suffix != ".onnx" or not has_vnni():
        return False
    if importlib.util.find_spec("openvino") is None or importlib.util.find_spec("onnx") is None:
        return False
    import onnx

    graph = onnx.load(str(art.model_file), load_external_data=False).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return not any(n.op_type == "Add" and sum(i in dequantized for i in n.input) > 1 for n in graph.node)


def _host_run(
    es: EvalSet,
    runtime: str | None,
    threads: int | None,
    batch_size: int | None,
    log: Callable[[str], None] | None,
) -> dict[str, Any]:
    from edgecnn.evaluate import evaluate_here

    rt, note = host_runtime(es.art, runtime)
    r = evaluate_here(es, runtime=rt, threads=threads, batch_size=batch_size, log=log)
    return {
        "runtime": rt,
        "note": note,
        "top1": r["top1"],
        "predictions": r["predictions"],
        "correct": r["correct"],
    }


def device_accuracy(
    host: str, answer: dict[str, Any], es: EvalSet, local: dict[str, Any] | None, wall_s: float
) -> DeviceAccuracy:
    """The device's answer scored against the labels and references here."""
    top = unpack(answer["topk"])
    n = len(es.labels)
    if top.ndim != 2 or len(top) != n:
        raise EdgecnnError(f"{host}: the device returned predictions for {len(top)} images, not {n}")
    s = score(top, es.labels, es.references)
    notes = list(es.notes)
    host_run = None
    if local is not None:
        flipped = np.flatnonzero(s["predictions"] != local["predictions"])
        host_run = HostRun(
            local["runtime"],
            local["top1"],
            float(1 - len(flipped) / n),
            tuple(int(i) for i in flipped),
            mcnemar(local["correct"], s["correct"]),
        )
        notes += [local["note"]] if local["note"] else []
    meta = es.art.meta
    return DeviceAccuracy(
        host=host,
        machine=answer.get("machine") or {},
        runtime=answer.get("runtime"),
        runtime_version=answer.get("runtime_version"),
        runtime_info=answer.get("runtime_info") or {},
        artifact=str(es.art.dir),
        arch=meta.get("arch"),
        target=meta.get("target"),
        precision=meta.get("precision"),
        dataset=es.dataset,
        split=es.split,
        split_id=es.split_id,
        num_images=n,
        top1=s["top1"],
        top5=s["top5"],
        top1_ci=tuple(s["top1_ci"]),
        ci_level=s["ci_level"],
        bootstrap_resamples=s["bootstrap_resamples"],
        reference_source=s["reference_source"],
        reference_top1=s["reference_top1"],
        agreement=s["agreement"],
        fp32_top1=s["fp32_top1"],
        delta_top1=s["delta_top1"],
        mcnemar=s["mcnemar"],
        host_run=host_run,
        seconds=float(answer.get("seconds") or 0.0),
        wall_s=round(wall_s, 3),
        notes=tuple(notes),
    )


if __name__ == "__main__":
    sys.exit(main())
