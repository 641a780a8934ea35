"""Per-architecture recipes: ``recipes/<arch>.toml``, one table per profile.

A recipe file holds ``arch`` and one table per profile (``quick`` for a 2-core CPU,
``full`` for a GPU), each with ``model``, ``data`` and ``train`` sections and optional ``calibrate`` and
``qat`` sections. It is loaded
into frozen dataclasses; an unknown key is an error naming the key and the file.

``--recipe`` accepts a profile name (``quick``), a TOML path (its ``quick`` profile), or
``PATH:PROFILE``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from edgecnn.config import from_mapping, read_toml, to_dict
from edgecnn.errors import EdgecnnError, suggest

RECIPES_DIR = Path(__file__).resolve().parent / "_resources" / "recipes"
PROFILES = ("quick", "full")


@dataclass(frozen=True)
class ModelSection:
    """Options passed to :func:`edgecnn.models.create` (unset ones keep the builder's default)."""

    small_input: bool = False
    dropout: float | None = None
    init: str | None = None  # "torchvision" (default) or "kaiming" (alexnet, vgg16, googlenet: from scratch)


@dataclass(frozen=True)
class DataSection:
    image_size: int = 224
    channels: int = 3
    val: int = 5000  # validation images held out of the training pool
    calib: int = 1000  # calibration pool held out of the training pool
    seed: int = 0  # split seed
    train_subset: int = 0  # train on this many images of the train split (0 = all)
    augment: Literal["none", "flip", "flip+crop"] = "flip"

    def __post_init__(self):
        if self.image_size < 8:
            raise ValueError("image_size must be at least 8")
        if self.channels not in (1, 3):
            raise ValueError("channels must be 1 or 3")


@dataclass(frozen=True)
class TrainSection:
    epochs: int = 1
    batch_size: int = 128
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    grad_clip: float = 0.0  # max gradient norm (0 = off)
    eval_batch_size: int = 500
    checkpoint_seconds: float = 60.0  # also checkpoint mid-epoch this often
    # Mixed precision for the forward pass: "auto" uses bf16 autocast where the CPU has
    # native bf16 (AMX / AVX512-BF16), fp32 elsewhere. Weights stay fp32. Measured speed-up of
    # the step (docs/BENCHMARKS.md): 2-4x on a Xeon with AMX; on Zen 5 (AVX512-BF16, no AMX)
    # 1.9-2.25x for AlexNet/VGG16, 1.26x ResNet18, none for GoogLeNet. It cost ResNet18 2-4 points
    # at weight decay 5e-4, none at 1e-3 (its quick recipe's; on a Xeon with AMX).
    amp: Literal["auto", "bf16", "off"] = "auto"
    channels_last: bool = True
    # Convolutions whose output map has at most this many pixels run as one GEMM each in a bf16
    # training step on a CPU with AMX (edgecnn.gemmconv; the one kind of step where it was measured
    # to pay: 1.4-1.65x per VGG16/GoogLeNet step at 32 px, docs/BENCHMARKS.md); 0 = never. The network
    # and its weights' layout are unchanged: only the kernel, and so the rounding, differ.
    gemm_conv_pixels: int = 0
    seed: int = 0

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be positive")
        if self.lr <= 0:
            raise ValueError("lr must be positive")
        if self.gemm_conv_pixels < 0:
            raise ValueError("gemm_conv_pixels must be 0 (off) or a positive number of pixels")


@dataclass(frozen=True)
class CalibrateSection:
    """Post-training calibration: which observer sets the activation ranges, on how many images."""

    method: Literal["minmax", "percentile", "entropy", "mse"] = "minmax"
    num_images: int = 512  # from the calibration split (disjoint from test)
    batch_size: int = 64

    def __post_init__(self):
        if self.num_images < 1 or self.batch_size < 1:
            raise ValueError("num_images and batch_size must be positive")


@dataclass(frozen=True)
class QatSection:
    """Quantization-aware fine-tuning of the fake-quant graph, starting from calibrated scales."""

    epochs: float = 1.0  # passes over the (subset of the) train split; fractions allowed
    train_subset: int = 0  # fine-tune on this many train images (0 = all)
    batch_size: int = 128
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 1e-4
    # Fractions of the QAT steps after which the activation observers stop moving the
    # scales and BatchNorm switches to its running statistics. 0: the calibrated activation
    # scales stay fixed (histogram observers also cost 15-70 ms per layer per step while on).
    freeze_observers: float = 0.0
    freeze_bn: float = 0.6

    def __post_init__(self):
        if self.epochs <= 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs, batch_size and lr must be positive")
        if not (0 <= self.freeze_observers <= 1 and 0 <= self.freeze_bn <= 1):
            raise ValueError("freeze_observers and freeze_bn are fractions between 0 and 1")


@dataclass(frozen=True)
class Recipe:
    arch: str
    profile: str
    source: str
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    calibrate: CalibrateSection = field(default_factory=CalibrateSection)
    qat: QatSection = field(default_factory=QatSection)

    def to_dict(self) -> dict:
        return to_dict(self)

    def model_options(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self.model).items() if v is not None}


@dataclass(frozen=True)
class _ProfileTable:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    calibrate: CalibrateSection = field(default_factory=CalibrateSection)
    qat: QatSection = field(default_factory=QatSection)


def recipe_path(arch: str) -> Path:
    return RECIPES_DIR / f"{arch}.toml"


def load_recipe(arch: str, recipe: str | None = None) -> Recipe:
    """Load the recipe for ``arch``: ``recipe`` is a profile name, a TOML path or ``PATH:PROFILE``."""
    spec = recipe or "quick"
    if spec in PROFILES:
        path, profile = recipe_path(arch), spec
        if not path.exists():
            raise EdgecnnError(f"no recipe for '{arch}' ({path} is missing); pass --recipe PATH.toml")
    else:
        head, sep, tail = spec.rpartition(":")
        path, profile = (Path(head), tail) if sep and tail in PROFILES else (Path(spec), "quick")
        if path.suffix != ".toml":
            raise EdgecnnError(
                f"unknown recipe '{spec}': pass a profile ({', '.join(PROFILES)}), a .toml path, or "
                "PATH.toml:PROFILE"
            )
    data = read_toml(path)
    return parse_recipe(data, profile, str(path), arch)


def parse_recipe(data: dict, profile: str, source: str, arch: str | None = None) -> Recipe:
    allowed = ("arch", "description", *PROFILES)
    for k in data:
        if k not in allowed:
            raise EdgecnnError(
                f"unknown key '{k}' in {source}.{suggest(k, allowed)} Valid keys: {', '.join(allowed)}"
            )
    file_arch = data.get("arch")
    if arch is not None and file_arch is not None and file_arch != arch:
        raise EdgecnnError(f"{source} is a recipe for '{file_arch}', not '{arch}'; pass the {arch} recipe")
    if profile not in data:
        have = [p for p in PROFILES if p in data]
        raise EdgecnnError(f"{source} has no [{profile}] profile; it has: {', '.join(have) or 'none'}")
    table = from_mapping(_ProfileTable, data[profile], f"{source} [{profile}]")
    return Recipe(
        arch=file_arch or arch or "",
        profile=profile,
        source=source,
        model=table.model,
        data=table.data,
        train=table.train,
        calibrate=table.calibrate,
        qat=table.qat,
    )
