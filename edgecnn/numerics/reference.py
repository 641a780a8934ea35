"""The quantized tensors of a converted PT2E graph, and their values in the fake-quant graph and in float.

A *tap* is one activation ``quantize_per_tensor`` node of the converted graph: the output of a
layer as the integer runtimes hold it. Its FX node name is the name ``torch.onnx.export`` gives the
QuantizeLinear output in the QDQ ONNX (and so in every file made from it), its dequantize
consumers name OpenVINO's FakeQuantize nodes, and its producer's module path (``layer1.0.conv2``)
is what litert-torch writes into its tensor names: the layers are matched by these names, never
by their position.

The float values of a tap are those of the same graph with every quantize/dequantize op made an
identity: the FP32 model with BatchNorm folded into the convolutions (its biases rounded to the
int32 accumulator grid, a change below half an accumulator step).
"""

from __future__ import annotations

import numpy as np
import torch

from edgecnn.numerics.tap import Tap

_Q = "quantize_per_tensor"
_QDQ = ("quantize_per_tensor", "quantize_per_channel", "dequantize_per_tensor", "dequantize_per_channel")
_KIND = {
    "conv2d": "conv",
    "linear": "linear",
    "addmm": "linear",
    "add": "add",
    "add_": "add",
    "cat": "concat",
    "relu": "relu",
    "relu_": "relu",
    "hardtanh": "relu",
    "clamp": "relu",
    "max_pool2d": "max_pool",
    "avg_pool2d": "avg_pool",
    "adaptive_avg_pool2d": "avg_pool",
    "mean": "avg_pool",
    "flatten": "flatten",
    "view": "reshape",
    "reshape": "reshape",
}


def _fn(node) -> str:
    return getattr(node.target, "__name__", str(node.target)).split(".")[0]


def _value(gm, arg) -> float:
    from edgecnn.quantize.pt2e import _attr

    return float(_attr(gm, arg).reshape(-1)[0])


def graph_taps(gm: torch.fx.GraphModule) -> list[Tap]:
    """Every activation quantize op of ``gm`` in graph order (weights, quantized as constants, are not
    taps)."""
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    outputs = {a.name for a in out_node.all_input_nodes}
    taps = []
    for node in gm.graph.nodes:
        if node.op != "call_function" or _fn(node) != _Q:
            continue
        src = node.args[0]
        if not isinstance(src, torch.fx.Node) or src.op == "get_attr":
            continue
        if src.op == "placeholder":
            op, module = "quantize", "input"
        else:
            stack = src.meta.get("nn_module_stack") or {}
            module = next(reversed(stack.values()))[0] if stack else ""
            op = _KIND.get(_fn(src), _fn(src))
            if op == "relu" and _is_add(src.args[0]):
                op = "add+relu"
        dequant = tuple(u.name for u in node.users if _fn(u).startswith("dequantize"))
        taps.append(
            Tap(
                node.name,
                op,
                module or "model",
                _value(gm, node.args[1]),
                int(_value(gm, node.args[2])),
                dequant,
                output=bool(outputs & set(dequant)),
            )
        )
    return taps


def _is_add(node) -> bool:
    return isinstance(node, torch.fx.Node) and _fn(node) in ("add", "add_")


class _Recorder(torch.fx.Interpreter):
    """Runs the graph node by node and keeps the taps' outputs; ``float_mode`` skips every Q/DQ op."""

    def __init__(self, gm, names: set[str], float_mode: bool):
        super().__init__(gm)
        self.names, self.float_mode, self.values = names, float_mode, {}

    def run_node(self, n):
        if self.float_mode and n.op == "call_function" and _fn(n) in _QDQ:
            # a copy, as the real op makes one: the residual ``out += identity`` is an in-place add_
            out = self.env[n.args[0]].clone() if isinstance(n.args[0], torch.fx.Node) else n.args[0]
        else:
            out = super().run_node(n)
        if n.name in self.names:
            self.values[n.name] = out
        return out


@torch.no_grad()
def tap_values(
    gm: torch.fx.GraphModule, taps: list[Tap], x: np.ndarray, *, float_mode: bool = False
) -> dict[str, np.ndarray]:
    """Each tap's value for the batch ``x``: dequantized (fake-quant graph) or float (``float_mode``)."""
    rec = _Recorder(gm, {t.name for t in taps}, float_mode)
    rec.run(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    out = {}
    for t in taps:
        v = rec.values[t.name]
        if not float_mode:
            v = (v.to(torch.float32) - t.zero_point) * t.scale
        out[t.name] = v.detach().to(torch.float32).numpy()
    return out
