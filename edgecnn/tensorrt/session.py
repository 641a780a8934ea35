"""The TensorRT session (a Jetson, or any NVIDIA GPU with ``pip install 'edgecnn[tensorrt]'``).

Loads a serialized engine (``.engine``/``.plan``), or builds one from an ONNX artifact
whose runtime is ``tensorrt`` (INT8 from its Q/DQ nodes; FP16 allowed for int8 and fp16
artifacts) and caches it under ``$EDGECNN_HOME/engines`` by ONNX hash, precision, TensorRT
version and GPU (:mod:`edgecnn.tensorrt.engine_cache`), so the next session loads it at once.
Engines are tied to the GPU, TensorRT and JetPack versions they were built with: an
engine whose ``.json`` sidecar names another device is refused before loading, and a
foreign engine without one fails to deserialize, each with a clear error.

Device memory and the CUDA stream come from ``cuda-python`` (``cuda.bindings.runtime``
or the older ``cuda.cudart``), else from torch's CUDA allocator where torch is
installed. Uses the tensor API of TensorRT 10 and 11 (``num_io_tensors``, ``execute_async_v3``);
an older TensorRT is refused with one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.runtimes.base import Session, static_dim
from edgecnn.tensorrt.build import engine_for_onnx, gpu_device, import_tensorrt
from edgecnn.tensorrt.engine_cache import check_compatible, read_sidecar
from edgecnn.tensorrt.versions import TrtVersion, check_supported


class _CudaPython:
    """Device buffers and a stream through cuda-python."""

    def __init__(self):
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python < 12.6
        self.rt = cudart
        self.stream = self._ok(cudart.cudaStreamCreate())
        self._ptrs: list[Any] = []

    def _ok(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            raise EdgecnnError(f"CUDA error {err}; check the GPU with nvidia-smi (tegrastats on a Jetson)")
        return rest[0] if rest else None

    def alloc(self, nbytes: int) -> int:
        ptr = self._ok(self.rt.cudaMalloc(max(1, nbytes)))
        self._ptrs.append(ptr)
        return int(ptr)

    def to_device(self, ptr: int, x: np.ndarray) -> None:
        self._ok(
            self.rt.cudaMemcpyAsync(
                ptr, x, x.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream
            )
        )

    def to_host(self, y: np.ndarray, ptr: int) -> None:
        self._ok(
            self.rt.cudaMemcpyAsync(
                y, ptr, y.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream
            )
        )

    @property
    def handle(self) -> int:
        return int(self.stream)

    def sync(self) -> None:
        self._ok(self.rt.cudaStreamSynchronize(self.stream))

    def close(self) -> None:
        for p in self._ptrs:
            self.rt.cudaFree(p)
        self._ptrs = []
        self.rt.cudaStreamDestroy(self.stream)


class _CudaTorch:
    """Device buffers and a stream through torch (where cuda-python is missing)."""

    def __init__(self):
        import torch

        if not torch.cuda.is_available():
            raise EdgecnnError("TensorRT needs a CUDA GPU, and torch sees none; check the GPU driver")
        self.torch = torch
        self.stream = torch.cuda.Stream()
        self._bufs: dict[int, Any] = {}

    def alloc(self, nbytes: int) -> int:
        buf = self.torch.empty(max(1, nbytes), dtype=self.torch.uint8, device="cuda")
        self._bufs[buf.data_ptr()] = buf
        return buf.data_ptr()

    def to_device(self, ptr: int, x: np.ndarray) -> None:
        src = self.torch.from_numpy(np.ascontiguousarray(x).view(np.uint8).reshape(-1))
        with self.torch.cuda.stream(self.stream):
            self._bufs[ptr][: src.numel()].copy_(src)

    def to_host(self, y: np.ndarray, ptr: int) -> None:
        dst = self.torch.from_numpy(y.view(np.uint8).reshape(-1))
        with self.torch.cuda.stream(self.stream):
            dst.copy_(self._bufs[ptr][: dst.numel()])

    @property
    def handle(self) -> int:
        return self.stream.cuda_stream

    def sync(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        self._bufs.clear()


def cuda_device():
    """Device buffers, copies and a stream for TensorRT: cuda-python, else torch with CUDA."""
    try:
        return _CudaPython()
    except ImportError:
        pass
    try:
        return _CudaTorch()
    except ImportError as e:
        raise EdgecnnError(
            "TensorRT needs cuda-python (pip install cuda-python) or torch with CUDA to move data to the GPU"
        ) from e


class TensorRtSession(Session):
    runtime = "tensorrt"

    def __init__(
        self,
        path: str | Path,
        *,
        threads: int | None = None,
        precision: str | None = None,
        layout: str | None = None,
        **_,
    ):
        path = Path(path)
        trt = import_tensorrt()
        check_supported(TrtVersion.parse(trt.__version__))  # TensorRT older than 10: one clear line
        self._trt = trt
        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)
        cached = None
        if path.suffix == ".onnx":  # the cached engine of this ONNX on this GPU, built when missing
            built = engine_for_onnx(path, precision, trt=trt, logger=logger)
            cached = str(built.path) if built.path else None
            self._engine = self._runtime.deserialize_cuda_engine(built.data)
            if self._engine is None and built.cached:  # an unusable cache entry: build it again
                built = engine_for_onnx(path, precision, trt=trt, logger=logger, rebuild=True)
                self._engine = self._runtime.deserialize_cuda_engine(built.data)
        else:
            if (meta := read_sidecar(path)) is not None:  # refuse an engine built for another GPU/TensorRT
                check_compatible(meta, gpu_device(trt), path)
            self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise EdgecnnError(
                f"TensorRT {trt.__version__} cannot load {path.name}: engines only run on the "
                f"GPU, TensorRT and JetPack versions they were built with; rebuild it there"
            )
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        ins = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(ins) != 1 or not outs:
            raise EdgecnnError(f"{path.name} has {len(ins)} inputs and {len(outs)} outputs; expected 1 and 1")
        self._in, self._out = ins[0], outs[0]
        for name in (self._in, self._out):
            if trt.nptype(self._engine.get_tensor_dtype(name)) != np.float32:
                raise EdgecnnError(f"{path.name}: tensor {name} is not float32; export with float I/O")
        shape = tuple(self._engine.get_tensor_shape(self._in))
        out_shape = tuple(self._engine.get_tensor_shape(self._out))
        self._max_batch = (
            shape[0] if shape[0] > 0 else self._engine.get_tensor_profile_shape(self._in, 0)[2][0]
        )
        self._cuda = cuda_device()
        item = np.dtype(np.float32).itemsize
        per_in = int(np.prod(shape[1:])) * item
        per_out = int(np.prod([d for d in out_shape[1:] if d > 0] or [1])) * item
        self._d_in = self._cuda.alloc(per_in * self._max_batch)
        self._d_out = self._cuda.alloc(per_out * self._max_batch)
        self._context.set_tensor_address(self._in, self._d_in)
        self._context.set_tensor_address(self._out, self._d_out)
        super().__init__(
            shape,
            num_classes=static_dim(out_shape[-1]),
            layout=layout,
            info={
                "version": trt.__version__,
                "max_batch": int(self._max_batch),
                "built_from_onnx": path.suffix == ".onnx",
                "precision": precision,
                "engine_cache": cached,
            },
        )

    def run(self, x: np.ndarray) -> np.ndarray:
        if self.batch is None and len(x) > self._max_batch:  # dynamic batch: split at the profile's max
            m = self._max_batch
            return np.concatenate(
                [super(TensorRtSession, self).run(x[s : s + m]) for s in range(0, len(x), m)]
            )
        return super().run(x)

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self.batch is None:
            self._context.set_input_shape(self._in, x.shape)
        out = np.empty(tuple(self._context.get_tensor_shape(self._out)), np.float32)
        self._cuda.to_device(self._d_in, x)
        if not self._context.execute_async_v3(self._cuda.handle):
            raise EdgecnnError("TensorRT inference failed; see its log above")
        self._cuda.to_host(out, self._d_out)
        self._cuda.sync()
        return out

    def _close(self) -> None:
        self._cuda.close()
        self._context = self._engine = self._runtime = None
