"""``edgecnn sensitivity`` and the quantizer's per-layer decision on the tiny ResNet18."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from tiny_recipes import int8_recipe

from edgecnn.cli import cli
from edgecnn.errors import EdgecnnError
from edgecnn.numerics.sensitivity import quantizable_layers, sensitivity
from edgecnn.quantize import stages
from edgecnn.quantize.pt2e import float_ops, ptq
from edgecnn.train import train

quiet = {"log": lambda s: None, "progress": False}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sensitivity")
    path, recipe = int8_recipe(tmp)
    ckpt = str(train("test_resnet18", recipe, threads=1, **quiet).checkpoint)
    return path, recipe, ckpt


def test_the_quantizer_leaves_the_named_layers_float(tiny):
    _, recipe, ckpt = tiny
    src = stages.float_source("test_resnet18", recipe, checkpoint=ckpt, **quiet)
    x = src.preprocess.apply_torch(src.bundle.test.images[:32])
    layers = quantizable_layers(src.model, x[:2])
    assert (
        layers[0] == "conv1"
        and layers[-1] == "fc"
        and "layer2.0.downsample.0" in layers
        and len(layers) == 21
    )
    mixed = ptq(src.model, x, float_layers=["layer2.0.conv2", "fc"])
    assert sorted(f.split()[0] for f in float_ops(mixed)) == ["conv", "linear"]
    only = ptq(src.model, x, only_layers=["conv1"])
    weights = [n for n in only.graph.nodes if "quantize_per_channel" in str(n.target)]
    assert len(weights) == 2  # conv1's weight: one quantize and one dequantize op, no other layer's
    with torch.no_grad():
        assert torch.isfinite(mixed(x)).all()


def test_sensitivity_ranks_layers(tiny):
    _, recipe, ckpt = tiny
    r = sensitivity(
        "test_resnet18", recipe, checkpoint=ckpt, layers=["conv1", "layer3.0.conv2", "fc"], images=200
    )
    assert r.val_images == 200 and [x.index for x in sorted(r.layers, key=lambda x: x.index)] == [0, 11, 20]
    recovered = [x.recovered_points for x in r.layers]
    assert recovered == sorted(recovered, reverse=True)
    for x in r.layers:
        # one quantized layer adds less noise than all of them
        assert x.only_sqnr_db is None or x.only_sqnr_db > r.int8_sqnr_db
        assert abs(x.cost_points - 100 * (r.fp32_top1 - x.only_top1)) < 1e-6
    with pytest.raises(EdgecnnError, match="no quantizable layer layer9"):
        sensitivity("test_resnet18", recipe, checkpoint=ckpt, layers=["layer9"], images=10)


def test_cli_json_and_plot(tiny, tmp_path):
    path, _, ckpt = tiny
    png = tmp_path / "s.png"
    r = CliRunner().invoke(
        cli,
        [
            "sensitivity",
            "test_resnet18",
            "--recipe",
            f"{path}:quick",
            "--checkpoint",
            ckpt,
            "--layers",
            "fc",
            "--images",
            "50",
            "--json",
            "--plot",
            str(png),
        ],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["format"] == "edgecnn.sensitivity/1" and [x["layer"] for x in doc["layers"]] == ["fc"]
    assert png.read_bytes()[:4] == b"\x89PNG"
