"""TensorRT engines: cache key, cache, refusal of foreign engines, the Jetson build script.

Everything but the ``needs_tensorrt`` tests runs without TensorRT or a GPU: the builder is
a fake, and trtexec a shell script that writes a file and prints trtexec's device lines.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from edgecnn.artifact import write_metadata
from edgecnn.errors import EdgecnnError
from edgecnn.fileio import sha256_file
from edgecnn.tensorrt import build as tb
from edgecnn.tensorrt import engine_cache as ec

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "jetson" / "build_engine.sh"
ORIN = ec.DeviceInfo(tensorrt="10.3.0.30", gpu="Orin", compute_capability="8.7")
H100 = ec.DeviceInfo(tensorrt="10.13.3.9", gpu="NVIDIA H100 80GB HBM3", compute_capability="9.0")
TRTEXEC_LOG = """&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --onnx=model.onnx
[11/23/2025-12:00:00] [I] === Device Information ===
[11/23/2025-12:00:00] [I] Available Devices:
[11/23/2025-12:00:00] [I]   Device 0: "Orin" UUID: GPU-6a3f
[11/23/2025-12:00:00] [I] Selected Device: Orin
[11/23/2025-12:00:00] [I] Selected Device ID: 0
[11/23/2025-12:00:00] [I] Compute Capability: 8.7
[11/23/2025-12:00:00] [I] SMs: 16
[11/23/2025-12:00:00] [I]
[11/23/2025-12:00:00] [I] TensorRT version: 10.3.0
"""


class FakeBuilder:
    def __init__(self, fail: bool = False):
        self.calls: list[tuple] = []
        self.fail = fail

    def __call__(self, onnx: Path, precision, profile) -> bytes:
        self.calls.append((onnx, precision, profile))
        if self.fail:
            raise EdgecnnError("TensorRT failed to build an engine")
        return b"ENGINE:" + hashlib.sha256(onnx.read_bytes()).hexdigest().encode() + str(precision).encode()


@pytest.fixture
def onnx_file(tmp_path) -> Path:
    p = tmp_path / "model.onnx"
    p.write_bytes(b"not really onnx, but hashed like one")
    return p


def test_key_depends_on_everything_that_decides_the_engine():
    base = ec.engine_key("a" * 64, "int8", ORIN)
    assert base == ec.engine_key("a" * 64, "int8", ORIN) and len(base) == 20
    variants = [
        ec.engine_key("b" * 64, "int8", ORIN),
        ec.engine_key("a" * 64, "fp16", ORIN),
        ec.engine_key("a" * 64, "int8", ec.DeviceInfo("10.4.0", "Orin", "8.7")),
        ec.engine_key("a" * 64, "int8", ec.DeviceInfo("10.3.0", "Xavier", "8.7")),
        ec.engine_key("a" * 64, "int8", ec.DeviceInfo("10.3.0", "Orin", "7.2")),
        ec.engine_key("a" * 64, "int8", ORIN, ec.BatchProfile(1, 8, 64)),
        ec.engine_key("a" * 64, "int8", ORIN, ec.BatchProfile(1, 1, 32)),
    ]
    assert len({base, *variants}) == len(variants) + 1
    # the build number past major.minor.patch does not change what an engine runs on
    assert ec.engine_key("a" * 64, "int8", ec.DeviceInfo("10.3.0", "Orin", "8.7")) == base
    assert ec.engine_key("a" * 64, None, ORIN) == ec.engine_key("a" * 64, "fp32", ORIN)


def test_batch_profile_is_checked():
    assert ec.BatchProfile().shapes([3, 32, 32]) == ((1, 3, 32, 32), (1, 3, 32, 32), (64, 3, 32, 32))
    with pytest.raises(EdgecnnError, match="1 <= min <= opt <= max"):
        ec.BatchProfile(4, 2, 8)


def test_cache_builds_once_then_loads(onnx_file, tmp_path):
    cache, build = ec.EngineCache(tmp_path / "engines"), FakeBuilder()
    first = cache.get_or_build(onnx_file, "int8", device=ORIN, builder=build)
    assert not first.cached and len(build.calls) == 1
    key = ec.engine_key(sha256_file(onnx_file), "int8", ORIN)
    assert first.path == tmp_path / "engines" / f"{key}.engine" and first.path.read_bytes() == first.data
    side = json.loads(ec.sidecar_path(first.path).read_text())
    assert side["key"] == key and side["precision"] == "int8" and side["gpu"] == "Orin"
    assert side["tensorrt"] == "10.3.0.30" and side["compute_capability"] == "8.7"
    assert side["profile"] == {"min": 1, "opt": 1, "max": 64}
    assert side["engine_sha256"] == hashlib.sha256(first.data).hexdigest()
    again = cache.get_or_build(onnx_file, "int8", device=ORIN, builder=build)
    assert again.cached and again.data == first.data and len(build.calls) == 1
    # another precision, GPU or TensorRT release is another engine
    cache.get_or_build(onnx_file, "fp16", device=ORIN, builder=build)
    cache.get_or_build(onnx_file, "int8", device=H100, builder=build)
    assert len(build.calls) == 3
    assert sorted(p.suffix for p in cache.root.iterdir()) == [".engine"] * 3 + [".json"] * 3
    rebuilt = cache.get_or_build(onnx_file, "int8", device=ORIN, builder=build, rebuild=True)
    assert not rebuilt.cached and len(build.calls) == 4


def test_default_cache_is_under_edgecnn_home(onnx_file, edgecnn_home):
    e = ec.EngineCache().get_or_build(onnx_file, "fp16", device=ORIN, builder=FakeBuilder())
    assert e.path.parent == edgecnn_home / "engines"


def test_damaged_entry_is_rebuilt(onnx_file, tmp_path):
    cache, build = ec.EngineCache(tmp_path), FakeBuilder()
    e = cache.get_or_build(onnx_file, "int8", device=ORIN, builder=build)
    e.path.write_bytes(e.data[:5])  # cut short
    again = cache.get_or_build(onnx_file, "int8", device=ORIN, builder=build)
    assert not again.cached and len(build.calls) == 2 and e.path.read_bytes() == e.data
    ec.sidecar_path(e.path).write_text("{not json")
    assert not cache.get_or_build(onnx_file, "int8", device=ORIN, builder=build).cached


def test_failed_build_leaves_nothing(onnx_file, tmp_path):
    cache = ec.EngineCache(tmp_path / "engines")
    with pytest.raises(EdgecnnError, match="failed to build"):
        cache.get_or_build(onnx_file, "int8", device=ORIN, builder=FakeBuilder(fail=True))
    assert not cache.root.exists() or not list(cache.root.iterdir())


def test_unwritable_cache_still_gives_the_engine(onnx_file, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    logs = []
    e = ec.EngineCache(blocker / "engines").get_or_build(onnx_file, "int8", device=ORIN, builder=FakeBuilder(),
                                                        log=logs.append)
    assert e.path is None and e.data.startswith(b"ENGINE:") and any("cannot cache" in s for s in logs)


def test_foreign_engine_in_the_cache_is_refused(onnx_file, tmp_path):
    cache = ec.EngineCache(tmp_path)
    e = cache.get_or_build(onnx_file, "int8", device=ORIN, builder=FakeBuilder())
    # an entry whose sidecar says another GPU sits where this device's engine belongs
    key_here = ec.engine_key(sha256_file(onnx_file), "int8", H100)
    (tmp_path / f"{key_here}.engine").write_bytes(e.data)
    ec.sidecar_path(tmp_path / f"{key_here}.engine").write_text(ec.sidecar_path(e.path).read_text())
    with pytest.raises(EdgecnnError) as err:
        cache.get_or_build(onnx_file, "int8", device=H100, builder=FakeBuilder())
    msg = str(err.value)
    assert "was built for Orin (compute capability 8.7) on TensorRT 10.3.0.30" in msg
    assert "this device has NVIDIA H100 80GB HBM3 (compute capability 9.0) with TensorRT 10.13.3.9" in msg
    assert "rebuild it here" in msg


def test_check_compatible():
    meta = {"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"}
    ec.check_compatible(meta, ORIN, "e.engine")  # 10.3.0 == 10.3.0.30's release
    ec.check_compatible({"tensorrt": None, "gpu": None, "compute_capability": None}, H100, "e.engine")
    for field, value, what in (("tensorrt", "10.4.0", "TensorRT differ"), ("gpu", "Xavier", "GPU differ"),
                               ("compute_capability", "7.2", "compute capability differ")):
        with pytest.raises(EdgecnnError, match=what):
            ec.check_compatible({**meta, field: value}, ORIN, "e.engine")


def test_parse_trtexec_log():
    assert tb.parse_trtexec_log(TRTEXEC_LOG) == ec.DeviceInfo("10.3.0", "Orin", "8.7")
    assert tb.parse_trtexec_log("no device lines") is None


# -- the TensorRT session uses the cache (a fake tensorrt module) ---------------------------------


def _fake_tensorrt(loaded: list) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = ORIN.tensorrt

    class Logger:
        WARNING = 2

        def __init__(self, *_):
            pass

    class Runtime:
        def __init__(self, _logger):
            pass

        def deserialize_cuda_engine(self, data):
            loaded.append(bytes(data))  # and returns None (no GPU here): the session cannot load it

    trt.Logger, trt.Runtime = Logger, Runtime
    return trt


def _artifact(d: Path, precision: str, *, model: str = "model.onnx", shape=(None, 3, 32, 32),
              runtime: str = "tensorrt") -> Path:
    d.mkdir(parents=True)
    (d / model).write_bytes(b"qdq onnx of " + precision.encode())
    meta = {
        "arch": "resnet18", "model_options": {}, "num_classes": 10, "class_names": [f"c{i}" for i in range(10)],
        "target": "jetson", "runtime": runtime, "precision": precision, "files": [model],
        "input": {"name": "input", "shape": list(shape), "layout": "NCHW", "dtype": "float32", "scale": None,
                  "zero_point": None},
        "output": {"name": "logits", "shape": [None, 10], "dtype": "float32", "scale": None, "zero_point": None},
        "preprocess": {"image_size": 32, "channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3},
        "quantization": None, "float_layers": [], "source": {"checkpoint": None, "sha256": None}, "tools": {},
    }
    write_metadata(d, meta)
    return d


def test_session_builds_through_the_cache(tmp_path, edgecnn_home, monkeypatch):
    from edgecnn.runtimes import open_session

    loaded, build = [], FakeBuilder()
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt(loaded))
    monkeypatch.setattr(tb, "detect_device", lambda trt=None: ORIN)
    monkeypatch.setattr(tb, "build_engine", lambda onnx, prec, prof, **kw: build(onnx, prec, prof))
    art = _artifact(tmp_path / "a", "int8")
    with pytest.raises(EdgecnnError, match="cannot load model.onnx"):
        open_session(art)
    assert len(build.calls) == 1 and build.calls[0][1] == "int8"
    assert loaded == [FakeBuilder()(art / "model.onnx", "int8", None)]
    entries = list((edgecnn_home / "engines").glob("*.engine"))
    assert len(entries) == 1 and json.loads(ec.sidecar_path(entries[0]).read_text())["precision"] == "int8"
    # next time the cached engine is tried first; one that does not deserialize is rebuilt once
    with pytest.raises(EdgecnnError, match="cannot load"):
        open_session(art)
    assert len(build.calls) == 2 and len(loaded) == 3


def test_session_refuses_an_engine_built_for_another_device(tmp_path, monkeypatch):
    from edgecnn.runtimes import open_session

    loaded = []
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt(loaded))
    monkeypatch.setattr("edgecnn.tensorrt.session.detect_device", lambda trt=None: H100)
    d = tmp_path / "e"
    d.mkdir()
    data = b"an Orin engine"
    ec.write_engine(d / "model.engine", data, ec.engine_meta(
        key=None, onnx_sha256="0" * 64, precision="int8", device=ORIN, profile=ec.BatchProfile(),
        engine_sha256=hashlib.sha256(data).hexdigest(), builder="trtexec"))
    meta = json.loads((_artifact(tmp_path / "tmpl", "int8") / "metadata.json").read_text())
    meta["files"] = ["model.engine"]
    write_metadata(d, meta)
    with pytest.raises(EdgecnnError, match=r"was built for Orin .* this device has NVIDIA H100"):
        open_session(d)
    assert loaded == []  # refused before TensorRT saw it


# -- the Jetson build script ----------------------------------------------------------------------


def _script(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHON": sys.executable, **(env or {})})


@pytest.mark.parametrize(("precision", "flags"), [("int8", ["--int8", "--fp16"]), ("fp16", ["--fp16"]),
                                                  ("fp32", [])])
def test_build_script_dry_run_command(tmp_path, precision, flags):
    art = _artifact(tmp_path / precision, precision)
    r = _script(str(art), "--dry-run", "--builder", "trtexec", "--trtexec", "/usr/src/tensorrt/bin/trtexec")
    assert r.returncode == 0, r.stderr
    assert shlex.split(r.stdout.strip()) == [
        "/usr/src/tensorrt/bin/trtexec", f"--onnx={art / 'model.onnx'}", f"--saveEngine={art / 'model.engine'}",
        *flags, "--minShapes=input:1x3x32x32", "--optShapes=input:1x3x32x32", "--maxShapes=input:64x3x32x32",
        "--skipInference"]
    assert not (art / "model.engine").exists()


def test_build_dry_run_options(tmp_path):
    art = _artifact(tmp_path / "a", "int8")
    r = tb.build_artifact(art, builder="trtexec", trtexec="trtexec", dry_run=True, workspace_mb=1024,
                          profile=ec.BatchProfile(1, 8, 32), out=tmp_path / "x.engine")
    assert r["command"][1:] == [f"--onnx={art / 'model.onnx'}", f"--saveEngine={tmp_path / 'x.engine'}", "--int8",
                                "--fp16", "--minShapes=input:1x3x32x32", "--optShapes=input:8x3x32x32",
                                "--maxShapes=input:32x3x32x32", "--memPoolSize=workspace:1024M", "--skipInference"]
    static = _artifact(tmp_path / "s", "fp16", shape=(1, 3, 32, 32))
    cmd = tb.build_artifact(static, builder="trtexec", dry_run=True)["command"]
    assert not any(c.startswith(("--minShapes", "--optShapes", "--maxShapes")) for c in cmd)


def test_build_script_checks_the_artifact_first(tmp_path):
    art = _artifact(tmp_path / "a", "int8")
    (art / "model.onnx").write_bytes(b"changed after export")
    r = _script(str(art), "--dry-run")
    assert r.returncode == 2 and "no longer matches the sha256" in r.stderr
    cpu = _artifact(tmp_path / "cpu", "int8", runtime="onnxruntime")
    r = _script(str(cpu), "--dry-run")
    assert r.returncode == 2 and "build engines from a Jetson artifact" in r.stderr


def test_build_with_trtexec_writes_engine_sidecar_and_cache(tmp_path, edgecnn_home):
    """A stand-in trtexec: writes the --saveEngine file and prints trtexec's device lines."""
    fake = tmp_path / "bin" / "trtexec"
    fake.parent.mkdir()
    log = tmp_path / "trtexec-args"
    fake.write_text("#!/usr/bin/env bash\n"
                    f"printf '%s\\n' \"$@\" > {shlex.quote(str(log))}\n"
                    f"cat <<'LOG'\n{TRTEXEC_LOG}LOG\n"
                    "for a in \"$@\"; do case $a in --saveEngine=*) printf 'ENGINE' > \"${a#--saveEngine=}\";; esac; done\n")
    fake.chmod(0o755)
    art = _artifact(tmp_path / "a", "int8")
    r = _script(str(art), "--json", env={"PATH": f"{fake.parent}:{os.environ['PATH']}",
                                         "EDGECNN_HOME": str(edgecnn_home)})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["builder"] == "trtexec" and out["engine"] == str(art / "model.engine")
    assert (art / "model.engine").read_bytes() == b"ENGINE"
    args = log.read_text().split()
    assert "--int8" in args and "--fp16" in args
    assert any(a.startswith("--saveEngine=") and a.endswith(".tmp") for a in args)  # written atomically
    side = json.loads((art / "model.engine.json").read_text())
    assert (side["gpu"], side["compute_capability"], side["tensorrt"]) == ("Orin", "8.7", "10.3.0")
    assert side["onnx_sha256"] == sha256_file(art / "model.onnx") and side["builder"] == "trtexec"
    key = ec.engine_key(side["onnx_sha256"], "int8", ORIN)
    assert side["key"] == key and out["cached_as"] == str(edgecnn_home / "engines" / f"{key}.engine")
    # a session on this Orin's model.onnx would now load it from the cache without building
    hit = ec.EngineCache().get_or_build(art / "model.onnx", "int8", device=ORIN, builder=FakeBuilder(fail=True))
    assert hit.cached and hit.data == b"ENGINE"
    assert not list(art.glob("*.tmp")) and not list(art.glob(".*.tmp"))


