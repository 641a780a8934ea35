"""``edgecnn frontier``: deploy every (network, target, precision), flag the Pareto sets, write the files.

:func:`run_frontier` deploys each combination with :func:`edgecnn.deploy.deploy` (each stage cached,
so a re-run only reads caches), turns each ``report.json`` into a point, flags the Pareto set per
device and writes ``frontier.json``, ``frontier.csv``, ``frontier.png``, ``report.html`` and
``report.md`` into one directory (:mod:`edgecnn.outdir`: a re-run replaces those files and keeps
yours), after every finished run as well as at the end.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from edgecnn import outdir
from edgecnn.errors import EdgecnnError
from edgecnn.frontier.eta import after_training_s, duration, eta_basis, eta_text, recorded_seconds
from edgecnn.frontier.pareto import flag_pareto
from edgecnn.frontier.plot import check_plot, render_png
from edgecnn.frontier.points import cost_fields, point_from_report
from edgecnn.frontier.render import render_csv, render_html, render_markdown
from edgecnn.results import FailedRun, Frontier, FrontierPoint, FrontierProgress, SkippedRun
from edgecnn.vocab import EtaBasis

if TYPE_CHECKING:
    from edgecnn.train import TrainingEstimate

FILES = ("frontier.json", "frontier.csv", "frontier.png", "report.html", "report.md")
# Cheapest network family first: from an empty cache on a 2-core Xeon with AMX the quick recipes'
# training took ResNet18 2.6 min, GoogLeNet 5.3, AlexNet 5.3 and VGG16 5.7 (all four in bf16), with 1.3,
# 1.3, 1.5 and 2.8 min of work after each (docs/BENCHMARKS.md; on a Zen 5 with older recipes 3.4, 8.2, 7.7,
# 8.8; ResNet18 ~9 min and VGG16 ~40 on an older 2-core EPYC without bf16), so a complete cheap network
# lands in the report first.
CHEAP_FIRST = ("resnet", "googlenet", "alexnet", "vgg")


@dataclass(frozen=True)
class FrontierOptions:
    """How :func:`run_frontier` runs: where it writes, what it minimises, and the options each
    :func:`edgecnn.deploy.deploy` gets.

    INT8 is PTQ, or QAT with ``qat``, or (``max_drop``, :mod:`edgecnn.mixed`) PTQ with the most
    sensitive layers left in float, then QAT, only where PTQ loses more than ``max_drop`` points.
    ``hosts`` (:func:`edgecnn.frontier.parse_hosts`): the devices that measure a target's accuracy
    and latency over SSH. ``on_update(out, result)`` is called after each partial write.
    """

    recipe_for: Callable[[str], Any]
    out: str | os.PathLike
    cost: str = "p50"
    data: str | None = None
    force: bool = False
    threads: int | None = None
    bench_seconds: float = 2.0
    bench_runs: int = 10
    qat: bool = False
    max_drop: float | None = None
    hosts: dict[str, list[str]] = field(default_factory=dict)
    remote_python: str | None = None
    ssh_config: str | None = None
    ssh_timeout: float | None = None
    log: Callable[[str], None] = print
    progress: bool = True
    command: str | None = None
    on_update: Callable[[Path, Frontier], None] | None = None

    @property
    def int8(self) -> str:
        """How INT8 is made, as frontier.json says it."""
        if self.qat:
            return "qat"
        if self.max_drop is None:
            return "ptq"
        return f"ptq; where the drop > {self.max_drop:g} points, layers in float, then qat"


class Combo(NamedTuple):
    arch: str
    target: str
    device: str | None
    precision: str

    @property
    def where(self) -> str:
        return self.device or self.target


def work_order(archs: Sequence[str], family: Callable[[str], str]) -> list[str]:
    """``archs`` cheapest family first (:data:`CHEAP_FIRST`); other families last, in the order given."""
    rank = {f: i for i, f in enumerate(CHEAP_FIRST)}
    return sorted(archs, key=lambda a: rank.get(family(a), len(rank)))


def combinations(
    archs: Sequence[str], targets: Sequence[tuple[str, str | None]], precisions: Sequence[str]
) -> list[Combo]:
    """Every (network, target, device, precision), the cheapest network first (:func:`work_order`)."""
    from edgecnn.models import arch_info

    return [
        Combo(a, t, d, p)
        for a in work_order(archs, lambda a: arch_info(a).family)
        for t, d in targets
        for p in precisions
    ]


def skip_reason(c: Combo) -> str | None:
    """Why ``c``'s target cannot run its precision; None when it can."""
    from edgecnn.export import DEFAULT_RUNTIME, SUPPORT

    runtime = DEFAULT_RUNTIME[c.target]
    can = SUPPORT[c.target][runtime]
    return None if c.precision in can else f"{runtime} on {c.target} runs {', '.join(can)}"


