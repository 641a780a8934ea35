"""edgecnn.evaluate: statistics against known values, and evaluation of real artifacts."""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from edgecnn.artifact import write_metadata
from edgecnn.cli import cli
from edgecnn.data import Preprocess, load_dataset
from edgecnn.data import fashion_mnist as fm
from edgecnn.errors import EdgecnnError
from edgecnn.evaluate import (
    agreement,
    binomial_two_sided_p,
    bootstrap_ci,
    evaluate_artifact,
    json_report,
    mcnemar,
    plan_batch,
    topk_hits,
)
from edgecnn.runtimes import open_session

PREPROCESS = Preprocess(image_size=16, channels=1, mean=(0.4,), std=(0.3,))
CLASSES = ("ant", "bee", "cat", "dog", "eel", "fox")


# -- statistics ------------------------------------------------------------------------------


def brute_force_p(k: int, n: int) -> float:
    """Two-sided exact binomial p: the total probability of outcomes no likelier than k."""
    probs = [math.comb(n, i) / 2**n for i in range(n + 1)]
    return min(1.0, sum(p for p in probs if p <= probs[k] * (1 + 1e-12)))


def test_mcnemar_known_value():
    a = np.array([1] * 10 + [0] * 2 + [1] * 30 + [0] * 8, bool)  # a right, b wrong on 10; the reverse on 2
    b = np.array([0] * 10 + [1] * 2 + [1] * 30 + [0] * 8, bool)
    r = mcnemar(a, b)
    assert r["b01"] == 2 and r["b10"] == 10
    assert r["p_value"] == pytest.approx(0.0386, abs=5e-5)
    assert r["p_value"] == pytest.approx(brute_force_p(2, 12), rel=1e-12)
    assert mcnemar(b, a)["p_value"] == r["p_value"] and mcnemar(b, a)["b01"] == 10


@pytest.mark.parametrize("n", [0, 1, 2, 5, 12, 25, 60])
def test_binomial_p_matches_brute_force(n):
    for k in range(n + 1):
        assert binomial_two_sided_p(k, n) == pytest.approx(brute_force_p(k, n), rel=1e-9, abs=1e-15)


def test_mcnemar_edge_cases():
    same = np.array([1, 0, 1, 1], bool)
    assert mcnemar(same, same) == {"b01": 0, "b10": 0, "p_value": 1.0}
    assert binomial_two_sided_p(5000, 10000) == 1.0
    assert 0 < binomial_two_sided_p(4800, 10000) < 1e-4  # large n stays exact, no overflow
    with pytest.raises(ValueError):
        mcnemar([1, 0], [1])


def test_agreement():
    assert agreement([1, 2, 3, 4], np.array([1, 2, 0, 4])) == 0.75
    with pytest.raises(ValueError):
        agreement([1], [1, 2])


def test_bootstrap_ci_binary_matches_resampling():
    correct = np.r_[np.ones(850), np.zeros(150)].astype(bool)
    lo, hi = bootstrap_ci(correct)
    assert bootstrap_ci(correct) == (lo, hi)  # seeded
    assert lo < 0.85 < hi
    # The normal approximation: +-1.96 sd of the mean.
    half = 1.96 * math.sqrt(0.85 * 0.15 / 1000)
    assert hi - lo == pytest.approx(2 * half, rel=0.15)
    # Literal resampling of the images gives the same interval up to Monte Carlo noise.
    rng = np.random.default_rng(1)
    means = correct[rng.integers(0, 1000, size=(4000, 1000))].mean(axis=1)
    ref_lo, ref_hi = np.quantile(means, [0.025, 0.975])
    assert lo == pytest.approx(ref_lo, abs=0.006) and hi == pytest.approx(ref_hi, abs=0.006)
    # Non-binary scores take the literal resampling path.
    slo, shi = bootstrap_ci(correct * 0.5 + 0.25)
    assert slo == pytest.approx(0.25 + 0.5 * lo, abs=0.006) and shi == pytest.approx(
        0.25 + 0.5 * hi, abs=0.006
    )
    lo90, hi90 = bootstrap_ci(correct, level=0.9)
    assert lo <= lo90 < hi90 <= hi
    assert bootstrap_ci(np.ones(10)) == (1.0, 1.0)
    with pytest.raises(ValueError):
        bootstrap_ci([], n=10)


def test_topk_hits():
    logits = np.array([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3]], np.float32)
    pred, hit = topk_hits(logits, np.array([1, 2]), k=2)
    assert pred.tolist() == [1, 0] and hit.tolist() == [True, True]
    pred, hit = topk_hits(logits, np.array([0, 1]), k=1)
    assert hit.tolist() == [False, False]


# -- artifacts and data ----------------------------------------------------------------------


def tiny_net(num_classes: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, num_classes),
    ).eval()


