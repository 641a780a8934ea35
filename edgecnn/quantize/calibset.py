"""Calibration-set manifests (``calibration/<name>.toml``) and the calibration method names.

A manifest says which images calibrate a dataset's activation ranges and how each
method is set up; ``calibration/README.md`` describes the format. It is loaded into a
frozen dataclass; an unknown key is an error naming the key and the file. The images
always come from the ``calib`` split that :func:`edgecnn.data.make_splits` carves from the
training pool with the recipe's ``data`` section (``val``, ``calib``, ``seed``), so they
are disjoint from train, val and test whatever the manifest says.

This module imports neither torch nor torchao (the CLI lists methods and validates
manifests without them); the observers are in :mod:`edgecnn.quantize.observers`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from edgecnn.config import from_mapping, read_toml, to_dict
from edgecnn.errors import EdgecnnError, suggest
from edgecnn.vocab import Method

if TYPE_CHECKING:
    from edgecnn.data.splits import Split

CALIBRATION_DIR = Path(__file__).resolve().parent.parent / "_resources" / "calibration"

METHODS = Method.values()
# Histogram methods estimate the tails of each activation's distribution: from a handful
# of images one batch's outliers would be the tail.
_MIN_IMAGES = {"minmax": 1, "percentile": 32, "entropy": 32, "mse": 32}


def check_method(method: str) -> str:
    if method not in METHODS:
        raise EdgecnnError(
            f"unknown calibration method '{method}'.{suggest(str(method), METHODS)} "
            f"Choose one of: {', '.join(METHODS)}"
        )
    return method


def min_calibration_images(method: str) -> int:
    """The fewest calibration images ``method`` gives sensible ranges from."""
    return _MIN_IMAGES[check_method(method)]


def check_calibration_size(method: str, n: int) -> None:
    """Raise :class:`EdgecnnError` when ``n`` calibration images are too few for ``method``."""
    need = min_calibration_images(method)
    if n < need:
        raise EdgecnnError(
            f"calibration method '{method}' needs at least {need} images (it estimates the tails of "
            f"each activation's histogram), got {n}; use more calibration images or method 'minmax'"
        )


def _check_bins(bins: int) -> None:
    if not 256 <= bins <= 65536:
        raise ValueError(f"bins must be in [256, 65536], got {bins}")


@dataclass(frozen=True)
class PercentileSettings:
    percentile: float = 99.99  # clip at this percentile of |x| (symmetric) or [100-p, p] of x (affine)
    bins: int = 2048

    def __post_init__(self):
        if not 50 < self.percentile <= 100:
            raise ValueError(f"percentile must be in (50, 100], got {self.percentile}")
        _check_bins(self.bins)


@dataclass(frozen=True)
class EntropySettings:
    bins: int = 2048
    start_bin: int = 128  # smallest threshold tried, in bins
    stride: int = 1  # try every stride-th threshold
    max_clip: float = 0.01  # thresholds clipping more than this fraction of values are not tried

    def __post_init__(self):
        _check_bins(self.bins)
        if not 1 <= self.start_bin <= self.bins or self.stride < 1:
            raise ValueError("need 1 <= start_bin <= bins and stride >= 1")
        if not 0 <= self.max_clip <= 1:
            raise ValueError(f"max_clip must be a fraction in [0, 1], got {self.max_clip}")


@dataclass(frozen=True)
class MseSettings:
    bins: int = 2048

    def __post_init__(self):
        _check_bins(self.bins)


@dataclass(frozen=True)
class CalibrationManifest:
    """Which calibration images (``images`` of the ``calib`` split) and each method's settings."""

    dataset: str
    description: str = ""
    split: Literal["calib"] = "calib"
    images: int = 512
    seed: int | None = None  # None: the first `images` of the split (nested); else a seeded sample
    percentile: PercentileSettings = field(default_factory=PercentileSettings)
    entropy: EntropySettings = field(default_factory=EntropySettings)
    mse: MseSettings = field(default_factory=MseSettings)
    source: str = ""  # the file it was read from (not a key of the file)

    def __post_init__(self):
        if self.images < 1:
            raise ValueError("images must be at least 1")
        if self.seed is not None and self.seed < 0:
            raise ValueError("seed must be non-negative")

    def observer_kwargs(self, method: str) -> dict[str, Any]:
        """Keyword arguments for :func:`edgecnn.quantize.observers.activation_observer`."""
        check_method(method)
        return {} if method == "minmax" else dataclasses.asdict(getattr(self, method))

    def check_dataset(self, name: str) -> None:
        if name != self.dataset:
            raise EdgecnnError(
                f"calibration manifest {self.source or '?'} is for dataset '{self.dataset}', "
                f"not '{name}'; pass the manifest of {name}"
            )

    def select(self, calib: Split, images: int | None = None) -> Split:
        """This manifest's calibration images out of the ``calib`` split (``images`` overrides the count)."""
        from edgecnn.data.splits import calibration_set, subset

        if calib.name != "calib":
            raise EdgecnnError(f"calibration images come from the calib split, not '{calib.name}'")
        n = self.images if images is None else images
        return calibration_set(calib, n) if self.seed is None else subset(calib, n, self.seed)

    def to_dict(self) -> dict:
        return to_dict(self)


def available() -> list[str]:
    return sorted(p.stem for p in CALIBRATION_DIR.glob("*.toml"))


def load_calibration(name_or_path: str | Path) -> CalibrationManifest:
    """Load a manifest by name (``fashion-mnist``: ``calibration/fashion-mnist.toml``) or TOML path."""
    spec = str(name_or_path)
    if spec.endswith(".toml") or "/" in spec or isinstance(name_or_path, Path):
        path = Path(spec)
    else:
        path = CALIBRATION_DIR / f"{spec}.toml"
        if not path.exists():
            have = available()
            raise EdgecnnError(
                f"no calibration manifest named '{spec}'.{suggest(spec, have)} "
                f"Available: {', '.join(have) or 'none'}; or pass a .toml path"
            )
    return parse_calibration(read_toml(path), str(path))


def parse_calibration(data: dict, source: str) -> CalibrationManifest:
    if "source" in data:
        raise EdgecnnError(f"unknown key 'source' in {source}")
    manifest = from_mapping(CalibrationManifest, data, source)
    return dataclasses.replace(manifest, source=source)