class _Run:
    """The points, skipped and failed runs so far, and the frontier they make."""

    def __init__(
        self,
        archs,
        targets,
        precisions,
        opts: FrontierOptions,
        training_s: dict[str, float],
        eval_s: dict[str, float] | None = None,
    ):
        self.opts, self.t0 = opts, time.perf_counter()
        self.head = {
            **cost_fields(opts.cost),
            "archs": tuple(archs),
            "targets": tuple(d or t for t, d in targets),
            "precisions": tuple(precisions),
            "int8": opts.int8,
            "command": opts.command,
        }
        self.points: list[FrontierPoint] = []
        self.skipped: list[SkippedRun] = []
        self.failed: list[FailedRun] = []
        self.training_s = dict(training_s)  # arch -> its training still to do (an estimate)
        self.eval_s = dict(eval_s or {})  # arch -> its FP32 pass over the test split (timed)
        self.fresh = {a for a, seconds in training_s.items() if seconds}  # the networks this run trains
        # (arch, wall seconds) of the finished runs that did not train; of those that did, less the estimate
        self.after: list[tuple[str, float]] = []
        self.trained: list[tuple[str, float]] = []

    def retime(self, arch: str, est: TrainingEstimate | None) -> None:
        """A second timing of ``arch``'s training (None: it failed), just before it starts: the
        lesser of the two counts, since a moment's slowdown of the machine only ever lengthens a
        timing (one of two cold runs timed AlexNet's step at 1.9x its usual)."""
        if est is not None and est.steps and self.training_s.get(arch):
            self.training_s[arch] = min(self.training_s[arch], est.seconds)
            if arch in self.eval_s and est.test_seconds:
                self.eval_s[arch] = min(self.eval_s[arch], est.test_seconds)

    def finished(self, arch: str, seconds: float, reused: Sequence[str] | None) -> None:
        """A run of ``arch`` took ``seconds``; ``reused``, its point's cached stages (None: it
        failed, which says nothing of the time a run takes)."""
        if reused is None:
            return
        if "train" in reused:
            self.after.append((arch, seconds))
        elif arch in self.training_s:  # it trained: the rest of its time is its work after training
            self.trained.append((arch, max(0.0, seconds - self.training_s[arch])))
        self.training_s[arch] = 0.0

    def eta(
        self, remaining: Sequence[Combo], recorded: dict[tuple, float]
    ) -> tuple[float | None, EtaBasis | None]:
        """(seconds, basis) of the ``remaining`` runs (:func:`edgecnn.frontier.eta.eta_basis`), each
        network's runs after training scaled by its FP32 test pass (:func:`after_training_s`) from
        the runs after training so far, or until one has finished, those that trained less their
        estimate; the runs of networks this run trained where there are any (another network's
        runs may only have read caches: a resumed frontier)."""
        fresh = [[r for r in runs if r[0] in self.fresh] for runs in (self.after, self.trained)]
        done = fresh[0] or fresh[1] or self.after or self.trained
        after_s = after_training_s(done, self.eval_s, (c[0] for c in remaining))
        return eta_basis(remaining, recorded, self.training_s, after_s)

    @property
    def done(self) -> int:
        return len(self.points) + len(self.failed)

    def result(self, in_progress: FrontierProgress | None = None) -> Frontier:
        return Frontier(
            **self.head,
            points=tuple(flag_pareto(self.points, self.opts.cost)),
            skipped=tuple(self.skipped),
            failed=tuple(self.failed),
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            seconds=round(time.perf_counter() - self.t0, 2),
            in_progress=in_progress,
        )

    def elapsed(self) -> str:
        return duration(time.perf_counter() - self.t0)


def deploy_point(c: Combo, opts: FrontierOptions) -> FrontierPoint:
    """Deploy one combination (every stage cached) and return its point."""
    from edgecnn.deploy import BenchOptions, DeployOptions, SshOptions, deploy

    int8 = c.precision == "int8"
    bundle, report = deploy(
        c.arch,
        c.target,
        recipe=opts.recipe_for(c.arch),
        options=DeployOptions(
            device=c.device,
            data=opts.data,
            precision=c.precision,
            qat=opts.qat and int8,
            max_drop=opts.max_drop if int8 else None,
            force=opts.force,
            threads=opts.threads,
            bench=BenchOptions(seconds=opts.bench_seconds, runs=opts.bench_runs),
            hosts=opts.hosts.get(c.where, ()),
            ssh=SshOptions(
                remote_python=opts.remote_python, config=opts.ssh_config, timeout=opts.ssh_timeout
            ),
        ),
        log=opts.log,
        progress=opts.progress,
    )
    return point_from_report(report.to_json(), bundle)