def make_artifact(d, classes, *, runtime="onnxruntime", **extra):
    d.mkdir(parents=True)
    torch.onnx.export(
        tiny_net(len(classes)),
        (torch.zeros(2, 1, 16, 16),),
        str(d / "model.onnx"),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        dynamo=False,
    )
    write_metadata(
        d,
        {
            "arch": "tiny",
            "model_options": {},
            "num_classes": len(classes),
            "class_names": list(classes),
            "target": "cpu",
            "runtime": runtime,
            "precision": "fp32",
            "files": ["model.onnx"],
            "input": {
                "name": "input",
                "shape": [None, 1, 16, 16],
                "layout": "NCHW",
                "dtype": "float32",
                "scale": None,
                "zero_point": None,
            },
            "output": {
                "name": "logits",
                "shape": [None, len(classes)],
                "dtype": "float32",
                "scale": None,
                "zero_point": None,
            },
            "preprocess": PREPROCESS.to_dict(),
            "quantization": None,
            "float_layers": [],
            "source": {"checkpoint": None, "sha256": None},
            "tools": {},
            **extra,
        },
    )
    return d


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """An ImageFolder with train/ and test/: 6 classes, 12 px grey images (resized to 16)."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for part, per_class in (("train", 2), ("test", 9)):
        for c, name in enumerate(CLASSES):
            (root / part / name).mkdir(parents=True)
            for i in range(per_class):
                img = np.clip(rng.normal(40 * c, 60, (12, 12)), 0, 255).astype(np.uint8)
                Image.fromarray(img, "L").save(root / part / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return make_artifact(tmp_path_factory.mktemp("art") / "a", CLASSES)


def direct(artifact, data):
    """Predictions and top-1/top-5 computed here, straight from a session and numpy."""
    bundle = load_dataset(data)
    with open_session(artifact) as s:
        logits = s.run(PREPROCESS.apply_numpy(bundle.test.images))
    labels = bundle.test.labels
    top5 = np.argsort(-logits, axis=1)[:, :5]
    return logits.argmax(1), labels, (top5 == labels[:, None]).any(1).mean()


def test_evaluate_matches_direct_computation(artifact, folder):
    pred, labels, top5 = direct(artifact, folder)
    r = evaluate_artifact(artifact, data=folder, batch_size=7, threads=1)  # batches that do not divide 54
    assert r["num_images"] == len(labels) == 54
    np.testing.assert_array_equal(r["predictions"], pred)
    np.testing.assert_array_equal(r["correct"], pred == labels)
    assert r["top1"] == (pred == labels).mean() and r["top5"] == top5
    lo, hi = r["top1_ci"]
    assert lo <= r["top1"] <= hi and (lo, hi) == bootstrap_ci(pred == labels)
    assert r["runtime"] == "onnxruntime" and r["runtime_info"]["threads"] == 1
    assert r["agreement"] is None and r["mcnemar"] is None and r["reference_source"] is None
    json.dumps(json_report(r))  # the report is JSON; the arrays are left out
    assert "predictions" not in json_report(r)
    # Another runtime on the same file gives the same predictions.
    ov = evaluate_artifact(artifact, data=folder, runtime="openvino")
    assert ov["runtime"] == "openvino" and agreement(ov["predictions"], pred) == 1.0
    assert ov["threads"] == os.cpu_count()  # no threads given: every core (TFLite's own default is one)


def test_evaluate_with_reference_arrays(artifact, folder):
    pred, labels, _ = direct(artifact, folder)
    ref = pred.copy()
    ref[:5] = (ref[:5] + 1) % len(CLASSES)  # the fake-quant graph differs on 5 images
    fp32 = np.ones(len(labels), bool)
    r = evaluate_artifact(artifact, data=folder, reference_predictions=ref, fp32_correct=fp32)
    assert r["reference_source"] == "argument"
    assert r["agreement"] == pytest.approx(1 - 5 / 54)
    assert r["reference_top1"] == (ref == labels).mean()
    assert r["mcnemar"] == mcnemar(fp32, pred == labels)
    assert r["fp32_top1"] == 1.0 and r["delta_top1"] == pytest.approx(r["top1"] - 1.0)
    # limit: the first N images, full-length references cut to them.
    r10 = evaluate_artifact(artifact, data=folder, limit=10, reference_predictions=ref, fp32_correct=fp32)
    assert r10["num_images"] == 10 and r10["agreement"] == 0.5
    np.testing.assert_array_equal(r10["predictions"], pred[:10])
    with pytest.raises(EdgecnnError, match="reference predictions has 3 rows but the split has 54"):
        evaluate_artifact(artifact, data=folder, reference_predictions=ref[:3])


def test_evaluate_reads_references_from_metadata(artifact, folder, tmp_path):
    pred, labels, _ = direct(artifact, folder)
    art = shutil.copytree(artifact, tmp_path / "art")
    np.save(art / "reference_predictions.npy", pred.astype(np.int64))
    np.save(art / "fp32_correct.npy", pred == labels)
    ref = {"reference_predictions": "reference_predictions.npy", "fp32_correct": "fp32_correct.npy"}
    meta = json.loads((art / "metadata.json").read_text())
    meta["files"] = ["model.onnx", *ref.values()]  # listed, so their sha256 is checked too
    meta["reference"] = ref
    write_metadata(art, meta)
    r = evaluate_artifact(art, data=folder)
    assert r["reference_source"] == "metadata" and r["agreement"] == 1.0
    assert r["mcnemar"] == {"b01": 0, "b10": 0, "p_value": 1.0} and r["fp32_top1"] == r["top1"]

    # Recorded on other images: ignored, with a note.
    meta["reference"] = {**ref, "split_id": "0123456789abcdef"}
    write_metadata(art, meta)
    r = evaluate_artifact(art, data=folder)
    assert r["agreement"] is None and r["mcnemar"] is None and "other images" in r["notes"][0]
    # The right split id is used.
    meta["reference"] = {**ref, "split_id": r["split_id"]}
    write_metadata(art, meta)
    assert evaluate_artifact(art, data=folder)["agreement"] == 1.0


def test_evaluate_errors(artifact, folder, tmp_path):
    with pytest.raises(EdgecnnError, match=r"trained on classes a, b, c, d, ... \(6\) but .* has ant, bee"):
        evaluate_artifact(make_artifact(tmp_path / "other", ("a", "b", "c", "d", "e", "f")), data=folder)
    with pytest.raises(EdgecnnError, match="unknown split"):
        evaluate_artifact(artifact, data=folder, split="tset")
    with pytest.raises(EdgecnnError, match="limit must be"):
        evaluate_artifact(artifact, data=folder, limit=0)
    with pytest.raises(EdgecnnError, match="is a TFLite model|is an ONNX model: it runs in"):
        evaluate_artifact(artifact, data=folder, runtime="tflite")


@pytest.mark.skipif(
    not all((fm.SYSTEM_DIR / n).is_file() for n in fm.FILES), reason=f"Fashion-MNIST not in {fm.SYSTEM_DIR}"
)
def test_evaluate_fashion_mnist_test_split(tmp_path):
    """The default dataset is Fashion-MNIST's test set in stored order, as `edgecnn train` reports."""
    art = make_artifact(tmp_path / "fm", fm.CLASSES)
    r = evaluate_artifact(art, limit=300)
    bundle = load_dataset(None)
    with open_session(art) as s:
        logits = s.run(PREPROCESS.apply_numpy(bundle.test.images[:300]))
    assert r["dataset"] == "fashion-mnist" and r["split"] == "test" and r["num_images"] == 300
    np.testing.assert_array_equal(r["predictions"], logits.argmax(1))
    assert r["top1"] == (logits.argmax(1) == bundle.test.labels[:300]).mean()


