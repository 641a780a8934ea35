"""ONNX Runtime on the CPU (``CPUExecutionProvider``)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.host import has_vnni
from edgecnn.runtimes.base import Session, TimedCall, missing_backend, static_dim


class OnnxRuntimeSession(Session):
    runtime = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        *,
        threads: int | None = None,
        layout: str | None = None,
        profile_prefix: str | None = None,
        **_,
    ):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise missing_backend("onnxruntime") from e
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # errors only
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        if profile_prefix:  # a trace of every node's kernel time: end_profiling()
            opts.enable_profiling = True
            opts.profile_file_prefix = profile_prefix
        exact = not has_vnni()
        if exact:
            # Without VNNI, ONNX Runtime's U8S8 kernels (AVX2 vpmaddubsw) saturate int16 partial sums
            # and give wrong logits; its exact U8U8 path avoids that at some cost in speed.
            opts.add_session_config_entry("session.x64quantprecision", "1")
        try:
            self._sess = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise EdgecnnError(f"ONNX Runtime cannot load {path}: {str(e).splitlines()[0]}") from e
        inputs, outputs = self._sess.get_inputs(), self._sess.get_outputs()
        if len(inputs) != 1:
            raise EdgecnnError(f"{path} has {len(inputs)} inputs; edgecnn models take one image batch")
        if inputs[0].type != "tensor(float)":
            raise EdgecnnError(
                f"{path} takes {inputs[0].type}; edgecnn runs models with a float32 input "
                f"(quantize inside the graph)"
            )
        self._input, self._output = inputs[0].name, outputs[0].name
        out_shape = outputs[0].shape
        super().__init__(
            inputs[0].shape,
            num_classes=static_dim(out_shape[-1]) if out_shape else None,
            layout=layout,
            info={
                "version": ort.__version__,
                "providers": self._sess.get_providers(),
                "threads": threads,
                "input_name": self._input,
                "x64quantprecision": exact,
            },
        )

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self._sess.run([self._output], {self._input: x})[0]

    def timed_call(self, x: np.ndarray) -> TimedCall:
        """Input and output ``OrtValue`` bound once through an ``IOBinding``; ``run_with_iobinding`` per
        call."""
        import onnxruntime as ort

        x = self._bench_input(x)
        y = np.empty_like(self._run(x))  # the output's shape, allocated once
        binding = self._sess.io_binding()
        binding.bind_ortvalue_input(self._input, ort.OrtValue.ortvalue_from_numpy(x))
        binding.bind_ortvalue_output(self._output, ort.OrtValue.ortvalue_from_numpy(y))
        return TimedCall(
            partial(self._sess.run_with_iobinding, binding),
            lambda: y,
            "IOBinding: input and output OrtValues bound once, run_with_iobinding()",
        )

    def end_profiling(self) -> str:
        """Stop ONNX Runtime's profiler (opened with ``profile_prefix``); the path of its JSON trace."""
        return self._sess.end_profiling()

    def _close(self) -> None:
        self._sess = None
