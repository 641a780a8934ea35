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
import importlib.util
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from edgecnn import outdir
from edgecnn.errors import EdgecnnError, suggest

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


def weight_bits(runtime: str) -> int:
    """The weight range the quantized graph for ``runtime`` needs on this machine: OpenVINO's int8
    kernels saturate with 8-bit weights on x86 without VNNI (measured on ResNet18: 96.7% top-1
    agreement with the fake-quant graph), so weights are quantized to 7 bits there."""
    from edgecnn.host import has_vnni

    return 7 if runtime == "openvino" and not has_vnni() else 8


# How each runtime's file encodes the one symmetric int8 grid (the TensorRT and TFLite files as is).
INT8_FORM = {
    "onnxruntime": "uint8 activations (zero point 128), int8 weights",
    "openvino": "activations after a ReLU as uint8 (zero point 0, saturating at 127), the others int8 "
    "symmetric; int8 weights; a convolution feeding a residual add not requantized (residual_form)",
}


@outdir.holding_locks
def export(
    arch: str,
    target: str,
    *,
    recipe,
    precision: str = "int8",
    runtime: str | None = None,
    data: str | None = None,
    checkpoint: str | None = None,
    method: str | None = None,
    qat: bool = False,
    float_layers: Sequence[str] = (),
    out: str | os.PathLike | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> Path:
    """Make the artifact directory for ``arch`` on ``target``; return its path.

    INT8 from PTQ (the calibrate stage), or from QAT with ``qat``; ``float_layers`` (PTQ only):
    the convolution / linear modules the quantizer leaves in float, as :mod:`edgecnn.mixed`
    chooses them for ``--max-drop``."""
    import numpy as np

    from edgecnn import paths
    from edgecnn.artifact import write_metadata
    from edgecnn.quantize import stages
    from edgecnn.quantize.pt2e import (
        SCHEME,
        float_ops,
        load_graph,
        make_quantizer,
        prepare_float,
        residual_form,
        retrace,
    )

    runtime = resolve(target, runtime, precision)
    if out is not None:
        outdir.check(Path(out), "export")  # a folder of yours is refused before any work
    stage = None
    if precision == "int8":
        bits = weight_bits(runtime)
        if qat and float_layers:
            raise EdgecnnError("QAT keeps every layer in INT8: pass float layers or QAT, not both")
        if qat:
            stage = stages.qat(
                arch,
                recipe,
                data=data,
                checkpoint=checkpoint,
                method=method,
                weight_bits=bits,
                log=log,
                progress=progress,
            )
        else:
            stage = stages.calibrate(
                arch,
                recipe,
                data=data,
                checkpoint=checkpoint,
                method=method,
                weight_bits=bits,
                float_layers=float_layers,
                log=log,
                progress=progress,
            )
    src = stages.float_source(arch, recipe, data=data, checkpoint=checkpoint, log=log, progress=False)
    tag = stage["key"] if stage else src.checkpoint_sha256[:12]
    out = (
        Path(out) if out else paths.runs_dir() / "artifacts" / f"{arch}-{target}-{runtime}-{precision}-{tag}"
    )
    outdir.hold(out, "export", f"the {runtime} {precision} artifact {out.name}")
    if not force and (out / "metadata.json").exists():
        from edgecnn.artifact import load_artifact

        try:
            art = load_artifact(out)
            if (art.meta.get("stage_key"), art.meta.get("export_version"), art.meta["runtime"]) == (
                tag,
                EXPORT_VERSION,
                runtime,
            ):
                log(f"{arch}: reusing artifact {out}")
                return out
        except EdgecnnError:
            pass

    sample = src.preprocess.apply_torch(src.bundle.test.images[:2])
    if stage:
        module = load_graph(Path(stage["dir"]) / "quantized.pt2")
        # OpenVINO: its graph, without the requantization its fused residual adds skip (pt2e.residual_form)
        residual = residual_form(module) if runtime == "openvino" else []
        module = retrace(module, sample) if residual else module  # the names its ONNX will carry
        graph_float = float_ops(module)
        log(f"{arch}: layers that stay float before export: {', '.join(graph_float) or 'none'}")
    else:
        module, graph_float, residual = prepare_float(src.model), [], []
    reference = None  # (top-1 per test image, report) of the exported graph where it is not the stage's
    if residual:
        log(f"{arch}: {len(residual)} residual adds in OpenVINO's form; fake-quant accuracy of that graph")
        reference = stages.predict(module, src.bundle.test.images, src.bundle.test.labels, src.preprocess)

    t0 = time.perf_counter()
    with outdir.replace(out, "export") as tmp:
        log(f"{arch}: exporting {precision} for {target} ({runtime})")
        onnx_file = (
            None
            if runtime == "tflite"
            else shared_onnx(module, sample, stage, tag, bool(residual), force, log)
        )
        backend_float, io = write_runtime_files(
            runtime, precision, module, sample, tmp, stage, make_quantizer, onnx_file
        )
        float_layers = sorted(set(graph_float) | set(backend_float))
        files = list(RUNTIME_FILES[runtime])
        meta = {
            "arch": arch,
            "model_options": src.model_options,
            "num_classes": len(src.class_names),
            "class_names": src.class_names,
            "target": target,
            "runtime": runtime,
            "precision": precision,
            "files": files,
            **io,
            "preprocess": src.preprocess.to_dict(),
            "quantization": None
            if stage is None
            else {
                "weights_range": "int8 limited to [-63, 63] (7 bits): x86 without VNNI"
                if stage.get("weight_bits") == 7
                else "[-127, 127]",
                **SCHEME,
                "form": INT8_FORM.get(runtime, SCHEME["activations"]),
                "calibration": {**stage["calibration"], "dataset": src.bundle.name},
                "qat": None
                if "qat" not in stage
                else {k: v for k, v in stage["qat"].items() if k != "history"},
                "fakequant_top1": (reference[1] if reference else stage["int8_fakequant"])["top1"],
                # the layers the quantizer left in float (mixed precision, --max-drop)
                "float_layers": list(stage.get("float_layers") or []),
                **({"residual_form": residual} if residual else {}),
            },
            "float_layers": float_layers,
            "source": {
                "checkpoint": str(src.checkpoint),
                "sha256": src.checkpoint_sha256,
                "quantized_graph": str(Path(stage["dir"]) / "quantized.pt2") if stage else None,
            },
            "tools": tool_versions(runtime),
            "stage_key": tag,
            "export_version": EXPORT_VERSION,
            "export_seconds": round(time.perf_counter() - t0, 1),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        if stage:
            if reference:
                np.save(tmp / "reference_predictions.npy", reference[0])
            else:
                shutil.copy(Path(stage["dir"]) / "predictions.npy", tmp / "reference_predictions.npy")
            shutil.copy(Path(stage["dir"]) / "fp32_correct.npy", tmp / "fp32_correct.npy")
            files += ["reference_predictions.npy", "fp32_correct.npy"]
            meta["reference"] = {
                "reference_predictions": "reference_predictions.npy",
                "fp32_correct": "fp32_correct.npy",
                "what": "top-1 of the fake-quant PyTorch graph; FP32 per-image correctness",
            }
        else:
            np.save(tmp / "fp32_correct.npy", np.load(stages.fp32_reference(src, log)["correct"]))
            files.append("fp32_correct.npy")
            meta["reference"] = {"fp32_correct": "fp32_correct.npy"}
        from edgecnn.fileio import atomic_write_json

        write_metadata(tmp, meta)
        kept = list(stage.get("float_layers") or []) if stage else []
        atomic_write_json(
            tmp / "float_layers.json", {"kept_float": kept, "graph": graph_float, "backend": backend_float}
        )
    log(f"{arch}: wrote {out}")
    return out


def shared_onnx(
    module, sample, stage, tag: str, residual: bool, force: bool, log: Callable[[str], None]
) -> Path:
    """``module`` exported to ONNX (finalized, for a quantized graph) once per graph and cached in
    ``runs/onnx``: the artifacts made from one graph (TensorRT fp32 and fp16 and OpenVINO fp32 from
    a float model; TensorRT and ONNX Runtime int8 from a quantized graph) link or copy it instead of
    exporting it again. ``tag``: the quantization stage's key or the checkpoint's sha256 prefix;
    ``residual``: OpenVINO's residual form of the graph (a different graph); ``force`` exports again."""
    import hashlib
    import json

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
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
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

    ``onnx_file``: ``module`` already exported to ONNX (and finalized, for a quantized graph),
    linked or copied instead of exported again (several runtimes' files are made from one)."""
    from edgecnn.export import onnx as onnx_export

    shape = list(sample.shape[1:])
    float_io = {
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
    if runtime in ("tensorrt", "onnxruntime", "openvino"):
        qdq = tmp / ("model.onnx" if runtime == "tensorrt" else "qdq.onnx")
        if onnx_file is not None:
            _link_or_copy(onnx_file, qdq)
        else:
            onnx_export.export_onnx(module, sample, qdq)
            if stage:
                onnx_export.finalize_qdq(qdq)
        backend = onnx_export.onnx_float_ops(qdq) if stage else []
        if runtime == "tensorrt" and precision == "fp16":
            onnx_export.to_fp16(qdq, qdq)
        elif runtime == "onnxruntime":
            if stage:
                onnx_export.to_u8s8(qdq, tmp / "model.onnx")
                qdq.unlink()
            else:
                os.replace(qdq, tmp / "model.onnx")
        elif runtime == "openvino":
            from edgecnn.export.openvino import onnx_to_ir, qdq_to_int8_ir, runtime_precisions

            (qdq_to_int8_ir if stage else onnx_to_ir)(qdq, tmp / "model.xml")
            qdq.unlink()
            if stage:
                backend = [
                    f"{k} ({v})"
                    for k, v in runtime_precisions(tmp / "model.xml").items()
                    if k.split(":")[0] in ("Convolution", "FullyConnected", "MatMul") and v == "f32"
                ]
        return backend, float_io
    # tflite: fixed batch 1, full-integer for int8
    from edgecnn.export.tflite import export_tflite, tflite_float_ops

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
    path = export_tflite(module, sample[:1], tmp / "model.tflite", quantizer=quantizer)
    from ai_edge_litert.interpreter import Interpreter

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
    return (tflite_float_ops(path) if stage else []), meta_io