# -- command line ----------------------------------------------------------------------------


def test_cli_evaluate(artifact, folder):
    pred, labels, _ = direct(artifact, folder)
    r = CliRunner().invoke(
        cli,
        ["evaluate", str(artifact), "--data", str(folder), "--json", "--threads", "1"],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["top1"] == (pred == labels).mean() and report["num_images"] == 54
    r = CliRunner().invoke(
        cli,
        ["evaluate", str(artifact / "model.onnx"), "--data", str(folder), "--runtime", "openvino"],
        catch_exceptions=False,
    )
    assert r.exit_code == 0 and "top-1" in r.output and "openvino" in r.output
    r = CliRunner().invoke(cli, ["evaluate", str(artifact), "--data", str(folder), "--runtime", "tflite"])
    assert r.exit_code == 2 and r.output.startswith("error: model.onnx is an ONNX model")
    assert r.output.count("\n") == 1
    r = CliRunner().invoke(cli, ["evaluate", "--help"])
    assert "Example:" in r.output and "edgecnn evaluate" in r.output


@pytest.mark.parametrize(
    ("input_shape", "asked", "planned"),
    [
        ((1, 3, 32, 32), None, 128),  # a batch-1 .tflite at 32 px: DEFAULT_BATCH images a call
        ((1, 3, 224, 224), None, 2),  # at 224 px: 1.5 MiB of float input a call
        ((1, 1, 2048, 2048), None, None),  # one image is already more than that: left at 1
        ((4, 3, 32, 32), 4, None),  # a batch size asked for is kept
        ((256, 3, 32, 32), None, None),  # a fixed batch larger than planned is kept
        ((None, 3, 32, 32), None, None),  # a dynamic batch needs no plan
    ],
)
def test_plan_batch_plans_a_small_fixed_batch(input_shape, asked, planned):
    calls = []

    class FixedBatch:
        batch = input_shape[0]

        def __init__(self):
            self.input_shape = input_shape

        def set_batch(self, n):
            calls.append(n)
            return True

    plan_batch(FixedBatch(), asked)
    assert calls == ([] if planned is None else [planned])
