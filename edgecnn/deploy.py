"""``edgecnn deploy``: every stage from float weights to a measured (or predicted) artifact, in one bundle.

:func:`deploy` runs, each stage cached by the hash of its inputs (a re-run takes seconds):

1. float training / fine-tuning with the recipe (:func:`edgecnn.train.train`; skipped with
   ``checkpoint``; ``weights`` fine-tunes from ImageNet or a file);
2. INT8 only: PTQ calibration, or QAT (``qat=True``), or QAT only where the PTQ drop
   exceeds ``max_drop`` points (:mod:`edgecnn.quantize.stages`);
3. export for the target (:func:`edgecnn.export.export`);
4. evaluation of the artifact in the target's runtime over the whole test split
   (a TensorRT artifact runs in ONNX Runtime where ``tensorrt`` is not importable: the
   report's ``accuracy.runtime`` says which runtime actually ran);
5. latency: measured on this machine for target ``cpu`` (in a fresh ``edgecnn bench``
   process, so peak memory is the runtime's own), measured over SSH on each ``hosts``
   entry, otherwise predicted from the device profile with its error band.

It writes a bundle directory (``$EDGECNN_HOME/runs/deploy/<arch>-<target>-<precision>-<key>``
or ``out``) holding ``artifact/`` (the exported artifact, hard-linked or copied),
``report.json`` (schema ``edgecnn.report/1``, documented in README "deploy and report.json")
and ``report.md``. The bundle folder follows :mod:`edgecnn.outdir`: written beside ``out`` and
renamed into place; a re-run replaces what deploy wrote and keeps your files; a non-empty
folder edgecnn did not make is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgecnn import outdir
from edgecnn.errors import EdgecnnError

SCHEMA = "edgecnn.report/1"
REPORT = "report.json"
REPORT_MD = "report.md"
ARTIFACT = "artifact"
PREDICT = "predict.py"
RUN_MD = "RUN.md"
BUNDLE = (f"{ARTIFACT}/", REPORT, REPORT_MD, PREDICT, RUN_MD)  # what deploy writes into a bundle
DEPLOY_VERSION = 1  # bump when what a stage cache holds changes


def _key(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def check_options(
    target: str,
    *,
    hosts: Sequence[str] = (),
    precision: str = "int8",
    qat: bool = False,
    max_drop: float | None = None,
    weights: str | None = None,
    checkpoint: str | None = None,
) -> None:
    """Conflicting options, one line each, before any work."""
    if qat and max_drop is not None:
        raise EdgecnnError(
            "--qat and --max-drop conflict: --max-drop runs QAT only where PTQ misses it; pass one of them"
        )
    if precision != "int8" and (qat or max_drop is not None):
        raise EdgecnnError(f"--qat and --max-drop apply to int8, not {precision}")
    if max_drop is not None and not 0 <= max_drop < float("inf"):  # nan fails both comparisons
        raise EdgecnnError(f"--max-drop must be a finite number >= 0 points, got {max_drop:g}")
    if weights is not None and checkpoint is not None:
        raise EdgecnnError(
            "--weights fine-tunes a new float model and --checkpoint uses a finished one; pass one of them"
        )
    for h in hosts:
        if not h or h.startswith("-"):
            raise EdgecnnError(f"bad --host '{h}': pass [user@]address")


def _cache(kind: str, key: str, force: bool, make: Callable[[], dict]) -> tuple[dict, bool, Path]:
    """A JSON stage result under runs/<kind>/<key>.json: reused unless ``force``."""
    from edgecnn import paths
    from edgecnn.fileio import atomic_write_json

    path = paths.runs_dir() / kind / f"{key}.json"
    with outdir.lock(path, f"the {kind} result {key}"):  # a second identical run waits, then reads it
        outdir.clean(path)
        if not force and path.is_file():
            try:
                return json.loads(path.read_text()), True, path
            except (OSError, ValueError):
                pass
        value = make()
        atomic_write_json(path, value)
    return value, False, path


def _link_or_copy(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.name != outdir.MARKER:
            try:
                os.link(f, dest / f.name)
            except OSError:
                shutil.copy2(f, dest / f.name)


def _model_size_mb(art_dir: Path, files: dict) -> float:
    """Size of the files the runtime loads (reference .npy files left out)."""
    return sum((art_dir / n).stat().st_size for n in files if not n.endswith(".npy")) / 1e6


def _bench_local(art_dir: Path, *, threads: int | None, min_seconds: float, min_runs: int) -> dict:
    """``edgecnn bench ARTIFACT --json`` in a fresh process: the runtime's own memory, nothing else's."""
    cmd = [
        sys.executable,
        "-m",
        "edgecnn",
        "bench",
        str(art_dir),
        "--json",
        "--min-seconds",
        str(min_seconds),
        "--min-runs",
        str(min_runs),
    ]
    if threads:
        cmd += ["--threads", str(threads)]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgecnnError(f"benchmarking {art_dir} failed: {last.removeprefix('error: ')}")
    return json.loads(p.stdout)


@outdir.holding_locks
def deploy(  # noqa: C901  # issue 14: split this stage
    arch: str,
    target: str,
    *,
    recipe,
    device: str | None = None,
    hosts: Sequence[str] = (),
    data: str | None = None,
    weights: str | None = None,
    checkpoint: str | None = None,
    precision: str = "int8",
    runtime: str | None = None,
    method: str | None = None,
    qat: bool = False,
    max_drop: float | None = None,
    out: str | os.PathLike | None = None,
    force: bool = False,
    threads: int | None = None,
    bench_seconds: float = 2.0,
    bench_runs: int = 10,
    remote_python: str | None = None,
    ssh_config: str | None = None,
    ssh_timeout: float | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> tuple[Path, dict]:
    """Run every stage for ``arch`` on ``target`` and write the bundle; return (bundle dir, report).

    ``force`` re-exports, re-evaluates and re-measures (training and quantization keep
    their caches: their own commands have ``--force``). With ``hosts`` every host is
    measured; the report's top-level latency is the first host that answered, a host
    that failed is listed with its error (all failing raises).
    """
    from edgecnn import __version__, paths
    from edgecnn.artifact import load_artifact
    from edgecnn.export import export, resolve
    from edgecnn.models import arch_info

    info = arch_info(arch)
    hosts = list(hosts)
    check_options(
        target,
        hosts=hosts,
        precision=precision,
        qat=qat,
        max_drop=max_drop,
        weights=weights,
        checkpoint=checkpoint,
    )
    runtime = resolve(target, runtime, precision)
    if device is not None:
        from edgecnn.devices import load_device

        prof = load_device(device)
        if prof.target != target:
            raise EdgecnnError(
                f"device {device} is a {prof.target} device, not {target}; pass --target {prof.target}"
            )
        device = None if target == "cpu" else prof.name
    from edgecnn.train import _weights_id

    ckpt_id = None
    if checkpoint is not None:
        from edgecnn.fileio import sha256_file

        if not Path(checkpoint).is_file():
            raise EdgecnnError(f"checkpoint not found: {checkpoint}")
        ckpt_id = sha256_file(checkpoint)
    bundle_key = _key(
        {
            "arch": arch,
            "target": target,
            "device": device,
            "runtime": runtime,
            "precision": precision,
            "recipe": recipe.to_dict(),
            "data": str(Path(data).resolve()) if data else None,
            "weights": _weights_id(weights),
            "checkpoint": ckpt_id,
            "method": method,
            "qat": qat,
            "max_drop": max_drop,
            "hosts": hosts,
        }
    )
    out = (
        Path(out)
        if out
        else paths.runs_dir() / "deploy" / f"{arch}-{device or target}-{precision}-{bundle_key}"
    )
    outdir.hold(out, "deploy", f"the bundle {out.name}", BUNDLE)
    t_start = time.perf_counter()
    notes: list[str] = []
    stage_info: dict[str, Any] = {}

    # 1. float model
    if checkpoint is None:
        from edgecnn.train import train

        tr = train(arch, recipe, data=data, weights=weights, threads=threads, log=log, progress=progress)
        checkpoint = str(tr.checkpoint)
        stage_info["train"] = {
            "dir": str(tr.out_dir),
            "key": tr.report.get("key"),
            "cached": tr.cached,
            "checkpoint": checkpoint,
        }
    else:
        stage_info["train"] = {
            "dir": None,
            "key": None,
            "cached": True,
            "checkpoint": str(checkpoint),
            "given": True,
        }

    # 2. quantization (export calls the same cached stage again and gets this result)
    quant = None
    if precision == "int8":
        from edgecnn.host import has_vnni
        from edgecnn.quantize import stages

        bits = 7 if runtime == "openvino" and not has_vnni() else 8
        if qat or max_drop is not None:
            quant = stages.qat(
                arch,
                recipe,
                data=data,
                checkpoint=checkpoint,
                method=method,
                max_drop=max_drop,
                weight_bits=bits,
                threads=threads,
                log=log,
                progress=progress,
            )
        else:
            quant = stages.calibrate(
                arch,
                recipe,
                data=data,
                checkpoint=checkpoint,
                method=method,
                weight_bits=bits,
                threads=threads,
                log=log,
                progress=progress,
            )
        stage_info["quantize"] = {
            "stage": quant["stage"],
            "dir": quant["dir"],
            "key": quant["key"],
            "cached": bool(quant.get("cached")),
            "method": quant["method"],
            "qat_skipped": quant.get("qat_skipped"),
            "fakequant_top1": quant["int8_fakequant"]["top1"],
            "fakequant_drop": quant["drop_points"],
        }
        if quant.get("qat_skipped"):
            notes.append(f"QAT skipped: {quant['qat_skipped']}")
    else:
        stage_info["quantize"] = None

    # 3. export
    reused: list[bool] = []

    def export_log(s: str) -> None:
        if "reusing artifact" in s:
            reused.append(True)
        log(s)

    art_dir = export(
        arch,
        target,
        recipe=recipe,
        precision=precision,
        runtime=runtime,
        data=data,
        checkpoint=checkpoint,
        method=method,
        qat=qat,
        max_drop=max_drop,
        force=force,
        log=export_log,
        progress=progress,
    )
    art = load_artifact(art_dir)
    meta = art.meta
    stage_info["export"] = {"dir": str(art_dir), "key": meta.get("stage_key"), "cached": bool(reused)}
    files_id = _key({"files": meta["files"]})

    # 4. accuracy: on the --host devices, else in the target's runtime here
    device_evals: list[dict] | None = None
    if hosts:
        ev, device_evals, ev_cached, ev_path = _accuracy_on_hosts(
            art_dir,
            hosts,
            files_id=files_id,
            data=data,
            threads=threads,
            remote_python=remote_python,
            ssh_config=ssh_config,
            timeout=ssh_timeout,
            force=force,
            log=log,
        )
        accuracy_where = ev["accuracy_where"]
    else:
        ev, ev_cached, ev_path, accuracy_where = _accuracy_here(
            art_dir, target, runtime, files_id=files_id, data=data, threads=threads, force=force, log=log
        )
    stage_info["evaluate"] = {
        "dir": str(ev_path),
        "key": ev_path.stem,
        "cached": ev_cached,
        "where": accuracy_where,
    }

    # 5. latency
    host_results: list[dict] | None = None
    if hosts:

        def run_remote() -> dict:
            from edgecnn.remote import bench_hosts

            rs = bench_hosts(
                art_dir,
                hosts,
                remote_python=remote_python,
                ssh_config=ssh_config,
                threads=threads,
                min_seconds=bench_seconds,
                min_runs=bench_runs,
                timeout=ssh_timeout,
            )
            return {"hosts": [{"host": r.host, "result": r.result, "error": r.error} for r in rs]}

        lat_key = _key(
            {
                "v": DEPLOY_VERSION,
                "files": files_id,
                "hosts": hosts,
                "threads": threads,
                "s": bench_seconds,
                "n": bench_runs,
            }
        )
        lat, lat_cached, lat_path = _cache("latency", lat_key, force, run_remote)
        host_results = _with_accuracy(lat["hosts"], device_evals)
        good = [h for h in host_results if h.get("result")]
        if not good:
            lat_path.unlink(missing_ok=True)  # nothing measured: do not cache the failure
            raise EdgecnnError("; ".join(h.get("error") or f"{h.get('host')}: failed" for h in host_results))
        for h in host_results:
            if not h.get("result"):
                notes.append(f"host failed: {h.get('error')}")
            if h.get("accuracy_error"):
                notes.append(f"host accuracy failed: {h['accuracy_error']}")
        first = next(
            (h for h in good if h["result"]["latency_source"] == "measured"), good[0]
        )  # a real device first
        bench = first["result"]
        where = f"{bench['latency_source']} on {first['host']} over SSH"
    elif target == "cpu":
        lat_key = _key(
            {
                "v": DEPLOY_VERSION,
                "files": files_id,
                "local": platform.node(),
                "threads": threads,
                "s": bench_seconds,
                "n": bench_runs,
            }
        )
        bench, lat_cached, lat_path = _cache(
            "latency",
            lat_key,
            force,
            lambda: _bench_local(art_dir, threads=threads, min_seconds=bench_seconds, min_runs=bench_runs),
        )
        where = "measured on this machine"
    else:

        def run_predict() -> dict:
            from edgecnn.bench import FORMAT, add_energy
            from edgecnn.devices import load_device
            from edgecnn.devices.predict import predict_latency

            profile = load_device(device or target)
            r = predict_latency(
                arch,
                profile,
                runtime=runtime,
                precision=precision,
                image_size=int(meta["preprocess"]["image_size"]),
                batch=1,
                threads=threads,
                small_input=bool(meta["model_options"].get("small_input")),
                num_classes=int(meta["num_classes"]),
            )
            r["format"] = FORMAT
            return add_energy(r, profile.power_w, f"{profile.name} profile")

        lat_key = _key(
            {
                "v": DEPLOY_VERSION,
                "arch": arch,
                "target": device or target,
                "runtime": runtime,
                "precision": precision,
                "pre": meta["preprocess"],
                "opts": meta["model_options"],
                "threads": threads,
            }
        )
        bench, lat_cached, lat_path = _cache("latency", lat_key, force, run_predict)
        where = f"predicted for {bench['device']} from its device profile (no device measured it)"
    stage_info["latency"] = {
        "dir": str(lat_path),
        "key": lat_path.stem,
        "cached": lat_cached,
        "source": bench["latency_source"],
        "where": where,
    }

    # report
    top1, fp32 = ev["top1"], ev["fp32_top1"]
    measured = bench["latency_source"] == "measured"
    lat_ms = {k: bench["latency_ms"][k] for k in ("p50", "p90", "p99", "mean", "min", "max", "n")}
    published = info.published
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "arch": arch,
        "target": target,
        "device": bench.get("device"),
        "runtime": runtime,
        "precision": precision,
        "image_size": int(meta["preprocess"]["image_size"]),
        "num_classes": int(meta["num_classes"]),
        "dataset": {
            "name": ev["dataset"],
            "split": ev["split"],
            "split_id": ev["split_id"],
            "num_images": ev["num_images"],
        },
        "accuracy": {
            "top1": top1,
            "top5": ev["top5"],
            "fp32_top1": fp32,
            "drop": None if fp32 is None else 100 * (fp32 - top1),
            "ci95": ev["top1_ci"],
            "agreement": ev["agreement"],
            "runtime": ev["runtime"],
            "fakequant_top1": None if quant is None else quant["int8_fakequant"]["top1"],
            "mcnemar_p": None if ev["mcnemar"] is None else ev["mcnemar"]["p_value"],
            "source": "measured",
            "where": accuracy_where,
            "runtime_version": ev.get("runtime_version") or (ev.get("runtime_info") or {}).get("version"),
            "machine": ev.get("machine"),
            "host_agreement": (ev.get("host_run") or {}).get("agreement"),
            "flipped": (ev.get("host_run") or {}).get("flipped"),
        },
        "accuracy_where": accuracy_where,
        "latency_ms": lat_ms,
        "latency_source": bench["latency_source"],
        "latency_error_pct": None if measured else bench.get("error_pct"),
        "latency_band_ms": None if measured else bench.get("band_ms"),
        "latency_where": where,
        "batch": bench.get("batch") or 1,
        "throughput_ips": bench.get("throughput_ips"),
        "model_size_mb": _model_size_mb(art.dir, meta["files"]),
        "peak_memory_mb": bench.get("peak_memory_mb") if measured else None,
        "peak_memory_source": "measured" if measured and bench.get("peak_memory_mb") is not None else None,
        "energy_mj": bench.get("energy_mj"),
        "energy_source": bench.get("energy_source"),
        "quantization": None
        if quant is None
        else {
            "stage": quant["stage"],
            "method": quant["method"],
            "qat_skipped": quant.get("qat_skipped"),
            "float_layers": meta["float_layers"],
        },
        "published": None
        if published is None
        else {"imagenet_top1": published.top1, "imagenet_top5": published.top5, "source": published.source},
        "artifact": {
            "path": ARTIFACT,
            "source": str(art_dir),
            "format": meta["format"],
            "files": dict(meta["files"]),
        },
        "stages": stage_info,
        "hosts": host_results,
        "bench_env": bench.get("env"),
        "notes": notes + list(ev.get("notes") or []) + list(bench.get("notes") or []),
        "tools": {**meta.get("tools", {}), "edgecnn": __version__, "python": platform.python_version()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": None,
    }
    report["seconds"] = round(time.perf_counter() - t_start, 2)
    _write_bundle(out, art_dir, report)
    log(f"{arch}: wrote {out}")
    return out, report


def _accuracy_here(
    art_dir: Path, target: str, runtime: str, *, files_id: str, data, threads, force: bool, log
) -> tuple[dict, bool, Path, str]:
    """The artifact evaluated on this machine (cached): (report, cached, path, accuracy_where).

    ``accuracy_where``: "host" for target cpu, else "host-standin:RUNTIME" (this machine's
    kernels, or ONNX Runtime for a TensorRT artifact, stand in for the device's).
    """
    from edgecnn.device_eval import host_runtime

    eval_runtime, note = host_runtime(runtime)

    def run_eval() -> dict:
        from edgecnn.evaluate import evaluate_artifact, json_report

        r = json_report(evaluate_artifact(art_dir, data=data, runtime=eval_runtime, threads=threads, log=log))
        if target != "cpu":
            r["notes"] = [
                note
                or f"{eval_runtime} ran on this machine's {platform.machine()} kernels, a stand-in "
                f"for the {target}'s: deploy --host [USER@]DEVICE measures accuracy on the device",
                *r["notes"],
            ]
        return r

    ev, cached, path = _cache(
        "evaluate",
        _key({"v": DEPLOY_VERSION, "files": files_id, "rt": eval_runtime, "data": str(data)}),
        force,
        run_eval,
    )
    return ev, cached, path, "host" if target == "cpu" else f"host-standin:{eval_runtime}"


def _accuracy_on_hosts(
    art_dir: Path,
    hosts: list[str],
    *,
    files_id: str,
    data,
    threads,
    remote_python,
    ssh_config,
    timeout: float | None,
    force: bool,
    log,
) -> tuple[dict, list[dict], bool, Path]:
    """``evaluate --host`` on every host (cached): (the first good host's result, all hosts, cached, path).

    Every host failing raises (and caches nothing)."""

    def run() -> dict:
        from edgecnn.device_eval import evaluate_hosts

        rs = evaluate_hosts(
            art_dir,
            hosts,
            data=data,
            threads=threads,
            remote_python=remote_python,
            ssh_config=ssh_config,
            timeout=timeout,
            log=log,
        )
        return {
            "hosts": [
                {"host": r.host, "result": r.result.to_json() if r.ok else None, "error": r.error} for r in rs
            ]
        }

    key = _key({"v": DEPLOY_VERSION, "files": files_id, "hosts": hosts, "data": str(data), "on": "device"})
    res, cached, path = _cache("evaluate", key, force, run)
    good = [h["result"] for h in res["hosts"] if h["result"]]
    if not good:
        path.unlink(missing_ok=True)
        raise EdgecnnError("; ".join(h["error"] or f"{h['host']}: failed" for h in res["hosts"]))
    return good[0], res["hosts"], cached, path


def _with_accuracy(bench_hosts: list[dict], device_evals: list[dict] | None) -> list[dict]:
    """Each host's bench entry with its accuracy (``accuracy``, ``accuracy_error``) beside it."""
    by_host = {e["host"]: e for e in device_evals or []}
    return [
        {
            **h,
            "accuracy": by_host.get(h["host"], {}).get("result"),
            "accuracy_error": by_host.get(h["host"], {}).get("error"),
        }
        for h in bench_hosts
    ]


def _write_bundle(out: Path, art_dir: Path, report: dict) -> None:
    from edgecnn.fileio import atomic_write_json, atomic_write_text

    with outdir.replace(out, "deploy") as tmp:
        _link_or_copy(art_dir, tmp / ARTIFACT)
        atomic_write_json(tmp / REPORT, report)
        atomic_write_text(tmp / REPORT_MD, render_markdown(report))
        atomic_write_text(tmp / PREDICT, PREDICT_PY)
        atomic_write_text(tmp / RUN_MD, render_run(report))


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _ms(x) -> str:
    return "n/a" if x is None else f"{x:.3f} ms"


def render_markdown(r: dict) -> str:
    """``report.md``: every figure with its source (measured / predicted / estimated / published)."""
    a, lat, src = r["accuracy"], r["latency_ms"], r["latency_source"]
    ds = r["dataset"]
    rows = [
        (
            "top-1",
            _pct(a["top1"]),
            (
                f"measured ({a['runtime']} on {r.get('accuracy_where') or 'host'}, "
                f"{ds['num_images']} {ds['name']} {ds['split']} images)"
            ),
        ),
        ("top-1 95% CI", f"{_pct(a['ci95'][0])} - {_pct(a['ci95'][1])}", "measured (bootstrap)"),
        ("top-5", _pct(a["top5"]), "measured"),
        ("FP32 top-1", _pct(a["fp32_top1"]), "measured (PyTorch)"),
        ("drop vs FP32", "n/a" if a["drop"] is None else f"{a['drop']:+.2f} points", "measured"),
        ("agreement with fake-quant graph", _pct(a["agreement"]), "measured"),
    ]
    if a.get("host_agreement") is not None:
        rows.append(
            (
                "agreement with this machine's run",
                _pct(a["host_agreement"]),
                f"measured ({len(a['flipped'])} images flipped)",
            )
        )
    if src == "predicted":
        lo, hi = r["latency_band_ms"]
        rows.append(
            (
                "latency p50",
                _ms(lat["p50"]),
                f"PREDICTED, band {lo:.3f}-{hi:.3f} ms (+-{r['latency_error_pct']:.0f}%), not measured",
            )
        )
    else:
        for k in ("p50", "p90", "p99", "mean", "min", "max"):
            rows.append((f"latency {k}", _ms(lat[k]), f"measured, n={lat['n']}"))
    rows += [
        ("throughput", "n/a" if r["throughput_ips"] is None else f"{r['throughput_ips']:.1f} img/s", src),
        ("model size", f"{r['model_size_mb']:.3f} MB", "measured (file sizes)"),
        (
            "peak memory",
            "n/a" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:.0f} MB",
            r["peak_memory_source"] or "not measured (no device ran it)",
        ),
        (
            "energy",
            "n/a" if r["energy_mj"] is None else f"{r['energy_mj']:.3f} mJ/image",
            r["energy_source"] or "n/a",
        ),
    ]
    if r.get("published"):
        p = r["published"]
        rows.append(
            ("ImageNet top-1 (FP32, 224 px)", f"{p['imagenet_top1']:.2f}%", f"published ({p['source']})")
        )
    lines = [
        f"# {r['arch']} on {r['target']} ({r['device']}): {r['runtime']} {r['precision']}",
        "",
        f"Latency {r['latency_where']}. Created {r['created']}.",
        "",
        "| figure | value | source |",
        "|---|---|---|",
    ]
    lines += [f"| {a_} | {b} | {c} |" for a_, b, c in rows]
    lines += ["", "## Stages", "", "| stage | cached | where |", "|---|---|---|"]
    for name, s in r["stages"].items():
        if s is not None:
            lines.append(
                f"| {name} | {'yes' if s.get('cached') else 'no'} | {s.get('dir') or s.get('checkpoint')} |"
            )
    if r.get("hosts"):
        lines += ["", "## Hosts", ""]
        for h in r["hosts"]:
            res = h.get("result")
            lines.append(
                f"- {h.get('host')}: "
                + (
                    f"measured p50 {res['latency_ms']['p50']:.3f} ms on {res.get('device')}"
                    if res
                    else f"error: {h.get('error')}"
                )
            )
            acc = h.get("accuracy")
            if acc or h.get("accuracy_error"):
                lines[-1] += (
                    f"; top-1 {_pct(acc['top1'])} measured there in {acc['runtime']}"
                    if acc
                    else f"; accuracy error: {h['accuracy_error']}"
                )
    lines += ["", "## Artifact", "", f"`{r['artifact']['path']}/` (from {r['artifact']['source']})", ""]
    lines += [f"- `{n}` sha256 `{d}`" for n, d in r["artifact"]["files"].items()]
    if r["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in r["notes"]]
    return "\n".join(lines) + "\n"


PREDICT_PY = '''#!/usr/bin/env python3
"""Classify images with this bundle's artifact (written by `edgecnn deploy`).

    python3 predict.py IMAGE [IMAGE ...]     # the top 5 classes of each image

Runs in the artifact's own runtime with the exact preprocessing it was calibrated on
(artifact/metadata.json). Needs no torch: see RUN.md for the install on the device.
A non-square image is first resized to a square with PIL.
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from edgecnn.artifact import load_artifact
from edgecnn.data.preprocess import Preprocess
from edgecnn.runtimes import open_session


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python3 predict.py IMAGE [IMAGE ...]")
    art = load_artifact(Path(__file__).resolve().parent / "artifact")
    pre = Preprocess.from_dict(art.meta["preprocess"])
    names = art.meta["class_names"]
    session = open_session(art)
    for path in sys.argv[1:]:
        try:
            img = Image.open(path).convert("L" if pre.channels == 1 else "RGB")
        except OSError as e:
            sys.exit(f"error: cannot read {path}: {e}")
        if img.width != img.height:
            img = img.resize((pre.image_size, pre.image_size), Image.BILINEAR)
        x = np.asarray(img, dtype=np.uint8)
        x = x[..., None] if x.ndim == 2 else x
        logits = session.run(pre.apply_numpy(x[None]))[0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        top = np.argsort(-p)[:5]
        print(f"{path}: " + ", ".join(f"{names[i]} {p[i]:.3f}" for i in top))


if __name__ == "__main__":
    main()
'''

_INSTALL = {
    "openvino": "pip install openvino",
    "onnxruntime": "pip install onnxruntime",
    "tflite": "pip install ai-edge-litert        # or, where only that exists: pip install tflite-runtime",
    "tensorrt": "# TensorRT comes with JetPack (python3-libnvinfer); add: pip install cuda-python",
}


def render_run(r: dict) -> str:
    """``RUN.md``: how to install the runtime on the device and run, time and check this bundle."""
    rt = r["runtime"]
    lines = [
        f"# Running {r['arch']} ({rt} {r['precision']}) on {r['device']}",
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
