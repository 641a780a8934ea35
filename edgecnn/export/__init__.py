"""Export a network for a target: the artifact file(s) and the ``metadata.json`` beside them.

=========  ==============  =====================  ================================================
target     runtime         precisions             artifact
=========  ==============  =====================  ================================================
cpu        openvino        int8, fp32             model.xml + model.bin (INT8 from the QDQ graph,
                                                  uint8 after ReLU)
cpu        onnxruntime     int8, fp32             model.onnx (INT8: uint8 activations, int8 weights)
jetson     tensorrt        int8, fp16, fp32       model.onnx (explicit QDQ, S8S8 symmetric) for the
                                                  TensorRT builder on the device
rpi        tflite          int8, fp32             model.tflite (full integer: int8 in and out)
=========  ==============  =====================  ================================================

Every INT8 artifact is made from one quantized graph (``edgecnn calibrate`` / ``edgecnn qat``),
so the runtimes differ only in how they execute the same integer grid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn import outdir
from edgecnn.errors import EdgecnnError, suggest
from edgecnn.results import Artifact, FloatModel, QuantizedGraph
from edgecnn.stage import stage, stage_key

SUPPORT = {
    "cpu": {"openvino": ("int8", "fp32"), "onnxruntime": ("int8", "fp32")},
    "jetson": {"tensorrt": ("int8", "fp16", "fp32")},
    "rpi": {"tflite": ("int8", "fp32")},
}
EXPORT_VERSION = 8  # bump when the exporter changes what it writes: cached artifacts are then remade
DEFAULT_RUNTIME = {"cpu": "openvino", "jetson": "tensorrt", "rpi": "tflite"}
# What each runtime's exporter needs installed here, and the extra that brings it.
_NEEDS = {
    "openvino": (("onnx", "onnxscript", "openvino"), "openvino"),
    "onnxruntime": (("onnx", "onnxscript", "onnxruntime"), "onnx"),
    "tensorrt": (("onnx", "onnxscript"), "onnx"),
    "tflite": (("litert_torch", "ai_edge_litert"), "tflite"),
}
RUNTIME_FILES = {
    "openvino": ("model.xml", "model.bin"),
    "onnxruntime": ("model.onnx",),
    "tensorrt": ("model.onnx",),
    "tflite": ("model.tflite",),
}


def resolve(target: str, runtime: str | None, precision: str) -> str:
    """Check (target, runtime, precision) before any work starts; return the runtime."""
    if target not in SUPPORT:
        raise EdgecnnError(
            f"unknown target '{target}'.{suggest(target, SUPPORT)} Targets: {', '.join(SUPPORT)}"
        )
    runtime = runtime or DEFAULT_RUNTIME[target]
    if runtime not in SUPPORT[target]:
        raise EdgecnnError(
            f"target {target} runs {', '.join(SUPPORT[target])}, not {runtime}; "
            f"drop --runtime or pick one of those"
        )
    if precision not in SUPPORT[target][runtime]:
        raise EdgecnnError(
            f"{runtime} on {target} supports {', '.join(SUPPORT[target][runtime])}, not {precision}"
        )
    modules, extra = _NEEDS[runtime]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise EdgecnnError(
            f"exporting for {target} ({runtime}) needs {', '.join(missing)}: pip install 'edgecnn[{extra}]'"
        )
    return runtime


def tool_versions(runtime: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    names = ["torch", "torchao", "onnx", "onnxscript"] + {
        "openvino": ["openvino"],
        "onnxruntime": ["onnxruntime"],
        "tflite": ["litert-torch", "ai-edge-litert"],
        "tensorrt": [],
    }[runtime]
    out = {}
    for n in names:
        with contextlib.suppress(PackageNotFoundError):
            out[n] = version(n)
    return out


# How each runtime's file encodes the one symmetric int8 grid (the TensorRT and TFLite files as is).
INT8_FORM = {
    "onnxruntime": "uint8 activations (zero point 128), int8 weights",
    "openvino": "activations after a ReLU as uint8 (zero point 0, saturating at 127), the others int8 "
    "symmetric; int8 weights; a convolution feeding a residual add not requantized (residual_form)",
}


def weight_bits(runtime: str, precision: str = "int8") -> int:
    """The weight bits of the quantized graph an INT8 ``runtime`` artifact is made from here.

    OpenVINO's int8 kernels saturate with 8-bit weights on x86 without VNNI (measured on
    ResNet18: 96.7% top-1 agreement with the fake-quant graph): 7-bit weights there."""
    from edgecnn.host import has_vnni

    return 7 if precision == "int8" and runtime == "openvino" and not has_vnni() else 8


def model_for(
    arch: str,
    recipe,
    runtime: str,
    *,
    precision: str = "int8",
    data: str | None = None,
    checkpoint: str | None = None,
    method: str | None = None,
    use_qat: bool = False,
    float_layers: Sequence[str] = (),
    threads: int | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> QuantizedGraph | FloatModel:
    """What :func:`export` takes for ``runtime`` at ``precision``, made by the stages before it:
    the float model (``checkpoint``, else trained with ``recipe``) and, for INT8, its quantized
    graph with the runtime's :func:`weight_bits` (QAT with ``use_qat``, else PTQ leaving
    ``float_layers`` in float; ``--max-drop`` chooses the graph with :func:`edgecnn.mixed.within_budget`
    instead)."""
    from edgecnn.quantize import stages
    from edgecnn.train import train

    if checkpoint is not None:
        model = FloatModel.given(arch, checkpoint)
    else:
        model = train(arch, recipe, data=data, threads=threads, log=log, progress=progress)
    if precision != "int8":
        return model
    if use_qat and float_layers:
        raise EdgecnnError("QAT keeps every layer in INT8: pass float layers or QAT, not both")
    kw = {"data": data, "checkpoint": str(model.checkpoint), "method": method, "threads": threads}
    kw |= {"weight_bits": weight_bits(runtime), "log": log, "progress": progress}
    if use_qat:
        return stages.qat(arch, recipe, **kw)
    return stages.calibrate(arch, recipe, float_layers=float_layers, **kw)


def _check_source(model: QuantizedGraph | FloatModel, runtime: str, precision: str) -> None:
    """INT8 comes from a quantized graph with the runtime's weight bits; FP32/FP16 from a float model."""
    if precision != "int8":
        if isinstance(model, QuantizedGraph):
            raise EdgecnnError(f"{precision} is exported from the float model, not from a quantized graph")
        return
    if not isinstance(model, QuantizedGraph):
        raise EdgecnnError("int8 is exported from a quantized graph: run calibrate or qat first")
    bits = weight_bits(runtime)
    if model.weight_bits != bits:
        raise EdgecnnError(
            f"{model.graph} has {model.weight_bits}-bit weights; {runtime} here needs {bits}-bit "
            f"(see export.weight_bits): calibrate with weight_bits={bits}"
        )


