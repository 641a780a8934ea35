"""TensorRT, in one place: the engine cache, the engine builder and the session.

- :mod:`edgecnn.tensorrt.engine_cache`: cache keys, sidecars, refusal of engines built for
  another GPU or TensorRT version, the timing cache's place (plain Python, no tensorrt import);
- :mod:`edgecnn.tensorrt.versions`: TensorRT 10 (precision flags) against 11 (strongly typed),
  the supported range, INT8 by compute capability (plain Python);
- :mod:`edgecnn.tensorrt.fp16`: an ONNX graph with FP16 written in, for TensorRT 11 (onnx);
- :mod:`edgecnn.tensorrt.build`: trtexec and the TensorRT Python builder, the artifact's
  build step behind ``edgecnn build-engine``;
- :mod:`edgecnn.tensorrt.session`: :class:`~edgecnn.tensorrt.session.TensorRtSession`, the
  runtime that :func:`edgecnn.runtimes.open_session` opens for ``tensorrt``.

Imports go one way: session -> build -> (engine_cache, versions, fp16). None imports
tensorrt, onnx or torch at import time (this package runs on the device, where JetPack brings TensorRT).
"""
