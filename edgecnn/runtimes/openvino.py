"""OpenVINO on the CPU, from an IR (``model.xml`` + ``model.bin``) or an ONNX file.

FP32 and INT8 artifacts compile with ``INFERENCE_PRECISION_HINT=f32``: OpenVINO's CPU
plugin otherwise runs float layers in bf16 on CPUs with AVX-512 BF16 or AMX (an FP32 model
then loses ~1e-3 relative precision; in an INT8 model, whatever stays float between the
integer kernels). FP16 artifacts let OpenVINO pick; ``info["precision_hint"]`` reports
what it chose.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.runtimes.base import INSTALL_HINTS, Session, TimedCall
from edgecnn.telemetry import import_openvino


class OpenVinoSession(Session):
    runtime = "openvino"

    def __init__(
        self,
        path: str | Path,
        *,
        threads: int | None = None,
        precision: str | None = None,
        layout: str | None = None,
        perf_count: bool = False,
        **_,
    ):
        ov = import_openvino(INSTALL_HINTS["openvino"])
        config: dict[str, object] = {}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if precision != "fp16":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        if perf_count:  # per-node times of every inference: profiling_info()
            config["PERF_COUNT"] = True
        core = ov.Core()
        try:
            model = core.read_model(str(path))
            self._compiled = core.compile_model(model, "CPU", config)
            self._reload = (core, str(path), config)  # timed_call compiles a static-shape copy
        except Exception as e:  # OpenVINO raises RuntimeError with multi-line text
            raise EdgecnnError(f"OpenVINO cannot load {path}: {str(e).strip().splitlines()[0]}") from e
        if len(self._compiled.inputs) != 1:
            raise EdgecnnError(f"{path} has {len(self._compiled.inputs)} inputs; edgecnn models take one")
        shape = [
            d.get_length() if d.is_static else None for d in self._compiled.inputs[0].get_partial_shape()
        ]
        out = self._compiled.outputs[0].get_partial_shape()
        classes = out[len(out) - 1].get_length() if len(out) and out[len(out) - 1].is_static else None
        self._request = self._compiled.create_infer_request()
        try:
            hint = self._compiled.get_property("INFERENCE_PRECISION_HINT")
            hint = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)  # "f32", "bf16"
        except (RuntimeError, TypeError):  # not reported by every plugin version
            hint = None
        super().__init__(
            shape,
            num_classes=classes,
            layout=layout,
            info={"version": ov.get_version(), "device": "CPU", "threads": threads, "precision_hint": hint},
        )

    def _run(self, x: np.ndarray) -> np.ndarray:
        self._request.infer({0: x})
        return self._request.get_output_tensor(0).data

    def timed_call(self, x: np.ndarray) -> TimedCall:
        """``x`` set once as the request's input tensor (shared memory); ``infer()`` with no inputs, as
        ``benchmark_app -api sync`` runs it; ``runtime_ms`` is the request's own ``latency``. A model with
        a dynamic batch is compiled again at ``x``'s shape for it, as ``benchmark_app -shape`` does, and
        the session then has that fixed batch (``run`` feeds it in chunks)."""
        ov = import_openvino()
        x = self._bench_input(x)
        if not self._compiled.inputs[0].get_partial_shape().is_static:
            # as benchmark_app -shape does: a dynamic batch costs shape inference on every call. One
            # compiled copy at a time (peak memory is reported); the session keeps x's batch from now on.
            core, path, config = self._reload
            self._request = self._compiled = None
            model = core.read_model(path)
            model.reshape({model.inputs[0]: ov.PartialShape(list(x.shape))})
            self._compiled = core.compile_model(model, "CPU", config)
            self._request = self._compiled.create_infer_request()
            self.batch = len(x)
            self.input_shape = (self.batch, *self.input_shape[1:])
        request = self._request
        request.set_input_tensor(ov.Tensor(x, shared_memory=True))
        return TimedCall(
            partial(request.infer, None, False, True),
            lambda: request.get_output_tensor(0).data,
            "InferRequest: input tensor set once (shared memory), infer() with no inputs, "
            f"compiled at the static shape {list(x.shape)}",
            runtime_ms=lambda: request.latency,
        )

    def profiling_info(self) -> list:
        """OpenVINO's per-node records of the last inference (opened with ``perf_count=True``)."""
        return list(self._request.profiling_info)

    def _close(self) -> None:
        self._request = self._compiled = None
