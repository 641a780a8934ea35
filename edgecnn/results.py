"""What each stage returns: frozen dataclasses with ``to_json`` / ``from_json``.

=================  =====================  =================================================
result             made by                what it names
=================  =====================  =================================================
``FloatModel``     ``train.train``        a float edgecnn checkpoint and the run that made it
``QuantizedGraph`` ``quantize.stages``    a PT2E INT8 graph (``quantized.pt2``) from
                   calibrate / qat        calibration or QAT, with its fake-quant accuracy
``Artifact``       ``export.export``      an artifact folder and its ``metadata.json``
``Accuracy``       ``deploy.accuracy``    top-1/5 of an artifact in its runtime (measured)
``Latency``        ``deploy.latency``     ms per batch-1 inference, measured or predicted
``Bench``          ``edgecnn.bench``      a bench's latency (``Latency``), source, throughput,
                   (the API)              memory and energy, and the whole ``bench --json`` dict
``Report``         ``deploy.deploy``      a bundle's ``report.json`` (``Dataset``,
                                          ``Quantization``, ``Published``, ``BundledArtifact``)
``Frontier``       ``frontier.run``,      ``frontier.json``: its ``FrontierPoint`` s, ``SkippedRun`` s,
                   ``imagenet_frontier``  ``FailedRun`` s and, while running, ``FrontierProgress``
=================  =====================  =================================================

The JSON form of every result is derived from its fields in one place (:class:`Result`):
``to_json`` writes each field (a ``Path`` as a string, a vocabulary word as its string, a
nested result as its object), ``from_json`` reads it back and checks every type, and
:func:`schema` states it as JSON Schema; ``tests/test_results.py`` holds that schema, so a
change to a result's JSON is a deliberate one. A stage's own record (``train.json``,
``calibrate.json``, ``metadata.json``) stays what it was; a result carries it as ``report``
(or ``meta``) and types what the other stages read from it.

Torch-free (the runtime side reads artifacts): imports only the vocabulary.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Union

from edgecnn.vocab import EtaBasis, LatencySource, Method, Precision, QuantStage, Runtime, Target, Word

# ---------------------------------------------------------------- JSON from the fields


def _is_optional(tp: Any) -> tuple[bool, Any]:
    """(True, X) for ``X | None``, else (False, tp)."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) + 1 == len(typing.get_args(tp)) and len(args) == 1:
            return True, args[0]
    return False, tp


_SCALARS = {str: "string", bool: "boolean", int: "integer", float: "number", Path: "string"}


def _schema_of(tp: Any) -> dict[str, Any]:
    """The JSON Schema of a field type."""
    optional, tp = _is_optional(tp)
    if optional:
        return {"anyOf": [_schema_of(tp), {"type": "null"}]}
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return {}
    if isinstance(tp, type) and issubclass(tp, Word):
        return {"type": "string", "enum": list(tp.values())}
    if isinstance(tp, type) and issubclass(tp, Result):
        return tp.schema()
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    if tp is dict or origin is dict:
        return {"type": "object", **({"additionalProperties": _schema_of(args[1])} if args else {})}
    if origin in (tuple, list):
        return {"type": "array", "items": _schema_of(args[0])}
    raise TypeError(f"no JSON form for field type {tp!r}")


def _dump(value: Any) -> Any:
    if isinstance(value, Result):
        return value.to_json()
    if isinstance(value, Word):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_dump(v) for v in value]
    return value


def _scalar_ok(tp: type, value: Any) -> bool:
    """Whether JSON ``value`` is a ``tp`` (str, bool, int, float or Path); a bool is no number."""
    if tp in (int, float):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return number and (tp is float or not isinstance(value, float))
    return isinstance(value, str if tp is Path else tp)


