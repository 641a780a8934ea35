"""OpenVINO IR: the QDQ ONNX read as real INT8 (or a float model), saved as model.xml + model.bin."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def _ov():
    from edgecnn.telemetry import import_openvino

    return import_openvino("the OpenVINO backend is not installed: pip install 'edgecnn[openvino]'")


def onnx_to_ir(
    onnx_path: str | os.PathLike, xml_path: str | os.PathLike, *, fp16_weights: bool = False
) -> Path:
    """Convert an ONNX file to IR; both files appear together (written beside, then renamed)."""
    return save_ir(_ov().convert_model(str(onnx_path)), xml_path, fp16_weights=fp16_weights)


def qdq_to_int8_ir(qdq_path: str | os.PathLike, xml_path: str | os.PathLike) -> Path:
    """The INT8 IR of a symmetric QDQ ONNX model, post-ReLU activations encoded as uint8 with zero
    point 0 (:func:`edgecnn.export.onnx.to_u8_after_relu`: the same integer grid, without the
    zero-point compensation OpenVINO's convolutions pay for a shifted uint8 input)."""
    from edgecnn.export.onnx import to_u8_after_relu

    xml_path = Path(xml_path)
    u8 = xml_path.with_name(f".{xml_path.stem}.u8relu.onnx")
    try:
        to_u8_after_relu(qdq_path, u8)
        return onnx_to_ir(u8, xml_path)
    finally:
        u8.unlink(missing_ok=True)


def save_ir(model, xml_path: str | os.PathLike, *, fp16_weights: bool = False) -> Path:
    """``ov.save_model`` into a temporary folder beside, then rename .bin and .xml into place."""
    ov = _ov()
    xml_path = Path(xml_path)
    tmpdir = Path(tempfile.mkdtemp(prefix=".ir.", dir=xml_path.parent))
    try:
        ov.save_model(model, str(tmpdir / xml_path.name), compress_to_fp16=fp16_weights)
        os.replace(tmpdir / xml_path.with_suffix(".bin").name, xml_path.with_suffix(".bin"))
        os.replace(tmpdir / xml_path.name, xml_path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return xml_path


def nncf_ptq_ir(float_onnx: str | os.PathLike, calib_batches: list, xml_path: str | os.PathLike) -> Path:
    """The plain OpenVINO + NNCF default post-training quantization of a float ONNX model
    (``nncf.quantize`` with its defaults): the baseline edgecnn's CPU artifact is compared with."""
    from edgecnn.telemetry import import_nncf

    ov, nncf = _ov(), import_nncf()
    model = ov.convert_model(str(float_onnx))
    q = nncf.quantize(model, nncf.Dataset(calib_batches), subset_size=sum(len(b) for b in calib_batches))
    return save_ir(q, xml_path)


def runtime_precisions(xml_path: str | os.PathLike, threads: int = 1) -> dict[str, str]:
    """Layer name -> the precision OpenVINO's CPU plugin really runs it in (after compilation), compiled
    as :class:`edgecnn.runtimes.openvino.OpenVinoSession` compiles an INT8 artifact: with
    ``INFERENCE_PRECISION_HINT=f32`` (without it a float layer runs in bf16 on CPUs with AVX-512 BF16,
    and would not be reported as float)."""
    ov = _ov()
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    compiled = core.compile_model(str(xml_path), "CPU", config)
    out = {}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if "layerType" in info and "runtimePrecision" in info:
            out[f"{info['layerType'].astype(str)}:{op.get_friendly_name()}"] = info[
                "runtimePrecision"
            ].astype(str)
    return out
