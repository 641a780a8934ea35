"""INT8 with torchao PT2E: one quantized graph from which every target's artifact is made.

The scheme is TensorRT's explicit quantization: weights int8 per-channel symmetric
([-127, 127], zero point 0), activations int8 per-tensor symmetric ([-128, 127], zero
point 0), biases float but on their int32 accumulator grid (:func:`snap_biases`), BatchNorm
folded into the convolutions. The same converted
graph is exported

- to QDQ ONNX for TensorRT and OpenVINO (read there as real INT8),
- to QDQ ONNX with uint8 activations for ONNX Runtime on x86 (the identical grid: an
  int8 symmetric scale ``s`` with zero point 0 is the uint8 scale ``s`` with zero point
  128, see :func:`edgecnn.export.onnx.to_u8s8`),
- to a full-integer .tflite through litert-torch.

Ops are annotated by litert-torch's PT2E quantizer (conv/linear (+ReLU), add, cat,
max/avg pooling), with the activation observer of the calibration method swapped in.
"""

from __future__ import annotations

import copy
import dataclasses
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgecnn.errors import EdgecnnError

SCHEME = {
    "name": "int8-symmetric-qdq",
    "weights": "int8 per-channel symmetric [-127, 127], zero point 0",
    "activations": "int8 per-tensor symmetric [-128, 127], zero point 0",
    "bias": "float, on the int32 accumulator grid (a multiple of input scale x weight scale)",
    "batchnorm": "folded into the preceding convolution",
    "pooling": "max-pools share their input's int8 scale, also after a concat",
}
# Graph ops that carry the computation: a float one among them is a layer that does not run in INT8.
_COMPUTE_OPS = {
    "conv2d": "conv",
    "linear": "linear",
    "addmm": "linear",
    "add": "add",
    "add_": "add",
    "cat": "concat",
    "max_pool2d": "max_pool",
    "max_pool2d_with_indices": "max_pool",
    "avg_pool2d": "avg_pool",
    "adaptive_avg_pool2d": "avg_pool",
    "mean": "avg_pool",
    "local_response_norm": "lrn",
}
_QUANT_OPS = ("quantize_per_tensor", "quantize_per_channel")
_Quantizer = None  # made on first use: litert-torch is imported only when quantizing
_DEQUANT_OPS = ("dequantize_per_tensor", "dequantize_per_channel")


def _act_spec(method: str, qat: bool, **observer_kw: Any):
    from torchao.quantization.pt2e import FakeQuantize
    from torchao.quantization.pt2e.quantizer import QuantizationSpec

    from edgecnn.quantize.observers import activation_observer

    obs = activation_observer(method, dtype="int8", symmetric=True, **observer_kw)
    ctr = (
        FakeQuantize.with_args(
            observer=obs, quant_min=-128, quant_max=127, dtype=torch.int8, qscheme=torch.per_tensor_symmetric
        )
        if qat
        else obs
    )
    return QuantizationSpec(
        dtype=torch.int8,
        quant_min=-128,
        quant_max=127,
        qscheme=torch.per_tensor_symmetric,
        is_dynamic=False,
        observer_or_fake_quant_ctr=ctr,
    )


