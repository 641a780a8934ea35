"""Mixed precision under a top-1 drop budget: what ``--max-drop POINTS`` does.

:func:`within_budget` goes through three steps and stops at the first that meets the budget
(the fake-quant top-1 drop on the test split, as ``edgecnn calibrate`` reports it):

1. PTQ, every convolution and linear layer in INT8 (the calibrate stage);
2. PTQ with the k most sensitive layers left in float, k = 1, 2, 4, ... up to :func:`cap`
   (a quarter of the quantizable layers). The ranking is ``edgecnn sensitivity``'s (what leaving
   each layer alone in float recovers on 1000 validation images, then the logits' SQNR against
   FP32, :mod:`edgecnn.numerics.sensitivity`),
   computed once per float checkpoint and calibration and cached under ``runs/sensitivity/``.
   Leaving a layer in float is one decision in the PT2E quantizer
   (``quantize.pt2e.make_quantizer(float_layers=)``): the converted graph has no quantize ops
   around it, so the OpenVINO, ONNX Runtime, TensorRT and TFLite artifacts all keep it in float;
3. QAT of the all-INT8 network (the qat stage), only where no k within the cap met the budget.

Each step is a cached stage; the float layers are part of the calibrate stage's key.
:func:`price` prices the candidates tried: their artifacts measured on this machine in one
interleaved run (:func:`interleaved_latency`), and predicted for a device from its profile
(:func:`predict_mixed`: the INT8 layers at the INT8 rate, the float ones at the FP32 rate).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "edgecnn.budget/1"
RANK_IMAGES = 1000  # validation images the sensitivity ranking is measured on (0.1 point each)


@dataclass(frozen=True)
class Candidate:
    """One way of reaching INT8 that ``--max-drop`` tried."""

    kind: str  # "ptq" (all INT8), "mixed" (PTQ, float_layers in float) or "qat" (all INT8, fine-tuned)
    float_layers: tuple[str, ...]
    top1: float  # fake-quant top-1 on the test split
    drop_points: float  # FP32 top-1 minus that, in points
    meets: bool  # drop_points <= max_drop
    stage: str  # "calibrate" or "qat": the stage that made its quantized graph
    dir: str
    key: str

    @property
    def label(self) -> str:
        return f"mixed ({len(self.float_layers)} float)" if self.kind == "mixed" else self.kind


@dataclass(frozen=True)
class BudgetResult:
    """The candidates tried, in order; the last is the one chosen."""

    max_drop: float
    candidates: tuple[Candidate, ...]
    ranking: tuple[str, ...] | None  # most sensitive first; None where PTQ alone met the budget
    ranking_file: str | None
    cap: int | None  # most layers it would leave in float
    stage_report: dict = field(repr=False, compare=False)  # the chosen stage's report

    @property
    def chosen(self) -> Candidate:
        """The last one tried: the search stops at the first that meets the budget."""
        return self.candidates[-1]

    @property
    def met(self) -> bool:
        return self.chosen.meets

    def describe(self) -> str:
        c = self.chosen
        tried = ", ".join(f"{x.label} {x.drop_points:+.2f}" for x in self.candidates)
        verdict = "meets" if c.meets else "misses"
        return f"--max-drop {self.max_drop:g}: {c.label} {verdict} it (drop in points: {tried})"

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "max_drop": self.max_drop,
            "met": self.met,
            "chosen": self.chosen.label,
            "float_layers": list(self.chosen.float_layers),
            "candidates": [{**asdict(c), "label": c.label} for c in self.candidates],
            "ranking": None if self.ranking is None else list(self.ranking),
            "ranking_file": self.ranking_file,
            "cap": self.cap,
        }


def cap(n_layers: int) -> int:
    """The most layers ``--max-drop`` leaves in float: a quarter of them (at least one). Past that
    the float layers' latency approaches FP32's and QAT is the better spend."""
    return max(1, n_layers // 4)


def float_counts(limit: int) -> list[int]:
    """k = 1, 2, 4, ... below ``limit``, then ``limit`` itself."""
    ks, k = [], 1
    while k < limit:
        ks.append(k)
        k *= 2
    return [*ks, limit] if limit >= 1 else []


def _candidate(report: dict, kind: str, max_drop: float) -> Candidate:
    return Candidate(
        kind,
        tuple(report.get("float_layers") or ()),
        report["int8_fakequant"]["top1"],
        report["drop_points"],
        report["drop_points"] <= max_drop,
        report["stage"],
        report["dir"],
        report["key"],
    )


def sensitivity_ranking(
    arch: str, recipe, ptq_report: dict, *, data=None, checkpoint=None, log: Callable[[str], None] = print
) -> tuple[list[str], Path]:
    """The quantizable layers, most sensitive first (``edgecnn sensitivity`` on :data:`RANK_IMAGES`
    validation images, the calibration set of ``ptq_report``), cached per checkpoint and calibration."""
    from edgecnn import paths
    from edgecnn.fileio import atomic_write_json
    from edgecnn.numerics.sensitivity import sensitivity
    from edgecnn.quantize.stages import _versions
    from edgecnn.stage import stage_key

    calib = ptq_report["calibration"]
    key = stage_key(
        {
            "stage": "sensitivity",
            "arch": arch,
            "source": ptq_report["source"]["sha256"],
            "method": ptq_report["method"],
            "calib": calib["split_id"],
            "batch": calib["batch_size"],
            "data": recipe.to_dict()["data"],
            "images": RANK_IMAGES,
            **_versions(),
        }
    )
    path = paths.runs_dir() / "sensitivity" / f"{arch}-{key}.json"
    if path.is_file():
        log(f"{arch}: reusing the sensitivity ranking {path}")
        return list(json.loads(path.read_text())["ranking"]), path
    log(f"{arch}: ranking the layers by sensitivity (each left alone in float)")
    result = sensitivity(
        arch,
        recipe,
        data=data,
        checkpoint=checkpoint,
        method=ptq_report["method"],
        images=RANK_IMAGES,
        calib_images=calib["num_images"],
        alone=False,
        log=log,
    )
    atomic_write_json(path, {**result.to_json(), "ranking": result.ranking()})
    return result.ranking(), path


def within_budget(
    arch: str,
    recipe,
    max_drop: float,
    *,
    data: str | None = None,
    checkpoint: str | None = None,
    method: str | None = None,
    num_images: int | None = None,
    weight_bits: int = 8,
    allow_qat: bool = True,
    threads: int | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> BudgetResult:
    """PTQ; then PTQ with the 1, 2, 4, ... most sensitive layers in float; then (``allow_qat``) QAT.

    Returns every candidate tried; the chosen one's stage report is ``stage_report``."""
    from edgecnn.quantize import stages

    common = {"data": data, "checkpoint": checkpoint, "method": method, "threads": threads, "log": log}
    report = stages.calibrate(
        arch, recipe, num_images=num_images, weight_bits=weight_bits, progress=progress, **common
    ).as_dict()
    tried = [_candidate(report, "ptq", max_drop)]
    ranking = path = limit = None
    if not tried[-1].meets:
        log(
            f"{arch}: PTQ drop {report['drop_points']:.2f} > --max-drop {max_drop:g}: leaving layers in float"
        )
        ranking, path = sensitivity_ranking(arch, recipe, report, data=data, checkpoint=checkpoint, log=log)
        limit = cap(len(ranking))
        for k in float_counts(limit):
            report = stages.calibrate(
                arch,
                recipe,
                num_images=num_images,
                weight_bits=weight_bits,
                float_layers=ranking[:k],
                progress=progress,
                **common,
            ).as_dict()
            tried.append(_candidate(report, "mixed", max_drop))
            log(f"{arch}: {k} layer(s) in float: drop {report['drop_points']:.2f}")
            if tried[-1].meets:
                break
    if not tried[-1].meets and allow_qat:
        log(f"{arch}: no mixed candidate within {limit} float layers met --max-drop {max_drop:g}: QAT")
        report = stages.qat(arch, recipe, weight_bits=weight_bits, progress=progress, **common).as_dict()
        tried.append(_candidate(report, "qat", max_drop))
    result = BudgetResult(
        max_drop,
        tuple(tried),
        None if ranking is None else tuple(ranking),
        None if path is None else str(path),
        limit,
        report,
    )
    log(f"{arch}: {result.describe()}")
    return result


