"""Per-layer times of an exported artifact from its runtime's own profiler (``edgecnn bench --profile``).

- OpenVINO: ``PERF_COUNT`` on the CPU plugin; each inference's ``profiling_info`` (executed
  nodes, their type and the kernel OpenVINO chose, e.g. ``brgconv_avx512_amx_I8``).
- ONNX Runtime: ``SessionOptions.enable_profiling``; the ``*_kernel_time`` events of its trace.
- TFLite / LiteRT: ai-edge-litert 2.3's Python ``Interpreter`` and ``CompiledModel`` expose no
  op profiler, so this runs LiteRT's ``benchmark_model`` tool (``--enable_op_profiling``, CSV
  output; the binary from ``$EDGECNN_TFLITE_BENCHMARK_MODEL`` or ``benchmark_model`` on PATH).
  With XNNPACK the per-operator times are the delegate's internal ones.
- TensorRT: ``trtexec --loadEngine ENGINE --exportProfile`` (the engine cached for this GPU, built
  from the ONNX when missing).

Times are per inference: the median over the timed runs where the profiler reports each run
(ONNX Runtime, trtexec), the mean over the timed runs otherwise (OpenVINO, whose counters are
running means: differenced; benchmark_model). The first inferences (weight packing) are excluded.
Nothing here imports torch.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import EdgecnnError

PROFILE_FORMAT = "edgecnn.layer-profile/1"
TFLITE_TOOL_ENV = "EDGECNN_TFLITE_BENCHMARK_MODEL"
TFLITE_TOOLS = ("benchmark_model", "linux_aarch64_benchmark_model", "linux_x86-64_benchmark_model")


@dataclass(frozen=True)
class LayerTime:
    """One executed layer (node, operator) and its time per inference."""

    name: str
    op_type: str
    ms: float
    kernel: str = ""  # the implementation the runtime chose, where it says


@dataclass(frozen=True)
class LayerProfile:
    """Per-layer times of one artifact in one runtime, from that runtime's profiler."""

    artifact: str
    arch: str | None
    precision: str | None
    runtime: str
    version: str
    profiler: str
    statistic: str
    runs: int
    threads: int | None
    layers: tuple[LayerTime, ...]
    wall_ms: float | None = None  # median wall time of one inference, timed with the profiler on
    host: str | None = None  # the SSH host it ran on (None: this machine)

    @property
    def total_ms(self) -> float:
        return float(sum(x.ms for x in self.layers))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["format"] = PROFILE_FORMAT
        d["layers"] = [asdict(x) for x in self.layers]
        d["total_ms"] = self.total_ms
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LayerProfile:
        keep = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        keep["layers"] = tuple(LayerTime(**x) for x in d["layers"])
        return cls(**keep)


def _random_input(shape, seed: int = 0) -> np.ndarray:
    dims = [d if d else 1 for d in shape]
    return np.random.default_rng(seed).standard_normal(dims).astype(np.float32)


def _openvino(art, threads: int | None, runs: int, warmup: int) -> dict[str, Any]:
    """OpenVINO's CPU counters are running means since the request's first inference (the first, with its
    one-off weight packing, weighs on all later ones), so the timed runs' mean is differenced out of the
    means after the warm-up and after the last run: (N * mean_N - W * mean_W) / (N - W)."""
    from edgecnn.runtimes import open_session

    session = open_session(art, runtime="openvino", threads=threads, options={"perf_count": True})
    try:
        x = _random_input(session.input_shape)
        walls = []
        after_warmup: dict[str, float] = {}
        for i in range(warmup + runs):
            t0 = time.perf_counter()
            session.run(x)
            if i >= warmup:
                walls.append((time.perf_counter() - t0) * 1e3)
            if i == warmup - 1:
                after_warmup = {
                    p.node_name: p.real_time.total_seconds() * 1e3 for p in session.profiling_info()
                }
        n, w = warmup + runs, warmup
        layers = tuple(
            LayerTime(
                p.node_name,
                p.node_type,
                max(
                    0.0,
                    (n * p.real_time.total_seconds() * 1e3 - w * after_warmup.get(p.node_name, 0.0)) / runs,
                ),
                p.exec_type,
            )
            for p in session.profiling_info()
            if str(p.status).split(".")[-1] == "EXECUTED"
        )
        version = session.info.get("version", "")
    finally:
        session.close()
    return {
        "layers": layers,
        "version": version,
        "profiler": "OpenVINO PERF_COUNT",
        "statistic": f"mean over {runs} runs (after {warmup} warm-up)",
        "wall_ms": statistics.median(walls),
    }


