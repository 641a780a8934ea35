"""A *tap*: one quantized activation of a converted PT2E graph, as every runtime's runner finds it.

Torch-free (the device side of ``diagnose --host`` reads taps from JSON);
:func:`edgecnn.numerics.reference.graph_taps` makes them from a graph.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Tap:
    """One quantized activation of the graph."""

    name: str  # the quantize node (= the ONNX QuantizeLinear output)
    op: str  # what produced it: conv, relu (after a conv or an add), add, max_pool, ...
    module: str  # the producer's module path ("layer1.0.conv2"; "input" for the model input)
    scale: float
    zero_point: int
    dequant: tuple[str, ...]  # its dequantize nodes (OpenVINO names its FakeQuantize after them)
    output: bool = False  # its dequantized value is the model's output (the logits)

    @property
    def label(self) -> str:
        return f"{self.module}:{self.op}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Tap:
        kw = {f.name: d[f.name] for f in fields(cls) if f.name in d}
        return cls(**{**kw, "dequant": tuple(kw.get("dequant", ())), "scale": float(kw["scale"])})
