"""Data-parallel training: rank shards of each batch, and torchrun runs of `edgecnn train` / `qat`."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from edgecnn import distributed
from edgecnn.data import Preprocess, iterate_batches
from edgecnn.errors import EdgecnnError

RECIPE = """
arch = "test_resnet18"
[quick.data]
image_size = 32
channels = 3
val = 500
calib = 200
train_subset = 768
augment = "none"
[quick.train]
epochs = 2
batch_size = 64
lr = 0.05
warmup_epochs = 0.5
amp = "off"
eval_batch_size = 1000
[quick.calibrate]
method = "minmax"
num_images = 64
batch_size = 32
[quick.qat]
epochs = 0.25
train_subset = 512
batch_size = 64
lr = 0.001
freeze_observers = 0.0
freeze_bn = 0.5
"""


@pytest.mark.parametrize("augment", [None, "flip", "flip+crop"])
@pytest.mark.parametrize("world", [2, 3])
def test_rank_shards_make_up_the_single_process_batches(augment, world):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(70, 16, 16, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=70)
    pre = Preprocess(image_size=16, channels=3, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    kw = {"shuffle": True, "seed": 7, "epoch": 3, "augment": augment, "drop_last": True, "start": 1}
    single = list(iterate_batches(images, labels, pre, 16, **kw))
    shards = [
        list(iterate_batches(images, labels, pre, 16, rank=r, world_size=world, **kw)) for r in range(world)
    ]
    assert all(len(s) == len(single) == 3 for s in shards)  # same steps per epoch on every rank
    for b, (x, y) in enumerate(single):
        torch.testing.assert_close(torch.cat([s[b][0] for s in shards]), x, rtol=0, atol=0)
        assert torch.equal(torch.cat([s[b][1] for s in shards]), y)
    assert [len(s[0][1]) for s in shards] == [16 // world + (r < 16 % world) for r in range(world)]


def test_shard_bounds_cover_everything_once():
    for n in (0, 1, 5, 64, 1001):
        for world in (1, 2, 3, 8):
            bounds = [distributed.shard(n, r, world) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))


def test_single_process_is_not_distributed(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    d = distributed.setup()
    assert (d.rank, d.world_size, d.enabled, d.is_main) == (0, 1, False, True)
    assert not distributed.active() and distributed.per_rank_batch(63) == 63
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert distributed.all_reduce_sum([1, 2]) == [1, 2]


def test_global_batch_must_divide_over_the_ranks(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setattr(distributed, "active", lambda: True)
    assert distributed.per_rank_batch(96) == 32
    with pytest.raises(EdgecnnError, match="train.batch_size 64 does not divide over 3 processes"):
        distributed.per_rank_batch(64)
    with pytest.raises(EdgecnnError, match="rank 3 is outside a world of 3"):
        next(
            iterate_batches(
                np.zeros((4, 8, 8, 1), np.uint8),
                np.zeros(4),
                Preprocess(8, 1, (0.5,), (0.5,)),
                2,
                shuffle=False,
                rank=3,
                world_size=3,
            )
        )


# -- torchrun ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """An empty EDGECNN_HOME and a tiny recipe shared by the torchrun tests (qat reuses the float run)."""
    tmp = tmp_path_factory.mktemp("ddp")
    recipe = tmp / "r.toml"
    recipe.write_text(RECIPE)
    return tmp / "home", recipe


def _torchrun(home: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "EDGECNN_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "edgecnn",
        *args,
        "--threads",
        "1",
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.distributed
@pytest.mark.slow
def test_torchrun_train_two_processes(job):
    home, recipe = job
    t0 = time.perf_counter()
    r = _torchrun(home, "train", "test_resnet18", "--recipe", str(recipe))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    runs = list((home / "runs" / "train").iterdir())
    assert len(runs) == 1 and len(list(home.rglob("model.pt"))) == 1
    assert not list(home.rglob("state.pt")) and not list(home.rglob("*.tmp"))
    report = json.loads((runs[0] / "train.json").read_text())
    assert report["world_size"] == 2 and report["threads"] == 1
    assert report["dataset"]["train_images"] == 768 and report["test"]["n"] == 10000
    assert len(report["history"]) == 2
    assert report["test"]["top1"] > 0.4  # chance is 0.1; a single process gets ~0.5 here
    assert r.stdout.count("test top-1") == 1  # rank 0 alone reports
    print(f"torchrun train: {time.perf_counter() - t0:.1f} s")


@pytest.mark.distributed
@pytest.mark.slow
def test_torchrun_qat_two_processes(job):
    home, recipe = job
    if not (home / "runs" / "train").is_dir():
        pytest.skip("needs the float run of test_torchrun_train_two_processes")
    r = _torchrun(home, "qat", "test_resnet18", "--recipe", str(recipe), "--json")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads(r.stdout)  # one JSON document: rank 1 prints nothing
    assert report["stage"] == "qat" and report["world_size"] == 2 and not report["cached"]
    assert report["qat"]["steps"] == 2  # 0.25 epoch of 512 images at a global batch of 64
    assert report["int8_fakequant"]["top1"] > 0.4
    assert len(list((home / "runs" / "qat").iterdir())) == 1
    assert len(list((home / "runs" / "calibrate").iterdir())) == 1
    assert len(list((home / "runs" / "train").iterdir())) == 1  # the float run was reused
