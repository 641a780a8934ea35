"""``edgecnn devices fit``: microbenchmarks of the host that fit the latency predictor to it.

(The command was ``devices calibrate`` until issue 14; "calibrate" now means only PTQ's
calibration. The old name still works, hidden.) The record
(:func:`edgecnn.devices.detect.host_fit_path`, ``$EDGECNN_HOME/devices/host-<hash>.json``,
written atomically; the hash covers CPU model, core count and ISA flags) holds:

- ``gemm_tops``: achieved tera-ops/s of a large matrix multiply per precision the host
  runs (FP32 and U8S8 INT8 through ONNX Runtime's MLAS kernels, else numpy for FP32),
  and ``conv_tops`` of a 3x3 convolution in FP32;
- ``bandwidth_gbps``: a large array copy (read + write bytes / time);
- ``layer_points`` (with OpenVINO installed; ``--no-layers`` skips it): single conv, linear and
  pool layers timed in OpenVINO at FP32 and INT8 (:mod:`edgecnn.devices.layers`), which the
  predictor fits its efficiencies to;
- optionally (``--nets``) ``calibration_points``: batch-1 latencies of the four networks
  measured with OpenVINO, which the predictor then fits like a device's published points.

Everything runs for a second or two per item; the machine may be shared, so the record
keeps the load average it ran under.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.devices.detect import FIT_FORMAT, cpuinfo, environment, host_fit_path, host_key
from edgecnn.devices.layers import measure_layers
from edgecnn.devices.openvino_cpu import openvino_network
from edgecnn.errors import EdgecnnError
from edgecnn.fileio import atomic_write_json
from edgecnn.timing import measure, median_seconds


def _ort_session(model_bytes: bytes, threads: int | None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def _onnx_single(op: str, inputs, init, output, attrs=None) -> bytes:
    from onnx import helper

    node = helper.make_node(
        op, [i.name for i in inputs] + [t.name for t in init], [output.name], **(attrs or {})
    )
    graph = helper.make_graph([node], op.lower(), inputs, [output], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _ort_tops(out: dict[str, Any], rng, n: int, threads: int | None, seconds: float, log) -> None:
    """FP32 and U8S8 GEMM and an FP32 3x3 conv through ONNX Runtime's MLAS kernels, into ``out``
    (ImportError without onnx / onnxruntime)."""
    from onnx import TensorProto, helper, numpy_helper

    out["backend"] = "onnxruntime"
    gemm_ops = 2.0 * n * n * n
    a32 = rng.standard_normal((n, n), dtype=np.float32)
    s = _ort_session(
        _onnx_single(
            "MatMul",
            [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
            [numpy_helper.from_array(rng.standard_normal((n, n), dtype=np.float32), "b")],
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n]),
        ),
        threads,
    )
    out["gemm_tops"]["fp32"] = gemm_ops / median_seconds(lambda: s.run(None, {"a": a32}), seconds) / 1e12
    log(f"  fp32 GEMM {n}^3: {out['gemm_tops']['fp32'] * 1e3:.1f} GOPS")
    a8 = rng.integers(0, 255, (n, n), dtype=np.uint8)
    s = _ort_session(
        _onnx_single(
            "MatMulInteger",
            [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])],
            [numpy_helper.from_array(rng.integers(-127, 127, (n, n), dtype=np.int8), "b")],
            helper.make_tensor_value_info("y", TensorProto.INT32, [n, n]),
        ),
        threads,
    )
    out["gemm_tops"]["int8"] = gemm_ops / median_seconds(lambda: s.run(None, {"a": a8}), seconds) / 1e12
    log(f"  int8 (U8S8) GEMM {n}^3: {out['gemm_tops']['int8'] * 1e3:.1f} GOPS")
    c, hw = 64, 56
    x = rng.standard_normal((1, c, hw, hw), dtype=np.float32)
    s = _ort_session(
        _onnx_single(
            "Conv",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, hw, hw])],
            [numpy_helper.from_array(rng.standard_normal((c, c, 3, 3), dtype=np.float32), "w")],
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, hw, hw]),
            {"pads": [1, 1, 1, 1]},
        ),
        threads,
    )
    conv_ops = 2.0 * c * c * 9 * hw * hw
    out["conv_tops"]["fp32"] = conv_ops / median_seconds(lambda: s.run(None, {"x": x}), seconds) / 1e12
    log(f"  fp32 conv 3x3 64ch 56px: {out['conv_tops']['fp32'] * 1e3:.1f} GOPS")


def microbenchmarks(
    threads: int | None = None,
    seconds: float = 1.0,
    size: int = 1024,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Achieved GEMM / conv tera-ops/s per precision and copy bandwidth (GB/s) of this host."""
    log = log or (lambda s: None)
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"gemm_tops": {}, "conv_tops": {}, "backend": None}
    n = size
    gemm_ops = 2.0 * n * n * n
    try:
        _ort_tops(out, rng, n, threads, seconds, log)
    except ImportError:
        out["backend"] = "numpy"
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        out["gemm_tops"]["fp32"] = gemm_ops / median_seconds(lambda: a @ b, seconds) / 1e12
        log(f"  fp32 GEMM (numpy) {n}^3: {out['gemm_tops']['fp32'] * 1e3:.1f} GOPS")
    src = np.ones(64 * 2**20 // 4, dtype=np.float32)  # 64 MiB: far beyond the caches
    dst = np.empty_like(src)
    out["bandwidth_gbps"] = 2 * src.nbytes / median_seconds(lambda: np.copyto(dst, src), seconds) / 1e9
    log(f"  copy bandwidth (1 thread): {out['bandwidth_gbps']:.1f} GB/s")
    return out


def measure_networks(
    archs=("alexnet", "vgg16", "resnet18", "googlenet"),
    precisions=("fp32",),
    *,
    image_size: int = 224,
    threads: int | None = None,
    min_seconds: float = 1.5,
    min_runs: int = 5,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Measured OpenVINO latencies of ``archs``: bench dicts (``latency_source`` "measured")."""
    log = log or (lambda s: None)
    results = []
    for prec in precisions:
        for arch in archs:
            run, x, load_ms = openvino_network(arch, image_size=image_size, precision=prec, threads=threads)
            r = measure(
                run,
                x,
                warmup=2,
                min_seconds=min_seconds,
                min_runs=min_runs,
                max_seconds=30,
                load_ms=load_ms,
                threads=threads,
            )
            r.update(arch=arch, runtime="openvino", precision=prec, image_size=image_size, batch=1)
            log(f"  {arch} {prec}: p50 {r['latency_ms']['p50']:.2f} ms")
            results.append(r)
            del run
    return results


def fit_host(
    *,
    nets: bool = False,
    int8_nets: bool = False,
    layers: bool = True,
    threads: int | None = None,
    seconds: float = 1.0,
    log: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], Path]:
    """Run the microbenchmarks (with ``layers`` the single-layer suite of :mod:`edgecnn.devices.layers`,
    with ``nets`` the four networks), store and return the record."""
    log = log or (lambda s: None)
    log("microbenchmarks:")
    rec: dict[str, Any] = {
        "format": FIT_FORMAT,
        "host": host_key(),
        "cpu_model": cpuinfo()["model"],
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "threads": threads,
        "loadavg_before": list(os.getloadavg()),
    }
    rec.update(microbenchmarks(threads=threads, seconds=seconds, log=log))
    if layers:
        log("single layers (OpenVINO, batch 1):")
        try:
            rec["layer_points"] = measure_layers(threads=threads, seconds=seconds / 2, log=log)
        except EdgecnnError as e:  # OpenVINO not installed: the record keeps the GEMM figures
            log(f"  skipped: {e}")
    if nets:
        log("networks (OpenVINO, batch 1, 224 px):")
        precs = ("fp32", "int8") if int8_nets else ("fp32",)
        measured = measure_networks(precisions=precs, threads=threads, log=log)
        rec["calibration_points"] = [
            {
                "arch": m["arch"],
                "runtime": "openvino",
                "precision": m["precision"],
                "latency_ms": round(m["latency_ms"]["p50"], 4),
                "threads": threads,
                "measured_with": "OpenVINO on this host (random weights)",
                "source": f"measured by `edgecnn devices fit --nets` {rec['created']}",
            }
            for m in measured
        ]
    rec["loadavg_after"] = list(os.getloadavg())
    rec["env"] = environment()
    path = host_fit_path()
    atomic_write_json(path, rec)
    return rec, path
