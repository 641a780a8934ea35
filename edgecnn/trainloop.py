"""The one training loop that float training (:mod:`edgecnn.train`) and QAT
(:mod:`edgecnn.quantize.stages`) both run.

It owns what the two have in common: the epoch and step iteration over seeded, resumable
batches (:class:`Batches`), the learning-rate schedule (:func:`lr_at`), the resumable state
(``state.pt``: weights, optimizer, torch RNG, position, history; rewritten atomically every
``checkpoint_seconds``, at the end of every epoch and after the last step, never with
non-finite weights), the divergence check (a non-finite loss on any rank stops every rank
with one ``error:`` naming the last good state) and the progress bar.

What differs is passed in: the model and optimizer, the step options (:class:`StepOptions`:
device, memory format, autocast, gradient clipping, small-map convolutions as GEMMs; where
throughput options plug in) and the :class:`Hooks` (float training evaluates on the validation
split at the end of each epoch; QAT freezes observers and BatchNorm at given steps and logs its
loss every 20 steps).

Under torchrun (see :mod:`edgecnn.distributed`) the model is wrapped in DistributedDataParallel,
each rank takes its slice of every global batch, and rank 0 alone writes the state.
"""

from __future__ import annotations

import contextlib
import math
import pickle
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from edgecnn import distributed
from edgecnn.data import Preprocess, iterate_batches
from edgecnn.errors import EdgecnnError
from edgecnn.fileio import atomic_path
from edgecnn.gemmconv import small_maps_as_gemm
from edgecnn.metrics import TopK


def lr_at(step: int, total: int, warmup: int, base: float, schedule: str) -> float:
    """Linear warm-up to ``base`` over ``warmup`` steps, then constant or cosine to zero."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    if schedule == "constant":
        return base
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * base * (1.0 + math.cos(math.pi * min(1.0, t)))


@dataclass(frozen=True)
class Schedule:
    """How many steps a run takes and the learning rate at each."""

    steps_per_epoch: int
    total: int
    lr: float
    warmup: int = 0
    shape: str = "cosine"

    @classmethod
    def plan(
        cls,
        images: int,
        batch_size: int,
        epochs: float,
        lr: float,
        *,
        section: str,
        warmup_epochs: float = 0.0,
        shape: str = "cosine",
    ) -> Schedule:
        """``epochs`` (fractions allowed) over ``images`` at the global ``batch_size``; one
        ``error:`` naming ``section``'s batch_size when there is not one batch of images."""
        steps_per_epoch = images // batch_size
        if steps_per_epoch < 1:
            raise EdgecnnError(
                f"{images} training images are fewer than one batch of {batch_size}; "
                f"lower {section}.batch_size in the recipe or bring more data"
            )
        distributed.per_rank_batch(batch_size, f"{section}.batch_size")
        total = max(1, math.ceil(epochs * steps_per_epoch))
        return cls(steps_per_epoch, total, lr, int(warmup_epochs * steps_per_epoch), shape)

    @property
    def epochs(self) -> int:
        """Epochs begun, the last one possibly in part."""
        return math.ceil(self.total / self.steps_per_epoch)

    def lr_at(self, step: int) -> float:
        return lr_at(step, self.total, self.warmup, self.lr, self.shape)


