"""TensorRT on a GPU: engines of the four networks, their accuracy and latency, in one unattended run.

Run by ``scripts/gpu/check.sh`` (which installs first); by hand::

    python benchmarks/gpu_tensorrt.py --out benchmarks/results/gpu_tensorrt [--budget-s 420]
    python benchmarks/gpu_tensorrt.py --dry-run      # the plan and the commands, no GPU needed

For each network (ResNet18, GoogLeNet, AlexNet, VGG16, in that order, so the cheapest results
come first) and precision (int8, fp16, fp32): train with a tiny budget (the ``quick`` recipe
at 32 px on ``--train-subset`` images for one epoch: a model that has learnt something, so
agreement figures mean something, not a trained figure), export the Jetson artifact, build
its engine (``edgecnn build-engine``), evaluate it in TensorRT over the whole test split
(top-1, agreement with the fake-quant graph), time it with ``edgecnn bench`` at batch 1 and
32, and, where a trtexec exists, time the same engine with trtexec and compare. Each step
is timed and runs in its own process with a timeout; a failing step is recorded and the rest
go on; work that the time budget does not reach is recorded as not run. Results go to
``OUT.json`` and ``OUT.md`` (docs/BENCHMARKS.md quotes them); the exit status is 1 when any
step did not succeed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCHS = ("resnet18", "googlenet", "alexnet", "vgg16")
PRECISIONS = ("int8", "fp16", "fp32")
BATCHES = (1, 32)
AGREE_WITHIN = 0.05  # trtexec and edgecnn bench must agree within 5%


@dataclass
class Step:
    name: str
    command: list[str]
    seconds: float = 0.0
    status: str = "not run"  # ok | failed | timeout | not run | skipped
    detail: str = ""
    result: dict | None = None


@dataclass
class Run:
    arch: str
    precision: str
    steps: list[Step] = field(default_factory=list)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def _toml(d: dict, prefix: str = "") -> str:
    """A recipe dict (tables of scalars and lists) as TOML."""
    scalars = [f"{k} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    tables = [_toml(v, f"{prefix}{k}.") for k, v in d.items() if isinstance(v, dict)]
    head = f"[{prefix[:-1]}]\n" if prefix and scalars else ""
    return head + "".join(s + "\n" for s in scalars) + "\n" + "".join(tables)


def tiny_recipe(arch: str, work: Path, train_subset: int) -> str:
    """``FILE:quick``: the arch's quick recipe, trained one epoch on ``train_subset`` images."""
    from edgecnn.config import read_toml

    recipe = read_toml(REPO / "recipes" / f"{arch}.toml")
    quick = recipe["quick"]
    quick.setdefault("data", {})["train_subset"] = train_subset
    quick.setdefault("train", {})["epochs"] = 1
    quick["train"]["warmup_epochs"] = min(float(quick["train"].get("warmup_epochs", 0.0)), 0.2)
    recipe = {k: v for k, v in recipe.items() if k in ("arch", "description", "quick")}
    path = work / "recipes" / f"{arch}-gpucheck.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_toml(recipe))
    return f"{path}:quick"