def predict_mixed(
    arch: str,
    device: str,
    runtime: str,
    float_layers: Sequence[str],
    *,
    image_size: int,
    small_input: bool = False,
    num_classes: int = 1000,
    threads: int | None = None,
) -> dict[str, Any]:
    """The device profile's prediction with ``float_layers`` at the FP32 rate and the rest at INT8's
    (the quantize/dequantize ops between them are not priced): ``{"ms", "band_ms"}``, or
    ``{"ms": None, "why"}`` where the profile cannot say."""
    from edgecnn.devices import load_device
    from edgecnn.devices.costs import network_costs
    from edgecnn.devices.predict import efficiency_for, error_factor, roofline

    profile = load_device(device)
    precisions = profile.runtime(runtime).precisions
    floats = set(float_layers)
    if floats and "fp32" not in precisions:
        return {"ms": None, "why": f"{profile.name}'s {runtime} profile has no fp32 rate"}
    costs = network_costs(arch, image_size, 1, small_input=small_input, num_classes=num_classes)
    eff = efficiency_for(profile, runtime)
    seconds, factor = 0.0, 1.0
    for precision, part in (
        ("int8", [c for c in costs if c.name not in floats]),
        ("fp32", [c for c in costs if c.name in floats]),
    ):
        if part:
            r = roofline(part, profile, runtime, precision, eff, threads)
            seconds += r["seconds"]
            factor = max(factor, error_factor(eff, profile, runtime, r["precision_calibrated"]))
    ms = seconds * 1e3
    return {"ms": ms, "band_ms": [ms / factor, ms * factor], "device": profile.name}


