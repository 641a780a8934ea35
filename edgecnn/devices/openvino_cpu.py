"""Networks and single layers compiled for OpenVINO's CPU plugin, for latency only.

:func:`openvino_network` (a randomly initialised network, torch -> ONNX -> OpenVINO, INT8 by NNCF on
random images) is what `edgecnn bench ARCH` measures on the host and `edgecnn devices fit --nets`
times; :func:`compile_cpu` compiles for batch-1 latency, also for the single layers of
:mod:`edgecnn.devices.layers`. Imports OpenVINO and torch inside the functions.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import EdgecnnError


def _export_onnx(model, x, path: Path) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model, (x,), str(path), dynamo=False, input_names=["input"], output_names=["logits"]
            )
        except TypeError:  # an exporter without the legacy path
            torch.onnx.export(
                model, (x,), str(path), dynamo=True, input_names=["input"], output_names=["logits"]
            )


def compile_cpu(ov_model, precision: str, threads: int | None = None):
    """Compile for OpenVINO's CPU plugin for batch-1 latency; FP32 stays FP32 (AMX and AVX-512
    BF16 hosts would otherwise run it in bf16)."""
    from edgecnn.telemetry import import_openvino

    ov = import_openvino()
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if precision == "fp32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return ov.Core().compile_model(ov_model, "CPU", config)


def openvino_network(
    arch: str,
    *,
    image_size: int = 224,
    batch: int = 1,
    precision: str = "fp32",
    threads: int | None = None,
    calib_images: int = 32,
    seed: int = 0,
):
    """A randomly initialised ``arch`` compiled with OpenVINO on the CPU, for latency only.

    Converted torch -> ONNX -> OpenVINO; ``precision="int8"`` quantizes it with
    ``nncf.quantize`` on ``calib_images`` random images (fine for latency, not accuracy).
    Returns ``(run, x, load_ms)`` where ``run(x)`` returns the logits.
    """
    import torch

    from edgecnn.models import create
    from edgecnn.telemetry import import_nncf, import_openvino

    ov = import_openvino("measuring needs OpenVINO: pip install 'edgecnn[openvino]' (or pass --predict)")

    if precision not in ("fp32", "int8"):
        raise EdgecnnError(f"the OpenVINO measurement runs fp32 or int8, not {precision}")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    model = create(arch).eval()
    x = torch.randn(batch, 3, image_size, image_size)
    with tempfile.TemporaryDirectory(prefix="edgecnn-ov-") as d:
        onnx_path = Path(d) / "model.onnx"
        _export_onnx(model, x, onnx_path)
        del model
        ov_model = ov.convert_model(str(onnx_path))
    if precision == "int8":
        nncf = import_nncf("INT8 needs NNCF: pip install 'edgecnn[openvino]'")
        rng = np.random.default_rng(seed)
        data = [
            rng.standard_normal((batch, 3, image_size, image_size), dtype=np.float32)
            for _ in range(max(1, calib_images // batch))
        ]
        # NNCF draws progress bars on stdout: keep stdout for results (JSON, tables).
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("ignore")
            ov_model = nncf.quantize(ov_model, nncf.Dataset(data), subset_size=len(data))
    request = compile_cpu(ov_model, precision, threads).create_infer_request()
    load_ms = (time.perf_counter() - t0) * 1e3

    def run(inp: np.ndarray) -> np.ndarray:
        return request.infer({0: inp})[0]

    return run, x.numpy(), load_ms