def edgecnn(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgecnn", *args]


def plan(arch: str, precision: str, work: Path, recipe: str, trtexec: str | None) -> Run:
    art = work / "artifacts" / f"{arch}-jetson-{precision}"
    run = Run(arch, precision)
    run.steps.append(
        Step(
            "export",
            edgecnn(
                "export",
                arch,
                "--target",
                "jetson",
                "--precision",
                precision,
                "--recipe",
                recipe,
                "--out",
                str(art),
            ),
        )
    )
    run.steps.append(Step("build-engine", edgecnn("build-engine", str(art), "--builder", "python", "--json")))
    run.steps.append(Step("evaluate", edgecnn("evaluate", str(art), "--json")))
    for b in BATCHES:
        run.steps.append(
            Step(f"bench-b{b}", edgecnn("bench", str(art), "--batch", str(b), "--min-seconds", "1", "--json"))
        )
        if trtexec:
            run.steps.append(
                Step(
                    f"trtexec-b{b}",
                    [
                        trtexec,
                        f"--loadEngine={art / 'model.engine'}",
                        f"--shapes=input:{b}x3x32x32",
                        "--duration=3",
                        "--warmUp=500",
                    ],
                )
            )
        else:
            run.steps.append(
                Step(
                    f"trtexec-b{b}",
                    [],
                    status="skipped",
                    detail="no trtexec on this machine (pip's TensorRT wheels ship none)",
                )
            )
    return run


_TRTEXEC_LATENCY = re.compile(
    r"Latency: min = ([\d.]+) ms, max = ([\d.]+) ms, mean = ([\d.]+) ms, "
    r"median = ([\d.]+) ms"
)


def parse_trtexec_latency(text: str) -> dict | None:
    """trtexec's end-to-end "Latency" line (host-to-device copy, compute, device-to-host copy), in ms."""
    m = _TRTEXEC_LATENCY.search(text)
    return (
        None
        if m is None
        else dict(zip(("min", "max", "mean", "median"), map(float, m.groups()), strict=True))
    )


def run_step(step: Step, timeout: float) -> None:
    if step.status == "skipped":
        return
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            step.command, capture_output=True, text=True, timeout=max(1.0, timeout), check=False
        )
    except subprocess.TimeoutExpired:
        step.status, step.detail = "timeout", f"stopped after {timeout:.0f} s"
        step.seconds = round(time.perf_counter() - t0, 1)
        return
    step.seconds = round(time.perf_counter() - t0, 1)
    if proc.returncode != 0:
        step.status = "failed"
        step.detail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])[-800:]
        return
    step.status = "ok"
    if step.name.startswith("trtexec"):
        step.result = parse_trtexec_latency(proc.stdout + proc.stderr)
    elif "--json" in step.command:
        step.result = json.loads(proc.stdout)


def compare_timers(run: Run) -> list[dict]:
    """trtexec's median latency against edgecnn bench's p50 on the same engine and batch."""
    steps = {s.name: s for s in run.steps}
    out = []
    for b in BATCHES:
        bench, trt = steps.get(f"bench-b{b}"), steps.get(f"trtexec-b{b}")
        if not (bench and trt and bench.status == trt.status == "ok" and trt.result):
            continue
        p50, med = bench.result["latency_ms"]["p50"], trt.result["median"]
        ratio = p50 / med
        out.append(
            {
                "batch": b,
                "edgecnn_p50_ms": p50,
                "trtexec_median_ms": med,
                "ratio": round(ratio, 4),
                "within_5pct": abs(ratio - 1) <= AGREE_WITHIN,
            }
        )
    return out


def summary(run: Run) -> dict:
    steps = {s.name: s for s in run.steps}
    ev = steps["evaluate"].result or {}
    row = {
        "arch": run.arch,
        "precision": run.precision,
        "engine": ((steps["build-engine"].result or {}).get("meta") or {}).get("tensorrt"),
        "plan": (steps["build-engine"].result or {}).get("plan"),
        "top1": ev.get("top1"),
        "agreement": ev.get("agreement"),
        "timers": compare_timers(run),
    }
    for b in BATCHES:
        lat = (steps[f"bench-b{b}"].result or {}).get("latency_ms") or {}
        row[f"p50_ms_b{b}"] = lat.get("p50")
    return row


def environment() -> dict:
    def cmd(*c: str) -> str:
        try:
            return subprocess.run(c, capture_output=True, text=True, timeout=30, check=False).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    versions = cmd(
        sys.executable,
        "-c",
        "import importlib.metadata as m\nfor n in ('torch','tensorrt','onnx',"
        "'onnxruntime','cuda-python','edgecnn'):\n  try: print(n, m.version(n))\n  except Exception: pass",
    )
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "python": platform.python_version(),
        "cpu": cmd("sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
        "gpu": cmd("nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"),
        "packages": dict(line.split(" ", 1) for line in versions.splitlines() if " " in line),
    }


def write_reports(out: Path, runs: list[Run], env: dict, budget: float, elapsed: float) -> None:
    doc = {
        "schema": "edgecnn.gpu-tensorrt/1",
        "environment": env,
        "budget_s": budget,
        "elapsed_s": round(elapsed, 1),
        "summary": [summary(r) for r in runs],
        "runs": [
            {"arch": r.arch, "precision": r.precision, "steps": [asdict(s) for s in r.steps]} for r in runs
        ],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str))
    os.replace(tmp, out.with_suffix(".json"))
    out.with_suffix(".md").write_text(markdown(doc))