def _load(tp: Any, value: Any, where: str) -> Any:
    """``value`` (from JSON) as field type ``tp``; ValueError naming ``where`` when it is not one."""
    optional, tp = _is_optional(tp)
    if value is None and optional:
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if isinstance(tp, type) and issubclass(tp, Result):
        return tp.from_json(value)
    ok = (
        value in tp.values()
        if isinstance(tp, type) and issubclass(tp, Word)
        else _scalar_ok(tp, value)
        if tp in _SCALARS
        else isinstance(value, dict)
        if tp is dict or origin is dict
        else isinstance(value, list | tuple)
        if origin in (tuple, list)
        else None
    )
    if ok is None:
        raise TypeError(f"no JSON form for field type {tp!r}")
    if not ok:
        raise ValueError(f"{where}: expected {_schema_of(tp)}, got {value!r:.80}")
    if tp is dict or origin is dict:
        return {k: _load(args[1], v, f"{where}.{k}") for k, v in value.items()} if args else dict(value)
    if origin in (tuple, list):
        return origin(_load(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    return tp(value)


class Result:
    """The JSON form of a frozen dataclass, derived from its fields (mixed into every result)."""

    RESULTS: ClassVar[dict[str, type[Result]]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        Result.RESULTS[cls.__name__] = cls

    @classmethod
    def _fields(cls) -> list[tuple[dataclasses.Field, Any]]:
        hints = typing.get_type_hints(cls)
        return [(f, hints[f.name]) for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    def to_json(self) -> dict[str, Any]:
        return {f.name: _dump(getattr(self, f.name)) for f, _ in self._fields()}

    @classmethod
    def from_json(cls, d: Any) -> Any:
        """The result ``d`` (from :meth:`to_json`) describes; ValueError on an unknown or missing
        field or a value of the wrong type, naming it."""
        name = cls.__name__
        if not isinstance(d, dict):
            raise ValueError(f"{name}: expected an object, got {d!r:.80}")
        fields = cls._fields()
        unknown = sorted(set(d) - {f.name for f, _ in fields})
        if unknown:
            raise ValueError(f"{name}: unknown field(s) {', '.join(unknown)}")
        kw = {}
        for f, tp in fields:
            if f.name in d:
                kw[f.name] = _load(tp, d[f.name], f"{name}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"{name}: missing field {f.name}")
        return cls(**kw)

    @classmethod
    def schema(cls) -> dict[str, Any]:
        """The JSON Schema of :meth:`to_json`'s output."""
        fields = cls._fields()
        return {
            "title": cls.__name__,
            "type": "object",
            "properties": {f.name: _schema_of(tp) for f, tp in fields},
            "required": [
                f.name
                for f, _ in fields
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            ],
            "additionalProperties": False,
        }


class Stamped(Result):
    """A result that is a whole file (report.json, frontier.json): its JSON starts with
    ``"schema": SCHEMA``, which :meth:`from_json` checks (ValueError naming both versions)."""

    SCHEMA: ClassVar[str]

    def to_json(self) -> dict[str, Any]:
        return {"schema": self.SCHEMA, **super().to_json()}

    @classmethod
    def from_json(cls, d: Any):
        if not isinstance(d, dict) or d.get("schema") != cls.SCHEMA:
            got = d.get("schema") if isinstance(d, dict) else d
            raise ValueError(f"{cls.__name__}: expected schema {cls.SCHEMA}, got {got!r:.80}")
        return super().from_json({k: v for k, v in d.items() if k != "schema"})

    @classmethod
    def schema(cls) -> dict[str, Any]:
        s = super().schema()
        return {
            **s,
            "properties": {"schema": {"const": cls.SCHEMA}, **s["properties"]},
            "required": ["schema", *s["required"]],
        }


def schema() -> dict[str, Any]:
    """The JSON Schema of every result, by class name (what ``tests/test_results.py`` holds)."""
    return {n: cls.schema() for n, cls in sorted(Result.RESULTS.items()) if dataclasses.is_dataclass(cls)}


# ---------------------------------------------------------------- the stage results


@dataclass(frozen=True)
class FloatModel(Result):
    """A float edgecnn checkpoint: what ``train`` made, or one the user passed (``dir`` None)."""

    arch: str
    checkpoint: Path
    dir: Path | None = None  # the training run's folder
    key: str | None = None  # the training run's cache key
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)  # test top1, top5, n
    cached: bool = False  # found finished in the cache, not trained now
    report: dict[str, Any] = dataclasses.field(default_factory=dict)  # train.json as written

    @classmethod
    def given(cls, arch: str, checkpoint: str | Path) -> FloatModel:
        """A checkpoint the user passed (``--checkpoint``): no training run of this edgecnn."""
        return cls(arch, Path(checkpoint), cached=True)


@dataclass(frozen=True)
class QuantizedGraph(Result):
    """A quantized PT2E graph and its stage: ``dir`` holds ``quantized.pt2``, ``predictions.npy``
    (its top-1 on the test split), ``fp32_correct.npy`` and ``<stage>.json`` (``report``)."""

    stage: QuantStage
    arch: str
    checkpoint: Path  # the float checkpoint it was quantized from (as passed to the stage)
    dir: Path
    key: str
    method: Method
    weight_bits: int  # 8, or 7 for OpenVINO on x86 without VNNI
    fakequant_top1: float
    drop_points: float  # FP32 top-1 minus fake-quant top-1, in points
    cached: bool = False
    qat_skipped: str | None = None  # why QAT was not run (``max_drop`` met by PTQ): this is PTQ's graph
    report: dict[str, Any] = dataclasses.field(default_factory=dict)  # <stage>.json as written
    # the convolution / linear modules the quantizer left in float (mixed precision, edgecnn.mixed)
    float_layers: tuple[str, ...] = ()

    @property
    def graph(self) -> Path:
        return self.dir / "quantized.pt2"

    @classmethod
    def from_report(
        cls,
        report: dict[str, Any],
        dir: str | Path,
        *,
        cached: bool,
        checkpoint: str | Path | None = None,
        qat_skipped: str | None = None,
    ) -> QuantizedGraph:
        """The result of a stage whose ``<stage>.json`` is ``report`` (``checkpoint``: the float
        checkpoint as passed now; by default the path the report recorded)."""
        return cls(
            QuantStage(report["stage"]),
            report["arch"],
            Path(checkpoint if checkpoint is not None else report["source"]["checkpoint"]),
            Path(dir),
            report["key"],
            Method(report["method"]),
            int(report["weight_bits"]),
            float(report["int8_fakequant"]["top1"]),
            float(report["drop_points"]),
            cached,
            qat_skipped,
            dict(report),
            tuple(report.get("float_layers") or ()),
        )

    def as_dict(self) -> dict[str, Any]:
        """The stage's report as ``edgecnn calibrate/qat --json`` prints it: ``<stage>.json`` with
        ``cached``, ``dir`` (and ``qat_skipped``)."""
        d = {**self.report, "cached": self.cached, "dir": str(self.dir)}
        return {**d, "qat_skipped": self.qat_skipped} if self.qat_skipped is not None else d

    @classmethod
    def from_dict(cls, d: dict[str, Any], checkpoint: str | Path | None = None) -> QuantizedGraph:
        """The inverse of :meth:`as_dict` (keys a caller added, such as ``budget``, left out)."""
        report = {k: v for k, v in d.items() if k not in ("cached", "dir", "qat_skipped", "budget")}
        return cls.from_report(
            report,
            d["dir"],
            cached=bool(d.get("cached")),
            checkpoint=checkpoint,
            qat_skipped=d.get("qat_skipped"),
        )


@dataclass(frozen=True)
class Artifact(Result):
    """An artifact folder and its ``metadata.json`` (``meta``; schema in :mod:`edgecnn.artifact`)."""

    dir: Path
    meta: dict[str, Any]
    cached: bool = False  # found in the cache by ``export``, not written now

    @property
    def model_file(self) -> Path:
        return self.dir / next(iter(self.meta["files"]))

    @property
    def runtime(self) -> str:
        return self.meta["runtime"]

    def preprocess(self):
        from edgecnn.data.preprocess import Preprocess

        return Preprocess.from_dict(self.meta["preprocess"])


# ---------------------------------------------------------------- deploy's report


@dataclass(frozen=True)
class Dataset(Result):
    """The data an accuracy was measured on."""

    name: str
    split: str
    split_id: str
    num_images: int


@dataclass(frozen=True)
class Accuracy(Result):
    """Accuracy of an artifact in its runtime, always measured (report.json's ``accuracy``).
    Fractions in [0, 1]; ``drop`` in points."""

    top1: float
    top5: float
    fp32_top1: float | None  # the float model's, in PyTorch
    drop: float | None  # 100 x (fp32_top1 - top1)
    ci95: tuple[float, ...]  # bootstrap [lo, hi] of top1
    agreement: float | None  # top-1 agreement with the fake-quant PyTorch graph (None for a float artifact)
    runtime: Runtime  # the runtime that actually ran
    fakequant_top1: float | None
    mcnemar_p: float | None
    source: str  # "measured"
    where: str  # "device:HOST", "host" or "host-standin:RUNTIME"
    runtime_version: str | None
    machine: dict[str, Any] | None  # with --host: the device's {hostname, uname, machine, ...}
    host_agreement: float | None  # with --host: agreement with this machine's run of the artifact
    flipped: tuple[int, ...] | None  # with --host: test images whose top-1 differs from this machine's


@dataclass(frozen=True)
class Latency(Result):
    """Milliseconds per batch-1 inference. Predicted: p50..mean are the prediction, min/max the
    error band and ``n`` 0."""

    p50: float
    p90: float
    p99: float
    mean: float
    min: float
    max: float
    n: int


@dataclass(frozen=True)
class Bench(Result):
    """A latency ``edgecnn bench`` measured here or predicted (:func:`edgecnn.bench.bench_artifact`,
    :func:`~edgecnn.bench.bench_arch`): the figures typed, ``raw`` the whole ``bench --json`` dict
    (environment, runtime info, notes, the prediction's basis)."""

    arch: str | None
    device: str
    runtime: str | None
    precision: str | None
    batch: int
    latency_ms: Latency
    latency_source: LatencySource
    error_pct: float | None  # predicted only
    band_ms: tuple[float, ...] | None  # predicted only: [lo, hi]
    throughput_ips: float | None
    peak_memory_mb: float | None  # measured only
    energy_mj: float | None
    energy_source: str | None
    raw: dict[str, Any]

    @classmethod
    def from_bench(cls, d: dict[str, Any]) -> Bench:
        """The result of a bench dict (what ``edgecnn bench --json`` prints)."""
        band = d.get("band_ms")
        return cls(
            arch=d.get("arch"),
            device=d["device"],
            runtime=d.get("runtime"),
            precision=d.get("precision"),
            batch=int(d.get("batch") or 1),
            latency_ms=Latency(
                **{k: d["latency_ms"][k] for k in ("p50", "p90", "p99", "mean", "min", "max", "n")}
            ),
            latency_source=LatencySource(d["latency_source"]),
            error_pct=d.get("error_pct"),
            band_ms=None if band is None else tuple(band),
            throughput_ips=d.get("throughput_ips"),
            peak_memory_mb=d.get("peak_memory_mb"),
            energy_mj=d.get("energy_mj"),
            energy_source=d.get("energy_source"),
            raw=dict(d),
        )


@dataclass(frozen=True)
class Quantization(Result):
    """How an INT8 artifact's graph was made."""

    stage: QuantStage
    method: Method
    qat_skipped: str | None
    float_layers: tuple[str, ...]  # layers that do not run in INT8 on this backend
    kept_float: tuple[str, ...] = ()  # the layers the quantizer left in float (--max-drop)
    # --max-drop: the candidates tried and their latency (edgecnn.mixed.BudgetResult.to_json + prices)
    budget: dict[str, Any] | None = None


@dataclass(frozen=True)
class Published(Result):
    """The publisher's ImageNet figures for the float network (published, not measured)."""

    imagenet_top1: float
    imagenet_top5: float | None
    source: str


@dataclass(frozen=True)
class BundledArtifact(Result):
    """The artifact inside a bundle: its folder there, where it was exported, its files' sha256."""

    path: str
    source: str
    format: str
    files: dict[str, str]


@dataclass(frozen=True)
class Report(Stamped):
    """``report.json`` of a deploy bundle. Its JSON is the fields below in this order, after
    ``"schema": SCHEMA``; README "deploy and report.json" explains each key (a test checks
    that it names exactly these)."""

    SCHEMA: ClassVar[str] = "edgecnn.report/1"  # keys are only added within /1

    arch: str
    target: Target
    device: str | None  # "host", the remote device's profile, or the predicted profile
    runtime: Runtime  # the artifact's
    precision: Precision
    image_size: int
    num_classes: int
    dataset: Dataset
    accuracy: Accuracy
    accuracy_where: str
    latency_ms: Latency
    latency_source: LatencySource
    latency_error_pct: float | None  # predicted only
    latency_band_ms: tuple[float, ...] | None  # predicted only: [lo, hi]
    latency_where: str
    batch: int
    throughput_ips: float | None
    model_size_mb: float
    peak_memory_mb: float | None
    peak_memory_source: str | None
    energy_mj: float | None
    energy_source: str | None
    quantization: Quantization | None
    published: Published | None
    artifact: BundledArtifact
    stages: dict[str, Any]  # train, quantize, export, evaluate, latency: {dir, key, cached, ...} or null
    hosts: tuple[dict[str, Any], ...] | None  # per --host {host, result, error, accuracy, accuracy_error}
    bench_env: dict[str, Any] | None
    notes: tuple[str, ...]
    tools: dict[str, Any]
    created: str
    seconds: float | None


# ---------------------------------------------------------------- the frontier


@dataclass(frozen=True, kw_only=True)
class FrontierPoint(Result):
    """One (network, device, runtime, precision) run of a frontier: a point of frontier.json.

    The fields are frontier.json's keys in its order. One with no default must be present in a
    point ``choose`` reads. A point of a deploy bundle (``artifact`` None) carries
    ``accuracy_where``; a point of a bare artifact (``frontier --imagenet``) ``accuracy_reference``
    and ``artifact`` instead: :meth:`to_json` writes the keys of its kind. ``cost``, ``pareto``,
    ``dominated_by`` and ``excluded`` are set by :func:`edgecnn.frontier.flag_pareto`.
    """

    id: str
    arch: str
    target: Target
    device: str
    runtime: Runtime
    precision: str  # int8, fp16, fp32 (an artifact's precision) or "mixed" (issue 16)
    image_size: int
    dataset: str
    # top1, test_images, accuracy_runtime: null on a point whose accuracy is quoted or not published
    test_images: int | None
    top1: float | None
    top5: float | None = None
    ci95_low: float | None
    ci95_high: float | None
    fp32_top1: float | None = None
    drop_points: float | None = None
    agreement: float | None = None  # top-1 agreement with the fake-quant graph (INT8)
    accuracy_runtime: str | None
    accuracy_source: str = "measured"  # "measured", "published" or "not published"
    accuracy_reference: str | None = None  # artifact points: the citation, or where it was measured
    accuracy_where: str | None = None  # bundle points: device:HOST, host or host-standin:RUNTIME
    p50_ms: float
    p90_ms: float
    p99_ms: float
    latency_n: int | None = None
    latency_source: LatencySource
    latency_band_low_ms: float | None = None
    latency_band_high_ms: float | None
    latency_where: str | None = None
    throughput_ips: float | None = None
    energy_mj: float | None
    energy_source: str | None = None
    size_mb: float | None
    size_source: str | None = None
    memory_mb: float | None
    memory_source: str | None = None
    published_imagenet_top1: float | None = None
    published_source: str | None = None
    bundle: str | None
    artifact: str | None = None
    seconds: float | None = None  # the deploy's wall time (a re-run's ETA comes from it)
    reused: tuple[str, ...] = ()  # the stages read from cache
    float_layers: int | None = None  # mixed precision: how many layers stay in float (omitted when None)
    cost: float | None = None
    pareto: bool | None = None  # None: no figure for the cost
    dominated_by: tuple[str, ...] = ()  # ids
    excluded: str | None = None  # why the point is on no Pareto set (omitted when None)

    OMIT_NONE: ClassVar[tuple[str, ...]] = ("float_layers", "excluded")

    def get(self, name: str) -> Any:
        """The figure a cost or statistic names (``p90_ms``, ``energy_source``, ...)."""
        return getattr(self, name)

    def emulated(self) -> bool:
        return self.latency_source == LatencySource.EMULATED

    def to_json(self) -> dict[str, Any]:
        drop = {"accuracy_where"} if self.artifact is not None else {"accuracy_reference", "artifact"}
        return {
            k: v
            for k, v in super().to_json().items()
            if k not in drop and not (v is None and k in self.OMIT_NONE)
        }


@dataclass(frozen=True)
class SkippedRun(Result):
    """A frontier combination whose target's runtime cannot run the precision."""

    arch: str
    target: str  # the target or device as in --targets
    precision: str
    why: str


@dataclass(frozen=True)
class FailedRun(Result):
    """A frontier combination that failed, with its one-line error."""

    arch: str
    target: str
    precision: str
    error: str


@dataclass(frozen=True)
class FrontierProgress(Result):
    """A frontier still running: ``done`` of ``of`` runs finished, ``eta_s`` the seconds the rest
    should take (None: not known) and ``eta_basis`` what that rests on (:class:`EtaBasis`)."""

    done: int
    of: int
    eta_s: float | None = None
    eta_basis: EtaBasis | None = None


@dataclass(frozen=True, kw_only=True)
class Frontier(Stamped):
    """frontier.json: what ``edgecnn frontier`` found, in its key order after ``schema``
    (:attr:`SCHEMA`, which :meth:`to_json` writes first and :meth:`from_json` checks).

    ``kind`` "imagenet" (``frontier --imagenet``) adds ``accuracy_basis``, ``image_size``,
    ``weights``, ``calibration`` and ``timings``; a trained frontier has none of these keys.
    ``in_progress`` is on the files written while the run goes on; ``out`` only on the copy
    kept under ``$EDGECNN_HOME/runs/frontier`` for ``choose``.
    """

    kind: str | None = None
    accuracy_basis: str | None = None  # "published" | "measured"; None: measured
    cost: str  # a key of edgecnn.frontier.COSTS
    cost_unit: str
    cost_what: str
    archs: tuple[str, ...]
    targets: tuple[str, ...]
    precisions: tuple[str, ...]
    image_size: int | None = None
    weights: str | None = None
    calibration: dict[str, Any] | None = None
    int8: str  # how INT8 was made
    points: tuple[FrontierPoint, ...]
    skipped: tuple[SkippedRun, ...] = ()
    failed: tuple[FailedRun, ...] = ()
    timings: dict[str, Any] | None = None
    command: str | None = None
    created: str
    seconds: float
    in_progress: FrontierProgress | None = None
    out: str | None = None

    SCHEMA: ClassVar[str] = "edgecnn.frontier/1"
    IMAGENET_ONLY: ClassVar[tuple[str, ...]] = (
        "kind",
        "accuracy_basis",
        "image_size",
        "weights",
        "calibration",
        "timings",
    )

    @property
    def basis(self) -> str:
        """``published`` or ``measured``: what the accuracy axis rests on."""
        return self.accuracy_basis or "measured"

    def devices(self) -> list[str]:
        return list(dict.fromkeys(p.device for p in self.points))

    def to_json(self) -> dict[str, Any]:
        omit = {"in_progress", "out"} | (set(self.IMAGENET_ONLY) if self.kind is None else set())
        return {k: v for k, v in super().to_json().items() if not (k in omit and v is None)}
