"""Leave-one-out check of the device predictor against every cited published figure.

For each device profile fitted to published figures (``devices/published/*.csv``), each figure is
predicted by a fit to the *other* figures of that profile (its efficiencies, overhead and error
band fitted without it) and compared with the figure. Printed as Markdown:

- per figure: published ms, leave-one-out prediction, error %, the band the predictor states for
  that prediction (the held-out fit's own leave-one-out error combined with the profile's stated
  extra error), and whether the band holds the figure;
- per profile: median |error|, the largest, and the share of figures inside their band;
- the fitted efficiencies per kernel class (all in (0, 1]) and the per-kernel overhead;
- the predictions of the four networks at 224 and 32 px for the Pi profiles.

The figures are published by others (sources in the CSV), never measured here; nothing here
times anything, so the machine does not matter.

Usage: python benchmarks/predictor_published.py [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import statistics


def loo_rows(device: str) -> list[dict]:
    from edgecnn.devices import load_device
    from edgecnn.devices.predict import cited_points, costs_for, fit_efficiency, predict_latency

    p = load_device(device)
    rt = p.default_runtime
    pts = cited_points(p, rt)
    rows = []
    for i, cp in enumerate(pts):
        rest = [x for j, x in enumerate(pts) if j != i]
        eff = fit_efficiency(p, rt, rest)
        r = predict_latency(
            costs_for(cp.arch, cp.image_size, cp.batch),
            p,
            runtime=rt,
            precision=cp.precision,
            threads=cp.threads,
            efficiency=eff,
        )
        pred, (lo, hi) = r["latency_ms"]["p50"], r["band_ms"]
        rows.append(
            {
                "device": device,
                "arch": cp.arch,
                "precision": cp.precision,
                "published_ms": cp.latency_ms,
                "runtime": cp.measured_with,
                "loo_pred_ms": pred,
                "err_pct": (pred / cp.latency_ms - 1) * 100,
                "band_ms": [lo, hi],
                "band_pct": r["error_pct"],
                "in_band": lo <= cp.latency_ms <= hi,
                "n_fit": len(rest),
            }
        )
    return rows


def fitted_devices() -> list[str]:
    from edgecnn.devices import list_devices, load_device
    from edgecnn.devices.predict import cited_points

    return [
        d
        for d in list_devices(include_host=False)
        if len(cited_points(load_device(d), load_device(d).default_runtime)) >= 2
    ]


def summary(rows: list[dict]) -> dict:
    errs = [abs(r["err_pct"]) for r in rows]
    return {
        "n": len(rows),
        "median_abs_err_pct": statistics.median(errs),
        "max_abs_err_pct": max(errs),
        "within_35_pct": sum(e <= 35 for e in errs),
        "in_band": sum(r["in_band"] for r in rows),
    }


def pi_predictions() -> list[dict]:
    from edgecnn.devices.predict import predict_latency

    out = []
    for device in ("rpi4", "rpi5"):
        for arch in ("alexnet", "vgg16", "resnet18", "googlenet"):
            for prec in ("int8", "fp32"):
                for size in (224, 32):
                    if arch == "alexnet" and size == 32:
                        continue  # its stem needs 63 px
                    r = predict_latency(arch, device, precision=prec, image_size=size, small_input=size < 64)
                    out.append(
                        {
                            "device": device,
                            "arch": arch,
                            "precision": prec,
                            "image_size": size,
                            "pred_ms": r["latency_ms"]["p50"],
                            "band_pct": r["error_pct"],
                            "overhead_ms": r["prediction"]["overhead_ms"],
                        }
                    )
    return out


def main() -> None:
    from edgecnn.devices import load_device
    from edgecnn.devices.predict import efficiency_for

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", metavar="OUT", default=None)
    args = ap.parse_args()
    out = {"devices": {}}
    print(
        "| device | network | precision | published ms (runtime) | leave-one-out predicted ms | err % | "
        "stated band | in band |"
    )
    print("|---|---|---|---:|---:|---:|---|---|")
    for device in fitted_devices():
        rows = loo_rows(device)
        eff = efficiency_for(load_device(device))
        out["devices"][device] = {"rows": rows, "summary": summary(rows), "fit": eff.to_dict()}
        for r in rows:
            print(
                f"| {device} | {r['arch']} | {r['precision']} | {r['published_ms']:g} ({r['runtime']}) | "
                f"{r['loo_pred_ms']:.2f} | {r['err_pct']:+.0f} | {r['band_ms'][0]:.1f}-{r['band_ms'][1]:.1f} "
                f"(+-{r['band_pct']:.0f}%) | {'yes' if r['in_band'] else 'NO'} |"
            )
    print()
    for device, d in out["devices"].items():
        s, f = d["summary"], d["fit"]
        print(
            f"- **{device}**: {s['n']} figures; median |error| {s['median_abs_err_pct']:.0f}%, largest "
            f"{s['max_abs_err_pct']:.0f}%, {s['within_35_pct']}/{s['n']} within +-35%, "
            f"{s['in_band']}/{s['n']} "
            f"inside the stated band. Fit to all: efficiency per kernel class {f['kernel_efficiency']}, "
            f"memory {f['memory']}, {f['overhead_us']:g} us per kernel."
        )
    out["pi_predictions"] = pi_predictions()
    print("\n| device | network | precision | px | predicted ms | band +-% | overhead ms |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in out["pi_predictions"]:
        print(
            f"| {r['device']} | {r['arch']} | {r['precision']} | {r['image_size']} | {r['pred_ms']:.2f} | "
            f"{r['band_pct']:.0f} | {r['overhead_ms']:.2f} |"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
