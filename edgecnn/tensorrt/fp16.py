"""FP16 written into the ONNX graph, for TensorRT's strongly typed networks (TensorRT 11).

TensorRT 11 removed the precision flags (``--fp16``, ``--int8``, ``BuilderFlag.FP16``): every
network is strongly typed, so a tensor's type in the ONNX is the type TensorRT computes in
("Migrating trtexec Usage from TensorRT 10.x to 11.x" and "Python Migration Patterns for
TensorRT 11.x" in NVIDIA's TensorRT 11 docs). A QDQ graph then runs its quantized layers in
INT8 and everything else (the float side of each Q/DQ pair, biases, the classifier's output)
in FP32, where TensorRT 10 with ``--int8 --fp16`` could pick FP16. That is edgecnn's default
on 11.x; ``edgecnn build-engine --fp16-outside-qdq`` builds from this module's rewrite instead.

NVIDIA's tool is ModelOpt AutoCast (``python -m modelopt.onnx.autocast``). Its package pulls
torch and its own CUDA stack, which edgecnn's host cannot take (torch is pinned to a CPU build),
and a Jetson does not need it (JetPack ships TensorRT 10), so this module does the one rewrite
edgecnn's graphs need: every float32 tensor becomes float16, Q/DQ scales included, so each
DequantizeLinear gives float16 and each QuantizeLinear reads it (ModelOpt calls this
``trt_high_precision_dtype = "Half"``; with float32 scales TensorRT would need casts around
every Q/DQ pair). The graph's input and output stay float32 behind one Cast each, so sessions
feed and read float32 as before. Float16 scales need DequantizeLinear-19, so the default
opset is raised to 19 where it is lower (the other ops these networks use are unchanged
between 18 and 19 but for new optional attributes).

The cost, measured (benchmarks/fp16_rewrite_agreement.py, ONNX Runtime, the whole
Fashion-MNIST test split, a tiny trained ResNet18): 97.6% top-1 agreement with the FP32 graph,
and 97.7% from rounding the scales alone, because a scale moved by up to 2^-11 of itself moves
the integer grid: a value ``q`` steps from zero lands on the other side of a rounding boundary
about ``|q| * 2^-11`` of the time, in every layer. A scale below float16's normal range
(>= 2^-14: a dead channel, or an activation that is always zero, whose observer gives float32's
epsilon) would lose more, and its reciprocal, which QuantizeLinear divides by, overflows float16;
such a Q/DQ node keeps its float32 scale, with a Cast on its float side.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from edgecnn.errors import EdgecnnError
from edgecnn.fileio import atomic_path

QDQ_OPSET = 19  # float16 scales in QuantizeLinear / DequantizeLinear
FP16_MIN_NORMAL = 2.0**-14  # a smaller scale stays float32
_QDQ = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class Fp16Rewrite:
    """What :func:`to_strongly_typed_fp16` changed."""

    initializers: int  # float32 initializers stored as float16
    scales: int  # of them, Q/DQ scales
    max_scale_rel_error: float  # largest |fp16(s) - s| / s over the scales
    kept_fp32: int  # Q/DQ nodes whose scale is below float16's normal range: float32, with a Cast
    opset: int  # the default-domain opset of the result

    def to_json(self) -> dict:
        return asdict(self)


def _to_fp16_tensor(tensor):
    """A float32 TensorProto as float16 (same name); the relative error of its largest change."""
    import numpy as np
    from onnx import numpy_helper

    value = numpy_helper.to_array(tensor)
    half = value.astype(np.float16)
    nonzero = value != 0
    err = float(
        np.max(
            np.abs(half[nonzero].astype(np.float32) - value[nonzero]) / np.abs(value[nonzero]), initial=0.0
        )
    )
    return numpy_helper.from_array(half, tensor.name), err


def _tiny_scales(graph) -> set[str]:
    """Q/DQ scale initializers with a value below float16's normal range."""
    import numpy as np
    from onnx import numpy_helper

    inits = {i.name: i for i in graph.initializer}
    names = {n.input[1] for n in graph.node if n.op_type in _QDQ and len(n.input) > 1 and n.input[1] in inits}
    return {k for k in names if np.abs(numpy_helper.to_array(inits[k])).min() < FP16_MIN_NORMAL}


