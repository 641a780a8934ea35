"""Every recipe file loads; a typo in a recipe is an error naming the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecnn.errors import EdgecnnError
from edgecnn.recipes import PROFILES, RECIPES_DIR, load_recipe

RECIPE_FILES = sorted(RECIPES_DIR.glob("*.toml"))


def test_every_real_arch_has_a_recipe():
    assert {p.stem for p in RECIPE_FILES} >= {"alexnet", "vgg16", "resnet18", "googlenet"}


@pytest.mark.parametrize("path", RECIPE_FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("profile", PROFILES)
def test_recipe_loads(path: Path, profile: str):
    r = load_recipe(path.stem, profile)
    assert r.arch == path.stem and r.profile == profile
    assert r.train.epochs >= 1 and r.data.image_size >= 32


def test_quick_profile_is_sized_for_a_small_cpu():
    for path in RECIPE_FILES:
        r = load_recipe(path.stem, "quick")
        assert r.data.image_size <= 64, path


def _write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "r.toml"
    p.write_text(body)
    return p


def test_unknown_key_names_key_and_file(tmp_path):
    p = _write(tmp_path, 'arch = "resnet18"\n[quick.train]\nepochs = 1\nlearning_rate = 0.1\n')
    with pytest.raises(EdgecnnError) as e:
        load_recipe("resnet18", str(p))
    msg = str(e.value)
    assert "learning_rate" in msg and str(p) in msg and "quick" in msg and "\n" not in msg


def test_unknown_section(tmp_path):
    p = _write(tmp_path, 'arch = "resnet18"\n[quick.trian]\nepochs = 1\n')
    with pytest.raises(EdgecnnError, match="unknown key 'trian'.*Did you mean: train"):
        load_recipe("resnet18", str(p))


def test_wrong_type(tmp_path):
    p = _write(tmp_path, 'arch = "resnet18"\n[quick.train]\nepochs = "three"\n')
    with pytest.raises(EdgecnnError, match="epochs must be an integer"):
        load_recipe("resnet18", str(p))


def test_bad_value_and_literal(tmp_path):
    with pytest.raises(EdgecnnError, match="lr must be positive"):
        load_recipe("resnet18", str(_write(tmp_path, "[quick.train]\nlr = 0.0\n")))
    with pytest.raises(EdgecnnError, match="augment = 'rotate' is not one of"):
        load_recipe("resnet18", str(_write(tmp_path, '[quick.data]\naugment = "rotate"\n')))


def test_profile_selection_and_wrong_arch(tmp_path):
    p = _write(tmp_path, 'arch = "vgg16"\n[full.train]\nepochs = 7\n')
    assert load_recipe("vgg16", f"{p}:full").train.epochs == 7
    with pytest.raises(EdgecnnError, match=r"has no \[quick\] profile; it has: full"):
        load_recipe("vgg16", str(p))
    with pytest.raises(EdgecnnError, match="is a recipe for 'vgg16', not 'resnet18'"):
        load_recipe("resnet18", f"{p}:full")


def test_bad_recipe_spec_and_missing_file(tmp_path):
    with pytest.raises(EdgecnnError, match="unknown recipe 'fast'"):
        load_recipe("resnet18", "fast")
    with pytest.raises(EdgecnnError, match="file not found"):
        load_recipe("resnet18", str(tmp_path / "nope.toml"))
    bad = _write(tmp_path, "[quick.train\n")
    with pytest.raises(EdgecnnError, match="not valid TOML"):
        load_recipe("resnet18", str(bad))
