"""The four networks, their registry, weights loading, checkpoints and ``edgecnn models``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgecnn.checkpoint import FORMAT, is_edgecnn_checkpoint, load_checkpoint, save_checkpoint
from edgecnn.errors import EdgecnnError
from edgecnn.models import (
    arch_info,
    count_macs,
    count_params,
    create,
    from_checkpoint,
    list_archs,
    min_input_size,
    profile_layers,
    register_arch,
)

REAL = ["alexnet", "vgg16", "resnet18", "googlenet"]
TINY = ["test_" + n for n in REAL]
# torchvision 0.28: num_params and "_ops" (GMACs at 224).
PARAMS = {"alexnet": 61_100_840, "vgg16": 138_357_544, "resnet18": 11_689_512, "googlenet": 6_624_904}
GMACS = {"alexnet": 0.714, "vgg16": 15.47, "resnet18": 1.814, "googlenet": 1.498}
STEM = {"alexnet": "features.0", "vgg16": None, "resnet18": "conv1", "googlenet": "conv1.conv"}
HEAD = {"alexnet": "classifier.", "vgg16": "classifier.", "resnet18": None, "googlenet": None}


def meta(name: str, **options) -> nn.Module:
    """Build on the meta device: structure and shapes only, instant even for VGG16."""
    with torch.device("meta"):
        return create(name, **options)


@pytest.fixture
def tiny_ckpt(tmp_path):
    """A test_resnet18 (10 classes) state_dict file, as torchvision would publish it."""
    torch.manual_seed(0)
    model = create("test_resnet18", num_classes=10)
    path = tmp_path / "tiny.pth"
    torch.save(model.state_dict(), path)
    return path, model


# --- registry ---------------------------------------------------------------------------------------------


def test_listing():
    assert list_archs() == REAL
    assert list_archs(include_test=True) == [n for pair in zip(REAL, TINY, strict=True) for n in pair]
    assert list_archs("res*") == ["resnet18"]
    assert list_archs("*net*", include_test=True) == [
        "alexnet",
        "test_alexnet",
        "resnet18",
        "test_resnet18",
        "googlenet",
        "test_googlenet",
    ]
    for name in REAL:
        info = arch_info(name)
        assert info.published is not None and not info.test_variant and info.small_input_note
        assert "\n" not in info.small_input_note
    assert all(arch_info(n).test_variant and arch_info(n).published is None for n in TINY)


def test_unknown_arch_suggests():
    with pytest.raises(EdgecnnError, match=r"unknown architecture 'resnt18'\. Did you mean: resnet18\?"):
        create("resnt18")


def test_unknown_option_names_it_and_the_valid_ones():
    with pytest.raises(EdgecnnError) as e:
        create("test_resnet18", dropout=0.3)
    msg = str(e.value)
    assert "'dropout'" in msg
    assert all(o in msg for o in ("num_classes", "in_channels", "small_input", "zero_init_residual"))
    # None means "not set": pruned, never an error and never an override.
    assert create("test_resnet18", dropout=None, small_input=None).conv1.stride == (2, 2)


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_arch("resnet18", family="resnet", paper="-", small_input_note="-")(lambda *, n=1: None)


def test_arch_options_record_what_was_built():
    model = create("test_googlenet", num_classes=7, small_input=True)
    assert model.arch_name == "test_googlenet"
    assert model.arch_options == {
        "num_classes": 7,
        "in_channels": 3,
        "small_input": True,
        "dropout": 0.2,
        "aux_logits": False,
        "transform_input": False,
        "dropout_aux": 0.7,
        "init": "torchvision",
    }


# --- structure ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REAL)
def test_params_and_macs_match_torchvision(name):
    model = meta(name)
    assert count_params(model) == PARAMS[name]
    assert count_macs(model) / 1e9 == pytest.approx(GMACS[name], rel=0.01)


@pytest.mark.parametrize("name", REAL)
def test_small_input_changes_only_stem_and_head(name):
    full, small = meta(name).state_dict(), meta(name, small_input=True).state_dict()
    assert list(full) == list(small)  # same modules, same torchvision keys
    changed = {k for k in full if full[k].shape != small[k].shape}
    allowed = {
        k
        for k in full
        if (STEM[name] and k.startswith(STEM[name] + ".")) or (HEAD[name] and k.startswith(HEAD[name]))
    }
    assert changed and changed <= allowed


@pytest.mark.parametrize("name", REAL)
def test_tiny_variant_keeps_the_topology(name):
    def layout(model):
        return [
            (
                n,
                type(m).__name__,
                getattr(m, "kernel_size", None),
                getattr(m, "stride", None),
                getattr(m, "padding", None),
            )
            for n, m in model.named_modules()
        ]

    for small_input in (False, True):
        real, tiny = meta(name, small_input=small_input), meta("test_" + name, small_input=small_input)
        assert layout(real) == layout(tiny)


@pytest.mark.parametrize("name", REAL + TINY)
def test_full_size_forward_shape(name):
    x = torch.zeros(2, 3, 224, 224, device="meta")
    assert meta(name, num_classes=10).eval()(x).shape == (2, 10)


@pytest.mark.parametrize("name", REAL + TINY)
def test_small_input_forward_at_32(name):
    torch.manual_seed(0)
    model = create(name, num_classes=10, small_input=True)
    x = torch.randn(2, 3, 32, 32)
    y = model(x)
    assert y.shape == (2, 10)
    if name in TINY:  # forward + backward, as training does
        y.sum().backward()
        assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", TINY)
def test_tiny_full_variant_trains_at_64(name):
    model = create(name, num_classes=3)
    y = model(torch.randn(2, 3, 64, 64))
    assert y.shape == (2, 3)
    y.sum().backward()


def test_minimum_input_sizes():
    assert {n: min_input_size(meta(n)) for n in REAL} == {
        "alexnet": 63,
        "vgg16": 32,
        "resnet18": 1,
        "googlenet": 15,
    }
    assert min_input_size(meta("alexnet", small_input=True)) == 15
    with pytest.raises(RuntimeError, match="too small"):
        create("test_alexnet")(torch.zeros(1, 3, 32, 32))


def test_in_channels_1():
    model = create("test_googlenet", in_channels=1, num_classes=4, small_input=True).eval()
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 4)
    with pytest.raises(EdgecnnError, match="transform_input needs in_channels=3"):
        create("test_googlenet", in_channels=1, transform_input=True)


def test_in_channels_1_sums_rgb_filters(tiny_ckpt):
    path, src = tiny_ckpt
    grey = create("test_resnet18", num_classes=10, in_channels=1, weights=path)
    assert torch.allclose(grey.conv1.weight, src.conv1.weight.sum(dim=1, keepdim=True))
    assert torch.equal(grey.fc.weight, src.fc.weight)


def test_googlenet_aux_logits():
    model = create("test_googlenet", num_classes=5, aux_logits=True, small_input=True)
    out = model.train()(torch.randn(2, 3, 32, 32))
    assert out._fields == ("logits", "aux_logits2", "aux_logits1")
    assert [t.shape for t in out] == [(2, 5)] * 3
    assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    plain = create("test_googlenet", num_classes=5, small_input=True).train()
    assert isinstance(plain(torch.randn(2, 3, 32, 32)), torch.Tensor)


@pytest.mark.parametrize("name", ["test_googlenet", "test_vgg16", "test_alexnet"])
def test_kaiming_init_scales_each_layer_by_its_fan_in(name):
    torch.manual_seed(0)
    model = create(name, num_classes=10, small_input=True, init="kaiming")
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            fan_in = m.weight[0].numel()
            assert m.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.25), m
            assert m.bias is None or not m.bias.any()
    torch.manual_seed(0)
    default = create(name, num_classes=10, small_input=True)
    assert not torch.equal(
        default.state_dict()[next(iter(default.state_dict()))],
        model.state_dict()[next(iter(model.state_dict()))],
    )
    with pytest.raises(EdgecnnError, match="init must be 'torchvision' or 'kaiming', not 'he'"):
        create(name, num_classes=10, init="he")


def test_profile_layers():
    rows = profile_layers(meta("resnet18"))
    conv1 = rows[0]
    assert (conv1.name, conv1.kind, conv1.params, conv1.weight_bytes) == ("conv1", "conv", 9408, 9408 * 4)
    assert conv1.macs == 64 * 112 * 112 * 3 * 7 * 7
    assert (conv1.input_shape, conv1.output_shape) == ((1, 3, 224, 224), (1, 64, 112, 112))
    assert {r.kind for r in rows} >= {"conv", "linear", "pool", "norm", "activation"}
    assert sum(r.params for r in rows) == PARAMS["resnet18"]
    assert rows[-1].name == "fc" and rows[-1].macs == 512 * 1000


# --- weights -----------------------------------------------------------------------------------------------


def test_state_dict_file_loads_exactly(tiny_ckpt):
    path, src = tiny_ckpt
    model = create("test_resnet18", num_classes=10, weights=path)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model.eval()(x), src.eval()(x))


def test_other_num_classes_names_the_head_and_reset_head(tiny_ckpt):
    path, _ = tiny_ckpt
    with pytest.raises(EdgecnnError) as e:
        create("test_resnet18", num_classes=5, weights=path)
    msg = str(e.value)
    assert "\n" not in msg
    assert "2 shape mismatch(es)" in msg and "fc.weight: checkpoint [10, 64] vs model [5, 64]" in msg
    assert "fc.bias: checkpoint [10] vs model [5]" in msg
    assert "pass reset_head=True (CLI --reset-head) to fine-tune on a new label set" in msg


def test_reset_head_keeps_the_body_and_a_fresh_head(tiny_ckpt):
    path, src = tiny_ckpt
    model = create("test_resnet18", num_classes=5, weights=path, reset_head=True)
    assert model.fc.weight.shape == (5, 64)
    assert torch.equal(model.layer4[1].conv2.weight, src.layer4[1].conv2.weight)
    same = create("test_resnet18", num_classes=10, weights=path, reset_head=True)
    assert not torch.equal(same.fc.weight, src.fc.weight)


def test_other_architecture_names_keys_with_counts(tiny_ckpt):
    path, _ = tiny_ckpt
    with pytest.raises(EdgecnnError) as e:
        create("test_googlenet", num_classes=10, weights=path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"cannot load {path} into test_googlenet:")
    assert "missing key(s) (conv1.conv.weight, conv1.bn.weight, conv1.bn.bias, ...)" in msg
    assert "unexpected key(s) (conv1.weight, bn1.weight, bn1.bias, ...)" in msg
    n_missing = len(create("test_googlenet").state_dict()) - 2  # fc.weight and fc.bias exist in both
    assert f"{n_missing} missing key(s)" in msg and "fc.weight: checkpoint [10, 64] vs model [10, 128]" in msg


def test_small_input_with_full_size_weights_is_explained(tiny_ckpt):
    path, _ = tiny_ckpt
    with pytest.raises(
        EdgecnnError,
        match=r"conv1.weight: checkpoint \[8, 3, 7, 7\] vs model \[8, 3, 3, 3\]"
        r".*small_input=True changes the stem",
    ):
        create("test_resnet18", num_classes=10, small_input=True, weights=path)


def test_googlenet_imagenet_file_with_aux_heads(tmp_path, monkeypatch):
    """weights='imagenet': aux1/aux2 in the file are dropped, transform_input turns on unless given."""
    torch.manual_seed(0)
    src = create("googlenet", aux_logits=True)
    path = tmp_path / "googlenet-file.pth"
    torch.save(src.state_dict(), path)
    monkeypatch.setattr("edgecnn.models.fetch_published", lambda w: path)
    model = create("googlenet", weights="imagenet")
    assert model.transform_input and model.arch_options["transform_input"] is True
    assert model.aux1 is None and not any(k.startswith("aux") for k in model.state_dict())
    assert torch.equal(model.fc.weight, src.fc.weight)
    assert create("googlenet", weights="imagenet", transform_input=False).transform_input is False
    assert create("googlenet", weights="imagenet", in_channels=1).transform_input is False


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "not-a-checkpoint"])
def test_damaged_files_give_one_line_errors(tiny_ckpt, tmp_path, damage):
    path, _ = tiny_ckpt
    bad = tmp_path / "bad.pth"
    if damage == "garbage":
        bad.write_bytes(b"<html>404 not found</html>")
    elif damage == "truncated":
        bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "empty":
        bad.write_bytes(b"")
    else:
        torch.save([1, 2, 3], bad)
    for load in (lambda: create("test_resnet18", weights=bad), lambda: load_checkpoint(bad)):
        with pytest.raises(EdgecnnError) as e:
            load()
        msg = str(e.value)
        assert msg.startswith(f"cannot read checkpoint {bad}: ")
        assert msg.endswith("re-download or re-train it")
        assert "\n" not in msg


def test_missing_file(tmp_path):
    with pytest.raises(EdgecnnError, match="not found"):
        create("test_resnet18", weights=tmp_path / "nope.pth")
    with pytest.raises(EdgecnnError, match="not found"):
        from_checkpoint(tmp_path / "nope.pt")


# --- edgecnn checkpoints -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    options = {"num_classes": 10, "in_channels": 1, "small_input": True}
    model = create("test_googlenet", **options)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 1, 32, 32)).sum().backward()
    opt.step()
    extra = {
        "preprocess": {"mean": [0.5], "std": [0.25], "image_size": 32},
        "epoch": 3,
        "metrics": {"top1": 0.9},
        "classes": ["a", "b"],
        "optimizer": opt.state_dict(),
    }
    path = save_checkpoint(
        tmp_path / "run" / "model.pt",
        arch="test_googlenet",
        model_options=options,
        state_dict=model.state_dict(),
        **extra,
    )
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary left behind

    ckpt = load_checkpoint(path)
    assert is_edgecnn_checkpoint(ckpt) and ckpt["format"] == FORMAT == "edgecnn.checkpoint/1"
    assert ckpt["arch"] == "test_googlenet" and ckpt["model_options"] == options
    assert ckpt["preprocess"] == extra["preprocess"] and ckpt["epoch"] == 3 and ckpt["classes"] == ["a", "b"]
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == 0.1

    rebuilt, ckpt2 = from_checkpoint(path)
    assert rebuilt.arch_options["small_input"] and ckpt2["metrics"] == {"top1": 0.9}
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(rebuilt.eval()(x), model.eval()(x))
    assert torch.equal(create("test_googlenet", weights=path, **options).eval()(x), model(x))


def test_checkpoint_errors(tmp_path, tiny_ckpt):
    path, model = tiny_ckpt
    with pytest.raises(EdgecnnError, match="not an edgecnn checkpoint"):
        load_checkpoint(path)  # a bare state_dict
    with pytest.raises(TypeError, match="reserved"):
        save_checkpoint(tmp_path / "x.pt", arch="a", model_options={}, state_dict={}, format="mine")
    ck = save_checkpoint(
        tmp_path / "r.pt",
        arch="test_resnet18",
        model_options={"num_classes": 10},
        state_dict=model.state_dict(),
    )
    with pytest.raises(EdgecnnError, match=r"It is a test_resnet18 checkpoint: load it with from_checkpoint"):
        create("test_googlenet", num_classes=10, weights=ck)
    with pytest.raises(EdgecnnError, match=r"checkpoint's head has 10 classes"):
        create("test_resnet18", weights=ck)
    with pytest.raises(EdgecnnError, match=r"saved with small_input=False"):
        create(
            "test_resnet18",
            num_classes=10,
            small_input=True,
            weights=save_checkpoint(
                tmp_path / "s.pt",
                arch="test_resnet18",
                model_options={"num_classes": 10, "small_input": False},
                state_dict=model.state_dict(),
            ),
        )


def test_atomic_save_keeps_the_old_file(tmp_path, tiny_ckpt, monkeypatch):
    _, model = tiny_ckpt
    path = save_checkpoint(
        tmp_path / "run" / "m.pt", arch="test_resnet18", model_options={}, state_dict=model.state_dict()
    )
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, arch="test_resnet18", model_options={}, state_dict={})
    assert path.read_bytes() == before and [p.name for p in path.parent.iterdir()] == ["m.pt"]


# --- CLI and import cost -----------------------------------------------------------------------------------


def _cli(*args: str):
    from edgecnn.cli import cli

    return CliRunner().invoke(cli, ["models", *args], catch_exceptions=False)


def test_cli_models_json():
    result = _cli("--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == REAL
    assert {r["name"]: r["params"] for r in rows} == PARAMS
    for r in rows:
        assert r["image_size"] == 224 and r["macs"] / 1e9 == pytest.approx(GMACS[r["name"]], rel=0.01)
        assert r["published_top1"] == arch_info(r["name"]).published.top1
        assert r["published_source"].startswith("torchvision ") and r["small_input_note"]
    assert {r["name"]: r["published_top1"] for r in rows} == {
        "alexnet": 56.522,
        "vgg16": 71.592,
        "resnet18": 69.758,
        "googlenet": 69.778,
    }


def test_cli_models_small_input_all():
    rows = json.loads(_cli("--json", "--all", "--small-input", "--image-size", "32").output)
    assert [r["name"] for r in rows] == list_archs(include_test=True)
    assert all(r["published_top1"] is None and r["image_size"] == 32 for r in rows)
    assert {r["name"]: r["params"] for r in rows}["resnet18"] == PARAMS["resnet18"] - 64 * 3 * (49 - 9)


def test_cli_models_table():
    result = _cli("res*")
    assert result.exit_code == 0
    assert "ImageNet top-1 (published)" in result.output and "resnet18" in result.output
    assert "11,689,512" in result.output and "alexnet" not in result.output


def test_cli_models_too_small():
    result = _cli("--image-size", "32")
    assert result.exit_code == 2
    assert "alexnet needs images of at least 63 px" in result.output and "--small-input" in result.output


def test_import_edgecnn_and_cli_stay_torch_free():
    code = "import sys, edgecnn, edgecnn.cli, edgecnn.cli.models_cmd; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