def test_failing_trtexec_is_reported(tmp_path):
    fake = tmp_path / "trtexec"
    fake.write_text("#!/usr/bin/env bash\necho '[E] Error[4]: unsupported QDQ pattern' >&2\nexit 1\n")
    fake.chmod(0o755)
    art = _artifact(tmp_path / "a", "int8")
    r = _script(str(art), "--trtexec", str(fake))
    assert r.returncode == 2 and "trtexec failed (exit 1)" in r.stderr and "unsupported QDQ pattern" in r.stderr
    assert not (art / "model.engine").exists() and not list(art.glob(".*.tmp"))


# -- on a GPU with TensorRT ----------------------------------------------------------------------


@pytest.fixture
def tiny_onnx(tmp_path) -> Path:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 10)).eval()
    path = tmp_path / "model.onnx"
    torch.onnx.export(model, (torch.zeros(2, 3, 32, 32),), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, dynamo=False)
    return path


@pytest.mark.needs_tensorrt
def test_real_engine_is_built_cached_and_runs(tiny_onnx, edgecnn_home):
    trt = tb.import_tensorrt()
    device = tb.detect_device(trt)
    assert device.tensorrt == trt.__version__ and device.compute_capability[0].isdigit()
    first = tb.engine_for_onnx(tiny_onnx, "fp16", trt=trt)
    again = tb.engine_for_onnx(tiny_onnx, "fp16", trt=trt)
    assert not first.cached and again.cached and again.data == first.data
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(again.data)
    assert engine is not None and tuple(engine.get_tensor_profile_shape("input", 0)[2]) == (64, 3, 32, 32)


