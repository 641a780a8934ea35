"""LiteRT / TFLite: a full-integer INT8 .tflite (int8 input and output) from the converted PT2E
graph through litert-torch, or a float .tflite from the float model."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np
import torch

from edgecnn.errors import EdgecnnError
from edgecnn.fileio import atomic_path


def _litert_torch():
    try:
        import litert_torch
    except ImportError as e:
        raise EdgecnnError("the TFLite exporter is not installed: pip install 'edgecnn[tflite]'") from e
    return litert_torch


def export_tflite(
    module: torch.nn.Module, sample: torch.Tensor, path: str | os.PathLike, *, quantizer=None
) -> Path:
    """Convert at the batch size of ``sample`` (TFLite graphs have a fixed batch).

    With ``quantizer`` (the PT2E quantizer that produced ``module``) the result is full-integer;
    without it litert-torch would silently write a float model from a quantized graph, so a
    converted graph without its quantizer is refused.
    """
    litert_torch = _litert_torch()
    from litert_torch.quantize.quant_config import QuantConfig

    kwargs = {"quant_config": QuantConfig(pt2e_quantizer=quantizer)} if quantizer is not None else {}
    quiet = io.StringIO()
    path = Path(path)
    # litert-torch prints progress to stdout: keep it out of `--json` output
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        edge = litert_torch.convert(module, (sample,), **kwargs)
        with atomic_path(path) as tmp:
            edge.export(str(tmp))
    return path


def tflite_float_ops(path: str | os.PathLike) -> list[str]:
    """Ops of a .tflite whose inputs or outputs are float: they do not run in INT8."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise EdgecnnError("the LiteRT interpreter is not installed: pip install 'edgecnn[tflite]'") from e
    it = Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    out = []
    for op in it._get_ops_details():
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        idx = [i for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0 and i in tensors]
        if any(tensors[i]["dtype"] == np.float32 for i in idx[:1] + idx[-1:]):
            out.append(f"{op['op_name']} (op {op['index']})")
    return out
