"""ONNX export: explicit-quantization QDQ (TensorRT, OpenVINO), its uint8-activation twin for
ONNX Runtime on x86, and float / fp16 models."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from edgecnn.errors import EdgecnnError
from edgecnn.fileio import atomic_path

INPUT, OUTPUT = "input", "logits"
OPSET = 18
# Per-node provenance the exporter records. Stack traces name the absolute paths of the build
# machine's checkout and site-packages, so two checkouts of the same commit gave different
# artifact bytes (and a shipped model told where it was built); the FX text is bulky. The layer
# name scopes stay: they map a node back to its module.
_DROPPED_NODE_PROPS = ("pkg.torch.onnx.stack_trace", "pkg.torch.onnx.fx_node")


def export_onnx(
    module: torch.nn.Module, sample: torch.Tensor, path: str | os.PathLike, *, dynamic_batch: bool = True
) -> Path:
    """``torch.onnx.export(dynamo=True)`` of a float or converted PT2E graph, written atomically."""
    from torch.export import Dim

    try:
        import onnxscript  # noqa: F401 - torch's dynamo exporter needs it
    except ImportError as e:
        raise EdgecnnError("ONNX export needs onnxscript: pip install 'edgecnn[onnx]'") from e
    dyn = ({0: Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    sample = (
        sample if not dynamic_batch or sample.shape[0] > 1 else sample.expand(2, *sample.shape[1:]).clone()
    )
    prog = torch.onnx.export(
        module,
        (sample,),
        dynamo=True,
        dynamic_shapes=dyn,
        input_names=[INPUT],
        output_names=[OUTPUT],
        opset_version=OPSET,
        verbose=False,
    )
    for node in prog.model.graph.all_nodes():
        for key in _DROPPED_NODE_PROPS:
            node.metadata_props.pop(key, None)
    path = Path(path)
    with atomic_path(path) as tmp:
        prog.save(str(tmp))
    return path


def finalize_qdq(path: str | os.PathLike) -> int:
    """Store quantized weights as int8: replace every QuantizeLinear of a constant (a float weight
    and its scales) by the int8 initializer it computes, as TensorRT and ONNX Runtime expect
    (``DequantizeLinear(int8 W)``), and give every Q/DQ node its own scale and zero point.
    Returns how many weights were folded; the file is rewritten atomically."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    keep, folded = [], 0
    for node in model.graph.node:
        if node.op_type == "Clip" and node.input and all(i in inits for i in node.input if i):
            # the exporter writes int8 weights as Clip(int8 W, -127, 127): fold it, or backends see a
            # computed weight and keep the layer in float
            w, lo, hi = (numpy_helper.to_array(inits[i]) if i else None for i in [*node.input, "", ""][:3])
            clipped = np.minimum(np.maximum(w, lo if lo is not None else w), hi if hi is not None else w)
            t = numpy_helper.from_array(clipped.astype(w.dtype), node.output[0])
            model.graph.initializer.append(t)
            inits[t.name] = t
            continue
        if (
            node.op_type == "QuantizeLinear"
            and all(i in inits for i in node.input[:3])
            and len(node.input) >= 3
        ):
            w, scale, zp = (numpy_helper.to_array(inits[i]) for i in node.input[:3])
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if scale.size > 1:  # per-channel: broadcast along the axis
                shape = [1] * w.ndim
                shape[axis] = -1
                scale, zp = scale.reshape(shape), zp.reshape(shape)
            info = np.iinfo(zp.dtype)
            q = np.clip(np.rint(w / scale) + zp.astype(np.int32), info.min, info.max).astype(zp.dtype)
            t = numpy_helper.from_array(q, node.output[0])
            model.graph.initializer.append(t)
            inits[t.name] = t
            folded += 1
            continue
        keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    # One scale and zero point initializer per Q/DQ node: ONNX Runtime's exact U8U8 rewrite
    # (used without VNNI) fails on initializers shared between quantized ops.
    inits = {i.name: i for i in model.graph.initializer}
    seen: set[str] = set()
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for k in range(1, len(node.input)):
            name = node.input[k]
            if name in inits and name in seen:
                copy = onnx.TensorProto()
                copy.CopyFrom(inits[name])
                copy.name = f"{name}_{node.name or id(node)}_{k}"
                model.graph.initializer.append(copy)
                node.input[k] = copy.name
            seen.add(node.input[k])
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    live = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(live)
    onnx.checker.check_model(model)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return folded