@outdir.holding_locks
def run_frontier(
    archs: Sequence[str],
    targets: Sequence[tuple[str, str | None]],
    precisions: Sequence[str],
    opts: FrontierOptions,
) -> tuple[Path, Frontier]:
    """Deploy every combination (cached), flag the Pareto sets, write the frontier directory.

    A combination whose target cannot run the precision is listed under ``skipped``; one that
    fails (an :class:`EdgecnnError`) under ``failed`` with its one-line error, and the others go
    on. The cheapest network runs first (:func:`work_order`), and the five files are rewritten
    after every finished combination with ``in_progress`` (runs done, of how many, ETA) set:
    report.html then reloads itself. The final files have no ``in_progress``. Returns (out, result).
    """
    from edgecnn.deploy import DeployOptions

    cost_fields(opts.cost)
    check_plot()
    DeployOptions(qat=opts.qat, max_drop=opts.max_drop)  # conflicting options, before any work
    out = Path(opts.out)
    outdir.hold(out, "frontier", f"the frontier {out}", FILES)
    recorded = recorded_seconds(out)
    combos = combinations(archs, targets, precisions)
    runnable = [c for c in combos if skip_reason(c) is None]
    estimates = training_estimates(runnable, opts)
    run = _Run(
        archs,
        targets,
        precisions,
        opts,
        {a: e.seconds for a, e in estimates.items()},
        {a: e.test_seconds for a, e in estimates.items() if e.test_seconds},
    )
    for i, c in enumerate(combos, 1):
        why = skip_reason(c)
        if why is not None:
            run.skipped.append(SkippedRun(c.arch, c.where, c.precision, why))
            continue
        if c.arch != runnable[0].arch and run.training_s.get(c.arch):
            run.retime(c.arch, training_estimates([c], opts).get(c.arch))  # about to train: timed again
        opts.log(
            f"[{i}/{len(combos)}] {c.arch} on {c.where}, {c.precision} | {run.done} of {len(runnable)} done, "
            f"{run.elapsed()} elapsed, {eta_text(*run.eta(runnable[run.done :], recorded))}"
        )
        t0 = time.perf_counter()
        try:
            run.points.append(deploy_point(c, opts))
            run.finished(c.arch, time.perf_counter() - t0, run.points[-1].reused)
        except EdgecnnError as e:
            opts.log(f"  failed: {e}")
            run.failed.append(FailedRun(c.arch, c.where, c.precision, str(e)))
        if run.points and run.done < len(runnable):
            _write_partial(
                out, run, FrontierProgress(run.done, len(runnable), *run.eta(runnable[run.done :], recorded))
            )
    if not run.points:
        raise EdgecnnError(
            "no combination ran: "
            + "; ".join(f"{f.arch} {f.target} {f.precision}: {f.error}" for f in run.failed)[:2000]
        )
    result = run.result()
    write_frontier(out, result)
    remember(result, out)
    opts.log(f"wrote {out}")
    return out, result


def training_estimates(runnable: Sequence[Combo], opts: FrontierOptions) -> dict[str, TrainingEstimate]:
    """arch -> its training still to do (:func:`edgecnn.train.estimate`: nothing where the cache has
    it, as on a re-run, which times nothing; else a few of its steps and evaluation batches timed).
    A network whose estimate fails (its deploy will say why) has none."""
    from edgecnn.train import estimate

    estimates, timed = {}, []
    for arch in dict.fromkeys(c.arch for c in runnable):
        try:
            est = estimate(arch, opts.recipe_for(arch), data=opts.data, threads=opts.threads)
        except EdgecnnError:
            continue
        estimates[arch] = est
        if est.steps:
            timed.append(
                f"{arch} {est.steps} x {est.step_seconds:.3f} s + validation {est.val_seconds:.1f} s"
                f" + test {est.test_seconds:.1f} s"
            )
    if timed:
        opts.log(f"training steps timed for the ETA: {', '.join(timed)}")
    return estimates


def _write_partial(out: Path, run: _Run, progress: FrontierProgress) -> None:
    partial = run.result(progress)
    write_frontier(out, partial)
    if run.opts.on_update:
        run.opts.on_update(out, partial)


def remember(result: Frontier, out: Path) -> None:
    """Keep a copy under $EDGECNN_HOME/runs/frontier so ``choose`` finds it without --from."""
    import dataclasses
    import hashlib

    from edgecnn import paths
    from edgecnn.fileio import atomic_write_json

    name = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:12] + ".json"
    kept = dataclasses.replace(result, out=str(out.resolve()))
    atomic_write_json(paths.runs_dir() / "frontier" / name, kept.to_json())


def write_frontier(out: Path, result: Frontier) -> None:
    """All five files into a temporary folder beside ``out``, then one rename
    (:func:`edgecnn.outdir.replace`)."""
    from edgecnn.fileio import atomic_write_json, atomic_write_text

    with outdir.replace(out, "frontier") as tmp:
        atomic_write_json(tmp / "frontier.json", result.to_json())
        atomic_write_text(tmp / "frontier.csv", render_csv(result))
        png = render_png(result)
        (tmp / "frontier.png").write_bytes(png)
        atomic_write_text(tmp / "report.md", render_markdown(result))
        atomic_write_text(tmp / "report.html", render_html(result, png))