def make_quantizer(
    method: str = "minmax",
    *,
    qat: bool = False,
    weight_bits: int = 8,
    float_layers: Iterable[str] = (),
    only_layers: Iterable[str] | None = None,
    **observer_kw: Any,
):
    """litert-torch's PT2E quantizer with this project's symmetric activation scheme.

    ``float_layers``: convolution / linear modules (``"layer1.0.conv2"``) left in float: their
    node's annotation (input activation and weight) is dropped, so no exporter quantizes them.
    ``only_layers``: quantize those layers and nothing else (per-layer sensitivity).

    ``weight_bits=7`` limits weights to [-63, 63] (still stored as int8): the form x86 CPUs
    without VNNI need, where oneDNN's int8 kernels (OpenVINO) sum u8 x s8 pairs in int16 and
    saturate with full 8-bit weights (NNCF's "overflow fix")."""
    from litert_torch.quantize.pt2e_quantizer import get_symmetric_quantization_config

    global _Quantizer
    _Quantizer = _Quantizer or _quantizer_class()

    base = get_symmetric_quantization_config(is_per_channel=True, is_qat=qat)
    act = _act_spec(method, qat, **observer_kw)
    if weight_bits not in (7, 8):
        raise ValueError("weight_bits must be 7 or 8")
    qmax = 2 ** (weight_bits - 1) - 1
    weight = dataclasses.replace(base.weight, quant_min=-qmax, quant_max=qmax)
    config = dataclasses.replace(base, input_activation=act, output_activation=act, weight=weight)
    quantizer = _Quantizer().set_global(config)
    quantizer.float_layers = frozenset(float_layers)
    quantizer.only_layers = None if only_layers is None else frozenset(only_layers)
    return quantizer


def layer_of(node: Any) -> str | None:
    """The module path of a convolution or linear node (``layer1.0.conv2``), else None."""
    if not _is_call(node, "conv2d", "linear"):
        return None
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack.values()))[0] if stack else None


def _quantizer_class():
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer

    class Quantizer(PT2EQuantizer):
        # litert-torch 0.10's conv+BN QAT annotators fail with torchao 0.18 (they hand a function
        # to torch.export); edgecnn folds BatchNorm into the convolutions before QAT instead.
        STATIC_QAT_ONLY_OPS = ()
        # The max-pool annotator only quantizes a pool whose input is already annotated and runs
        # before the concat annotator, so GoogLeNet's pools after an inception block's concat
        # (and the 3x3/1 branch pool right after them) stayed float: TFLite then requantized
        # there and disagreed with the fake-quant graph. A second pass after "cat" annotates them.
        STATIC_OPS = (*PT2EQuantizer.STATIC_OPS, "max_pool2d")
        float_layers: frozenset = frozenset()
        only_layers: frozenset | None = None

        def annotate(self, model):
            if not self.float_layers and self.only_layers is None:
                return super().annotate(model)
            from litert_torch.quantize.pt2e_quantizer_utils import propagate_annotation

            model = self._annotate_for_static_quantization_config(model)
            for node in model.graph.nodes:  # the per-layer decision, before annotations propagate
                layer = layer_of(node)
                if layer in self.float_layers or (
                    self.only_layers is not None and layer not in self.only_layers
                ):
                    node.meta.pop("quantization_annotation", None)
            propagate_annotation(model)
            return model

    return Quantizer


def prepare_float(model: nn.Module) -> nn.Module:
    """A copy fit for capture: eval mode, Dropout replaced by Identity (litert-torch requantizes
    wrongly around it), and GoogLeNet's aux classifiers dropped (never in a deployed graph)."""
    model = copy.deepcopy(model).eval()
    for child in list(model.modules()):
        for cname, c in list(child.named_children()):
            if isinstance(c, nn.Dropout):
                setattr(child, cname, nn.Identity())
    if getattr(model, "aux_logits", False):
        model.aux_logits = False
        model.aux1 = model.aux2 = None
    return model


def capture(model: nn.Module, sample: torch.Tensor, *, dynamic_batch: bool = True) -> torch.fx.GraphModule:
    """``torch.export`` (strict: non-strict leaves residual adds unquantized) to an ATen graph."""
    sample, dyn = _batch_dim(sample, dynamic_batch)
    try:
        ep = torch.export.export(model, (sample,), strict=True, dynamic_shapes=dyn)
    except Exception as e:
        raise EdgecnnError(
            f"torch.export of {type(model).__name__} failed: {str(e).splitlines()[0][:200]}"
        ) from e
    return ep.module()


@torch.no_grad()
def run_batches(module: Any, batches: Iterable[torch.Tensor]) -> int:
    n = 0
    for x in batches:
        module(x)
        n += len(x)
    return n