def _onnxruntime(art, threads: int | None, runs: int, warmup: int) -> dict[str, Any]:
    from edgecnn.runtimes import open_session

    with tempfile.TemporaryDirectory(prefix="edgecnn-ort-profile-") as tmp:
        session = open_session(
            art, runtime="onnxruntime", threads=threads, options={"profile_prefix": str(Path(tmp) / "ort")}
        )
        try:
            x = _random_input(session.input_shape)
            walls = []
            for i in range(warmup + runs):
                t0 = time.perf_counter()
                session.run(x)
                if i >= warmup:
                    walls.append((time.perf_counter() - t0) * 1e3)
            trace = json.loads(Path(session.end_profiling()).read_text())
            version = session.info.get("version", "")
        finally:
            session.close()
    layers = ort_layers(trace, runs)
    return {
        "layers": layers,
        "version": version,
        "profiler": "ONNX Runtime enable_profiling",
        "statistic": f"median over {runs} runs",
        "wall_ms": statistics.median(walls),
    }


def ort_layers(trace: list[dict[str, Any]], runs: int) -> tuple[LayerTime, ...]:
    """The last ``runs`` ``*_kernel_time`` events of each node of an ONNX Runtime trace, medians."""
    order: list[str] = []
    times: dict[str, list[float]] = {}
    info: dict[str, tuple[str, str]] = {}
    for ev in sorted((e for e in trace if e.get("cat") == "Node"), key=lambda e: e.get("ts", 0)):
        name = str(ev.get("name", ""))
        if not name.endswith("_kernel_time"):
            continue
        node = name[: -len("_kernel_time")]
        args = ev.get("args") or {}
        if node not in times:
            order.append(node)
            times[node] = []
            info[node] = (str(args.get("op_name", "")), str(args.get("provider", "")))
        times[node].append(float(ev.get("dur", 0)) / 1e3)
    return tuple(LayerTime(n, info[n][0], statistics.median(times[n][-runs:]), info[n][1]) for n in order)


def find_tool(env: str, names: tuple[str, ...], what: str, hint: str) -> str:
    """A profiling tool: ``$env``, else the first of ``names`` on PATH; EdgecnnError naming how to get it."""
    explicit = os.environ.get(env)
    if explicit:
        if not (Path(explicit).is_file() and os.access(explicit, os.X_OK)):
            raise EdgecnnError(f"${env}={explicit} is not an executable file")
        return explicit
    for n in names:
        found = shutil.which(n)
        if found:
            return found
    raise EdgecnnError(f"{what} not found (set ${env} or put {names[0]} on PATH): {hint}")


def _run_tool(argv: list[str], what: str, timeout: float = 600) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EdgecnnError(f"{what} could not run: {e}") from None
    if proc.returncode != 0:
        last = ((proc.stderr or proc.stdout).strip().splitlines() or ["no output"])[-1]
        raise EdgecnnError(f"{what} failed (exit {proc.returncode}): {last}")


def tflite_csv_layers(text: str) -> tuple[LayerTime, ...]:
    """Per-operator averages from ``benchmark_model --op_profiling_output_mode=csv``: the "Run Order"
    table of the XNNPACK delegate's internal profile where there is one, else the interpreter's."""
    sections: list[list[LayerTime]] = []
    lines = text.splitlines()
    for i, ln in enumerate(lines):
        if "Run Order" not in ln or not ln.startswith("="):
            continue
        header = [h.strip() for h in lines[i + 1].split(",")]
        rows = []
        for row in csv.reader(io.StringIO("\n".join(lines[i + 2 :]))):
            if not row or not row[0].strip():
                break
            # strict=False: a report row may carry fewer or more cells than the header; keep those named.
            cells = dict(zip(header, (c.strip() for c in row), strict=False))
            rows.append(LayerTime(cells.get("name", ""), cells.get("node type", ""), float(cells["avg_ms"])))
        sections.append(rows)
    if not sections:
        raise EdgecnnError("benchmark_model wrote no 'Run Order' op profile (is it older than TF 2.12?)")
    return tuple(sections[-1])  # "Delegate internal" comes after the interpreter's own table


