"""TFLite / LiteRT: ``ai_edge_litert`` (XNNPACK), else the older ``tflite_runtime``.

Exports here have a fixed batch size; :class:`Session` feeds them in chunks of it. A
full-integer model's int8/uint8 input is quantized here from the float32 batch with the
input tensor's own scale and zero point, and its output dequantized likewise, so the
caller always passes float32 and gets float32 logits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.runtimes.base import Session, TimedCall, missing_backend, static_dim


def interpreter_class() -> tuple[Any, str]:
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime"
    except ImportError as e:
        raise missing_backend("tflite") from e


def _quant_params(detail: dict[str, Any], path: Path) -> tuple[float, int] | None:
    """(scale, zero_point) of an integer tensor, None for a float one."""
    if np.dtype(detail["dtype"]).kind == "f":
        return None
    qp = detail.get("quantization_parameters") or {}
    scales = np.atleast_1d(qp.get("scales", []))
    zeros = np.atleast_1d(qp.get("zero_points", []))
    if len(scales) > 1:
        raise EdgecnnError(
            f"{path.name}: tensor {detail['name']} is quantized per channel; edgecnn expects "
            f"per-tensor input/output quantization"
        )
    scale, zero = (float(scales[0]), int(zeros[0])) if len(scales) else detail["quantization"]
    if not scale:
        raise EdgecnnError(f"{path.name}: integer tensor {detail['name']} has no quantization scale")
    return float(scale), int(zero)


class TfliteSession(Session):
    runtime = "tflite"

    def __init__(self, path: str | Path, *, threads: int | None = None, layout: str | None = None, **_):
        path = Path(path)
        Interpreter, package = interpreter_class()
        try:
            self._interp = Interpreter(model_path=str(path), num_threads=int(threads) if threads else None)
            self._interp.allocate_tensors()
        except (RuntimeError, ValueError) as e:
            raise EdgecnnError(f"{package} cannot load {path}: {str(e).strip().splitlines()[0]}") from e
        inputs, outputs = self._interp.get_input_details(), self._interp.get_output_details()
        if len(inputs) != 1:
            raise EdgecnnError(f"{path} has {len(inputs)} inputs; edgecnn models take one image batch")
        inp, out = inputs[0], outputs[0]
        self._in_index, self._out_index = inp["index"], out["index"]
        self._in_dtype = np.dtype(inp["dtype"])
        self._in_q, self._out_q = _quant_params(inp, path), _quant_params(out, path)
        if self._in_q:
            info = np.iinfo(self._in_dtype)
            self._in_range = (info.min, info.max)
        shape = [int(d) for d in inp["shape"]]
        sig = [int(d) for d in inp.get("shape_signature", shape)]
        super().__init__(
            [s if g > 0 else None for s, g in zip(shape, sig, strict=True)],
            num_classes=static_dim(int(out["shape"][-1])),
            layout=layout,
            info={
                "package": package,
                "threads": threads,
                "input_dtype": self._in_dtype.name,
                "input_quantization": self._in_q,
                "output_quantization": self._out_q,
            },
        )
        if self.batch is None:  # a dynamic batch: run the batch size it was allocated with
            self.batch = shape[0]

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        """The float32 batch in the input tensor's dtype (quantized with its scale and zero point)."""
        if not self._in_q:
            return x
        scale, zero = self._in_q
        return np.clip(np.round(x / scale) + zero, *self._in_range).astype(self._in_dtype)

    def set_batch(self, n: int) -> bool:
        """Plan the interpreter for ``n`` images per ``invoke()`` (``resize_tensor_input``): XNNPACK's kernels
        give every image the same logits at any batch (tested), and 10,000 batch-1 invokes of an
        FP32 VGG16 take 1.6x as long as batches of 128. False, with the model's own batch kept, where
        the graph cannot take ``n`` (a reshape fixed to its batch)."""
        if n == self.batch:
            return True
        own = self.batch
        try:
            self._plan(n)
            ok = tuple(self._interp.get_output_details()[0]["shape"][:1]) == (n,)
        except (RuntimeError, ValueError):
            ok = False
        if not ok:
            self._plan(own)
            return False
        self.batch, self.input_shape = n, (n, *self.input_shape[1:])
        self.info["batch_planned"] = n
        return True

    def _plan(self, n: int) -> None:
        self._interp.resize_tensor_input(self._in_index, [n, *self.input_shape[1:]])
        self._interp.allocate_tensors()

    def timed_call(self, x: np.ndarray) -> TimedCall:
        """``x`` quantized and set once (``set_tensor``); ``invoke()`` per call."""
        self._interp.set_tensor(self._in_index, self._quantize(self._bench_input(x)))
        return TimedCall(self._interp.invoke, self._output, "set_tensor once, Interpreter.invoke() per call")

    def _run(self, x: np.ndarray) -> np.ndarray:
        self._interp.set_tensor(self._in_index, self._quantize(x))
        self._interp.invoke()
        return self._output()

    def _output(self) -> np.ndarray:
        """The output tensor of the last inference as float32 (dequantized with its scale and zero point)."""
        y = self._interp.get_tensor(self._out_index)
        if self._out_q:
            scale, zero = self._out_q
            y = (y.astype(np.float32) - zero) * np.float32(scale)
        return y

    def _close(self) -> None:
        self._interp = None
