"""edgecnn.runtimes: every runtime runs small real artifacts and matches PyTorch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgecnn.artifact import Artifact, load_artifact, write_metadata
from edgecnn.data import Preprocess
from edgecnn.errors import EdgecnnError
from edgecnn.runtimes import Session, TorchSession, open_session, session_class
from edgecnn.runtimes.base import TENSORRT_MISSING

PREPROCESS = Preprocess(image_size=16, channels=1, mean=(0.5,), std=(0.25,))
TFLITE_BATCH = 4


def tiny_net(num_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    )
    with torch.no_grad():  # non-trivial BatchNorm statistics
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


def metadata(
    files,
    *,
    runtime,
    shape,
    target="cpu",
    precision="fp32",
    num_classes=10,
    class_names=None,
    preprocess=PREPROCESS,
    **extra,
) -> dict:
    return {
        "arch": "tiny",
        "model_options": {},
        "num_classes": num_classes,
        "class_names": list(class_names or [f"c{i}" for i in range(num_classes)]),
        "target": target,
        "runtime": runtime,
        "precision": precision,
        "files": list(files),
        "input": {
            "name": "input",
            "shape": list(shape),
            "layout": preprocess.layout,
            "dtype": "float32",
            "scale": None,
            "zero_point": None,
        },
        "output": {
            "name": "logits",
            "shape": [shape[0], num_classes],
            "dtype": "float32",
            "scale": None,
            "zero_point": None,
        },
        "preprocess": preprocess.to_dict(),
        "quantization": None,
        "float_layers": [],
        "source": {"checkpoint": None, "sha256": None},
        "tools": {"torch": torch.__version__},
        **extra,
    }


def export_onnx(model: nn.Module, path: Path, shape) -> None:
    """A dynamic-batch float ONNX file (the legacy exporter: fast, and enough here)."""
    torch.onnx.export(
        model,
        (torch.zeros(2, *shape[1:]),),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        dynamo=False,
    )


def make_onnx_artifact(
    d: Path, model: nn.Module, shape=(None, 1, 16, 16), *, runtime="onnxruntime", target="cpu", **meta
) -> Path:
    d.mkdir(parents=True)
    export_onnx(model, d / "model.onnx", shape)
    write_metadata(d, metadata(["model.onnx"], runtime=runtime, target=target, shape=shape, **meta))
    return d


def torch_logits(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def tiny():
    return tiny_net()


@pytest.fixture(scope="module")
def cpu_artifacts(tiny, tmp_path_factory) -> dict[str, Path]:
    """ONNX (CPU and Jetson), OpenVINO IR, a TensorRT engine stand-in, and a test_resnet18 pair."""
    import openvino as ov

    root = tmp_path_factory.mktemp("artifacts")
    arts = {
        "onnx": make_onnx_artifact(root / "onnx", tiny),
        "jetson": make_onnx_artifact(
            root / "jetson", tiny, runtime="tensorrt", target="jetson", precision="int8"
        ),
    }
    d = root / "ir"
    d.mkdir()
    # fp32 IR: save_model compresses weights to fp16 unless told not to.
    ov.save_model(
        ov.convert_model(str(arts["onnx"] / "model.onnx")), str(d / "model.xml"), compress_to_fp16=False
    )
    write_metadata(d, metadata(["model.xml", "model.bin"], runtime="openvino", shape=[None, 1, 16, 16]))
    arts["ir"] = d
    d = root / "engine"
    d.mkdir()
    (d / "model.engine").write_bytes(b"not really an engine")
    write_metadata(d, metadata(["model.engine"], runtime="tensorrt", target="jetson", shape=[1, 1, 16, 16]))
    arts["engine"] = d

    from edgecnn.models import create

    torch.manual_seed(0)
    resnet = create("test_resnet18", num_classes=10, in_channels=1, small_input=True).eval()
    pre32 = Preprocess(image_size=32, channels=1, mean=(0.5,), std=(0.25,))
    arts["resnet"] = make_onnx_artifact(root / "resnet", resnet, (None, 1, 32, 32), preprocess=pre32)
    d = root / "resnet-ir"
    d.mkdir()
    ov.save_model(
        ov.convert_model(str(arts["resnet"] / "model.onnx")), str(d / "model.xml"), compress_to_fp16=False
    )
    write_metadata(
        d, metadata(["model.xml", "model.bin"], runtime="openvino", shape=[None, 1, 32, 32], preprocess=pre32)
    )
    arts["resnet-ir"] = d
    arts["resnet-model"] = resnet
    return arts


@pytest.fixture(scope="module")
def tflite_fp32(tiny, tmp_path_factory) -> Path:
    import litert_torch

    d = tmp_path_factory.mktemp("tflite-fp32")
    litert_torch.convert(tiny, (torch.zeros(TFLITE_BATCH, 1, 16, 16),)).export(str(d / "model.tflite"))
    write_metadata(
        d, metadata(["model.tflite"], runtime="tflite", target="rpi", shape=[TFLITE_BATCH, 1, 16, 16])
    )
    return d


@pytest.fixture(scope="module")
def tflite_int8(tiny, tmp_path_factory):
    """A full-integer INT8 .tflite (int8 input and output) and the fake-quant graph it came from."""
    import litert_torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    sample = torch.zeros(TFLITE_BATCH, 1, 16, 16)
    q = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    prepared = prepare_pt2e(torch.export.export(tiny, (sample,)).module(), q)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(8):
            prepared(torch.randn(TFLITE_BATCH, 1, 16, 16, generator=g))
    fake_quant = convert_pt2e(prepared, fold_quantize=False)
    d = tmp_path_factory.mktemp("tflite-int8")
    litert_torch.convert(fake_quant, (sample,), quant_config=QuantConfig(pt2e_quantizer=q)).export(
        str(d / "model.tflite")
    )
    write_metadata(
        d,
        metadata(
            ["model.tflite"],
            runtime="tflite",
            target="rpi",
            precision="int8",
            shape=[TFLITE_BATCH, 1, 16, 16],
        ),
    )
    return d, fake_quant


def batch(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, size, size)).astype(np.float32)


# -- every runtime matches PyTorch -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "runtime"),
    [
        ("onnx", None),
        ("ir", None),
        ("jetson", "onnxruntime"),
        ("jetson", "openvino"),
        ("onnx", "openvino"),
    ],
)
def test_cpu_runtimes_match_torch(cpu_artifacts, tiny, name, runtime):
    x = batch(7)
    with open_session(cpu_artifacts[name], runtime=runtime, threads=1) as s:
        assert isinstance(s, Session) and s.runtime == (runtime or load_artifact(cpu_artifacts[name]).runtime)
        assert s.batch is None and s.input_shape == (None, 1, 16, 16) and s.num_classes == 10
        y = s.run(x)
        assert y.dtype == np.float32 and y.shape == (7, 10)
        np.testing.assert_allclose(y, torch_logits(tiny, x), rtol=1e-4, atol=1e-4)
        assert s.run(x[:1]).shape == (1, 10) and s.run(x[:0]).shape == (0, 10)


@pytest.mark.parametrize("name", ["resnet", "resnet-ir"])
def test_test_resnet18_matches_torch(cpu_artifacts, name):
    x = batch(3, size=32)
    with open_session(cpu_artifacts[name], threads=1) as s:
        np.testing.assert_allclose(
            s.run(x), torch_logits(cpu_artifacts["resnet-model"], x), rtol=1e-4, atol=1e-4
        )


def test_tflite_fp32_fixed_batch_matches_torch(tflite_fp32, tiny):
    with open_session(tflite_fp32, threads=1) as s:
        assert s.runtime == "tflite" and s.batch == TFLITE_BATCH
        assert s.input_shape == (TFLITE_BATCH, 1, 16, 16) and s.num_classes == 10
        for n in (1, 4, 7, 9):  # smaller than, equal to, and across fixed batches: padded and cut
            x = batch(n, seed=n)
            np.testing.assert_allclose(s.run(x), torch_logits(tiny, x), rtol=1e-4, atol=1e-4)


def test_tflite_set_batch_gives_the_same_logits(tmp_path, tflite_fp32):
    """A batch-1 model planned for 16 images a call gives every image the very logits it gave one at a
    time; a graph that cannot take another batch (the 1-channel tiny net's input RESHAPE, fixed to its
    batch) keeps its own and still runs."""
    import litert_torch

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    net = nn.Sequential(*net, nn.Linear(8, 10)).eval()
    litert_torch.convert(net, (torch.zeros(1, 3, 16, 16),)).export(str(tmp_path / "model.tflite"))
    write_metadata(tmp_path, metadata(["model.tflite"], runtime="tflite", target="rpi", shape=[1, 3, 16, 16]))
    x = np.random.default_rng(7).standard_normal((21, 3, 16, 16)).astype(np.float32)
    with open_session(tmp_path, threads=1) as s:
        one_by_one = s.run(x)
        assert s.set_batch(16) and s.batch == 16 and s.input_shape == (16, 3, 16, 16)
        np.testing.assert_array_equal(s.run(x), one_by_one)
        assert s.info["batch_planned"] == 16
    x = batch(9, seed=7)
    with open_session(tflite_fp32, threads=1) as s:
        own = s.run(x)
        assert not s.set_batch(16) and s.batch == TFLITE_BATCH and s.input_shape[0] == TFLITE_BATCH
        np.testing.assert_array_equal(s.run(x), own)


@pytest.mark.slow
def test_tflite_int8_quantizes_io_and_matches_fake_quant(tflite_int8):
    d, fake_quant = tflite_int8
    with open_session(d) as s:
        assert s.info["input_dtype"] == "int8"
        in_scale, _ = s.info["input_quantization"]
        out_scale, _ = s.info["output_quantization"]
        x = batch(11, seed=3)
        y = s.run(x)
    assert y.dtype == np.float32 and y.shape == (11, 10)
    padded = np.concatenate([x, np.zeros((1, 1, 16, 16), np.float32)])
    ref = np.concatenate([torch_logits(fake_quant, padded[i : i + 4]) for i in range(0, 12, 4)])[:11]
    # Integer kernels may round differently from the float-simulated graph: a few output steps.
    assert np.abs(y - ref).max() <= 4 * out_scale
    assert (y.argmax(1) == ref.argmax(1)).mean() >= 0.9
    assert in_scale > 0


@pytest.mark.parametrize(
    ("name", "binding"), [("onnx", "IOBinding"), ("ir", "InferRequest"), ("tflite", "set_tensor")]
)
def test_timed_call_binds_once_and_computes_the_logits(cpu_artifacts, tflite_fp32, tiny, name, binding):
    """bench's fast path: the input bound once, each call a real inference (its logits are torch's)."""
    x = batch(TFLITE_BATCH if name == "tflite" else 3, seed=5)
    with open_session(tflite_fp32 if name == "tflite" else cpu_artifacts[name], threads=1) as s:
        call = s.timed_call(x)
        assert binding in call.binding
        call.run()
        call.run()
        np.testing.assert_allclose(call.output(), torch_logits(tiny, x), rtol=1e-4, atol=1e-4)
        if name == "ir":  # OpenVINO keeps its own time of each call; compiled again at the static shape
            assert 0 < call.runtime_ms() < 10_000
            assert s.batch == 3 and s._compiled.inputs[0].get_partial_shape().is_static
            np.testing.assert_allclose(s.run(batch(5)), torch_logits(tiny, batch(5)), rtol=1e-4, atol=1e-4)
        else:
            assert call.runtime_ms is None
        if name == "tflite":
            with pytest.raises(EdgecnnError, match=f"fixed at {TFLITE_BATCH}"):
                s.timed_call(batch(TFLITE_BATCH + 1))


def test_torch_session(tiny):
    x = batch(5)
    s = TorchSession(tiny, "NCHW", input_shape=(None, 1, 16, 16), batch=2)
    assert s.runtime == "torch" and s.batch == 2
    np.testing.assert_allclose(s.run(x), torch_logits(tiny, x), rtol=1e-5, atol=1e-6)
    with pytest.raises(EdgecnnError, match="does not fit"):
        s.run(batch(2, size=8))
    assert TorchSession(tiny).run(x).shape == (5, 10)


def test_session_api(cpu_artifacts):
    art = load_artifact(cpu_artifacts["onnx"])
    s = open_session(art)  # an Artifact, and by file path below
    assert s.artifact is art and "onnxruntime" in repr(s)
    assert s.info["version"] and s.info["providers"] == ["CPUExecutionProvider"]
    s.close()
    s.close()  # twice is fine
    with pytest.raises(EdgecnnError, match="closed"):
        s.run(batch(1))
    with open_session(cpu_artifacts["onnx"] / "model.onnx", threads=2) as s2:
        assert s2.info["threads"] == 2
        with pytest.raises(EdgecnnError, match=r"does not fit the model's input \['N', 1, 16, 16\]"):
            s2.run(batch(2, size=8))
    with open_session(cpu_artifacts["ir"]) as s3:
        assert s3.info["precision_hint"] == "f32"  # an fp32 artifact never runs in bf16


# -- errors ------------------------------------------------------------------------------------


def test_modified_file_is_refused(cpu_artifacts, tmp_path):
    d = shutil.copytree(cpu_artifacts["ir"], tmp_path / "a")
    with (d / "model.bin").open("ab") as f:  # any file of the artifact, not only the one loaded
        f.write(b"\0")
    with pytest.raises(EdgecnnError, match=r"model.bin no longer matches the sha256"):
        open_session(d)
    with open_session(d, verify=False) as s:  # trailing bytes in .bin are harmless to OpenVINO
        assert s.run(batch(1)).shape == (1, 10)


@pytest.mark.parametrize(
    ("name", "runtime", "message"),
    [
        ("tflite", "openvino", "model.tflite is a TFLite model: it runs in tflite, not openvino"),
        ("engine", "onnxruntime", "model.engine is a TensorRT engine: it runs in tensorrt, not onnxruntime"),
        ("ir", "onnxruntime", "model.xml is an OpenVINO IR: it runs in openvino, not onnxruntime"),
    ],
)
def test_wrong_runtime(cpu_artifacts, tmp_path, name, runtime, message):
    if name == "tflite":  # no conversion needed to test the refusal
        d = tmp_path / "t"
        d.mkdir()
        (d / "model.tflite").write_bytes(b"x")
        write_metadata(d, metadata(["model.tflite"], runtime="tflite", shape=[1, 1, 16, 16]))
    else:
        d = cpu_artifacts[name]
    with pytest.raises(EdgecnnError, match=message) as e:
        open_session(d, runtime=runtime)
    assert "\n" not in str(e.value)


def test_unknown_runtime():
    with pytest.raises(EdgecnnError, match="Did you mean: openvino"):
        session_class("openvin")
    with pytest.raises(EdgecnnError, match="TorchSession"):
        session_class("torch")


@pytest.mark.parametrize(
    ("runtime", "modules", "message"),
    [
        ("onnxruntime", ["onnxruntime"], r"pip install 'edgecnn\[onnx\]'"),
        ("openvino", ["openvino"], r"pip install 'edgecnn\[openvino\]'"),
        (
            "tflite",
            ["ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter"],
            r"edgecnn\[tflite\]'.*pip install ai-edge-litert",
        ),
        ("tensorrt", ["tensorrt"], "TensorRT runtime not installed: on a Jetson it comes with JetPack"),
    ],
)
def test_missing_backend(cpu_artifacts, tmp_path, monkeypatch, runtime, modules, message):
    for m in modules:
        monkeypatch.setitem(sys.modules, m, None)  # `import m` now raises ImportError
    if runtime == "tflite":
        d = tmp_path / "t"
        d.mkdir()
        (d / "model.tflite").write_bytes(b"x")
        write_metadata(d, metadata(["model.tflite"], runtime="tflite", shape=[1, 1, 16, 16]))
    else:
        d = cpu_artifacts["engine" if runtime == "tensorrt" else "onnx"]
    with pytest.raises(EdgecnnError, match=message):
        open_session(d, runtime=runtime)


def test_jetson_onnx_defaults_to_tensorrt(cpu_artifacts, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(EdgecnnError) as e:
        open_session(cpu_artifacts["jetson"])
    assert str(e.value) == TENSORRT_MISSING


def test_metadata_shape_must_match_the_file(cpu_artifacts, tmp_path):
    d = shutil.copytree(cpu_artifacts["onnx"], tmp_path / "a")
    meta = json.loads((d / "metadata.json").read_text())
    meta["input"]["shape"] = [None, 3, 16, 16]
    (d / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(EdgecnnError, match=r"takes input \['N', 1, 16, 16\] but its metadata.json says"):
        open_session(d)


def test_runtime_side_imports_no_torch(cpu_artifacts):
    """What runs on a device (runtimes, evaluation, preprocessing) must work without torch."""
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any `import torch` now fails
        import numpy as np
        from edgecnn.data import Preprocess
        from edgecnn.evaluate import bootstrap_ci, mcnemar
        from edgecnn.runtimes import open_session
        s = open_session({str(cpu_artifacts["onnx"])!r}, threads=1)
        pre = Preprocess.from_dict(s.artifact.meta["preprocess"])
        x = pre.apply_numpy(np.zeros((2, 28, 28, 1), np.uint8))
        assert s.run(x).shape == (2, 10)
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_artifact_object_is_accepted_without_rehash(cpu_artifacts):
    art = Artifact(cpu_artifacts["onnx"], load_artifact(cpu_artifacts["onnx"]).meta)
    with open_session(art, runtime="openvino") as s:
        assert s.runtime == "openvino" and s.info["precision_hint"] == "f32"


@pytest.mark.needs_tensorrt
def test_tensorrt_builds_from_onnx_and_matches_torch(cpu_artifacts, tiny, tmp_path):
    d = shutil.copytree(cpu_artifacts["jetson"], tmp_path / "j")
    meta = json.loads((d / "metadata.json").read_text())
    meta["precision"] = "fp32"
    (d / "metadata.json").write_text(json.dumps(meta))
    x = batch(5)
    with open_session(d) as s:
        assert s.runtime == "tensorrt" and s.info["built_from_onnx"]
        np.testing.assert_allclose(s.run(x), torch_logits(tiny, x), rtol=1e-3, atol=1e-3)
