"""`edgecnn frontier --imagenet`: real artifacts at a deployment size, accuracy quoted with its source
(or measured with ImageNet-style data and checksummed weights), and `choose` saying which."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_remote import PY, sshd  # noqa: F401 - sshd (the real sshd on 127.0.0.1) is a fixture

from edgecnn.cli import cli
from edgecnn.errors import EdgecnnError
from edgecnn.frontier import FrontierPoint, choose, load_points
from edgecnn.imagenet_frontier import ImagenetOptions, run_imagenet_frontier
from edgecnn.models import PublishedWeights, create
from edgecnn.published import Int8Drop, published_accuracy

FIXTURE = "test fixture, not a real figure"


def _registry(url: str = "http://127.0.0.1:9/none.pth", sha256: str = "0" * 64) -> dict:
    """A labelled published entry for the tiny ResNet (none of the tiny variants has a real one)."""
    return {
        "test_resnet18": PublishedWeights(
            url=url,
            filename=url.rsplit("/", 1)[1],
            sha256=sha256,
            sha256_prefix=sha256[:8],
            num_classes=1000,
            top1=60.0,
            top5=80.0,
            source=FIXTURE,
        )
    }


FAST = {"calib_images": 4, "workers": 1, "bench_seconds": 0.1, "bench_runs": 3, "log": lambda s: None}
DROPS = {"test_resnet18": Int8Drop("test_resnet18", 61.0, 60.5, "test PTQ", FIXTURE)}


@pytest.fixture(scope="module")
def published_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("imagenet") / "f"
    _, res = run_imagenet_frontier(
        ["test_resnet18", "test_googlenet"],
        [("cpu", None)],
        ["int8", "fp32"],
        ImagenetOptions(
            out=out,
            **FAST,
            registry=_registry(),
            int8_drops=DROPS,
        ),
    )
    return out, res.to_json()


@pytest.mark.slow
def test_published_frontier_labels_every_point_with_its_source(published_run):
    out, _ = published_run
    on_disk = json.loads((out / "frontier.json").read_text())
    assert on_disk["accuracy_basis"] == "published" and on_disk["kind"] == "imagenet"
    assert on_disk["image_size"] == 224 and "synthetic" in on_disk["calibration"]["source"]
    pts = {(p["arch"], p["precision"]): p for p in on_disk["points"]}
    assert len(pts) == 4
    fp32, int8 = pts["test_resnet18", "fp32"], pts["test_resnet18", "int8"]
    assert fp32["accuracy_source"] == int8["accuracy_source"] == "published"
    assert fp32["top1"] == pytest.approx(0.60) and int8["top1"] == pytest.approx(
        0.595
    )  # 60.0 - (61.0 - 60.5)
    assert FIXTURE in fp32["accuracy_reference"] and "INT8 drop" in int8["accuracy_reference"]
    for arch_prec in (("test_googlenet", "fp32"), ("test_googlenet", "int8")):
        assert pts[arch_prec]["top1"] is None and pts[arch_prec]["accuracy_source"] == "not published"
        assert pts[arch_prec]["pareto"] is None  # no accuracy: on no frontier, yet listed with its latency
    for p in pts.values():
        assert p["latency_source"] == "measured" and p["p50_ms"] > 0 and p["size_mb"] > 0
        meta = json.loads((out.parent / p["artifact"] / "metadata.json").read_text())
        assert meta["num_classes"] == 1000 and meta["input"]["shape"][1:] == [3, 224, 224]
        assert meta["model_options"] == {"small_input": False}
    md = (out / "report.md").read_text()
    assert "accuracy: not published" in md and "NOT measured" in md and FIXTURE in md
    assert (out / "frontier.png").stat().st_size > 1000


@pytest.mark.slow
def test_same_command_again_reuses_the_artifacts(published_run, tmp_path):
    _, first = published_run
    _, again = run_imagenet_frontier(
        ["test_resnet18"],
        [("cpu", None)],
        ["int8"],
        ImagenetOptions(
            out=tmp_path / "f2",
            **FAST,
            registry=_registry(),
            int8_drops=DROPS,
        ),
    )
    p = again.points[0]
    assert p.reused == ("artifact",)
    assert p.artifact == next(q["artifact"] for q in first["points"] if q["id"] == p.id)


@pytest.mark.slow
def test_choose_says_its_answer_rests_on_published_figures(published_run):
    out, _ = published_run
    res = choose(load_points([out]), "cpu")
    assert res.ok and res.choice.arch == "test_resnet18"
    assert res.accuracy_basis == "published ImageNet top-1"
    assert "not measured" in res.paragraph and FIXTURE in res.paragraph
    assert all("accuracy not published" in why for pid, why in res.rejected.items() if "googlenet" in pid)


@pytest.mark.slow
def test_choose_refuses_to_compare_published_with_measured(published_run):
    out, res = published_run
    trained = replace(
        FrontierPoint.from_json(res["points"][0]),
        id="x-host-openvino-int8",
        accuracy_source="measured",
        dataset="fashion-mnist",
        top1=0.9,
        ci95_low=0.89,
        ci95_high=0.91,
    )
    with pytest.raises(EdgecnnError, match="2 kinds of accuracy"):
        choose(load_points([out]) + [trained], "cpu")


def test_published_figures_carry_sources_and_never_guess():
    assert published_accuracy("resnet18", "fp32").top1 == 69.758
    r18 = published_accuracy("resnet18", "int8")
    assert r18.top1 == 69.494 and "IMAGENET1K_FBGEMM_V1" in r18.source
    vgg = published_accuracy("vgg16", "int8")
    assert (
        vgg.top1 == pytest.approx(71.592 - 0.06)
        and "ONNX Model Zoo" in vgg.source
        and "not torchvision" in vgg.source
    )
    assert published_accuracy("googlenet", "int8").top1 == pytest.approx(69.826)
    assert published_accuracy("alexnet", "int8") is None  # no citable INT8 figure
    assert published_accuracy("resnet18", "fp16") is None
    assert published_accuracy("resnet18", "fp32", image_size=160) is None  # published at 224 px only


@pytest.mark.parametrize(
    "args, words",
    [
        (["--weights", "imagenet"], "needs --data"),
        (["--data", "DATA", "--weights", "imagenet"], "1000 ImageNet classes"),
        (["--data", "DATA"], "add --weights imagenet"),
        (["--qat"], "--qat"),
        (["--host", "pi@10.0.0.2"], "TARGET=[USER@]HOST"),
    ],
)
def test_bad_imagenet_options_are_one_line_errors(args, words, tmp_path):
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / "data" / c / f"{i}.png")
    flag = "--published" if "DATA" in args else "--imagenet"  # the alias is the same flag
    args = [str(tmp_path / "data") if a == "DATA" else a for a in args]
    r = CliRunner().invoke(
        cli, ["frontier", flag, "--archs", "test_resnet18", "--out", str(tmp_path / "o"), *args]
    )
    assert r.exit_code == 2 and r.output.startswith("error:") and words in r.output
    assert r.output.count("\n") == 1 and not (tmp_path / "o").exists()


def test_imagenet_only_options_need_imagenet(tmp_path):
    r = CliRunner().invoke(cli, ["frontier", "--image-size", "160", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and r.output.startswith("error: --image-size applies to --imagenet")


def _prototype_checkpoint(images: np.ndarray, image_size: int) -> bytes:
    """A 1000-class test_resnet18 whose head is a nearest-prototype classifier of ``images``: image
    i is predicted as class i when, and only when, the weights and the preprocessing are the ones used."""
    from edgecnn.imagenet_frontier import preprocess

    torch.manual_seed(1)
    model = create("test_resnet18").eval()
    feats = {}
    model.avgpool.register_forward_hook(lambda m, i, o: feats.setdefault("x", o.flatten(1)))
    with torch.no_grad():
        model(preprocess(image_size).apply_torch(images))
    f = feats["x"]
    model.fc.weight.data = f / f.norm(dim=1, keepdim=True)
    model.fc.bias.data.zero_()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


@pytest.mark.slow
def test_with_data_and_weights_accuracy_is_measured_in_each_runtime(http_server, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (1000, 16, 16, 3), dtype=np.uint8)
    root = tmp_path / "imagenet"
    for split, imgs in (("train", rng.integers(0, 256, (1000, 16, 16, 3), dtype=np.uint8)), ("val", images)):
        for c in range(1000):
            (root / split / f"n{c:08d}").mkdir(parents=True)
            Image.fromarray(imgs[c]).save(root / split / f"n{c:08d}" / "0.png")
    body = _prototype_checkpoint(images, 64)
    url = http_server.add("models/tiny-imagenet.pth", body)
    _, res = run_imagenet_frontier(
        ["test_resnet18"],
        [("cpu", None)],
        ["fp32", "int8"],
        ImagenetOptions(
            out=tmp_path / "f",
            image_size=64,
            data=str(root),
            weights="imagenet",
            **FAST,
            registry=_registry(url, hashlib.sha256(body).hexdigest()),
        ),
    )
    out = res.to_json()
    assert out["accuracy_basis"] == "measured" and http_server.requests == ["/models/tiny-imagenet.pth"]
    pts = {p["precision"]: p for p in out["points"]}
    fp32, int8 = pts["fp32"], pts["int8"]
    assert fp32["accuracy_source"] == int8["accuracy_source"] == "measured"
    assert fp32["accuracy_runtime"] == "openvino" and fp32["test_images"] == 1000
    assert fp32["top1"] >= 0.95  # the served weights, preprocessed as trained: random weights score ~0.001
    assert 0 <= int8["top1"] <= 1 and int8["drop_points"] == pytest.approx(
        100 * (fp32["top1"] - int8["top1"])
    )
    res2 = choose(res.points, "cpu")
    assert "measured in openvino on 1000" in res2.paragraph and res2.accuracy_basis.startswith("measured")


def test_host_measures_its_targets_artifacts_over_ssh(sshd, tmp_path):  # noqa: F811
    _, res = run_imagenet_frontier(
        ["test_resnet18"],
        [("rpi", None)],
        ["int8"],
        ImagenetOptions(
            out=tmp_path / "f",
            threads=1,
            **FAST,
            hosts={"rpi": ["dev1"]},
            remote_python=PY,
            ssh_config=str(sshd.config),
        ),
    )
    (p,) = res.points
    assert p.latency_source == "measured" and p.latency_where == "measured on dev1 over SSH"
    assert p.runtime == "tflite" and p.p50_ms > 0 and p.accuracy_source == "not published"