@dataclass(frozen=True)
class Batches:
    """The training images and how they are drawn: shuffled per epoch from ``seed``, the last
    partial batch dropped, so that epoch ``e`` from batch ``start`` is the same on every resume."""

    images: Any  # uint8 N x H x W x C
    labels: Any
    preprocess: Preprocess
    batch_size: int
    seed: int
    augment: str | None

    def epoch(self, epoch: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        d = distributed.info()
        return iterate_batches(
            self.images,
            self.labels,
            self.preprocess,
            self.batch_size,
            shuffle=True,
            seed=self.seed,
            epoch=epoch,
            augment=self.augment,
            drop_last=True,
            start=start,
            rank=d.rank,
            world_size=d.world_size,
        )


@dataclass(frozen=True)
class StepOptions:
    """How one optimisation step runs. ``device`` None leaves the batches where they are
    (QAT trains on the CPU); ``autocast`` None runs the forward pass in the model's dtype."""

    device: torch.device | None = None
    memory_format: torch.memory_format = torch.contiguous_format
    autocast: torch.dtype | None = None
    grad_clip: float = 0.0
    label_smoothing: float = 0.0
    check_weights: bool = False  # stop at the first step that leaves a non-finite weight
    gemm_conv_pixels: int = 0  # convolutions on maps this small as one GEMM each (edgecnn.gemmconv)


@dataclass
class EpochStats:
    """The running training loss and accuracy of the current epoch (since a resume, if any)."""

    loss_sum: float = 0.0
    loss_n: int = 0
    acc: TopK = field(default_factory=TopK)

    @property
    def loss(self) -> float:
        return self.loss_sum / max(1, self.loss_n)


@dataclass(frozen=True)
class Hooks:
    """What a stage does around the shared steps. A hook that returns a dict adds it to the
    run's history (kept in the state, so it survives a resume)."""

    start_epoch: Callable[[], None] | None = None  # float: model.train() (evaluation left it in eval)
    before_step: Callable[[int], None] | None = None  # QAT: freeze observers, then BatchNorm
    after_step: Callable[[int, torch.Tensor], dict | None] | None = None  # (steps done, loss)
    end_epoch: Callable[[int, EpochStats], dict | None] | None = None  # (epoch, its stats)


@dataclass(frozen=True)
class Run:
    """What names a run in its state file and its messages."""

    name: str  # "resnet18"
    kind: str  # "training" or "QAT", for the divergence message
    section: str  # the recipe section whose lr to lower: "train" or "qat"
    key: str  # the run key; a state of another key is not resumed
    state_path: Path
    state_format: str
    checkpoint_seconds: float


class Loop:
    """One training run: :meth:`resume` from ``state.pt`` if there is one, then :meth:`run`."""

    def __init__(
        self,
        run: Run,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: Schedule,
        batches: Batches,
        *,
        options: StepOptions | None = None,
        hooks: Hooks | None = None,
        started: float | None = None,
    ):
        self.run_info, self.model, self.opt, self.net = run, model, optimizer, model
        self.schedule, self.batches = schedule, batches
        self.options, self.hooks = options or StepOptions(), hooks or Hooks()
        self.started = time.perf_counter() if started is None else started
        self.epoch, self.step_in_epoch = 0, 0
        self.history: list[dict] = []
        self.elapsed_before = 0.0

    @property
    def step(self) -> int:
        return self.epoch * self.schedule.steps_per_epoch + self.step_in_epoch

    def elapsed(self) -> float:
        """Seconds this run has taken, across resumes."""
        return self.elapsed_before + time.perf_counter() - self.started

    def resume(self, force: bool = False, log: Callable[[str], None] = print) -> bool:
        """Continue from rank 0's ``state.pt`` of this run key (``force``: delete it and start over)."""
        r, state = self.run_info, None
        if distributed.is_main() and r.state_path.exists():
            if force:
                r.state_path.unlink()
            else:
                state = _load_state(r.state_path, r.state_format, r.key)
        state = distributed.broadcast_object(state)  # every rank resumes from rank 0's state
        if state is None:
            return False
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        if "epoch" in state:
            self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
        else:  # a QAT state written before the loop was shared
            self.epoch, self.step_in_epoch = divmod(state["step"], self.schedule.steps_per_epoch)
        self.history, self.elapsed_before = state.get("history", []), state.get("elapsed", 0.0)
        log(
            f"{r.name}: resuming {r.kind} {r.state_path.parent} at epoch {self.epoch + 1}, "
            f"step {self.step_in_epoch}/{self.schedule.steps_per_epoch}"
        )
        return True

    def run(self, progress: bool = False) -> None:
        """Train to the last step of the schedule (``progress``: a bar on a terminal)."""
        # DistributedDataParallel under torchrun (gradients averaged, rank 0's buffers --
        # BatchNorm statistics, observer ranges -- broadcast each step), else the model itself.
        self.net = distributed.wrap(self.model)
        self.last_save = time.perf_counter()
        sched = self.schedule
        with _Progress(enabled=progress) as bar:
            # (a state saved after an epoch's last step but before its end resumes into that end)
            while self.step < sched.total or self.step_in_epoch == sched.steps_per_epoch:
                self._epoch(bar)

    def time_steps(self, n: int) -> float:
        """The median wall time of ``n`` optimisation steps on the first batches, each batch's
        preparation included, after one untimed step (its one-off kernel set-up): an estimate's
        input. The steps change the model and the optimizer, so time a loop that will not train;
        nothing is saved."""
        times, batches = [], iter(self.batches.epoch(0, 0))
        for i in range(n + 1):
            t = time.perf_counter()
            if (batch := next(batches, None)) is None:
                break
            self._step(*batch, self.schedule.lr_at(i))
            times.append(time.perf_counter() - t)
        return statistics.median(times[1:] or times)

    def _epoch(self, bar: _Progress) -> None:
        sched, hooks, stats = self.schedule, self.hooks, EpochStats()
        if hooks.start_epoch:
            hooks.start_epoch()
        label = f"{self.run_info.name} epoch {self.epoch + 1}/{sched.epochs}"
        task = bar.start(label, sched.steps_per_epoch, self.step_in_epoch)
        for x, y in self.batches.epoch(self.epoch, self.step_in_epoch):
            if hooks.before_step:
                hooks.before_step(self.step)
            lr = sched.lr_at(self.step)
            loss, seen, logits, y = self._step(x, y, lr)
            self.step_in_epoch += 1
            stats.loss_sum += seen.item() * len(y)
            stats.loss_n += len(y)
            stats.acc.update(logits.detach(), y)
            bar.advance(task, loss=stats.loss, acc=stats.acc.top1, lr=lr)
            if hooks.after_step:
                self._record(hooks.after_step(self.step, loss))
            if self.step_in_epoch == sched.steps_per_epoch or self.step >= sched.total:
                break
            if time.perf_counter() - self.last_save > self.run_info.checkpoint_seconds:
                self._save()
        if self.step_in_epoch == sched.steps_per_epoch:
            self._end_epoch(stats)
        self._save()

    def _end_epoch(self, stats: EpochStats) -> None:
        if distributed.info().enabled:
            acc = stats.acc
            acc.n, acc.correct1, acc.correct5 = (
                int(v) for v in distributed.all_reduce_sum([acc.n, acc.correct1, acc.correct5])
            )
        if self.hooks.end_epoch:
            self._record(self.hooks.end_epoch(self.epoch, stats))
        self.epoch, self.step_in_epoch = self.epoch + 1, 0

    def _record(self, entry: dict | None) -> None:
        if entry is not None:
            self.history.append(entry)

    def _step(self, x: torch.Tensor, y: torch.Tensor, lr: float):
        """One optimisation step at learning rate ``lr``: (loss, loss averaged over ranks, logits,
        labels where the loss was computed)."""
        o = self.options
        for g in self.opt.param_groups:
            g["lr"] = lr
        if o.device is not None:
            x, y = x.to(o.device, memory_format=o.memory_format, non_blocking=True), y.to(o.device)
        autocast = torch.autocast(x.device.type, dtype=o.autocast) if o.autocast else contextlib.nullcontext()
        with autocast, small_maps_as_gemm(self.model, o.gemm_conv_pixels):
            logits = self.net(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=o.label_smoothing)
        seen = distributed.mean_over_ranks(loss)  # the loss itself for one process
        if not torch.isfinite(seen):  # all ranks stop together
            self._diverged(f"loss became {loss.item()}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if o.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), o.grad_clip)
        self.opt.step()
        if o.check_weights and not _finite(p for g in self.opt.param_groups for p in g["params"]):
            self._diverged("weights became NaN/inf")  # NaN weights break QAT's observers first
        return loss, seen, logits, y

    def _diverged(self, what: str) -> None:
        r = self.run_info
        where = r.state_path if r.state_path.exists() else "none saved yet"
        raise EdgecnnError(
            f"{r.name}: {r.kind} {what} at epoch {self.epoch + 1} step {self.step_in_epoch}; stopped; "
            f"last good state: {where}; lower {r.section}.lr in the recipe and run again"
        )

    def _save(self) -> None:
        """Write the resumable state atomically (rank 0; never over the last good state with
        diverged weights)."""
        self.last_save = time.perf_counter()
        if not distributed.is_main() or not _finite(self.model.parameters()):
            return
        with atomic_path(self.run_info.state_path) as tmp:
            torch.save(
                {
                    "format": self.run_info.state_format,
                    "key": self.run_info.key,
                    "model": self.model.state_dict(),
                    "optimizer": self.opt.state_dict(),
                    "rng": torch.get_rng_state(),
                    "epoch": self.epoch,
                    "step_in_epoch": self.step_in_epoch,
                    "step": self.step,
                    "history": self.history,
                    "elapsed": self.elapsed(),
                },
                tmp,
            )


def _finite(params) -> bool:
    return all(torch.isfinite(p).all() for p in params)


def _load_state(path: Path, fmt: str, key: str) -> dict | None:
    """The state of run ``key`` at ``path``, or None (another run's, or cut short by a crash:
    start over rather than fail)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError):
        return None
    if not isinstance(state, dict) or state.get("format") != fmt or state.get("key") != key:
        return None
    return state


class _Progress:
    """A rich progress bar on a terminal; nothing otherwise (the stages log their own lines)."""

    def __init__(self, enabled: bool):
        self._p = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            console = Console(stderr=True)
            if console.is_terminal:
                self._p = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn(
                        "loss {task.fields[loss]:.3f} acc {task.fields[acc]:.3f} lr {task.fields[lr]:.4f}"
                    ),
                    TimeRemainingColumn(),
                    console=console,
                    transient=True,
                )

    def __enter__(self):
        if self._p:
            self._p.__enter__()
        return self

    def __exit__(self, *exc):
        if self._p:
            self._p.__exit__(*exc)

    def start(self, description: str, total: int, completed: int):
        if not self._p:
            return None
        return self._p.add_task(description, total=total, completed=completed, loss=0.0, acc=0.0, lr=0.0)

    def advance(self, task, **fields) -> None:
        if self._p is not None and task is not None:
            self._p.update(task, advance=1, **fields)
