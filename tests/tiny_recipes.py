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


def random_checkpoint(tmp: Path, recipe: Recipe) -> Path:
    """A float test_resnet18 checkpoint with random weights for Fashion-MNIST at the recipe's size:
    what export, evaluate and deploy start from when a test needs no trained model."""
    from edgecnn.checkpoint import save_checkpoint
    from edgecnn.data import Preprocess, load_dataset
    from edgecnn.models import create

    bundle = load_dataset(None)
    pre = Preprocess.for_dataset(bundle, recipe.data.image_size, recipe.data.channels)
    model = create(
        "test_resnet18",
        num_classes=len(bundle.classes),
        in_channels=recipe.data.channels,
        **recipe.model_options(),
    )
    return save_checkpoint(
        tmp / "random.pt",
        arch="test_resnet18",
        model_options=dict(model.arch_options),
        state_dict=model.state_dict(),
        preprocess=pre.to_dict(),
        classes=list(bundle.classes),
        metrics={},
        dataset=bundle.name,
        recipe=recipe.to_dict(),
    )


def fp32_command(command: str, recipe: Path, checkpoint: Path, *extra) -> list[str]:
    """``edgecnn export|deploy test_resnet18`` for cpu at fp32 from ``checkpoint``: seconds, no training."""
    more = {"export": ["--runtime", "onnxruntime"], "deploy": ["--threads", "1", "--min-seconds", "0.1"]}[
        command
    ]
    return [
        command,
        "test_resnet18",
        "--target",
        "cpu",
        "--precision",
        "fp32",
        "--recipe",
        str(recipe),
        "--checkpoint",
        str(checkpoint),
        *more,
        *map(str, extra),
    ]
