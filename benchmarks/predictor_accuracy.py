"""How good is the latency predictor? Two modes, each printing Markdown tables.

``host`` (default): measure the four networks at 224x224, batch 1, with OpenVINO on this
machine (random weights; FP32, and INT8 by ``nncf.quantize`` on 32 random images unless
--no-int8), then compare with the predictor:

- leave-one-out: each network predicted by a fit to the *other* measured points (the
  honest error of a fit to measured latencies);
- layers: efficiencies fitted to the single conv / linear / pool layers that
  ``edgecnn devices fit`` times in OpenVINO (edgecnn.devices.layers; run inline here,
  nothing is cached), no network in the fit: what `bench --predict` uses on a calibrated host;
- GEMM: efficiencies from the GEMM / copy microbenchmarks alone (the older basis);
- defaults: no calibration at all.

``devices``: the predicted batch-1 latency of the four networks at 224 on every profiled
device, beside the published figures the profiles carry (labelled published, with the
runtime that produced them; they are the fit's own points, so the leave-one-out error
is shown too).

Usage:
  python benchmarks/predictor_accuracy.py [--mode host|devices|both] [--threads 2] [--no-int8]
                                          [--min-seconds 2] [--rounds 3] [--json OUT.json]
  python benchmarks/predictor_accuracy.py --refit OUT.json   # the predictors again on recorded timings

Nothing is written to the edgecnn cache. The machine may be shared: the load average
is printed with the measurements.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

FOUR = ("alexnet", "vgg16", "resnet18", "googlenet")


def _pct(pred: float, meas: float) -> float:
    return (pred / meas - 1) * 100


def _measure_rounds(
    archs, precisions, threads: int, min_seconds: float, rounds: int, log, each_round=None
) -> list[dict]:
    """Every network compiled once, then ``rounds`` rounds over all of them (each a p50 of >= 10
    runs); the result per network is the median of its rounds' p50s. The VM's speed drifts by
    tens of percent over minutes: interleaving spreads that over every network alike.
    ``each_round(r)`` runs at the start of every round (the layer suite, so that layers and
    networks are timed under the same drift)."""
    from edgecnn.devices.openvino_cpu import openvino_network
    from edgecnn.timing import measure

    nets = {(a, p): openvino_network(a, precision=p, threads=threads)[:2] for p in precisions for a in archs}
    per: dict = {k: [] for k in nets}
    for r in range(rounds):
        if each_round:
            each_round(r)
        for (a, p), (run, x) in nets.items():
            m = measure(
                run,
                x,
                warmup=2,
                min_seconds=min_seconds,
                min_runs=10,
                max_seconds=30,
                threads=threads,
            )
            per[(a, p)].append(m["latency_ms"])
            log(f"  round {r + 1}: {a} {p}: p50 {m['latency_ms']['p50']:.2f} ms")
    return [
        {
            "arch": a,
            "precision": p,
            "rounds_p50_ms": [x["p50"] for x in v],
            "latency_ms": {
                "p50": statistics.median(x["p50"] for x in v),
                "p90": statistics.median(x["p90"] for x in v),
                "n": sum(x["n"] for x in v),
            },
        }
        for (a, p), v in per.items()
    ]


def host_mode(threads: int, int8: bool, min_seconds: float, rounds: int = 3) -> dict:
    """Measure the layer suite and the four networks on this host, then predict (:func:`host_rows`)."""
    from edgecnn.devices import load_device
    from edgecnn.devices.fit import microbenchmarks
    from edgecnn.devices.layers import measure_layers

    def log(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    profile = load_device("host")
    load0 = os.getloadavg()
    log(f"host: {profile.cpu.description}, {profile.cpu.cores} CPUs, load average {load0[0]:.2f}")
    log("microbenchmarks:")
    mb = microbenchmarks(threads=threads, seconds=1.0, log=log)
    precisions = ("fp32", "int8") if int8 else ("fp32",)
    layer_rounds: list[dict] = []

    def layers(r: int) -> None:
        log(f"  round {r + 1}: single layers (OpenVINO, batch 1):")
        layer_rounds.append(measure_layers(precisions, threads=threads, seconds=0.5, log=log))

    log(f"measuring (OpenVINO, batch 1, 224 px; {rounds} rounds, each the layer suite then the networks):")
    t0 = time.time()
    measured = _measure_rounds(FOUR, precisions, threads, min_seconds, rounds, log, each_round=layers)
    elapsed = time.time() - t0
    # each layer: the median over the rounds
    lp = {
        **layer_rounds[0],
        "rounds": len(layer_rounds),
        "points": [
            {
                **pts[0],
                "seconds": statistics.median(p["seconds"] for p in pts),
                "rounds_seconds": [p["seconds"] for p in pts],
            }
            for pts in zip(*(lr["points"] for lr in layer_rounds), strict=True)
        ],
    }
    load1 = os.getloadavg()
    res = {
        "cpu": profile.cpu.description,
        "cores": profile.cpu.cores,
        "threads": threads,
        "rounds": rounds,
        "cache_mb": profile.memory.cache_mb,
        "peak_tops": {"fp32": profile.cpu.peak_tops.fp32, "int8": profile.cpu.peak_tops.int8},
        "loadavg_before": load0,
        "loadavg_after": load1,
        "measure_s": elapsed,
        "microbenchmarks": mb,
        "layer_points": lp,
        "measured": measured,
    }
    return {**res, **host_rows(res)}


def host_rows(res: dict) -> dict:
    """Every predictor variant against the measured networks of ``res`` (a ``host_mode`` record:
    this run's, or one read back with --refit, so a model change is judged on the same timings)."""
    import dataclasses

    from edgecnn.devices import load_device
    from edgecnn.devices.predict import (
        DEFAULT_EFFICIENCY,
        Efficiency,
        fit_efficiency,
        fit_to_layers,
        predict_latency,
    )
    from edgecnn.devices.profile import CalibrationPoint

    threads, mb, lp, measured = res["threads"], res["microbenchmarks"], res["layer_points"], res["measured"]
    profile = load_device("host")
    if (profile.cpu.description, profile.cpu.cores) != (res["cpu"], res["cores"]):
        sys.exit(
            f"error: the record was made on {res['cpu']} ({res['cores']} CPUs); refit it on that machine"
        )
    # the recorded run's cache (None: a record from before the cache was read), and none at all
    profile = dataclasses.replace(
        profile, memory=dataclasses.replace(profile.memory, cache_mb=res.get("cache_mb"))
    )
    no_cache = dataclasses.replace(profile, memory=dataclasses.replace(profile.memory, cache_mb=None))
    layer_pts = [{**p, "threads": threads} for p in lp["points"]]
    layer_fit = fit_to_layers(profile, "openvino", layer_pts)
    layer_fit_nc = fit_to_layers(no_cache, "openvino", layer_pts)
    points = [
        CalibrationPoint(
            arch=m["arch"],
            runtime="openvino",
            precision=m["precision"],
            latency_ms=m["latency_ms"]["p50"],
            threads=threads,
            measured_with="OpenVINO",
            source="measured here",
        )
        for m in measured
    ]
    fit = fit_efficiency(profile, "openvino", points)
    bw_scale = (
        mb["bandwidth_gbps"] / profile.memory.bandwidth_gbps
    )  # profile bandwidth may be the assumed one
    micro = Efficiency(
        compute={p: t / profile.cpu.peak_tops.get(p) for p, t in mb["gemm_tops"].items()},
        memory=bw_scale,
        overhead_us=10.0,
        fit_error=math.log(1.6),
        basis="microbenchmarks",
    )
    rows = []
    for m, cp in zip(measured, points, strict=True):
        meas = m["latency_ms"]["p50"]
        key = f"{cp.arch}/{cp.precision}"
        loo = meas * (1 + fit.residuals_pct[key] / 100)

        def pred(eff, prof=profile, cp=cp):
            return predict_latency(
                cp.arch, prof, runtime="openvino", precision=cp.precision, threads=threads, efficiency=eff
            )["latency_ms"]["p50"]

        full, mic, lay, lay_nc, dft = (
            pred(fit),
            pred(micro),
            pred(layer_fit),
            pred(layer_fit_nc, no_cache),
            pred(DEFAULT_EFFICIENCY),
        )
        rows.append(
            {
                "arch": cp.arch,
                "precision": cp.precision,
                "measured_p50_ms": meas,
                "measured_p90_ms": m["latency_ms"]["p90"],
                "n": m["latency_ms"]["n"],
                "loo_pred_ms": loo,
                "loo_err_pct": _pct(loo, meas),
                "fit_pred_ms": full,
                "fit_err_pct": _pct(full, meas),
                "micro_pred_ms": mic,
                "micro_err_pct": _pct(mic, meas),
                "layers_pred_ms": lay,
                "layers_err_pct": _pct(lay, meas),
                "layers_nocache_pred_ms": lay_nc,
                "layers_nocache_err_pct": _pct(lay_nc, meas),
                "default_pred_ms": dft,
                "default_err_pct": _pct(dft, meas),
            }
        )
    med = {
        k: statistics.median(abs(r[f"{k}_err_pct"]) for r in rows)
        for k in ("loo", "fit", "layers", "layers_nocache", "micro", "default")
    }
    return {
        "layer_fit": layer_fit.to_dict(),
        "layer_fit_nocache": layer_fit_nc.to_dict(),
        "fit": fit.to_dict(),
        "rows": rows,
        "median_abs_err_pct": med,
    }


def print_host(res: dict) -> None:
    print(f"### Predictor vs measured on this host (OpenVINO, batch 1, 224x224, {res['threads']} threads)\n")
    print(
        f"CPU: {res['cpu']} ({res['cores']} logical CPUs, last-level cache {res.get('cache_mb')} MiB); load "
        f"average {res['loadavg_before'][0]:.2f} before, "
        f"{res['loadavg_after'][0]:.2f} after (shared machine). Random weights; INT8 = nncf.quantize "
        f"on 32 random images. Measured = median over {res['rounds']} rounds of the p50 of >= 10 "
        f"runs; each round timed the layer suite first (a layer's time: the median over the rounds). "
        f"Predicted figures are predictions.\n"
    )
    print(
        "| network | precision | measured p50 ms | predicted (single-layer fit) ms | err % "
        "| predicted (single-layer fit, no cache term) ms | err % "
        "| predicted (leave-one-out network fit) ms | err % | predicted (GEMM microbenchmark) ms | err % "
        "| predicted (uncalibrated) ms | err % |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in res["rows"]:
        print(
            f"| {r['arch']} | {r['precision']} | {r['measured_p50_ms']:.2f} | {r['layers_pred_ms']:.2f} | "
            f"{r['layers_err_pct']:+.0f} | {r['layers_nocache_pred_ms']:.2f} | "
            f"{r['layers_nocache_err_pct']:+.0f} | "
            f"{r['loo_pred_ms']:.2f} | "
            f"{r['loo_err_pct']:+.0f} | {r['micro_pred_ms']:.2f} | {r['micro_err_pct']:+.0f} | "
            f"{r['default_pred_ms']:.2f} | {r['default_err_pct']:+.0f} |"
        )
    m = res["median_abs_err_pct"]
    f = res["fit"]
    print(
        f"\nMedian absolute error: single-layer fit {m['layers']:.0f}% (without the cache term "
        f"{m['layers_nocache']:.0f}%), leave-one-out network fit {m['loo']:.0f}%, "
        f"GEMM microbenchmark {m['micro']:.0f}%, "
        f"uncalibrated {m['default']:.0f}% (in-sample fit to all points: {m['fit']:.0f}%)."
    )
    for name, lf in (
        ("Single-layer fit", res["layer_fit"]),
        ("Without the cache term", res["layer_fit_nocache"]),
    ):
        print(
            f"{name} ({lf['points']} layers, leave-one-out rms over layers {lf['fit_error_pct']}%): "
            f"eff_compute {lf['compute']}, eff_memory {lf['memory']}, eff_cache {lf.get('memory_cache')}, "
            f"{lf['overhead_us']:g} us/kernel."
        )
    print("Each layer timed as (depthwise 1x1 prefix + layer + global mean) minus (prefix + mean), medians.")
    print(
        f"Fit to all points: eff_compute {f['compute']}, eff_memory {f['memory']}, "
        f"{f['overhead_us']:g} us/kernel. Microbenchmarks: GEMM "
        + ", ".join(f"{p} {t * 1e3:.0f} GOPS" for p, t in res["microbenchmarks"]["gemm_tops"].items())
        + f" (peak fp32 {res['peak_tops']['fp32'] * 1e3:.0f}, "
        f"int8 {res['peak_tops']['int8'] * 1e3:.0f} GOPS, DERIVED), "
        f"copy {res['microbenchmarks']['bandwidth_gbps']:.1f} GB/s.\n"
    )


def devices_mode() -> list[dict]:
    from edgecnn.devices import list_devices, load_device
    from edgecnn.devices.predict import cited_points, efficiency_for, predict_latency

    rows = []
    for name in list_devices(include_host=False):
        p = load_device(name)
        rt = p.default_runtime
        eff = efficiency_for(p, rt)
        cited = cited_points(p, rt)  # ncnn's figures are a fallback now: benchmarks/predictor_published.py
        precs = [p.default_precision] + sorted(
            {c.precision for c in cited if c.runtime == rt and c.precision != p.default_precision}
        )
        for prec in precs:
            supported = prec in p.runtime(rt).precisions
            for arch in FOUR:
                pts = [c for c in cited if c.arch == arch and c.precision == prec and c.runtime == rt]
                if supported:
                    r = predict_latency(arch, p, runtime=rt, precision=prec)
                else:  # a published precision the target runtime does not run (ncnn fp16 on a Pi)
                    from edgecnn.devices.predict import error_factor, network_costs, roofline

                    rf = roofline(network_costs(arch), p, rt, prec, eff)
                    t = rf["seconds"] * 1e3
                    f = error_factor(eff, p, rt, rf["precision_calibrated"])
                    r = {"latency_ms": {"p50": t}, "error_pct": (f - 1) * 100}
                rows.append(
                    {
                        "device": name,
                        "runtime": rt,
                        "precision": prec,
                        "arch": arch,
                        "predicted_ms": r["latency_ms"]["p50"],
                        "error_pct": r["error_pct"],
                        "published_ms": pts[0].latency_ms if pts else None,
                        "published_with": pts[0].measured_with if pts else None,
                        "loo_err_pct": eff.residuals_pct.get(f"{arch}/{prec}") if pts else None,
                        "basis": ("transferred from " + p.runtime(rt).transfer_from)
                        if p.runtime(rt).transfer_from
                        else f"{eff.points} published points",
                        "runtime_supports_precision": supported,
                    }
                )
    return rows


def print_devices(rows: list[dict]) -> None:
    print("### Predicted batch-1 latency at 224x224 on the profiled devices (PREDICTED, not measured)\n")
    print(
        "Published = a fit = yes row of devices/published/*.csv for that device (ncnn's figures are only a "
        "fallback now; benchmarks/predictor_published.py checks every cited figure), "
        "produced by the runtime named, not by edgecnn. Those points are the fit's own, "
        "so the leave-one-out error (each point predicted by a fit to the others) is the honest one.\n"
    )
    print(
        "| device | runtime | precision | network | predicted ms | band +-% | published ms (runtime) | "
        "LOO err % | efficiencies from |"
    )
    print("|---|---|---|---|---:|---:|---:|---:|---|")
    for r in rows:
        pub = f"{r['published_ms']:g} ({r['published_with']})" if r["published_ms"] is not None else "-"
        loo = f"{r['loo_err_pct']:+.0f}" if r["loo_err_pct"] is not None else "-"
        prec = r["precision"] + ("" if r["runtime_supports_precision"] else " (ncnn only)")
        print(
            f"| {r['device']} | {r['runtime']} | {prec} | {r['arch']} | {r['predicted_ms']:.2f} | "
            f"{r['error_pct']:.0f} | {pub} | {loo} | {r['basis']} |"
        )
    loo = [abs(r["loo_err_pct"]) for r in rows if r["loo_err_pct"] is not None]
    if loo:
        print(
            f"\nMedian absolute leave-one-out error over the {len(loo)} published points: "
            f"{statistics.median(loo):.0f}%.\n"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("host", "devices", "both"), default="both")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-int8", action="store_true")
    ap.add_argument("--min-seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds (median taken)")
    ap.add_argument("--json", metavar="OUT", default=None, help="also write the results as JSON")
    ap.add_argument(
        "--refit",
        metavar="RUN.json",
        default=None,
        help="measure nothing: predict again from the timings a --json run of --mode host recorded",
    )
    args = ap.parse_args()
    out: dict = {}
    if args.refit:
        with open(args.refit) as f:
            rec = json.load(f)["host"]
        out["host"] = {**rec, **host_rows(rec), "refit_of": args.refit}
        print_host(out["host"])
        args.mode = "none"
    if args.mode in ("devices", "both"):
        out["devices"] = devices_mode()
        print_devices(out["devices"])
    if args.mode in ("host", "both"):
        out["host"] = host_mode(args.threads, not args.no_int8, args.min_seconds, args.rounds)
        print_host(out["host"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2, default=str)


if __name__ == "__main__":
    main()