def _tflite(art, threads: int | None, runs: int, warmup: int) -> dict[str, Any]:
    tool = find_tool(
        TFLITE_TOOL_ENV,
        TFLITE_TOOLS,
        "LiteRT's benchmark_model",
        "ai-edge-litert's Python API has no op profiler; download the prebuilt benchmark_model "
        "for your platform from the LiteRT/TensorFlow Lite performance-measurement page",
    )
    with tempfile.TemporaryDirectory(prefix="edgecnn-tflite-profile-") as tmp:
        out = Path(tmp) / "ops.csv"
        argv = [
            tool,
            f"--graph={art.model_file}",
            "--enable_op_profiling=true",
            "--op_profiling_output_mode=csv",
            f"--op_profiling_output_file={out}",
            f"--num_runs={runs}",
            f"--warmup_runs={max(1, warmup)}",
        ]
        if threads:
            argv.append(f"--num_threads={threads}")
        _run_tool(argv, "benchmark_model")
        layers = tflite_csv_layers(out.read_text())
    return {
        "layers": layers,
        "version": f"benchmark_model ({Path(tool).name})",
        "profiler": "LiteRT benchmark_model --enable_op_profiling",
        "statistic": f"average over {runs} runs",
        "wall_ms": None,
    }


def trtexec_layers(profile: list[dict[str, Any]]) -> tuple[LayerTime, ...]:
    """Per-layer times from ``trtexec --exportProfile`` JSON (its first entry is ``{"count": N}``)."""
    out = []
    for e in profile:
        if "name" not in e:
            continue
        ms = e.get("medianMs", e.get("averageMs"))
        if ms is None:
            raise EdgecnnError("trtexec profile entry has neither medianMs nor averageMs")
        out.append(LayerTime(str(e["name"]), "", float(ms)))
    return tuple(out)


def _tensorrt(art, threads: int | None, runs: int, warmup: int) -> dict[str, Any]:
    from edgecnn.tensorrt.build import find_trtexec

    trtexec = find_trtexec()
    if trtexec is None:
        raise EdgecnnError(
            "trtexec not found on PATH nor in /usr/src/tensorrt/bin: it comes with JetPack/TensorRT"
        )
    engine = tensorrt_engine(art)
    with tempfile.TemporaryDirectory(prefix="edgecnn-trt-profile-") as tmp:
        out = Path(tmp) / "profile.json"
        _run_tool(
            [
                trtexec,
                f"--loadEngine={engine}",
                f"--exportProfile={out}",
                "--separateProfileRun",
                f"--iterations={runs}",
                f"--warmUp={max(warmup, 1) * 100}",
            ],
            "trtexec",
        )
        layers = trtexec_layers(json.loads(out.read_text()))
    return {
        "layers": layers,
        "version": f"trtexec ({trtexec})",
        "profiler": "trtexec --exportProfile",
        "statistic": f"median over {runs} iterations",
        "wall_ms": None,
    }


def tensorrt_engine(art) -> str:
    """The engine file of a TensorRT artifact: the file itself, or the one cached for this GPU (built if
    missing)."""
    if art.model_file.suffix != ".onnx":
        return str(art.model_file)
    from edgecnn.runtimes import open_session

    session = open_session(art, runtime="tensorrt")
    try:
        cached = session.info.get("engine_cache")
    finally:
        session.close()
    if not cached:
        raise EdgecnnError(f"{art.model_file.name}: TensorRT built no cached engine file to profile")
    return cached


PROFILERS: dict[str, Callable[..., dict[str, Any]]] = {
    "openvino": _openvino,
    "onnxruntime": _onnxruntime,
    "tflite": _tflite,
    "tensorrt": _tensorrt,
}


def profile_artifact(
    path: str | os.PathLike,
    *,
    runtime: str | None = None,
    threads: int | None = None,
    runs: int = 20,
    warmup: int = 3,
) -> LayerProfile:
    """Per-layer times of the artifact at ``path`` from its runtime's profiler (sha256 checked)."""
    from edgecnn.artifact import load_artifact

    art = load_artifact(path, verify=True)
    rt = runtime or art.runtime
    if rt not in PROFILERS:
        raise EdgecnnError(f"--profile supports {', '.join(PROFILERS)}, not {rt}")
    got = PROFILERS[rt](art, threads, runs, warmup)
    if not got["layers"]:
        raise EdgecnnError(f"the {got['profiler']} profile of {art.model_file.name} lists no executed layer")
    return LayerProfile(
        artifact=str(art.dir),
        arch=art.meta.get("arch"),
        precision=art.meta.get("precision"),
        runtime=rt,
        version=str(got["version"]),
        profiler=got["profiler"],
        statistic=got["statistic"],
        runs=runs,
        threads=threads,
        layers=got["layers"],
        wall_ms=got["wall_ms"],
    )
