"""Tiny recipes shared by the tests that run the INT8 pipeline end to end."""

from __future__ import annotations

from pathlib import Path

from edgecnn.recipes import Recipe, load_recipe

INT8_RECIPE = """
arch = "test_resnet18"
[quick.data]
image_size = 32
channels = 3
val = 500
calib = 200
train_subset = 1024
augment = "none"
[quick.train]
epochs = 2
batch_size = 64
lr = 0.05
amp = "off"
[quick.calibrate]
method = "minmax"
num_images = 64
batch_size = 32
[quick.qat]
epochs = 0.25
train_subset = 512
batch_size = 64
lr = {qat_lr}
freeze_observers = 0.0
freeze_bn = 0.5
"""


def int8_recipe(tmp: Path, qat_lr: float | str = 0.001, name: str = "r.toml") -> tuple[Path, Recipe]:
    """Write the tiny test_resnet18 recipe (1024 train images, 2 epochs, 64 calibration images,
    a 2-step QAT) into ``tmp``; return its path and the loaded recipe."""
    p = tmp / name
    p.write_text(INT8_RECIPE.format(qat_lr=qat_lr))
    return p, load_recipe("test_resnet18", str(p))
