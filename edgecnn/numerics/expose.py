"""Read every tap (:class:`~edgecnn.numerics.reference.Tap`) out of an artifact's runtime.

- ONNX Runtime: the QuantizeLinear outputs (named after the graph's quantize ops) become graph
  outputs of a copy of the model;
- OpenVINO: the FakeQuantize nodes the IR made of each Q/DQ pair (named after the dequantize ops)
  are added as outputs (``Model.add_outputs``) before compiling;
- LiteRT: the interpreter keeps every tensor (``experimental_preserve_all_tensors``); a tensor is a
  tap's when its name holds the tap's module path and its quantization scale is the tap's;
- TensorRT: the DequantizeLinear outputs become graph outputs and the engine is built from that copy.

Each opened runner maps a float32 NCHW batch to ``{tap name: dequantized float32 array in the
graph's NCHW layout}`` and lists the taps it could not find in ``missing``.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.numerics.tap import Tap
from edgecnn.runtimes.base import INSTALL_HINTS, missing_backend
from edgecnn.telemetry import import_openvino


class TapRunner:
    """What every runtime's runner shares: the taps it found, those it did not, a fixed batch or None."""

    runtime = ""
    batch: int | None = None

    def __init__(self, taps: Sequence[Tap], found: Sequence[Tap]):
        self.taps = list(found)
        names = {t.name for t in found}
        self.missing = [t.name for t in taps if t.name not in names]

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if self.batch is None:
            return self._run(x)
        parts = [self._run(x[i : i + self.batch]) for i in range(0, len(x), self.batch)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError


def _onnx():
    """The ``onnx`` package, which exposing an ONNX model's layers needs (on a device too)."""
    try:
        import onnx
    except ImportError as e:
        raise EdgecnnError("diagnosing an ONNX model needs the onnx package: pip install onnx") from e
    return onnx


def _onnx_with_outputs(path: Path, names: Sequence[str], tmp: Path) -> Path:
    """A copy of the ONNX model at ``path`` with the tensors ``names`` as extra graph outputs."""
    onnx = _onnx()
    helper = onnx.helper
    model = onnx.load(str(path))
    have = {o.name for o in model.graph.output}
    for name in names:
        if name not in have:
            model.graph.output.append(helper.make_empty_tensor_value_info(name))
    out = tmp / "exposed.onnx"
    onnx.save(model, str(out))
    return out


def _onnx_quantize_params(path: Path) -> dict[str, tuple[float, int]]:
    """QuantizeLinear output name -> (scale, zero point) of every per-tensor QuantizeLinear."""
    onnx = _onnx()
    numpy_helper = onnx.numpy_helper
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        if (
            n.op_type == "QuantizeLinear"
            and len(n.input) >= 3
            and n.input[1] in inits
            and n.input[2] in inits
        ):
            scale, zp = inits[n.input[1]], inits[n.input[2]]
            if scale.size == 1:
                out[n.output[0]] = (float(scale.reshape(-1)[0]), int(zp.reshape(-1)[0]))
    return out


class OnnxRuntimeTaps(TapRunner):
    runtime = "onnxruntime"

    def __init__(self, path: Path, taps: Sequence[Tap], *, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise missing_backend("onnxruntime") from e
        from edgecnn.runtimes.onnxruntime import OnnxRuntimeSession

        params = _onnx_quantize_params(path)
        super().__init__(taps, [t for t in taps if t.name in params])
        self._params = params
        with tempfile.TemporaryDirectory(prefix="edgecnn-diagnose.") as tmp:
            exposed = _onnx_with_outputs(path, [t.name for t in self.taps], Path(tmp))
            # the artifact's own session options (threads, the exact U8U8 path without VNNI)
            session = OnnxRuntimeSession(exposed, threads=threads)
        self._sess, self._input = session._sess, session._input
        self.info = {"version": ort.__version__, **session.info}

    def _run(self, x):
        names = [t.name for t in self.taps]
        outs = self._sess.run(names, {self._input: x})
        return {
            n: (o.astype(np.float32) - self._params[n][1]) * np.float32(self._params[n][0])
            for n, o in zip(names, outs, strict=True)
        }


OUTPUT_KEY = "<model output>"


class OpenVinoTaps(TapRunner):
    runtime = "openvino"

    def __init__(
        self, path: Path, taps: Sequence[Tap], *, threads: int | None = None, config: dict | None = None
    ):
        ov = import_openvino(INSTALL_HINTS["openvino"])
        core = ov.Core()
        # an ONNX file's Q/DQ pairs become FakeQuantize nodes in convert_model (read_model keeps them apart)
        model = ov.convert_model(str(path)) if path.suffix == ".onnx" else core.read_model(str(path))
        by_name = {}
        for op in model.get_ordered_ops():
            if op.get_type_name() == "FakeQuantize":
                for name in op.output(0).get_names():
                    by_name[name] = op.output(0)
        result = model.outputs[0].get_node().input_value(0).get_node()
        if result.get_type_name() == "FakeQuantize":  # the last one is named after the model's output
            by_name[OUTPUT_KEY] = result.output(0)
        found = [
            t for t in taps if any(d in by_name for d in t.dequant) or (t.output and OUTPUT_KEY in by_name)
        ]
        super().__init__(taps, found)
        ports = [by_name[next((d for d in t.dequant if d in by_name), OUTPUT_KEY)] for t in self.taps]
        for t, port in zip(self.taps, ports, strict=True):  # a name of our own for each exposed tensor
            port.get_tensor().add_names({f"edgecnn_tap:{t.name}"})
        model.add_outputs(ports)
        cfg = {
            "INFERENCE_PRECISION_HINT": "f32",
            **({"INFERENCE_NUM_THREADS": int(threads)} if threads else {}),
            **(config or {}),
        }
        self._compiled = core.compile_model(model, "CPU", cfg)
        named = {n: o for o in self._compiled.outputs for n in o.get_names()}
        own = self._compiled.outputs[0]  # the model's own output (add_outputs appends after it)
        self._outputs = [named.get(f"edgecnn_tap:{t.name}", own) for t in self.taps]
        self._request = self._compiled.create_infer_request()
        self.info = {"version": ov.get_version(), "config": {k: str(v) for k, v in cfg.items()}}

    def _run(self, x):
        result = self._request.infer({0: x})
        return {
            t.name: np.array(result[o], dtype=np.float32)
            for t, o in zip(self.taps, self._outputs, strict=True)
        }


def _tflite_modules(name: str) -> set[str]:
    """Module paths in a litert-torch tensor name:
    ``A/torch.nn...Sequential_layer1/...BasicBlock_0/...Conv2d_conv2;1`` holds ``layer1.0.conv2``
    (each scope is ``<class>_<attribute>``; fused ops join names with ';')."""
    out = set()
    for part in name.split(";"):
        scopes = part.split("/")[1:]
        attrs = []
        for s in scopes:
            cls_end = s.rfind(".")
            head = s[cls_end + 1 :]
            if "_" not in head:
                break
            attrs.append(head.split("_", 1)[1])
        if attrs and len(attrs) == len(scopes):
            out.add(".".join(attrs))
    return out


class TfliteTaps(TapRunner):
    runtime = "tflite"

    def __init__(self, path: Path, taps: Sequence[Tap], *, threads: int | None = None):
        from edgecnn.runtimes.tflite import TfliteSession, interpreter_class

        Interpreter, _ = interpreter_class()
        with warnings.catch_warnings():  # "intended for debugging purposes only": that is what this is
            warnings.simplefilter("ignore", UserWarning)
            self._interp = Interpreter(
                model_path=str(path),
                num_threads=int(threads) if threads else None,
                experimental_preserve_all_tensors=True,
            )
        self._interp.allocate_tensors()
        # input quantization as the artifact's own session does it
        self._session = TfliteSession(path, threads=threads)
        self._in = self._interp.get_input_details()[0]
        self._out = self._interp.get_output_details()[0]
        matched = self._match(taps)
        super().__init__(taps, [t for t in taps if t.name in matched])
        self._index = matched
        self.batch = int(self._in["shape"][0])
        self.info = dict(self._session.info)

    def _match(self, taps: Sequence[Tap]) -> dict[str, dict]:
        """Each tap's tensor: the op output (not a PAD's) on the tap's scale whose name holds the tap's
        module path. The converter's names are loose: a fused op's tensor holds the paths of every op
        in it (FULLY_CONNECTED + ReLU: "...Linear_1;...ReLU_2", where the graph's linear output shares
        the ReLU's scale), and some hold a neighbouring branch's path too (GoogLeNet's). So a tensor
        one tap alone can have is that tap's and is taken from the others' candidates, the latest tap
        in graph order first (a fused op's tensor holds its last op's output); a tap left with no
        candidate or several is missing."""
        produced = {
            int(i)
            for op in self._interp._get_ops_details()
            if op["op_name"] not in ("PAD", "PADV2")
            for i in op["outputs"]
        }
        tensors = [
            d
            for d in self._interp.get_tensor_details()
            if np.dtype(d["dtype"]) in (np.int8, np.uint8)
            and d["quantization"][0]
            and len(d["shape"]) >= 2
            and (d["index"] in produced or d["index"] == self._in["index"])
        ]
        cands = {t.name: self._candidates(t, tensors) for t in taps}
        matched: dict[str, dict] = {}
        while True:
            taken = {d["index"] for d in matched.values()}
            left = {n: [d for d in c if d["index"] not in taken] for n, c in cands.items()}
            left = {n: c for n, c in left.items() if n not in matched}
            one = next((n for n in reversed(list(left)) if len(left[n]) == 1), None)
            if one is None:
                return {t.name: matched[t.name] for t in taps if t.name in matched}
            matched[one] = left[one][0]

    def _candidates(self, t: Tap, tensors: list[dict]) -> list[dict]:
        same_scale = [d for d in tensors if np.isclose(d["quantization"][0], t.scale, rtol=1e-6, atol=0)]
        if t.module == "input":
            return [d for d in same_scale if d["index"] == self._in["index"]]
        cands = [d for d in same_scale if t.module in _tflite_modules(d["name"])]
        return cands or ([self._out] if t.output else [])  # the model's output tensor carries no module name

    def _run(self, x):
        scale, zero = self._session._in_q
        q = np.clip(np.round(x / scale) + zero, *self._session._in_range).astype(self._session._in_dtype)
        self._interp.set_tensor(self._in["index"], q)
        self._interp.invoke()
        out = {}
        for t in self.taps:
            d = self._index[t.name]
            s, z = d["quantization"]
            v = (self._interp.get_tensor(d["index"]).astype(np.float32) - z) * np.float32(s)
            inner = v.ndim == 4 and d["index"] != self._in["index"]  # the input keeps the artifact's layout
            out[t.name] = np.transpose(v, (0, 3, 1, 2)) if inner else v  # LiteRT's NHWC -> the graph's NCHW
        return out


class TensorRtTaps(TapRunner):
    """TensorRT: the DequantizeLinear outputs of each tap marked as network outputs (needs a GPU).
    Runs one image at a time, into buffers allocated once."""

    runtime = "tensorrt"

    def __init__(self, path: Path, taps: Sequence[Tap], *, precision: str | None = "int8", **_):
        onnx = _onnx()
        from edgecnn.tensorrt.build import build_engine, import_tensorrt
        from edgecnn.tensorrt.session import cuda_device

        trt = import_tensorrt()
        graph = onnx.load(str(path), load_external_data=False).graph
        names = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        # the output tap is the model's own output (the exporter names it, as OpenVINO's runner does)
        super().__init__(taps, [t for t in taps if t.output or any(d in names for d in t.dequant)])
        model_output = graph.output[0].name
        self._outs = {t.name: next((d for d in t.dequant if d in names), model_output) for t in self.taps}
        logger = trt.Logger(trt.Logger.WARNING)
        with tempfile.TemporaryDirectory(prefix="edgecnn-diagnose.") as tmp:
            data = build_engine(
                _onnx_with_outputs(path, list(self._outs.values()), Path(tmp)),
                precision,
                trt=trt,
                logger=logger,
            )
        self._engine = trt.Runtime(logger).deserialize_cuda_engine(data)
        if self._engine is None:
            raise EdgecnnError(f"TensorRT could not build {path.name} with its layers marked as outputs")
        ctx = self._context = self._engine.create_execution_context()
        io = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._input = next(n for n in io if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.batch = 1
        ctx.set_input_shape(self._input, (1, *tuple(self._engine.get_tensor_shape(self._input))[1:]))
        self._cuda = cuda_device()
        shape_in = tuple(ctx.get_tensor_shape(self._input))
        self._d_in = self._cuda.alloc(int(np.prod(shape_in)) * 4)
        ctx.set_tensor_address(self._input, self._d_in)
        self._host = {}
        for name in io:
            if name != self._input:
                y = np.empty(tuple(ctx.get_tensor_shape(name)), np.float32)
                self._host[name] = (y, self._cuda.alloc(y.nbytes))
                ctx.set_tensor_address(name, self._host[name][1])
        self.info = {"version": trt.__version__}

    def _run(self, x):
        self._cuda.to_device(self._d_in, np.ascontiguousarray(x, dtype=np.float32))
        if not self._context.execute_async_v3(self._cuda.handle):
            raise EdgecnnError("TensorRT inference failed; see its log above")
        for y, ptr in self._host.values():
            self._cuda.to_host(y, ptr)
        self._cuda.sync()
        return {t: self._host[d][0].copy() for t, d in self._outs.items()}


RUNNERS = {
    "onnxruntime": OnnxRuntimeTaps,
    "openvino": OpenVinoTaps,
    "tflite": TfliteTaps,
    "tensorrt": TensorRtTaps,
}


def open_taps(
    path: Path,
    runtime: str,
    taps: Sequence[Tap],
    *,
    threads: int | None = None,
    config: dict | None = None,
    precision: str | None = "int8",
) -> TapRunner:
    """The runner of ``runtime`` over the model file ``path`` with every tap it can find exposed.
    ``threads``: the CPU runtimes'; ``config``: OpenVINO's compile options; ``precision``: TensorRT's."""
    if runtime not in RUNNERS:
        raise EdgecnnError(f"diagnose runs in {', '.join(RUNNERS)}, not {runtime}")
    if runtime == "tensorrt":
        return TensorRtTaps(Path(path), taps, precision=precision)
    extra = {"config": config} if runtime == "openvino" and config else {}
    return RUNNERS[runtime](Path(path), taps, threads=threads, **extra)