def _fp16_constants(graph, keep: set[str]) -> tuple[int, int, float]:
    """Store every float32 initializer (but ``keep``) and Constant as float16; Casts to float32 cast to
    float16."""
    from onnx import TensorProto

    scale_names = {n.input[1] for n in graph.node if n.op_type in _QDQ and len(n.input) > 1}
    count = scales = 0
    worst = 0.0
    for i, init in enumerate(graph.initializer):
        if init.data_type != TensorProto.FLOAT or init.name in keep:
            continue
        half, err = _to_fp16_tensor(init)
        graph.initializer[i].CopyFrom(half)
        count += 1
        if init.name in scale_names:
            scales += 1
            worst = max(worst, err)
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == attr.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(_to_fp16_tensor(attr.t)[0])
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.FLOAT16
    return count, scales, worst


def _cast_kept(graph, keep: set[str]) -> int:
    """A Cast to float32 before each QuantizeLinear, and to float16 after each DequantizeLinear, that kept
    a float32 scale; returns how many nodes kept one."""
    from onnx import TensorProto, helper

    nodes, kept = [], 0
    for node in graph.node:
        if node.op_type not in _QDQ or len(node.input) < 2 or node.input[1] not in keep:
            nodes.append(node)
            continue
        kept += 1
        if node.op_type == "QuantizeLinear":
            wide = f"{node.input[0]}_edgecnn_fp32_{kept}"
            nodes.append(
                helper.make_node(
                    "Cast", [node.input[0]], [wide], name=f"{node.name}_fp32", to=TensorProto.FLOAT
                )
            )
            node.input[0] = wide
            nodes.append(node)
        else:
            narrow = node.output[0]
            node.output[0] = f"{narrow}_edgecnn_fp32"
            nodes.append(node)
            nodes.append(
                helper.make_node(
                    "Cast", [node.output[0]], [narrow], name=f"{node.name}_fp16", to=TensorProto.FLOAT16
                )
            )
    del graph.node[:]
    graph.node.extend(nodes)
    return kept


def _cast_io(graph) -> None:
    """Keep float32 graph inputs and outputs: a Cast to float16 after each input, to float32 before each
    output."""
    from onnx import TensorProto, helper

    head, tail = [], []
    for inp in graph.input:
        if inp.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        inner = f"{inp.name}_edgecnn_fp16"
        for node in graph.node:
            for k, name in enumerate(node.input):
                if name == inp.name:
                    node.input[k] = inner
        head.append(
            helper.make_node("Cast", [inp.name], [inner], name=f"{inp.name}_to_fp16", to=TensorProto.FLOAT16)
        )
    for out in graph.output:
        if out.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        inner = f"{out.name}_edgecnn_fp16"
        for node in graph.node:
            node.output[:] = [inner if o == out.name else o for o in node.output]
            node.input[:] = [inner if i == out.name else i for i in node.input]
        tail.append(
            helper.make_node("Cast", [inner], [out.name], name=f"{out.name}_to_fp32", to=TensorProto.FLOAT)
        )
    nodes = head + list(graph.node) + tail
    del graph.node[:]
    graph.node.extend(nodes)


def to_strongly_typed_fp16(src: str | os.PathLike, dest: str | os.PathLike) -> Fp16Rewrite:
    """Write ``src`` (float or QDQ ONNX) to ``dest`` with float16 everywhere but its float32 input/output."""
    try:
        import onnx
    except ImportError as e:
        raise EdgecnnError(
            "TensorRT 11 builds an INT8 artifact from its FP16 rewrite, which needs the onnx "
            "package: pip install 'edgecnn[tensorrt]'"
        ) from e

    model = onnx.load(str(src))
    graph = model.graph
    keep = _tiny_scales(graph)
    count, scales, worst = _fp16_constants(graph, keep)
    kept = _cast_kept(graph, keep)
    _cast_io(graph)
    del graph.value_info[:]  # the recorded float32 types no longer hold
    opset = next((o for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if scales and opset is not None and opset.version < QDQ_OPSET:
        opset.version = QDQ_OPSET
    onnx.checker.check_model(model, full_check=True)  # type inference: every float16 edge agrees
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        onnx.save(model, str(tmp))
    return Fp16Rewrite(
        initializers=count,
        scales=scales,
        max_scale_rel_error=worst,
        kept_fp32=kept,
        opset=opset.version if opset is not None else 0,
    )
