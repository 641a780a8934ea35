"""The bundle's two Markdown files, each rendered from the typed report: ``report.md`` (every
figure with its source) and ``RUN.md`` (how to install, run, time and check the bundle on the
device)."""

from __future__ import annotations

from edgecnn.results import Report


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _ms(x) -> str:
    return "n/a" if x is None else f"{x:.3f} ms"


def report_md(r: Report) -> str:
    """``report.md``: every figure with its source (measured / predicted / estimated / published)."""
    lines = [
        f"# {r.arch} on {r.target} ({r.device}): {r.runtime} {r.precision}",
        "",
        f"Latency {r.latency_where}. Created {r.created}.",
        "",
        "| figure | value | source |",
        "|---|---|---|",
    ]
    rows = _accuracy_rows(r) + _latency_rows(r) + _resource_rows(r)
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines += ["", "## Stages", "", "| stage | cached | where |", "|---|---|---|"]
    for name, s in r.stages.items():
        if s is not None:
            lines.append(
                f"| {name} | {'yes' if s.get('cached') else 'no'} | {s.get('dir') or s.get('checkpoint')} |"
            )
    if r.quantization and r.quantization.budget:
        from edgecnn.mixed import render_budget

        lines += ["", *render_budget(r.quantization.budget)]
    if r.hosts:
        lines += ["", "## Hosts", ""] + [_host_line(h) for h in r.hosts]
    lines += ["", "## Artifact", "", f"`{r.artifact.path}/` (from {r.artifact.source})", ""]
    lines += [f"- `{n}` sha256 `{d}`" for n, d in r.artifact.files.items()]
    if r.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in r.notes]
    return "\n".join(lines) + "\n"


def _accuracy_rows(r: Report) -> list[tuple[str, str, str]]:
    a, ds = r.accuracy, r.dataset
    where = f"{a.runtime} on {r.accuracy_where or 'host'}, {ds.num_images} {ds.name} {ds.split} images"
    rows = [
        ("top-1", _pct(a.top1), f"measured ({where})"),
        ("top-1 95% CI", f"{_pct(a.ci95[0])} - {_pct(a.ci95[1])}", "measured (bootstrap)"),
        ("top-5", _pct(a.top5), "measured"),
        ("FP32 top-1", _pct(a.fp32_top1), "measured (PyTorch)"),
        ("drop vs FP32", "n/a" if a.drop is None else f"{a.drop:+.2f} points", "measured"),
        ("agreement with fake-quant graph", _pct(a.agreement), "measured"),
    ]
    if a.host_agreement is not None:
        flipped = f"measured ({len(a.flipped or ())} images flipped)"
        rows.append(("agreement with this machine's run", _pct(a.host_agreement), flipped))
    return rows


def _latency_rows(r: Report) -> list[tuple[str, str, str]]:
    lat = r.latency_ms
    if r.latency_source == "predicted":
        lo, hi = r.latency_band_ms
        band = f"PREDICTED, band {lo:.3f}-{hi:.3f} ms (+-{r.latency_error_pct:.0f}%), not measured"
        return [("latency p50", _ms(lat.p50), band)]
    return [
        (f"latency {k}", _ms(getattr(lat, k)), f"measured, n={lat.n}")
        for k in ("p50", "p90", "p99", "mean", "min", "max")
    ]


def _resource_rows(r: Report) -> list[tuple[str, str, str]]:
    rows = [
        (
            "throughput",
            "n/a" if r.throughput_ips is None else f"{r.throughput_ips:.1f} img/s",
            r.latency_source,
        ),
        ("model size", f"{r.model_size_mb:.3f} MB", "measured (file sizes)"),
        (
            "peak memory",
            "n/a" if r.peak_memory_mb is None else f"{r.peak_memory_mb:.0f} MB",
            r.peak_memory_source or "not measured (no device ran it)",
        ),
        (
            "energy",
            "n/a" if r.energy_mj is None else f"{r.energy_mj:.3f} mJ/image",
            r.energy_source or "n/a",
        ),
    ]
    if r.published:
        p = r.published
        rows.append(("ImageNet top-1 (FP32, 224 px)", f"{p.imagenet_top1:.2f}%", f"published ({p.source})"))
    return rows


def _host_line(h: dict) -> str:
    """One ``--host`` entry: its measured p50 or its error, and its accuracy or accuracy error."""
    res = h.get("result")
    line = f"- {h.get('host')}: " + (
        f"measured p50 {res['latency_ms']['p50']:.3f} ms on {res.get('device')}"
        if res
        else f"error: {h.get('error')}"
    )
    acc = h.get("accuracy")
    if acc:
        line += f"; top-1 {_pct(acc['top1'])} measured there in {acc['runtime']}"
    elif h.get("accuracy_error"):
        line += f"; accuracy error: {h['accuracy_error']}"
    return line


_INSTALL = {
    "openvino": "pip install openvino",
    "onnxruntime": "pip install onnxruntime",
    "tflite": "pip install ai-edge-litert        # or, where only that exists: pip install tflite-runtime",
    "tensorrt": "# TensorRT comes with JetPack (python3-libnvinfer); add: pip install cuda-python",
}


def run_md(r: Report) -> str:
    """``RUN.md``: how to install the runtime on the device and run, time and check this bundle."""
    rt = r.runtime
    lines = [
        f"# Running {r.arch} ({rt} {r.precision}) on {r.device}",
        "",
        "Copy this directory to the device, then install edgecnn's runtime side there (no torch):",
        "",
        "```",
        "pip install --no-deps edgecnn",
        "pip install numpy click pillow    # plus tomli on Python 3.10",
        _INSTALL.get(rt, ""),
        "```",
        "",
    ]
    if rt == "tensorrt":
        lines += [
            (
                "Build the TensorRT engine on the Jetson itself (an engine is tied to its GPU and TensorRT "
                "version; edgecnn checks both):"
            ),
            "",
            "```",
            "edgecnn build-engine artifact   # TensorRT 10: precision flags; 11: strongly typed",
            "```",
            "",
        ]
    lines += [
        "Then:",
        "",
        "```",
        "python3 predict.py IMAGE.png          # top-5 classes",
        "edgecnn bench artifact --json         # latency (p50/p90/p99), memory, environment",
        "edgecnn evaluate artifact --data DIR  # accuracy on an ImageFolder of labelled images",
        "```",
        "",
        (
            "Or from the machine that made this bundle: `edgecnn bench THIS_BUNDLE/artifact --host "
            "USER@DEVICE` copies the artifact over SSH, runs it there and brings the figures back; `edgecnn "
            "evaluate THIS_BUNDLE/artifact --host USER@DEVICE` runs the whole test set there and compares it "
            "with this machine's run."
        ),
        "",
    ]
    return "\n".join(lines)
