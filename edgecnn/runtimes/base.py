"""The :class:`Session` interface and what every runtime shares; imports no backend.

A session runs float32 batches in the artifact's layout and returns float32 logits. A
model with a fixed batch size (TFLite exports, static OpenVINO/ONNX shapes) is fed in
chunks of that size, the last one padded with zeros and its padding dropped from the
output, so callers may pass any number of images.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import EdgecnnError

# What each model-file suffix can run in (the first is its natural runtime).
FILE_RUNTIMES: dict[str, tuple[str, ...]] = {
    ".onnx": ("onnxruntime", "openvino", "tensorrt"),
    ".xml": ("openvino",),
    ".tflite": ("tflite",),
    ".engine": ("tensorrt",),
    ".plan": ("tensorrt",),
    ".trt": ("tensorrt",),
}
FILE_KINDS = {
    ".onnx": "an ONNX model",
    ".xml": "an OpenVINO IR",
    ".tflite": "a TFLite model",
    ".engine": "a TensorRT engine",
    ".plan": "a TensorRT engine",
    ".trt": "a TensorRT engine",
}

TENSORRT_MISSING = (
    "TensorRT runtime not installed: on a Jetson it comes with JetPack; "
    "elsewhere pip install 'edgecnn[tensorrt]'"
)
INSTALL_HINTS = {
    "onnxruntime": "ONNX Runtime is not installed: pip install 'edgecnn[onnx]'",
    "openvino": "OpenVINO is not installed: pip install 'edgecnn[openvino]'",
    "tflite": (
        "no TFLite interpreter is installed (ai-edge-litert or tflite-runtime): "
        "pip install 'edgecnn[tflite]' (on a Raspberry Pi: pip install ai-edge-litert)"
    ),
    "tensorrt": TENSORRT_MISSING,
}


def missing_backend(runtime: str) -> EdgecnnError:
    """The error for a runtime whose Python package cannot be imported."""
    return EdgecnnError(INSTALL_HINTS[runtime])


def check_file_runtime(path: Path, runtime: str) -> None:
    """Refuse a model file that ``runtime`` cannot load, naming the runtime it needs."""
    suffix = path.suffix.lower()
    allowed = FILE_RUNTIMES.get(suffix)
    if allowed is None:
        raise EdgecnnError(
            f"{path.name}: unknown model file type '{suffix}'; expected one of {', '.join(FILE_RUNTIMES)}"
        )
    if runtime not in allowed:
        needs = " or ".join(allowed)
        raise EdgecnnError(
            f"{path.name} is {FILE_KINDS[suffix]}: it runs in {needs}, not {runtime}; "
            f"pass --runtime {allowed[0]} or leave --runtime out"
        )


def static_dim(d: Any) -> int | None:
    """A static dimension as int, a dynamic one (None, -1, 'N', '?') as None."""
    if isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0:
        return int(d)
    return None


@dataclass(frozen=True)
class TimedCall:
    """One inference on an input bound once, for timing (``bench``): ``run()`` converts and copies nothing.

    ``output()`` gives the float32 logits of the last ``run()``; ``runtime_ms()`` the runtime's own
    time of it where it keeps one (OpenVINO's ``InferRequest.latency``), else it is None; ``binding``
    says how the input is bound.
    """

    run: Callable[[], Any]
    output: Callable[[], np.ndarray]
    binding: str
    runtime_ms: Callable[[], float] | None = None


class Session(ABC):
    """One loaded model. ``run(x)``: float32 batch (any N) in ``layout`` -> float32 logits N x classes.

    Attributes: ``runtime`` (its name), ``input_shape`` (full input shape, batch
    dimension None when dynamic), ``batch`` (the fixed batch size or None), ``num_classes``
    (from the output shape, None when unknown), ``layout``
    ("NCHW"/"NHWC" or None when unknown), ``info`` (runtime details for reports).
    Sessions are context managers; ``close()`` frees the model.
    """

    runtime: str = ""

    def __init__(
        self,
        input_shape,
        *,
        num_classes: int | None = None,
        layout: str | None = None,
        info: dict[str, Any] | None = None,
    ):
        dims = [static_dim(d) for d in input_shape]
        self.input_shape: tuple[int | None, ...] = tuple(dims)
        self.batch: int | None = dims[0] if dims else None
        self.num_classes = num_classes
        self.layout = layout
        self.info: dict[str, Any] = {"runtime": self.runtime, **(info or {})}
        self.closed = False

    # -- subclasses -------------------------------------------------------------------

    @abstractmethod
    def _run(self, x: np.ndarray) -> np.ndarray:
        """Run one contiguous float32 chunk (exactly ``batch`` images when it is fixed)."""

    def _close(self) -> None:  # noqa: B027 - optional hook: a backend with nothing to release skips it
        """Release backend objects."""

    # -- public -----------------------------------------------------------------------

    def run(self, x: np.ndarray) -> np.ndarray:
        if self.closed:
            raise EdgecnnError(f"this {self.runtime} session is closed; open a new one")
        x = np.ascontiguousarray(x, dtype=np.float32)
        self._check_input(x)
        n = len(x)
        if n == 0:
            return np.zeros((0, self.num_classes or 0), np.float32)
        if self.batch is None:
            return self._logits(self._run(x), n)
        b, outs = self.batch, []
        for start in range(0, n, b):
            chunk = x[start : start + b]
            m = len(chunk)
            if m < b:
                chunk = np.concatenate([chunk, np.zeros((b - m, *chunk.shape[1:]), np.float32)])
            outs.append(self._logits(self._run(chunk), b)[:m])
        return np.concatenate(outs)

    def set_batch(self, n: int) -> bool:
        """Run ``n`` images per call from now on, where the runtime can plan a fixed-batch model again for
        ``n`` (TFLite); False, with nothing changed, where it cannot. The model file is not touched."""
        return False

    def timed_call(self, x: np.ndarray) -> TimedCall:
        """A :class:`TimedCall` running ``x`` (exactly ``batch`` images where it is fixed) again and again.

        Runtimes override it to bind ``x`` once; this fallback times :meth:`run` itself.
        """
        run = partial(self.run, self._bench_input(x))
        return TimedCall(run, run, "Session.run per call (converts and copies)")

    def close(self) -> None:
        if not self.closed:
            self._close()
            self.closed = True

    def __enter__(self):  # -> the session itself
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        shape = ["N" if d is None else d for d in getattr(self, "input_shape", ())]
        return f"<{type(self).__name__} {self.runtime} input={shape} batch={getattr(self, 'batch', None)}>"

    # -- helpers ----------------------------------------------------------------------

    def _check_input(self, x: np.ndarray) -> None:
        want = self.input_shape
        ok = x.ndim == len(want) and all(
            w is None or w == s for w, s in zip(want[1:], x.shape[1:], strict=True)
        )
        if not ok:
            shape = ["N" if d is None else d for d in want]
            layout = f" ({self.layout})" if self.layout else ""
            raise EdgecnnError(
                f"input batch shaped {list(x.shape)} does not fit the model's input {shape}"
                f"{layout}; preprocess images with the artifact's metadata preprocess"
            )

    def _bench_input(self, x: np.ndarray) -> np.ndarray:
        """``x`` as a checked, contiguous float32 batch of exactly the model's fixed batch size."""
        if self.closed:
            raise EdgecnnError(f"this {self.runtime} session is closed; open a new one")
        x = np.ascontiguousarray(x, dtype=np.float32)
        self._check_input(x)
        if self.batch is not None and len(x) != self.batch:
            raise EdgecnnError(
                f"the model's batch is fixed at {self.batch}; time it with {self.batch} images, not {len(x)}"
            )
        return x

    @staticmethod
    def _logits(out: np.ndarray, n: int) -> np.ndarray:
        out = np.asarray(out)
        return np.array(out.reshape(n, -1), dtype=np.float32, copy=True)