def interleaved_latency(
    art_dirs: Sequence[str | Path], *, threads: int | None = None, rounds: int = 3, seconds: float = 1.0
) -> list[dict[str, Any]]:
    """Latency of several artifacts on this machine, measured in one run: ``rounds`` rounds, each
    timing every artifact for ``seconds`` in turn (the order rotating), so drift and other load hit
    them alike. Per artifact: the median over rounds of each round's p50, and every round's p50."""
    from edgecnn.bench import _random_input
    from edgecnn.runtimes import open_session
    from edgecnn.timing import measure

    sessions = [open_session(d, threads=threads) for d in art_dirs]
    try:
        calls = [s.timed_call(_random_input(s.input_shape, s.batch or 1)) for s in sessions]
        p50s: list[list[float]] = [[] for _ in calls]
        for r in range(rounds):
            for i in [(r + j) % len(calls) for j in range(len(calls))]:
                m = measure(
                    lambda _x, c=calls[i]: c.run(),
                    None,
                    min_seconds=seconds,
                    threads=threads,
                    batch=1,
                    runtime_ms=calls[i].runtime_ms,
                )
                p50s[i].append(m["latency_ms"]["p50"])
    finally:
        for s in sessions:
            s.close()
    return [{"p50_ms": _median(p), "round_p50_ms": p} for p in p50s]


def _median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def price(
    result: BudgetResult,
    export_candidate: Callable[[Candidate], Path],
    *,
    arch: str,
    target: str,
    runtime: str,
    device: str | None,
    image_size: int,
    small_input: bool,
    num_classes: int,
    threads: int | None = None,
    rounds: int = 3,
    seconds: float = 1.0,
) -> list[dict[str, Any]]:
    """Latency of each candidate tried: measured here in one interleaved run (target cpu, and the
    TFLite file for rpi, on this machine's kernels), and predicted for ``device`` (or the target's
    default device) where its profile can. ``export_candidate`` makes a candidate's artifact."""
    rows: list[dict[str, Any]] = [
        {"label": c.label, "float_layers": len(c.float_layers)} for c in result.candidates
    ]
    if target == "jetson":
        note = "not measured here: TensorRT's file runs on this machine only as an accuracy stand-in"
        for row in rows:
            row["host_ms"], row["host_note"] = None, note
    else:
        dirs = [export_candidate(c) for c in result.candidates]
        for row, d, m in zip(
            rows,
            dirs,
            interleaved_latency(dirs, threads=threads, rounds=rounds, seconds=seconds),
            strict=True,
        ):
            row.update({"artifact": str(d), "host_ms": m["p50_ms"], "host_round_p50_ms": m["round_p50_ms"]})
        base = rows[0]["host_ms"]
        for row in rows:
            row["host_vs_ptq"] = None if not base else row["host_ms"] / base
    if target != "cpu":
        dev = device or target  # a target names its default device profile
        for row, c in zip(rows, result.candidates, strict=True):
            p = predict_mixed(
                arch,
                dev,
                runtime,
                c.float_layers,
                image_size=image_size,
                small_input=small_input,
                num_classes=num_classes,
                threads=threads,
            )
            row["predicted_ms"], row["predicted_band_ms"] = p["ms"], p.get("band_ms")
            row["predicted_for"], row["predicted_note"] = dev, p.get("why")
    return rows


def render_budget(doc: dict[str, Any]) -> list[str]:
    """report.md's section on ``--max-drop``: each candidate's drop and latency, the choice."""
    lines = [
        f"## Drop budget (--max-drop {doc['max_drop']:g})",
        "",
        f"Chosen: {doc['chosen']} ({'meets' if doc['met'] else 'misses'} the budget). "
        f"Float layers: {', '.join(doc['float_layers']) or 'none'}.",
        "",
        "| candidate | fake-quant drop (points) | meets | latency here, p50 | vs PTQ | predicted |",
        "|---|---|---|---|---|---|",
    ]
    prices = doc.get("prices") or [{} for _ in doc["candidates"]]
    for c, p in zip(doc["candidates"], prices, strict=True):
        here = "n/a" if p.get("host_ms") is None else f"{p['host_ms']:.3f} ms"
        ratio = "n/a" if p.get("host_vs_ptq") is None else f"{p['host_vs_ptq']:.2f}x"
        pred = (
            f"{p['predicted_ms']:.3f} ms ({p['predicted_for']})"
            if p.get("predicted_ms") is not None
            else (p.get("predicted_note") or "n/a")
        )
        lines.append(
            f"| {c['label']} | {c['drop_points']:+.2f} | {'yes' if c['meets'] else 'no'} "
            f"| {here} | {ratio} | {pred} |"
        )
    if doc.get("prices"):
        lines += [
            "",
            "Latency here: every candidate's artifact timed in one run, rounds interleaved; other load on "
            "this machine shifts all of them alike, not their ratio to PTQ.",
        ]
    return lines
