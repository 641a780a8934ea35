"""INT8 numerics: where an exported artifact departs from the quantized graph it was made from.

:mod:`edgecnn.numerics.reference` names the quantized tensors of a converted PT2E graph (its
activation quantize ops) and computes them in the fake-quant graph and in float;
:mod:`edgecnn.numerics.expose` reads the same tensors out of OpenVINO, ONNX Runtime, LiteRT and
TensorRT; :mod:`edgecnn.numerics.diagnose` compares them layer by layer (``edgecnn diagnose``).
"""
