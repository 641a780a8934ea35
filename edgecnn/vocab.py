"""edgecnn's fixed vocabularies, one string enum each: targets, runtimes, precisions, PTQ
methods, latency sources, what a frontier's ETA rests on.

A member *is* its string: ``Target.CPU == "cpu"``, ``json.dumps(Target.CPU)`` writes ``"cpu"``,
``f"{Target.CPU}"`` prints ``cpu`` and a dict keyed by members is found by plain strings. So the
CLI and every JSON file keep the words they always had; the enums only say, in one place, which
words there are. A table of what each target supports is keyed by them (``export.SUPPORT``).

A leaf: imports nothing of edgecnn's.
"""

from __future__ import annotations

from enum import Enum


class Word(str, Enum):
    """A string enum whose ``str()`` and f-string form is its value (not ``Target.CPU``)."""

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def values(cls) -> tuple[str, ...]:
        """The words, in their order here (what a ``click.Choice`` or an error lists)."""
        return tuple(m.value for m in cls)


class Target(Word):
    """Where an artifact runs."""

    CPU = "cpu"
    JETSON = "jetson"
    RPI = "rpi"


class Runtime(Word):
    """What runs an artifact on its target."""

    OPENVINO = "openvino"
    ONNXRUNTIME = "onnxruntime"
    TENSORRT = "tensorrt"
    TFLITE = "tflite"


class Precision(Word):
    INT8 = "int8"
    FP16 = "fp16"
    FP32 = "fp32"


class Method(Word):
    """How PTQ calibration sets the activation ranges (``quantize.observers``)."""

    MINMAX = "minmax"
    PERCENTILE = "percentile"
    ENTROPY = "entropy"
    MSE = "mse"


class LatencySource(Word):
    """Where a latency figure comes from: timed on the device, timed on a host that emulates
    it (not the device's figure), or predicted from the device profile."""

    MEASURED = "measured"
    EMULATED = "emulated"
    PREDICTED = "predicted"


class QuantStage(Word):
    """The stage that made a quantized graph."""

    CALIBRATE = "calibrate"
    QAT = "qat"


class EtaBasis(Word):
    """What a running frontier's ETA rests on (``edgecnn.frontier.eta``): the times its runs took
    last time, an estimate (the trainings still to do timed from a few steps, the rest from the
    runs finished so far), or the trainings alone (a lower bound, until a run after training ends)."""

    RECORDED = "recorded"
    ESTIMATED = "estimated"
    LOWER_BOUND = "lower bound"
