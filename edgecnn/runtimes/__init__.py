"""Run an exported artifact: one :class:`Session` interface over every runtime.

>>> from edgecnn.runtimes import open_session
>>> with open_session("runs/export/resnet18-cpu-int8") as s:      # doctest: +SKIP
...     logits = s.run(x)          # float32 batch in the artifact's layout -> N x classes

``import edgecnn.runtimes`` imports neither torch nor any backend: each backend is
imported when a session for it is opened, so a Raspberry Pi needs only numpy and
ai-edge-litert (or tflite-runtime), a Jetson only its JetPack TensorRT.

Which runtime loads which file (``runtime=`` overrides the artifact's own)::

    model.onnx         onnxruntime, openvino, tensorrt (built in memory on the GPU)
    model.xml (+.bin)  openvino
    model.tflite       tflite
    model.engine       tensorrt

So the Jetson's ONNX artifact (runtime "tensorrt") can be checked on the host with
``runtime="onnxruntime"`` or ``"openvino"``.
"""

from __future__ import annotations

import importlib
import os

from edgecnn.artifact import Artifact, load_artifact
from edgecnn.errors import EdgecnnError, suggest
from edgecnn.runtimes.base import FILE_RUNTIMES, Session, check_file_runtime
from edgecnn.runtimes.torch_session import TorchSession  # imports torch only when used
from edgecnn.vocab import Runtime

RUNTIMES = Runtime.values()
_CLASSES = {
    "onnxruntime": ("edgecnn.runtimes.onnxruntime", "OnnxRuntimeSession"),
    "openvino": ("edgecnn.runtimes.openvino", "OpenVinoSession"),
    "tflite": ("edgecnn.runtimes.tflite", "TfliteSession"),
    "tensorrt": ("edgecnn.tensorrt.session", "TensorRtSession"),
}

__all__ = ["FILE_RUNTIMES", "RUNTIMES", "Session", "TorchSession", "open_session", "session_class"]


def session_class(runtime: str) -> type[Session]:
    """The :class:`Session` subclass of ``runtime`` (imports its module, not its backend)."""
    if runtime == "torch":
        raise EdgecnnError(
            "runtime 'torch' runs a PyTorch module, not an artifact: use "
            "edgecnn.runtimes.TorchSession(module, layout)"
        )
    if runtime not in _CLASSES:
        raise EdgecnnError(
            f"unknown runtime '{runtime}'.{suggest(runtime, RUNTIMES)} Known: {', '.join(RUNTIMES)}"
        )
    module, name = _CLASSES[runtime]
    return getattr(importlib.import_module(module), name)


def open_session(
    artifact: Artifact | str | os.PathLike,
    *,
    runtime: str | None = None,
    threads: int | None = None,
    verify: bool = True,
    options: dict | None = None,
) -> Session:
    """Load an artifact (directory, any of its files, or a loaded :class:`Artifact`) into a runtime.

    ``runtime`` defaults to the artifact's own; ``threads`` to the runtime's default.
    ``verify`` checks the files' sha256 against metadata.json when given a path (an
    :class:`Artifact` was checked when it was loaded). A file the runtime cannot load,
    a missing backend, or an input shape that disagrees with the metadata is an
    :class:`EdgecnnError`. ``options`` go to the runtime's session (``perf_count`` for OpenVINO,
    ``profile_prefix`` for ONNX Runtime: :mod:`edgecnn.profiling`).
    """
    art = artifact if isinstance(artifact, Artifact) else load_artifact(artifact, verify=verify)
    rt = runtime or art.runtime
    cls = session_class(rt)
    path = art.model_file
    check_file_runtime(path, rt)
    if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
        raise EdgecnnError(f"threads must be a positive integer, got {threads!r}")
    meta_in = art.meta.get("input") or {}
    session = cls(
        path,
        threads=threads,
        precision=art.meta.get("precision"),
        layout=meta_in.get("layout"),
        **(options or {}),
    )
    session.artifact = art
    try:
        _check_metadata_shape(session, art)
    except EdgecnnError:
        session.close()
        raise
    return session


def _check_metadata_shape(session: Session, art: Artifact) -> None:
    """The model file's input must be what metadata.json (and so the preprocessing) says."""
    want = (art.meta.get("input") or {}).get("shape")
    if not want:
        return
    got = session.input_shape
    same = len(want) == len(got) and all(
        w is None or g is None or int(w) == g for w, g in zip(want[1:], got[1:], strict=True)
    )
    if not same:
        show = ["N" if d is None else d for d in got]
        raise EdgecnnError(
            f"{art.model_file.name} takes input {show} but its metadata.json says {want}; "
            f"re-export the artifact"
        )
