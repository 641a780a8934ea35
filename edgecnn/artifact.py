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
                   "qat": null | {"epochs", ...}}
    float_layers  layers that do not run in INT8 on this backend (list of str)
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.errors import EdgecnnError
from edgecnn.fileio import atomic_write_json, sha256_file

FORMAT = "edgecnn.artifact/1"
METADATA = "metadata.json"
TARGETS = ("cpu", "jetson", "rpi")
RUNTIMES = ("openvino", "onnxruntime", "tflite", "tensorrt")
PRECISIONS = ("int8", "fp16", "fp32")
REQUIRED = ("format", "arch", "model_options", "num_classes", "class_names", "target", "runtime",
            "precision", "files", "input", "output", "preprocess", "quantization", "float_layers",
            "source", "tools")


@dataclass(frozen=True)
class Artifact:
    """A loaded artifact directory: its metadata and the path of the file a runtime loads."""

    dir: Path
    meta: dict[str, Any]

    @property
    def model_file(self) -> Path:
        return self.dir / next(iter(self.meta["files"]))

    @property
    def runtime(self) -> str:
        return self.meta["runtime"]

    def preprocess(self):
        from edgecnn.data.preprocess import Preprocess

        return Preprocess.from_dict(self.meta["preprocess"])


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
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise ValueError(f"artifact metadata lacks {', '.join(missing)}")
    atomic_write_json(d / METADATA, meta)
    return meta


def load_artifact(path: str | os.PathLike, *, verify: bool = True) -> Artifact:
    """Read an artifact's metadata; with ``verify`` refuse one whose files changed since export."""
    d = artifact_dir(path)
    mpath = d / METADATA
    if not mpath.is_file():
        raise EdgecnnError(f"{path} is not an edgecnn artifact (no {METADATA} beside it); "
                           f"make one with `edgecnn export ARCH --target ...`")
    try:
        meta = json.loads(mpath.read_text())
    except (OSError, ValueError) as e:
        raise EdgecnnError(f"cannot read {mpath}: {e}; re-export the artifact") from e
    if not isinstance(meta, dict) or not str(meta.get("format", "")).startswith("edgecnn.artifact/"):
        raise EdgecnnError(f"{mpath} is not edgecnn artifact metadata; re-export the artifact")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise EdgecnnError(f"{mpath} lacks {', '.join(missing)}; re-export the artifact")
    if verify:
        for name, digest in meta["files"].items():
            f = d / name
            if not f.is_file():
                raise EdgecnnError(f"artifact file {f} is missing; re-export the artifact")
            if sha256_file(f) != digest:
                raise EdgecnnError(f"{f} no longer matches the sha256 in its {METADATA}: it was changed "
                                   f"after export; re-export it rather than evaluate or bench it")
    return Artifact(d, meta)
