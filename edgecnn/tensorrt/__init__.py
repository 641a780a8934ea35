"""TensorRT, in one place: the engine cache, the engine builder and the session.

- :mod:`edgecnn.tensorrt.engine_cache`: cache keys, sidecars, refusal of engines built for
  another GPU or TensorRT version (plain Python, no tensorrt import);
- :mod:`edgecnn.tensorrt.build`: trtexec and the TensorRT Python builder, the artifact's
  build step behind ``edgecnn build-engine``;
- :mod:`edgecnn.tensorrt.session`: :class:`~edgecnn.tensorrt.session.TensorRtSession`, the
  runtime that :func:`edgecnn.runtimes.open_session` opens for ``tensorrt``.

Imports go one way: session -> build -> engine_cache. None imports tensorrt or torch at
import time (this package runs on the device, where JetPack brings TensorRT).
"""