def ptq(
    model: nn.Module,
    calib: torch.Tensor,
    *,
    method: str = "minmax",
    batch_size: int = 64,
    weight_bits: int = 8,
    float_layers: Iterable[str] = (),
    only_layers: Iterable[str] | None = None,
    captured: torch.fx.GraphModule | None = None,
    **observer_kw: Any,
) -> torch.fx.GraphModule:
    """Post-training quantization: observe ``calib`` (preprocessed N x C x H x W) in batches,
    return the converted graph (quantize/dequantize ops around int8 weights and activations).

    ``captured``: ``model`` already captured (:func:`capture` of :func:`prepare_float`), copied
    instead of captured again; several quantizations of one model then pay torch.export once."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgecnn.quantize.observers import min_calibration_images

    need = min_calibration_images(method)
    if len(calib) < need:
        raise EdgecnnError(
            f"calibration method '{method}' needs at least {need} images, got {len(calib)}; "
            f"raise the calibration set size or use --method minmax"
        )
    if captured is not None:
        gm = copy.deepcopy(captured)
    else:
        gm = capture(prepare_float(model), calib[: min(batch_size, len(calib))])
    unknown = sorted(set(float_layers) - {layer_of(n) for n in gm.graph.nodes})
    if unknown:
        raise EdgecnnError(
            f"{type(model).__name__} has no convolution or linear layer {', '.join(unknown)}; "
            f"`edgecnn sensitivity ARCH` lists its quantizable layers"
        )
    quantizer = make_quantizer(
        method, weight_bits=weight_bits, float_layers=float_layers, only_layers=only_layers, **observer_kw
    )
    prepared = prepare_pt2e(gm, quantizer)
    run_batches(prepared, calib.split(batch_size))
    return snap_biases(convert_pt2e(prepared, fold_quantize=False))


def prepare_qat(
    model: nn.Module,
    sample: torch.Tensor,
    *,
    method: str = "minmax",
    weight_bits: int = 8,
    **observer_kw: Any,
) -> torch.fx.GraphModule:
    """The fake-quant training graph, BatchNorm folded into the convolutions first (with its running
    statistics): QAT then fine-tunes the folded weights the deployed graph will hold."""
    from torch.fx.experimental.optimization import fuse
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    model = fuse(prepare_float(model))  # BatchNorm folded into the convolutions (eval statistics)
    gm = capture(model, sample)
    return prepare_qat_pt2e(gm, make_quantizer(method, qat=True, weight_bits=weight_bits, **observer_kw))


def convert(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    prepared = copy.deepcopy(prepared)
    move_exported_model_to_eval(prepared)
    return snap_biases(convert_pt2e(prepared, fold_quantize=False))


def _is_call(node: Any, *names: str) -> bool:
    return (
        isinstance(node, torch.fx.Node)
        and node.op == "call_function"
        and getattr(node.target, "__name__", "").split(".")[0] in names
    )


def _owner(gm: torch.fx.GraphModule, target: str) -> tuple[Any, str]:
    """The module holding a ``get_attr`` target (``conv1.weight_bias``) and the attribute's name."""
    *path, leaf = target.split(".")
    obj = gm
    for part in path:
        obj = getattr(obj, part)
    return obj, leaf


def _attr(gm: torch.fx.GraphModule, arg: Any) -> torch.Tensor:
    if isinstance(arg, torch.fx.Node) and arg.op == "get_attr":
        return torch.as_tensor(getattr(*_owner(gm, arg.target)))
    return torch.as_tensor(arg)