def _fmt(x, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.2f}%" if pct else f"{x:.3f}"


def markdown(doc: dict) -> str:
    env = doc["environment"]
    lines = [
        f"# TensorRT on a GPU ({env['date']})",
        "",
        f"GPU: {env['gpu'] or '?'}; CPU: {env['cpu'] or '?'}; packages: "
        + ", ".join(f"{k} {v}" for k, v in env["packages"].items()),
        "",
        (
            "Tiny training budget (quick recipe at 32 px, one epoch on a train subset): accuracy figures "
            "check the engines, they are not the networks' quick-profile accuracy."
        ),
        "",
        (
            "| network | precision | TensorRT | top-1 | agreement with fake-quant | p50 b1 (ms) | p50 b32 "
            "(ms) | bench / trtexec |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["summary"]:
        timers = (
            ", ".join(
                f"b{t['batch']} {t['ratio']:.3f}{'' if t['within_5pct'] else ' (>5%)'}" for t in r["timers"]
            )
            or "-"
        )
        lines.append(
            f"| {r['arch']} | {r['precision']} | {r['engine'] or '-'} | {_fmt(r['top1'], True)} | "
            f"{_fmt(r['agreement'], True)} | {_fmt(r['p50_ms_b1'])} | {_fmt(r['p50_ms_b32'])} | {timers} |"
        )
    failed = [
        (run["arch"], run["precision"], s)
        for run in doc["runs"]
        for s in run["steps"]
        if s["status"] not in ("ok",)
    ]
    if failed:
        lines += ["", "Steps that did not succeed:", ""]
        lines += [f"- {a} {p} {s['name']}: {s['status']} {s['detail']}" for a, p, s in failed]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu_tensorrt")
    ap.add_argument(
        "--work", type=Path, default=None, help="artifacts and recipes (default: $EDGECNN_HOME/gpucheck)"
    )
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--precisions", default=",".join(PRECISIONS))
    ap.add_argument("--train-subset", type=int, default=20000)
    ap.add_argument(
        "--budget-s", type=float, default=420.0, help="stop starting new work after this many seconds"
    )
    ap.add_argument("--step-timeout-s", type=float, default=240.0)
    ap.add_argument("--trtexec", default=None, help="trtexec binary (default: PATH, JetPack's path)")
    ap.add_argument("--dry-run", action="store_true", help="print the plan; run nothing")
    args = ap.parse_args(argv)
    archs, precisions = args.archs.split(","), args.precisions.split(",")
    bad = sorted(set(archs) - set(ARCHS)) + sorted(set(precisions) - set(PRECISIONS))
    if bad:
        print(f"error: unknown network or precision: {', '.join(bad)}", file=sys.stderr)
        return 2
    from edgecnn import paths
    from edgecnn.tensorrt.build import find_trtexec

    work = args.work or paths.home() / "gpucheck"
    trtexec = find_trtexec(args.trtexec)
    runs = [
        plan(a, p, work, tiny_recipe(a, work, args.train_subset), trtexec) for a in archs for p in precisions
    ]
    if args.dry_run:
        for r in runs:
            for s in r.steps:
                print(
                    f"{r.arch} {r.precision} {s.name}: " + (shlex.join(s.command) if s.command else s.detail)
                )
        return 0
    t0, env = time.perf_counter(), environment()
    for r in runs:
        for s in r.steps:
            if s.status == "skipped":
                continue
            left = args.budget_s - (time.perf_counter() - t0)
            if left <= 0:
                s.status, s.detail = "not run", f"time budget of {args.budget_s:.0f} s spent"
                continue
            if s.name != "export" and r.steps[0].status != "ok":
                s.status, s.detail = "not run", "export failed"
                continue
            run_step(s, min(args.step_timeout_s, left))
            print(
                f"[{time.perf_counter() - t0:6.1f} s] {r.arch} {r.precision} {s.name}: {s.status} "
                f"({s.seconds} s) {s.detail}",
                flush=True,
            )
        write_reports(
            args.out, runs, env, args.budget_s, time.perf_counter() - t0
        )  # after each run: kept if cut
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")
    return 0 if all(s.status in ("ok", "skipped") for r in runs for s in r.steps) else 1


if __name__ == "__main__":
    sys.exit(main())
