"""The exported artifact and its ``metadata.json``: the contract between export, runtimes,
evaluation and benchmarking.

An artifact is a directory::

    <dir>/metadata.json      this schema (``format: "edgecnn.artifact/1"``)
    <dir>/<model file(s)>    model.onnx | model.xml + model.bin | model.tflite | model.engine

``metadata.json`` (every key always present unless marked optional)::

    format        "edgecnn.artifact/1"
    arch          "resnet18"
    model_options {"small_input": false, ...}          options of edgecnn.models.create
    num_classes   10
    class_names   ["T-shirt/top", ...]
    target        "cpu" | "jetson" | "rpi"
    runtime       "openvino" | "onnxruntime" | "tflite" | "tensorrt"
    precision     "int8" | "fp16" | "fp32"
    files         {"model.onnx": "<sha256>", ...}  every file of the artifact, first is the
                  one the runtime loads
    input         {"name", "shape" [N, C, H, W] or [N, H, W, C] (N may be null = dynamic),
                   "layout" "NCHW"|"NHWC", "dtype" "float32"|"int8"|"uint8",
                   "scale", "zero_point" (quantized dtypes only, else null)}
    output        {"name", "shape", "dtype", "scale", "zero_point"}
    preprocess    Preprocess.to_dict(): what the input must be made from uint8 images
    quantization  null for fp32/fp16, else {"scheme", "weights", "activations",
                   "calibration": {"method", "set_hash", "num_images", "seed"},
                   "qat": null | {"epochs", ...},
                   "float_layers": [module paths the quantizer left in float (--max-drop)]}
    float_layers  layers that do not run in INT8 on this backend (list of str); float_layers.json
                  beside it: {"kept_float" (the quantizer's choice), "graph", "backend"}
    source        {"checkpoint": path, "sha256": ...}
    tools         {"torch": "2.13.0", "openvino": ...}
    created       ISO time

Only the runtime side (this module, :mod:`edgecnn.runtimes`, evaluation of an artifact,
bench statistics) may run on a device, so this module imports neither torch nor any
backend.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edgecnn.config import check_json_types
from edgecnn.errors import EdgecnnError
from edgecnn.fileio import atomic_write_json, sha256_file
from edgecnn.results import Artifact
from edgecnn.version import __version__
from edgecnn.vocab import Precision, Runtime, Target

FORMAT = "edgecnn.artifact/1"
METADATA = "metadata.json"
TARGETS = Target.values()
RUNTIMES = Runtime.values()
PRECISIONS = Precision.values()
REQUIRED = (
    "format",
    "arch",
    "model_options",
    "num_classes",
    "class_names",
    "target",
    "runtime",
    "precision",
    "files",
    "input",
    "output",
    "preprocess",
    "quantization",
    "float_layers",
    "source",
    "tools",
)


def artifact_dir(path: str | os.PathLike) -> Path:
    """The artifact directory for a path to it or to any of its files."""
    p = Path(path)
    if p.is_file() or p.name == METADATA:
        p = p.parent
    return p


def write_metadata(dir: str | os.PathLike, meta: dict[str, Any]) -> dict[str, Any]:
    """Hash the artifact's files into ``meta["files"]`` and write ``metadata.json`` atomically.

    ``meta["files"]`` on entry lists the file names (first = the one the runtime loads).
    """
    d = Path(dir)
    meta = dict(meta)
    meta["format"] = FORMAT
    meta["files"] = {name: sha256_file(d / name) for name in meta["files"]}
    meta["tools"] = {**meta.get("tools", {}), "edgecnn": __version__}  # names the version that reads it
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise ValueError(f"artifact metadata lacks {', '.join(missing)}")
    atomic_write_json(d / METADATA, meta)
    return meta


# The JSON type of each required key (the values of target, runtime and precision are checked too).
_TYPES: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "arch": str,
    "model_options": dict,
    "num_classes": int,
    "class_names": list,
    "target": str,
    "runtime": str,
    "precision": str,
    "files": dict,
    "input": dict,
    "output": dict,
    "preprocess": dict,
    "quantization": (dict, type(None)),
    "float_layers": list,
    "source": dict,
    "tools": dict,
}


def check_metadata(meta: Any, mpath: Path) -> None:
    """EdgecnnError (one line, naming the file) unless ``meta`` is metadata this version reads."""
    redo = "re-export the artifact"
    if not isinstance(meta, dict) or not str(meta.get("format", "")).startswith("edgecnn.artifact/"):
        raise EdgecnnError(f"{mpath} is not edgecnn artifact metadata; {redo}")
    version = meta["format"].rpartition("/")[2]
    if meta["format"] != FORMAT and version.isdigit() and int(version) < int(FORMAT.rpartition("/")[2]):
        raise EdgecnnError(
            f"{mpath} is format {meta['format']}, older than this edgecnn's {FORMAT}; {redo} "
            f"with this edgecnn ({__version__})"
        )
    if meta["format"] != FORMAT:
        tools = meta.get("tools")
        by = (
            tools.get("edgecnn")
            if isinstance(tools, dict) and isinstance(tools.get("edgecnn"), str)
            else None
        )
        need = (
            f"edgecnn {by} (which wrote it) or newer: pip install -U 'edgecnn>={by}'"
            if by
            else "the edgecnn that wrote it, or newer: pip install -U edgecnn"
        )
        raise EdgecnnError(
            f"{mpath} is format {meta['format']}, and this edgecnn ({__version__}) reads {FORMAT}: "
            f"read it with {need}"
        )
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise EdgecnnError(f"{mpath} lacks {', '.join(missing)}; {redo}")
    check_json_types(meta, _TYPES, f"{mpath}:", redo)
    for key, known in (("target", TARGETS), ("runtime", RUNTIMES), ("precision", PRECISIONS)):
        if meta[key] not in known:
            raise EdgecnnError(f"{mpath}: unknown {key} '{meta[key]}' (known: {', '.join(known)}); {redo}")
    files = meta["files"]
    if not files or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise EdgecnnError(f"{mpath}: 'files' must map each file name to its sha256; {redo}")


def _check_inside(d: Path, name: str, mpath: Path) -> None:
    """Refuse a ``files`` entry that names something outside the artifact directory."""
    p = Path(name)
    root = d.resolve()
    if (
        not name
        or p.is_absolute()
        or ".." in p.parts
        or (d / p).resolve() == root
        or not (d / p).resolve().is_relative_to(root)
    ):
        raise EdgecnnError(
            f"{mpath} lists '{name}', which is not a file inside the artifact directory "
            f"(absolute, '..', or a link out of it); refusing to read it: re-export the artifact"
        )


def load_artifact(path: str | os.PathLike, *, verify: bool = True) -> Artifact:
    """Read an artifact's metadata; with ``verify`` refuse one whose files changed since export."""
    d = artifact_dir(path)
    mpath = d / METADATA
    if not mpath.is_file():
        raise EdgecnnError(
            f"{path} is not an edgecnn artifact (no {METADATA} beside it); "
            f"make one with `edgecnn export ARCH --target ...`"
        )
    try:
        meta = json.loads(mpath.read_text())
    except (OSError, ValueError) as e:
        raise EdgecnnError(f"cannot read {mpath}: {e}; re-export the artifact") from e
    check_metadata(meta, mpath)
    for name in meta["files"]:
        _check_inside(d, name, mpath)
    if verify:
        for name, digest in meta["files"].items():
            f = d / name
            if not f.is_file():
                raise EdgecnnError(f"artifact file {f} is missing; re-export the artifact")
            if sha256_file(f) != digest:
                raise EdgecnnError(
                    f"{f} no longer matches the sha256 in its {METADATA}: it was changed "
                    f"after export; re-export it rather than evaluate or bench it"
                )
    return Artifact(d, meta)


def model_size_mb(art: Artifact) -> float:
    """Size in MB (10^6 bytes) of the files the runtime loads (reference .npy files left out)."""
    return sum((art.dir / n).stat().st_size for n in art.meta["files"] if not n.endswith(".npy")) / 1e6