def export(
    model: QuantizedGraph | FloatModel,
    target: str,
    *,
    recipe,
    precision: str | None = None,
    runtime: str | None = None,
    data: str | None = None,
    out: str | os.PathLike | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> Artifact:
    """The artifact of ``model`` on ``target``: INT8 from a quantized graph (calibrate / qat),
    FP32 or FP16 from a float model (``precision``, default int8 or fp32 by the model given).

    Cached under ``runs/artifacts/`` by the model's key (or checkpoint sha256), target, runtime,
    precision and :data:`EXPORT_VERSION`; ``out`` writes that folder instead, ``force`` redoes it.
    ``recipe`` and ``data`` name the dataset and preprocessing the float model was trained with."""
    from edgecnn.artifact import load_artifact
    from edgecnn.quantize import stages

    graph = model if isinstance(model, QuantizedGraph) else None
    precision = precision or ("int8" if graph else "fp32")
    runtime = resolve(target, runtime, precision)
    _check_source(model, runtime, precision)
    if out is not None:
        outdir.check(Path(out), "export")  # a folder of yours is refused before any work
    src = stages.float_source(
        model.arch, recipe, data=data, checkpoint=str(model.checkpoint), log=log, progress=False
    )
    tag = graph.key if graph else src.checkpoint_sha256[:12]
    what = f"{model.arch}-{target}-{runtime}-{precision}"
    inputs = {
        "export": EXPORT_VERSION,
        "source": tag,
        "target": target,
        "runtime": runtime,
        "precision": precision,
    }

    def make(tmp: Path) -> None:
        _make(tmp, _Job(src, graph, target, runtime, precision, tag, force), log)

    made = stage(
        "export",
        inputs,
        make,
        name=what,
        runs="artifacts",
        out=out,
        done=lambda d: _done(d, tag, runtime),
        force=force,
        what=f"the {runtime} {precision} artifact {what}",
    )
    log(f"{model.arch}: {'reusing artifact' if made.cached else 'wrote'} {made.path}")
    return dataclasses.replace(load_artifact(made.path, verify=False), cached=made.cached)


def _done(d: Path, tag: str, runtime: str) -> bool:
    """Whether ``d`` holds a readable artifact of this source (``stage_key``), exporter and runtime."""
    from edgecnn.artifact import load_artifact

    try:
        meta = load_artifact(d).meta
    except EdgecnnError:
        return False
    return (meta.get("stage_key"), meta.get("export_version"), meta["runtime"]) == (
        tag,
        EXPORT_VERSION,
        runtime,
    )


@dataclass(frozen=True)
class _Job:
    """One export: the float source, the quantized graph (None: FP32/FP16), where, and the key of
    its source (the graph's key or the checkpoint's sha256 prefix: metadata.json's ``stage_key``)."""

    src: Any  # quantize.stages.FloatSource
    graph: QuantizedGraph | None
    target: str
    runtime: str
    precision: str
    tag: str
    force: bool = False


def _module(job: _Job, sample, log):
    """(torch module to export, its float layers, residual adds in OpenVINO's form, reference)

    ``reference``: (top-1 per test image, accuracy) of the exported graph where it is not the
    quantized graph's own (OpenVINO's residual form), else None."""
    from edgecnn.quantize.pt2e import float_ops, load_graph, prepare_float, residual_form, retrace
    from edgecnn.train import predict_model

    src, arch = job.src, job.src.arch
    if job.graph is None:
        return prepare_float(src.model), [], [], None
    module = load_graph(job.graph.graph)
    # OpenVINO: its graph, without the requantization its fused residual adds skip (pt2e.residual_form)
    residual = residual_form(module) if job.runtime == "openvino" else []
    module = retrace(module, sample) if residual else module  # the names its ONNX will carry
    graph_float = float_ops(module)
    log(f"{arch}: layers that stay float before export: {', '.join(graph_float) or 'none'}")
    if not residual:
        return module, graph_float, residual, None
    log(f"{arch}: {len(residual)} residual adds in OpenVINO's form; fake-quant accuracy of that graph")
    test = src.bundle.test
    return module, graph_float, residual, predict_model(module, test.images, test.labels, src.preprocess)


def _make(tmp: Path, job: _Job, log) -> None:
    """Write the artifact of ``job`` into ``tmp``: the runtime's files, references, metadata."""
    from edgecnn.artifact import write_metadata
    from edgecnn.fileio import atomic_write_json
    from edgecnn.quantize.pt2e import make_quantizer

    src = job.src
    sample = src.preprocess.apply_torch(src.bundle.test.images[:2])
    module, graph_float, residual, reference = _module(job, sample, log)
    t0 = time.perf_counter()
    log(f"{src.arch}: exporting {job.precision} for {job.target} ({job.runtime})")
    g = job.graph
    stage_dict = (
        None
        if g is None
        else {"method": g.method.value, "weight_bits": g.weight_bits, "float_layers": g.float_layers}
    )
    onnx_file = (
        None
        if job.runtime == "tflite"
        else shared_onnx(module, sample, stage_dict, job.tag, bool(residual), job.force, log)
    )
    backend_float, io = write_runtime_files(
        job.runtime, job.precision, module, sample, tmp, stage_dict, make_quantizer, onnx_file
    )
    files = list(RUNTIME_FILES[job.runtime])
    meta = _metadata(job, io, sorted(set(graph_float) | set(backend_float)), residual, reference)
    meta["files"] = files + _references(tmp, job, reference, log)
    meta["export_seconds"] = round(time.perf_counter() - t0, 1)
    meta["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_metadata(tmp, meta)
    kept = list(g.float_layers) if g else []  # the layers the quantizer left in float (mixed precision)
    atomic_write_json(
        tmp / "float_layers.json", {"kept_float": kept, "graph": graph_float, "backend": backend_float}
    )


def shared_onnx(
    module, sample, stage, tag: str, residual: bool, force: bool, log: Callable[[str], None]
) -> Path:
    """``module`` exported to ONNX (finalized, for a quantized graph) once per graph and cached in
    ``runs/onnx``: the artifacts made from one graph (TensorRT fp32 and fp16 and OpenVINO fp32 from
    a float model; TensorRT and ONNX Runtime int8 from a quantized graph) link or copy it instead of
    exporting it again. ``tag``: the quantization stage's key or the checkpoint's sha256 prefix;
    ``residual``: OpenVINO's residual form of the graph (a different graph); ``force`` exports again."""
    from edgecnn import paths
    from edgecnn.export import onnx as onnx_export
    from edgecnn.fileio import atomic_path

    key = {
        "graph": tag,
        "int8": stage is not None,
        "residual": residual,
        "shape": list(sample.shape[1:]),
        "export_version": EXPORT_VERSION,
        "tools": tool_versions("tensorrt"),  # torch, torchao, onnx, onnxscript
    }
    name = stage_key(key)
    path = paths.runs_dir() / "onnx" / f"{tag}-{name}.onnx"  # artifacts' stage_key names theirs (cache.py)
    with outdir.lock(path, f"the ONNX export {name}"):  # a second identical export waits, then links it
        if path.is_file() and not force:
            log(f"reusing the ONNX export {path}")
            return path
        with atomic_path(path) as tmp:  # a killed export, or one not yet finalized, leaves no file
            onnx_export.export_onnx(module, sample, tmp)
            if stage:
                onnx_export.finalize_qdq(tmp)
    return path


def _references(tmp: Path, job: _Job, reference, log) -> list[str]:
    """Write the reference files beside the artifact; return their names."""
    import numpy as np

    from edgecnn.quantize import stages

    if job.graph is None:
        np.save(tmp / "fp32_correct.npy", np.load(stages.fp32_reference(job.src, log)["correct"]))
        return ["fp32_correct.npy"]
    if reference:
        np.save(tmp / "reference_predictions.npy", reference[0])
    else:
        shutil.copy(job.graph.dir / "predictions.npy", tmp / "reference_predictions.npy")
    shutil.copy(job.graph.dir / "fp32_correct.npy", tmp / "fp32_correct.npy")
    return ["reference_predictions.npy", "fp32_correct.npy"]


def _metadata(job: _Job, io: dict, float_layers: list[str], residual: list, reference) -> dict:
    """``metadata.json`` of the artifact (``files`` and timings are added by :func:`_make`)."""
    src, graph = job.src, job.graph
    meta = {
        "arch": src.arch,
        "model_options": src.model_options,
        "num_classes": len(src.class_names),
        "class_names": src.class_names,
        "target": job.target,
        "runtime": job.runtime,
        "precision": job.precision,
        "files": [],
        **io,
        "preprocess": src.preprocess.to_dict(),
        "quantization": None if graph is None else _quantization(job, residual, reference),
        "float_layers": float_layers,
        "source": {
            "checkpoint": str(src.checkpoint),
            "sha256": src.checkpoint_sha256,
            "quantized_graph": str(graph.graph) if graph else None,
        },
        "tools": tool_versions(job.runtime),
        "stage_key": job.tag,
        "export_version": EXPORT_VERSION,
        "export_seconds": None,
        "created": None,
    }
    if graph is None:
        meta["reference"] = {"fp32_correct": "fp32_correct.npy"}
    else:
        meta["reference"] = {
            "reference_predictions": "reference_predictions.npy",
            "fp32_correct": "fp32_correct.npy",
            "what": "top-1 of the fake-quant PyTorch graph; FP32 per-image correctness",
        }
    return meta


def _quantization(job: _Job, residual: list, reference) -> dict:
    """``metadata.json``'s ``quantization``: the scheme, its form in this runtime, calibration, QAT."""
    from edgecnn.quantize.pt2e import SCHEME

    graph = job.graph
    qat = graph.report.get("qat")
    return {
        "weights_range": "int8 limited to [-63, 63] (7 bits): x86 without VNNI"
        if graph.weight_bits == 7
        else "[-127, 127]",
        **SCHEME,
        "form": INT8_FORM.get(job.runtime, SCHEME["activations"]),
        "calibration": {**graph.report["calibration"], "dataset": job.src.bundle.name},
        "qat": None if qat is None else {k: v for k, v in qat.items() if k != "history"},
        "fakequant_top1": reference[1]["top1"] if reference else graph.fakequant_top1,
        # the layers the quantizer left in float (mixed precision, --max-drop)
        "float_layers": list(graph.float_layers),
        **({"residual_form": residual} if residual else {}),
    }


def _link_or_copy(src: Path, dest: Path) -> None:
    """A hard link where the filesystem allows (every later step writes new files), else a copy."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def write_runtime_files(
    runtime: str,
    precision: str,
    module,
    sample,
    tmp: Path,
    stage,
    make_quantizer,
    onnx_file: Path | None = None,
):
    """Write the runtime's file(s) into ``tmp``; return (backend float layers, input/output metadata).

    ``stage``: None for a float module, else a mapping with the PTQ ``method`` (what TFLite's
    converter quantizes with). ``onnx_file``: ``module`` already exported to ONNX (and finalized,
    for a quantized graph), linked or copied instead of exported again (several runtimes' files
    are made from one)."""
    if runtime in ("tensorrt", "onnxruntime", "openvino"):
        backend = _write_onnx_family(runtime, precision, module, sample, tmp, bool(stage), onnx_file)
        return backend, _float_io(list(sample.shape[1:]))
    # the quantizer the stage's graph was made with: the same observers, weight range and float layers
    quantizer = (
        make_quantizer(
            stage["method"],
            weight_bits=stage.get("weight_bits", 8),
            float_layers=stage.get("float_layers") or (),
        )
        if stage
        else None
    )
    return _write_tflite(module, sample, tmp, quantizer)


def _float_io(shape: list[int]) -> dict:
    """metadata.json's ``input`` and ``output`` of an ONNX-made artifact: float32 in and out."""
    from edgecnn.export import onnx as onnx_export

    return {
        "input": {
            "name": onnx_export.INPUT,
            "shape": [None, *shape],
            "layout": "NCHW",
            "dtype": "float32",
            "scale": None,
            "zero_point": None,
        },
        "output": {
            "name": onnx_export.OUTPUT,
            "shape": [None, None],
            "dtype": "float32",
            "scale": None,
            "zero_point": None,
        },
    }


def _write_onnx_family(
    runtime: str, precision: str, module, sample, tmp: Path, quantized: bool, onnx_file: Path | None
) -> list[str]:
    """TensorRT's QDQ ONNX, ONNX Runtime's U8S8 ONNX or OpenVINO's IR, all from one ONNX export;
    return the layers the backend keeps in float."""
    from edgecnn.export import onnx as onnx_export

    qdq = tmp / ("model.onnx" if runtime == "tensorrt" else "qdq.onnx")
    if onnx_file is not None:
        _link_or_copy(onnx_file, qdq)
    else:
        onnx_export.export_onnx(module, sample, qdq)
        if quantized:
            onnx_export.finalize_qdq(qdq)
    backend = onnx_export.onnx_float_ops(qdq) if quantized else []
    if runtime == "tensorrt" and precision == "fp16":
        onnx_export.to_fp16(qdq, qdq)
    elif runtime == "onnxruntime":
        if quantized:
            onnx_export.to_u8s8(qdq, tmp / "model.onnx")
            qdq.unlink()
        else:
            os.replace(qdq, tmp / "model.onnx")
    elif runtime == "openvino":
        from edgecnn.export.openvino import onnx_to_ir, qdq_to_int8_ir, runtime_precisions

        (qdq_to_int8_ir if quantized else onnx_to_ir)(qdq, tmp / "model.xml")
        qdq.unlink()
        if quantized:
            backend = [
                f"{k} ({v})"
                for k, v in runtime_precisions(tmp / "model.xml").items()
                if k.split(":")[0] in ("Convolution", "FullyConnected", "MatMul") and v == "f32"
            ]
    return backend


def _write_tflite(module, sample, tmp: Path, quantizer) -> tuple[list[str], dict]:
    """LiteRT's model.tflite: fixed batch 1, full integer (int8 in and out) when ``quantizer``."""
    from edgecnn.export.tflite import export_tflite, tflite_float_ops

    path = export_tflite(module, sample[:1], tmp / "model.tflite", quantizer=quantizer)
    from ai_edge_litert.interpreter import Interpreter  # after the converter, as it always was

    it = Interpreter(model_path=str(path))
    i, o = it.get_input_details()[0], it.get_output_details()[0]

    def io(d, name):
        scale, zp = d["quantization"]
        quant = d["dtype"].__name__ in ("int8", "uint8")
        return {
            "name": name,
            "shape": [int(v) for v in d["shape"]],
            "layout": "NCHW" if name == "input" else None,
            "dtype": d["dtype"].__name__,
            "scale": float(scale) if quant else None,
            "zero_point": int(zp) if quant else None,
        }

    meta_io = {"input": io(i, "input"), "output": io(o, "logits")}
    meta_io["output"].pop("layout")
    return (tflite_float_ops(path) if quantizer is not None else []), meta_io