def to_u8s8(src: str | os.PathLike, dest: str | os.PathLike) -> dict[str, int]:
    """Rewrite a symmetric S8S8 QDQ model so activations are uint8 (ONNX Runtime's fast x86 form).

    An int8 activation with scale ``s`` and zero point 0 spans ``s * [-128, 127]``; the same
    values are exactly the uint8 grid with scale ``s`` and zero point 128. Every per-tensor
    (scalar-scale) QuantizeLinear/DequantizeLinear pair on an activation gets a uint8 zero point
    128; per-channel weight DequantizeLinear nodes (int8 initializers) stay S8. Numerically the
    model is unchanged; only the integer encoding of activations moves by 128.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    inits = {i.name: i for i in model.graph.initializer}
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}

    def value(name: str):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        if name in consts:
            return numpy_helper.to_array(consts[name].attribute[0].t)
        return None

    weight_inputs = set(inits)  # DQ of an int8 initializer = a weight
    new_zp = "edgecnn_u8_zero_point"
    rewritten = {"quantize": 0, "dequantize": 0}
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        if node.op_type == "DequantizeLinear" and node.input[0] in weight_inputs:
            continue
        scale, zp = value(node.input[1]), value(node.input[2])
        if scale is None or zp is None or scale.size != 1 or zp.dtype != np.int8:
            continue
        if int(zp.reshape(-1)[0]) != 0:
            raise EdgecnnError(
                f"{src}: activation zero point {int(zp)} is not 0; only symmetric QDQ "
                f"models can be rewritten to uint8 activations"
            )
        name = f"{new_zp}_{sum(rewritten.values())}"  # one per node, as finalize_qdq left them
        model.graph.initializer.append(numpy_helper.from_array(np.array(128, dtype=np.uint8), name))
        node.input[2] = name
        rewritten["quantize" if node.op_type == "QuantizeLinear" else "dequantize"] += 1
    del model.graph.value_info[:]  # the exporter's recorded int8 types no longer hold; ORT re-infers them
    if not rewritten["quantize"]:
        raise EdgecnnError(f"{src} has no int8 activation QuantizeLinear to rewrite; is it a QDQ model?")
    onnx.checker.check_model(model)
    with atomic_path(dest) as tmp:
        onnx.save(model, str(tmp))
    return rewritten


# Ops whose output is non-negative and at most their input's bound when their input is.
_BOUND_PRESERVING = frozenset(
    {
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "ReduceMean",
        "ReduceMax",
        "Reshape",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Transpose",
    }
)


def to_u8_after_relu(src: str | os.PathLike, dest: str | os.PathLike) -> int:
    """Encode the activations that follow a ReLU as uint8 with zero point 0: OpenVINO's fast form.

    After a ReLU the symmetric int8 grid ``s * [-128, 127]`` only takes ``s * [0, 127]``. OpenVINO
    reads such a QuantizeLinear as uint8 with zero point 128, and every convolution reading it then
    pays for zero-point compensation (ResNet18 at 224 px: 2.59 ms against 2.42 for NNCF's uint8
    graph with the same convolutions, benchmarks/cpu_int8_latency.py). Here each per-tensor int8
    QuantizeLinear of a non-negative tensor (a ReLU output, a pool / mean / reshape of one, a
    concat of such: GoogLeNet's inception outputs) and its DequantizeLinear consumers become
    uint8 with zero point 0 and the same scale, and a ReLU feeding one becomes ``Clip(0, 127 s)``
    (a Clip is inserted where the input may exceed ``127 s`` and is no ReLU of its own), so values
    above ``127 s`` still saturate at 127: the integers and the dequantized values are exactly
    those of the symmetric graph. Returns how many QuantizeLinear nodes were rewritten.
    """
    import onnx

    model = onnx.load(str(src))
    rewrite = _U8AfterRelu(model.graph)
    for n in list(model.graph.node):
        rewrite.visit(n)
    rewrite.finish()
    onnx.checker.check_model(model)
    with atomic_path(dest) as tmp:
        onnx.save(model, str(tmp))
    return rewrite.rewritten


class _U8AfterRelu:
    """One pass of :func:`to_u8_after_relu` over a graph, in node order: which tensors are
    non-negative (and how large), and the rewrite of each QuantizeLinear of one."""

    def __init__(self, g):
        self.g = g
        self.inits = {i.name: i for i in g.initializer}
        self.consumers: dict[str, list] = {}
        for n in g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.producer = {o: n for n in g.node for o in n.output}
        self.bound: dict[str, float] = {}  # non-negative tensor -> upper bound (inf: none known)
        self.before: dict[int, list] = {}  # id(node) -> Clip nodes to insert before it
        self.rewritten = 0

    def array(self, name: str):
        from onnx import numpy_helper

        return numpy_helper.to_array(self.inits[name]) if name in self.inits else None

    def add_init(self, value, stem: str) -> str:
        from onnx import numpy_helper

        name = f"edgecnn_u8relu_{stem}_{len(self.g.initializer)}"
        self.g.initializer.append(numpy_helper.from_array(value, name))
        return name

    def visit(self, n) -> None:
        bound = self.bound
        if n.op_type == "Relu":
            bound[n.output[0]] = float("inf")
        elif n.op_type in _BOUND_PRESERVING and n.input and n.input[0] in bound:
            bound[n.output[0]] = bound[n.input[0]]
        elif n.op_type == "Concat" and n.input and all(i in bound for i in n.input):
            bound[n.output[0]] = max(bound[i] for i in n.input)  # GoogLeNet's inception outputs
        elif n.op_type == "QuantizeLinear" and n.input[0] in bound and len(n.input) >= 3:
            self.quantize(n)

    def _dequantizers(self, n) -> list | None:
        """The DequantizeLinear consumers of a per-tensor symmetric int8 QuantizeLinear, else None."""
        import numpy as np

        scale, zp = self.array(n.input[1]), self.array(n.input[2])
        deq = self.consumers.get(n.output[0], [])
        if scale is None or zp is None or scale.size != 1 or zp.dtype != np.int8 or int(zp.reshape(-1)[0]):
            return None
        if not deq or any(
            d.op_type != "DequantizeLinear"
            or self.array(d.input[2]) is None
            or self.array(d.input[2]).dtype != np.int8
            for d in deq
        ):
            return None
        return deq

    def quantize(self, n) -> None:
        """uint8 with zero point 0 for ``n`` and its DequantizeLinear nodes, clipped at 127 steps."""
        import numpy as np

        deq = self._dequantizers(n)
        if deq is None:
            return
        scale = self.array(n.input[1])
        top = np.float32(127) * scale.astype(np.float32).reshape(())
        if self.bound[n.input[0]] >= 127.5 * float(scale.reshape(-1)[0]):  # may saturate: clip at 127 steps
            self._clip(n, top)
        n.input[2] = self.add_init(np.array(0, np.uint8), "zp")
        for d in deq:
            d.input[2] = self.add_init(np.array(0, np.uint8), "zp")
            self.bound[d.output[0]] = float(top)
        self.rewritten += 1

    def _clip(self, n, top) -> None:
        """``Clip(0, top)`` before ``n``: the ReLU feeding it alone becomes one, else a Clip is inserted."""
        import numpy as np
        from onnx import helper

        x = n.input[0]
        relu = self.producer.get(x)
        lo, hi = self.add_init(np.array(0, np.float32), "lo"), self.add_init(top.astype(np.float32), "hi")
        if (
            relu is not None
            and relu.op_type == "Relu"
            and len(self.consumers[x]) == 1
            and x not in {o.name for o in self.g.output}
        ):
            relu.op_type = "Clip"
            relu.input.extend([lo, hi])
        else:
            clipped = f"{x}_edgecnn_clip{self.rewritten}"
            self.before.setdefault(id(n), []).append(
                helper.make_node("Clip", [x, lo, hi], [clipped], name=f"{n.name}_clip")
            )
            n.input[0] = clipped

    def finish(self) -> None:
        """Insert the Clip nodes, drop the stale value_info and the initializers no node reads."""
        g, nodes = self.g, []
        for n in g.node:
            nodes.extend(self.before.get(id(n), []))
            nodes.append(n)
        del g.node[:]
        g.node.extend(nodes)
        del g.value_info[:]  # the recorded int8 types of the rewritten tensors no longer hold
        used = {i for n in g.node for i in n.input}
        live = [i for i in g.initializer if i.name in used]
        del g.initializer[:]
        g.initializer.extend(live)


def to_fp16(src: str | os.PathLike, dest: str | os.PathLike) -> None:
    """FP16 weights and compute with float32 input/output (what TensorRT's FP16 build and a GPU want)."""
    import onnx

    try:
        from onnxconverter_common import float16
    except ImportError:
        float16 = None
    model = onnx.load(str(src))
    if float16 is not None:
        model = float16.convert_float_to_float16(model, keep_io_types=True)
    else:  # onnxruntime's copy of the same converter
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(model, keep_io_types=True)
    with atomic_path(dest) as tmp:
        onnx.save(model, str(tmp))


def onnx_float_ops(path: str | os.PathLike) -> list[str]:
    """Compute nodes of a QDQ model whose data input (or, for a convolution or matrix product, weight)
    does not come from a DequantizeLinear."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    producer = {o: n for n in model.graph.node for o in n.output}
    compute = {
        "Conv",
        "Gemm",
        "MatMul",
        "Add",
        "Concat",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "ReduceMean",
        "LRN",
    }
    out = []
    for n in model.graph.node:
        if n.op_type not in compute:
            continue
        data = list(n.input) if n.op_type in ("Add", "Concat") else list(n.input[:1])
        if n.op_type in ("Conv", "Gemm", "MatMul"):  # a layer the quantizer left float has a float weight
            data.append(n.input[1])
        if any(producer.get(i) is None or producer[i].op_type != "DequantizeLinear" for i in data):
            out.append(f"{n.op_type} ({n.name})")
    return out
