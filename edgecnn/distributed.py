"""Data-parallel training across processes started by ``torchrun`` (DistributedDataParallel).

``edgecnn train`` and ``edgecnn qat`` run unchanged under::

    torchrun --standalone --nproc-per-node N -m edgecnn train resnet18
    torchrun --standalone --nproc-per-node N -m edgecnn qat resnet18

Each process reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from the environment
torchrun sets and joins one process group (NCCL on CUDA, one GPU per process by
``LOCAL_RANK``; gloo on CPU). Without those variables (or with ``WORLD_SIZE=1``)
everything here is a no-op and training is exactly the single-process code path.

How a run is split:

- the recipe's ``batch_size`` stays the *global* batch: every rank draws the same seeded
  permutation and takes its own contiguous slice of each global batch (``batch_size /
  world_size`` images, so batch_size must divide evenly). Steps per epoch, the learning-rate
  schedule, augmentation draws and the run key are those of a single process with the same
  batch, and gradients are averaged over ranks, so results match a single process
  approximately (BatchNorm statistics are per rank, as usual with DDP).
- rank 0 alone writes checkpoints (``state.pt``, ``model.pt``), reports and logs; other ranks'
  stdout is silenced (stderr is kept for errors). On resume rank 0 reads the state and
  broadcasts it, so every rank restarts from the same step.
- evaluation is sharded over ranks and the counts summed, after rank 0's BatchNorm
  statistics are broadcast, so it measures exactly the model rank 0 saves.
- threads per process default to the cores divided by the processes on the node.

This module imports torch lazily: :func:`info` works on a device without torch.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from edgecnn.errors import EdgecnnError

# A rank may wait this long for rank 0 (writing a checkpoint, evaluating) before the collective fails.
TIMEOUT_MINUTES = 60


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the torchrun job (``world_size`` 1: not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def info() -> DistInfo:
    """This process's rank and world size from the environment torchrun sets."""

    def env(name: str, default: int) -> int:
        v = os.environ.get(name)
        try:
            return int(v) if v not in (None, "") else default
        except ValueError as e:
            raise EdgecnnError(f"{name}={v!r} is not an integer; start the job with torchrun") from e

    world = env("WORLD_SIZE", 1)
    return DistInfo(
        rank=env("RANK", 0),
        world_size=world,
        local_rank=env("LOCAL_RANK", 0),
        local_world_size=env("LOCAL_WORLD_SIZE", world),
    )


def setup() -> DistInfo:
    """Join the process group (idempotent); a no-op for a single process.

    Backend: NCCL for CUDA tensors when CUDA is available (this process is bound to GPU
    ``LOCAL_RANK``) with gloo for CPU tensors (QAT runs on the CPU), else gloo alone. The
    group is destroyed at interpreter exit.
    """
    d = info()
    if not d.enabled:
        return d
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return d
    if not dist.is_available():
        raise EdgecnnError("this torch build has no torch.distributed; run with a single process")
    cuda = torch.cuda.is_available()
    if cuda:
        if d.local_rank >= torch.cuda.device_count():
            raise EdgecnnError(
                f"LOCAL_RANK {d.local_rank} but only {torch.cuda.device_count()} GPU(s) here; "
                f"start at most that many processes per node (--nproc-per-node)"
            )
        torch.cuda.set_device(d.local_rank)
    minutes = int(os.environ.get("EDGECNN_DIST_TIMEOUT_MINUTES", TIMEOUT_MINUTES))
    dist.init_process_group(
        backend="cpu:gloo,cuda:nccl" if cuda else "gloo",
        init_method="env://",
        timeout=datetime.timedelta(minutes=minutes),
    )
    atexit.register(_teardown)
    if not d.is_main:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - only rank 0 reports; errors still reach stderr
    return d


def _teardown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def active() -> bool:
    """True inside an initialised process group of more than one process."""
    if not info().enabled:
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def is_main() -> bool:
    return info().is_main


def device():
    """The torch device of this rank: ``cuda:LOCAL_RANK`` (``cuda`` for one process), else the CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", info().local_rank) if active() else torch.device("cuda")
    return torch.device("cpu")


def default_threads() -> int:
    """CPU threads per process: all cores, shared evenly by the processes of this node."""
    return max(1, (os.cpu_count() or 1) // max(1, info().local_world_size if active() else 1))


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's CPU thread count set to ``threads`` for the block and restored after it (a stage
    called from another, as train from calibrate, leaves the caller's count as it found it).
    ``None`` leaves the count as it is."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def per_rank_batch(batch_size: int, what: str = "train.batch_size") -> int:
    """The global ``batch_size`` divided over the ranks; it must divide evenly."""
    world = info().world_size if active() else 1
    if batch_size % world:
        raise EdgecnnError(
            f"{what} {batch_size} does not divide over {world} processes; pick a multiple of "
            f"{world} (it is the global batch: each process takes batch_size / {world})"
        )
    return batch_size // world


def shard(n: int, rank: int, world: int) -> tuple[int, int]:
    """[lo, hi) of rank ``rank``'s contiguous share of ``n`` items (sizes differ by at most one)."""
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def barrier() -> None:
    if active():
        import torch.distributed as dist

        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (downloads, cache files); the others run it after it finished.

    If rank 0 fails inside the block it never reaches the barrier and torchrun stops the job.
    """
    if not active():
        yield
        return
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (pickled; tensors come back on the CPU)."""
    if not active():
        return obj
    import torch.distributed as dist

    box = [obj if info().rank == src else None]
    dist.broadcast_object_list(box, src=src, device=_comm_device())
    return box[0]


def all_reduce_sum(values: list[float] | tuple[float, ...]) -> list[float]:
    """Element-wise sum of ``values`` over ranks (float64)."""
    if not active():
        return list(values)
    import torch
    import torch.distributed as dist

    t = torch.tensor(list(values), dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return t.cpu().tolist()


def mean_over_ranks(t):
    """A detached copy of tensor ``t`` averaged over ranks (``t`` itself when not distributed)."""
    if not active():
        return t
    import torch.distributed as dist

    out = t.detach().clone()
    dist.all_reduce(out)
    return out / info().world_size


def sync_buffers(module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics, observer ranges) to every rank."""
    if not active():
        return
    import torch.distributed as dist

    for b in module.buffers():
        dist.broadcast(b.data, src=0)


def wrap(module):
    """``module`` in DistributedDataParallel (``module`` itself when not distributed)."""
    if not active():
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    dev = next(module.parameters()).device  # a GPU model (train) or a CPU one (QAT)
    return DDP(module, device_ids=[dev.index] if dev.type == "cuda" else None)


def _comm_device():
    import torch

    return torch.device("cpu")  # small host-side values go through gloo