def snap_biases(converted: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Round each quantized convolution's and linear layer's float bias to its int32 accumulator
    grid (a multiple of input scale x per-channel weight scale), in place.

    TFLite and ONNX Runtime's integer kernels add the bias as that int32; a float bias off the grid
    moved every output of a channel by up to half an accumulator step against the fake-quant
    graph, enough to flip requantization roundings: ResNet18's TFLite artifact agreed with its
    fake-quant graph on 99.19% of the test images, against 99.97% with the bias on the grid
    (Fashion-MNIST quick model, docs/BENCHMARKS.md). The bias stays a float tensor (TensorRT's
    explicit-quantization form); integer runtimes now quantize it without loss, and float-bias
    runtimes add the same value.
    """
    for node in converted.graph.nodes:
        if node.op != "call_function" or node.target not in (
            torch.ops.aten.conv2d.default,
            torch.ops.aten.linear.default,
        ):
            continue
        x, w, b = (list(node.args) + [None, None, None])[:3]
        if not (
            _is_call(x, "dequantize_per_tensor")
            and _is_call(w, "dequantize_per_channel", "dequantize_per_tensor")
            and isinstance(b, torch.fx.Node)
            and b.op == "get_attr"
        ):
            continue
        bias = _attr(converted, b)
        step = _attr(converted, x.args[1]).double().reshape(()) * _attr(
            converted, w.args[1]
        ).double().reshape(-1)
        snapped = (torch.round(bias.double() / step) * step).to(bias.dtype)
        owner, leaf = _owner(converted, b.target)
        if isinstance(getattr(owner, leaf), nn.Parameter):
            setattr(owner, leaf, nn.Parameter(snapped, requires_grad=False))
        else:
            setattr(owner, leaf, snapped)
    return converted


def fake_quant_modules(prepared: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    """(activation, weight) fake-quantize modules of a QAT graph."""
    from torchao.quantization.pt2e import FakeQuantizeBase

    acts, weights = [], []
    for m in prepared.modules():
        if isinstance(m, FakeQuantizeBase):
            per_channel = getattr(m, "qscheme", None) in (
                torch.per_channel_symmetric,
                torch.per_channel_affine,
            )
            (weights if per_channel else acts).append(m)
    return acts, weights


def float_ops(converted: torch.fx.GraphModule) -> list[str]:
    """Compute ops of a converted graph that still run in float: an input not produced by a
    dequantize op (its source is float) means the backend keeps that layer in float."""
    out = []
    for node in converted.graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(node.target, "__name__", str(node.target)).split(".")[0]
        kind = _COMPUTE_OPS.get(name)
        if kind is None:
            continue
        tensor_args = [a for a in node.args[:2] if isinstance(a, torch.fx.Node)]
        if name == "cat" and node.args and isinstance(node.args[0], (list, tuple)):
            tensor_args = [a for a in node.args[0] if isinstance(a, torch.fx.Node)]
        if kind == "add":  # a convolution feeding an add directly: the add is fused into it (residual_form)
            tensor_args = [a for a in tensor_args if not _is_call(a, "conv2d", "linear")]
        if any(getattr(a.target, "__name__", "").split(".")[0] not in _DEQUANT_OPS for a in tensor_args):
            out.append(f"{kind} ({node.name})")
    return out


def count_quantized(converted: torch.fx.GraphModule) -> dict[str, int]:
    n = {"quantize": 0, "dequantize": 0}
    for node in converted.graph.nodes:
        name = getattr(node.target, "__name__", "").split(".")[0]
        if name in _QUANT_OPS:
            n["quantize"] += 1
        elif name in _DEQUANT_OPS:
            n["dequantize"] += 1
    return n


def save_graph(module: torch.fx.GraphModule, sample: torch.Tensor, path) -> None:
    """Save a converted (or prepared) graph as a torch.export program, atomically."""
    from edgecnn.fileio import atomic_write_bytes

    ep = _export_program(module, sample)
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    atomic_write_bytes(path, buf.getvalue())


def _batch_dim(sample: torch.Tensor, dynamic: bool) -> tuple[torch.Tensor, tuple | None]:
    """The sample to trace and ``dynamic_shapes`` for a batch dimension that stays dynamic.

    torch.export specializes a dimension of size 1, so a one-image sample (``--num-images 1``)
    would give a graph that refuses every other batch size: trace that image twice instead."""
    from torch.export import Dim

    if not dynamic:
        return sample, None
    if sample.shape[0] == 1:
        sample = torch.cat([sample, sample])
    return sample, ({0: Dim("batch", min=1, max=4096)},)


def _export_program(module: torch.fx.GraphModule, sample: torch.Tensor):
    sample, dyn = _batch_dim(sample, True)
    return torch.export.export(module, (sample,), strict=False, dynamic_shapes=dyn)


def retrace(module: torch.fx.GraphModule, sample: torch.Tensor) -> torch.fx.GraphModule:
    """``module`` traced again by torch.export: its nodes then carry the names ``torch.onnx.export``
    gives the same graph (numbered in order), as a graph saved and loaded does. A graph edited in
    place (:func:`residual_form`) keeps its old, gapped numbering until retraced."""
    gm = _export_program(module, sample).module()
    for m in gm.modules():  # inference only, as load_graph leaves it
        m.training = False
    return gm


_LOADED: dict[tuple, torch.fx.GraphModule] = {}  # the last graph loaded, by (path, size, mtime)


def load_graph(path) -> torch.fx.GraphModule:
    """The graph saved at ``path``, in inference mode; a copy of its own (callers edit it in place).

    The last file loaded is kept: a deploy's exports for several targets load one graph, and a copy
    costs a fraction of loading (0.25 s against 3.5 s for test_resnet18)."""
    import torchao.quantization.pt2e  # noqa: F401 - registers the quantized_decomposed ops the file uses

    try:
        st = Path(path).stat()
        key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
        if key not in _LOADED:
            module = torch.export.load(str(path)).module()
            for m in module.modules():  # inference only: BatchNorm is folded and Dropout gone
                m.training = False
            _LOADED.clear()
            _LOADED[key] = module
    except Exception as e:  # a missing, cut-short or foreign file
        raise EdgecnnError(
            f"cannot read quantized graph {path}: {str(e).splitlines()[0][:160]}; re-run `edgecnn calibrate`"
        ) from e
    return copy.deepcopy(_LOADED[key])


def residual_form(converted: torch.fx.GraphModule) -> list[str]:
    """Drop the requantization of a convolution's (or linear layer's) output that only feeds a
    residual add, in place: ``conv -> Q -> DQ -> add`` becomes ``conv -> add``. Returns the adds.

    This is the graph OpenVINO's CPU plugin computes. It fuses ``conv -> FakeQuantize -> Add ->
    ReLU -> FakeQuantize`` into one int8 convolution and there applies the first FakeQuantize
    without its rounding ("drop rounding one special residual pattern", intel_cpu
    dnnl_postops_composer.cpp): on ResNet18 15% of the block outputs then sit a step away from
    the graph's, and the artifact agreed with its fake-quant graph on 98.64% of the test images
    (benchmarks/openvino_fused_add_repro.py, docs/BENCHMARKS.md). Without that Q/DQ pair the
    graph says what OpenVINO does (the add's other input and its output stay quantized, and the
    convolution still runs in int8 with the add fused); no scale changes, so no recalibration.
    Only the first input of an add is changed (torchvision's ``out += identity``: the main branch),
    as OpenVINO fuses one convolution per add.
    """
    adds = []
    for node in list(converted.graph.nodes):
        if not _is_call(node, "add", "add_") or not node.args:
            continue
        dq = node.args[0]
        if not (_is_call(dq, "dequantize_per_tensor") and len(dq.users) == 1):
            continue
        q = dq.args[0]
        if not (
            _is_call(q, "quantize_per_tensor")
            and len(q.users) == 1
            and _is_call(q.args[0], "conv2d", "linear")
        ):
            continue
        node.replace_input_with(dq, q.args[0])
        converted.graph.erase_node(dq)
        converted.graph.erase_node(q)
        adds.append(node.name)
    converted.graph.lint()
    converted.recompile()
    return adds