@pytest.mark.needs_tensorrt
def test_real_session_uses_the_cache(tmp_path, edgecnn_home, tiny_onnx):
    import shutil

    from edgecnn.runtimes import open_session

    d = tmp_path / "art"
    d.mkdir()
    shutil.copy(tiny_onnx, d / "model.onnx")
    meta = json.loads((_artifact(tmp_path / "tmpl", "fp32") / "metadata.json").read_text())
    meta["files"] = ["model.onnx"]
    write_metadata(d, meta)
    x = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)
    with open_session(d) as s:
        y1, path = s.run(x), s.info["engine_cache"]
    assert path and Path(path).is_file()
    with open_session(d) as s:
        np.testing.assert_allclose(s.run(x), y1, rtol=1e-5, atol=1e-5)
        assert s.info["engine_cache"] == path


@pytest.mark.needs_tensorrt
@pytest.mark.parametrize("builder", ["python", "trtexec"])
def test_real_build_script(tmp_path, edgecnn_home, tiny_onnx, builder):
    import shutil

    if builder == "trtexec" and tb.find_trtexec() is None:
        pytest.skip("no trtexec on this machine")
    d = tmp_path / "art"
    d.mkdir()
    shutil.copy(tiny_onnx, d / "model.onnx")
    meta = json.loads((_artifact(tmp_path / "tmpl", "fp16") / "metadata.json").read_text())
    meta["files"] = ["model.onnx"]
    write_metadata(d, meta)
    r = tb.build_artifact(d, builder=builder, log=lambda s: None)
    device = tb.detect_device()
    side = r["meta"]
    assert (side["gpu"], side["compute_capability"]) == (device.gpu, device.compute_capability)
    assert ec.trt_release(side["tensorrt"]) == ec.trt_release(device.tensorrt)
    from edgecnn.tensorrt.session import TensorRtSession

    with TensorRtSession(d / "model.engine") as s:  # the engine file itself loads, its sidecar agrees
        assert s.run(np.zeros((3, 3, 32, 32), np.float32)).shape == (3, 10)


def test_build_engine_command_and_old_module_entry(tmp_path):
    """`edgecnn build-engine` is the command; `python -m edgecnn.tensorrt_build` (older RUN.md files) runs it."""
    from click.testing import CliRunner

    from edgecnn.cli import cli

    art = _artifact(tmp_path / "a", "fp16")
    r = CliRunner().invoke(cli, ["build-engine", str(art), "--dry-run", "--builder", "trtexec", "--trtexec", "te"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert shlex.split(r.output.strip())[:2] == ["te", f"--onnx={art / 'model.onnx'}"]
    old = subprocess.run([sys.executable, "-m", "edgecnn.tensorrt_build", str(art), "--dry-run", "--builder",
                          "trtexec", "--trtexec", "te"], capture_output=True, text=True, timeout=60, check=False)
    assert old.returncode == 0 and old.stdout == r.output, old.stderr
    bad = CliRunner().invoke(cli, ["build-engine", str(art), "--min-batch", "8", "--opt-batch", "2"])
    assert bad.exit_code == 2 and bad.output.startswith("error: batch profile needs 1 <= min <= opt <= max")
