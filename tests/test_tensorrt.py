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
        ec.engine_key("a" * 64, "int8", ORIN, variant="fp16-outside-qdq"),
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
    e = ec.EngineCache(blocker / "engines").get_or_build(
        onnx_file, "int8", device=ORIN, builder=FakeBuilder(), log=logs.append
    )
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
    for field, value, what in (
        ("tensorrt", "10.4.0", "TensorRT differ"),
        ("gpu", "Xavier", "GPU differ"),
        ("compute_capability", "7.2", "compute capability differ"),
    ):
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


def _artifact(
    d: Path, precision: str, *, model: str = "model.onnx", shape=(None, 3, 32, 32), runtime: str = "tensorrt"
) -> Path:
    d.mkdir(parents=True)
    (d / model).write_bytes(b"qdq onnx of " + precision.encode())
    meta = {
        "arch": "resnet18",
        "model_options": {},
        "num_classes": 10,
        "class_names": [f"c{i}" for i in range(10)],
        "target": "jetson",
        "runtime": runtime,
        "precision": precision,
        "files": [model],
        "input": {
            "name": "input",
            "shape": list(shape),
            "layout": "NCHW",
            "dtype": "float32",
            "scale": None,
            "zero_point": None,
        },
        "output": {
            "name": "logits",
            "shape": [None, 10],
            "dtype": "float32",
            "scale": None,
            "zero_point": None,
        },
        "preprocess": {"image_size": 32, "channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3},
        "quantization": None,
        "float_layers": [],
        "source": {"checkpoint": None, "sha256": None},
        "tools": {},
    }
    write_metadata(d, meta)
    return d


def test_session_builds_through_the_cache(tmp_path, edgecnn_home, monkeypatch):
    from edgecnn.runtimes import open_session

    loaded, build = [], FakeBuilder()
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt(loaded))
    monkeypatch.setattr(tb, "gpu_device", lambda trt=None: ORIN)
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
    monkeypatch.setattr("edgecnn.tensorrt.session.gpu_device", lambda trt=None: H100)
    d = tmp_path / "e"
    d.mkdir()
    data = b"an Orin engine"
    ec.write_engine(
        d / "model.engine",
        data,
        ec.engine_meta(
            key=None,
            onnx_sha256="0" * 64,
            precision="int8",
            device=ORIN,
            profile=ec.BatchProfile(),
            engine_sha256=hashlib.sha256(data).hexdigest(),
            builder="trtexec",
        ),
    )
    meta = json.loads((_artifact(tmp_path / "tmpl", "int8") / "metadata.json").read_text())
    meta["files"] = ["model.engine"]
    write_metadata(d, meta)
    with pytest.raises(EdgecnnError, match=r"was built for Orin .* this device has NVIDIA H100"):
        open_session(d)
    assert loaded == []  # refused before TensorRT saw it


# -- the Jetson build script ----------------------------------------------------------------------


def _script(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHON": sys.executable, **(env or {})},
    )


@pytest.mark.parametrize(
    ("version", "precision", "flags"),
    [
        ("10.3", "int8", ["--int8", "--fp16"]),
        ("10.3", "fp16", ["--fp16"]),
        ("10.3", "fp32", []),
        # TensorRT 11 removed trtexec's precision flags: networks are strongly typed
        ("11.4", "int8", []),
        ("11.4", "fp16", []),
        ("11.4", "fp32", []),
    ],
)
def test_build_script_dry_run_command(tmp_path, version, precision, flags):
    art = _artifact(tmp_path / precision, precision)
    r = _script(
        str(art),
        "--dry-run",
        "--builder",
        "trtexec",
        "--trtexec",
        "/usr/src/tensorrt/bin/trtexec",
        "--tensorrt-version",
        version,
    )
    assert r.returncode == 0, r.stderr
    timing = ec.timing_cache_path(version)
    assert timing.parent == ec.engines_dir() / "timing" and timing.name == f"trt{version}.0.cache"
    assert shlex.split(r.stdout.strip()) == [
        "/usr/src/tensorrt/bin/trtexec",
        f"--onnx={art / 'model.onnx'}",
        f"--saveEngine={art / 'model.engine'}",
        *flags,
        "--minShapes=input:1x3x32x32",
        "--optShapes=input:1x3x32x32",
        "--maxShapes=input:64x3x32x32",
        f"--timingCacheFile={timing}",
        "--skipInference",
    ]
    assert not (art / "model.engine").exists()


def test_build_dry_run_options(tmp_path):
    art = _artifact(tmp_path / "a", "int8")
    r = tb.build_artifact(
        art,
        builder="trtexec",
        trtexec="trtexec",
        dry_run=True,
        workspace_mb=1024,
        profile=ec.BatchProfile(1, 8, 32),
        out=tmp_path / "x.engine",
        tensorrt_version="10.3.0",
        timing_cache=tmp_path / "t.cache",
    )
    assert r["command"][1:] == [
        f"--onnx={art / 'model.onnx'}",
        f"--saveEngine={tmp_path / 'x.engine'}",
        "--int8",
        "--fp16",
        "--minShapes=input:1x3x32x32",
        "--optShapes=input:8x3x32x32",
        "--maxShapes=input:32x3x32x32",
        "--memPoolSize=workspace:1024M",
        f"--timingCacheFile={tmp_path / 't.cache'}",
        "--skipInference",
    ]
    assert r["plan"] == {
        "tensorrt": "10.3.0",
        "precision": "int8",
        "trtexec_flags": ["--int8", "--fp16"],
        "builder_flags": ["FP16", "INT8"],
        "strongly_typed": False,
        "fp16_rewrite": False,
    }
    static = _artifact(tmp_path / "s", "fp16", shape=(1, 3, 32, 32))
    cmd = tb.build_artifact(
        static, builder="trtexec", dry_run=True, tensorrt_version="11.4", timing_cache=False
    )["command"]
    assert not any(
        c.startswith(("--minShapes", "--optShapes", "--maxShapes", "--timingCacheFile")) for c in cmd
    )
    assert "--fp16" not in cmd


def test_unknown_tensorrt_version_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # no tensorrt module, and no trtexec to ask
    art = _artifact(tmp_path / "a", "int8")
    with pytest.raises(EdgecnnError, match=r"cannot tell which TensorRT .* pass --tensorrt-version"):
        tb.build_artifact(art, builder="trtexec", trtexec=str(tmp_path / "missing"), dry_run=True)
    with pytest.raises(EdgecnnError, match="TensorRT 8.6.1 is too old"):
        tb.build_artifact(art, builder="trtexec", trtexec="te", dry_run=True, tensorrt_version="8.6.1")


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
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f"printf '%s\\n' \"$@\" > {shlex.quote(str(log))}\n"
        f"cat <<'LOG'\n{TRTEXEC_LOG}LOG\n"
        'for a in "$@"; do case $a in --saveEngine=*) printf \'ENGINE\' > "${a#--saveEngine=}";; esac; done\n'
    )
    fake.chmod(0o755)
    art = _artifact(tmp_path / "a", "int8")
    r = _script(
        str(art),
        "--json",
        env={"PATH": f"{fake.parent}:{os.environ['PATH']}", "EDGECNN_HOME": str(edgecnn_home)},
    )
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
    hit = ec.EngineCache().get_or_build(
        art / "model.onnx", "int8", device=ORIN, builder=FakeBuilder(fail=True)
    )
    assert hit.cached and hit.data == b"ENGINE"
    assert not list(art.glob("*.tmp")) and not list(art.glob(".*.tmp"))


def _fake_trtexec(d: Path) -> Path:
    fake = d / "trtexec"
    d.mkdir(parents=True, exist_ok=True)
    fake.write_text(
        f"#!/usr/bin/env bash\ncat <<'LOG'\n{TRTEXEC_LOG}LOG\n"
        'for a in "$@"; do case $a in --saveEngine=*) printf \'ENGINE\' > "${a#--saveEngine=}";; esac; done\n'
    )
    fake.chmod(0o755)
    return fake


def test_an_engine_built_into_an_export_folder_goes_with_the_next_export(tmp_path, edgecnn_home):
    """build-engine records ARTIFACT/model.engine (and its sidecar) in the folder's marker, so a
    re-export into that folder replaces it with the rest, where it used to survive as the user's
    file beside the new ONNX; a file of the user's there is still kept."""
    from edgecnn import outdir

    src = _artifact(tmp_path / "src", "int8")
    art = tmp_path / "art"
    with outdir.replace(art, "export") as tmp:  # what `edgecnn export --out art` does
        for f in src.iterdir():
            (tmp / f.name).write_bytes(f.read_bytes())
    (art / "notes.txt").write_text("mine")
    trtexec = _fake_trtexec(tmp_path / "bin")
    tb.build_artifact(art, trtexec=str(trtexec), tensorrt_version="10.3", cache=False, log=lambda s: None)
    assert (art / "model.engine").read_bytes() == b"ENGINE"
    recorded = outdir.read_marker(art).files
    assert {"model.engine", "model.engine.json", "model.onnx"} <= set(recorded)
    assert recorded["model.engine"]["sha256"] == hashlib.sha256(b"ENGINE").hexdigest()
    with outdir.replace(art, "export") as tmp:  # the re-export
        for f in src.iterdir():
            (tmp / f.name).write_bytes(f.read_bytes())
    assert not (art / "model.engine").exists() and not (art / "model.engine.json").exists()
    assert (art / "notes.txt").read_text() == "mine" and (art / "model.onnx").exists()
    # --out elsewhere, and an artifact folder without a marker, leave markers alone
    other = tmp_path / "engines" / "x.engine"
    other.parent.mkdir()
    tb.build_artifact(art, out=other, trtexec=str(trtexec), tensorrt_version="10.3", cache=False, log=print)
    assert other.exists() and "model.engine" not in outdir.read_marker(art).files
    tb.build_artifact(src, trtexec=str(trtexec), tensorrt_version="10.3", cache=False, log=print)
    assert (src / "model.engine").exists() and outdir.read_marker(src) is None


def test_failing_trtexec_is_reported(tmp_path):
    fake = tmp_path / "trtexec"
    fake.write_text("#!/usr/bin/env bash\necho '[E] Error[4]: unsupported QDQ pattern' >&2\nexit 1\n")
    fake.chmod(0o755)
    art = _artifact(tmp_path / "a", "int8")
    r = _script(str(art), "--trtexec", str(fake), "--tensorrt-version", "10.3")
    assert (
        r.returncode == 2 and "trtexec failed (exit 1)" in r.stderr and "unsupported QDQ pattern" in r.stderr
    )
    assert not (art / "model.engine").exists() and not list(art.glob(".*.tmp"))


# -- on a GPU with TensorRT ----------------------------------------------------------------------


@pytest.fixture
def tiny_onnx(tmp_path) -> Path:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)
    ).eval()
    path = tmp_path / "model.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(2, 3, 32, 32),),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        dynamo=False,
    )
    return path


@pytest.mark.needs_tensorrt
def test_real_engine_is_built_cached_and_runs(tiny_onnx, edgecnn_home):
    trt = tb.import_tensorrt()
    device = tb.gpu_device(trt)
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
    device = tb.gpu_device()
    side = r["meta"]
    assert (side["gpu"], side["compute_capability"]) == (device.gpu, device.compute_capability)
    assert ec.trt_release(side["tensorrt"]) == ec.trt_release(device.tensorrt)
    from edgecnn.tensorrt.session import TensorRtSession

    with TensorRtSession(d / "model.engine") as s:  # the engine file itself loads, its sidecar agrees
        assert s.run(np.zeros((3, 3, 32, 32), np.float32)).shape == (3, 10)


def test_build_engine_command_and_old_module_entry(tmp_path):
    """`edgecnn build-engine` is the command; `python -m edgecnn.tensorrt_build` (older RUN.md files) runs
    it."""
    from click.testing import CliRunner

    from edgecnn.cli import cli

    art = _artifact(tmp_path / "a", "fp16")
    args = ["--dry-run", "--builder", "trtexec", "--trtexec", "te", "--tensorrt-version", "10.3"]
    r = CliRunner().invoke(cli, ["build-engine", str(art), *args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert shlex.split(r.output.strip())[:2] == ["te", f"--onnx={art / 'model.onnx'}"]
    old = subprocess.run(
        [sys.executable, "-m", "edgecnn.tensorrt_build", str(art), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert old.returncode == 0 and old.stdout == r.output, old.stderr
    bad = CliRunner().invoke(cli, ["build-engine", str(art), "--min-batch", "8", "--opt-batch", "2"])
    assert bad.exit_code == 2 and bad.output.startswith("error: batch profile needs 1 <= min <= opt <= max")
    bad = CliRunner().invoke(cli, ["build-engine", str(art), "--fp16-outside-qdq", *args])
    assert bad.exit_code == 2 and bad.output.startswith(
        "error: --fp16-outside-qdq is for an int8 artifact on TensorRT 11 (this is fp16 on TensorRT 10.3.0"
    )
    int8 = _artifact(tmp_path / "i", "int8")
    r11 = CliRunner().invoke(cli, ["build-engine", str(int8), "--fp16-outside-qdq", *args[:-1], "11.4"])
    assert r11.exit_code == 0 and f"--onnx={int8 / 'model.fp16.onnx'}" in shlex.split(r11.output)
    both = CliRunner().invoke(
        cli, ["build-engine", str(art), "--timing-cache", "t", "--no-timing-cache", *args]
    )
    assert (
        both.exit_code == 2
        and both.output == "error: --timing-cache and --no-timing-cache exclude each other; pass one\n"
    )


# -- TensorRT 10 against 11: flags, strong typing, FP16 in the graph, timing cache -----------------


def _qdq_onnx(path: Path, *, dead_channel: bool = False) -> Path:
    """A small explicit-quantization graph of the form export writes (S8S8, per-channel weights, float
    biases, one scale initializer per Q/DQ node): Q/DQ -> Conv -> Relu -> Q/DQ -> pool -> Q/DQ -> Gemm."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = (rng.standard_normal((8, 3, 3, 3)) * 0.2).astype(np.float32)
    if dead_channel:
        w[0] = 0.0  # its scale is float32's epsilon, as the observer leaves it: below float16's range
    ws = np.maximum(np.abs(w).reshape(8, -1).max(1) / 127, np.finfo(np.float32).eps).astype(np.float32)
    fc = (rng.standard_normal((10, 8)) * 0.3).astype(np.float32)
    fs = (np.abs(fc).max(1) / 127).astype(np.float32)
    inits = [
        numpy_helper.from_array(
            np.clip(np.rint(w / ws[:, None, None, None]), -127, 127).astype(np.int8), "w_q"
        ),
        numpy_helper.from_array(np.clip(np.rint(fc / fs[:, None]), -127, 127).astype(np.int8), "fc_q"),
        numpy_helper.from_array((rng.standard_normal(8) * 0.1).astype(np.float32), "b"),
        numpy_helper.from_array((rng.standard_normal(10) * 0.1).astype(np.float32), "fc_b"),
        numpy_helper.from_array(ws, "w_s"),
        numpy_helper.from_array(fs, "fc_s"),
        numpy_helper.from_array(np.zeros(8, np.int8), "w_z"),
        numpy_helper.from_array(np.zeros(10, np.int8), "fc_z"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"], axis=0),
        helper.make_node("DequantizeLinear", ["fc_q", "fc_s", "fc_z"], ["fcw"], axis=0),
    ]

    def qdq(src: str, dst: str, scale: float) -> None:
        for k, op in enumerate(("QuantizeLinear", "DequantizeLinear")):
            inits.extend(
                [
                    numpy_helper.from_array(np.array(scale, np.float32), f"{dst}_s{k}"),
                    numpy_helper.from_array(np.array(0, np.int8), f"{dst}_z{k}"),
                ]
            )
            nodes.append(
                helper.make_node(
                    op,
                    [src if k == 0 else f"{dst}_q", f"{dst}_s{k}", f"{dst}_z{k}"],
                    [f"{dst}_q" if k == 0 else dst],
                )
            )

    qdq("input", "x0", 0.03)
    nodes += [
        helper.make_node("Conv", ["x0", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
    ]
    qdq("r", "x1", 0.02)
    nodes += [helper.make_node("GlobalAveragePool", ["x1"], ["g"]), helper.make_node("Flatten", ["g"], ["f"])]
    qdq("f", "x2", 0.005)
    nodes.append(helper.make_node("Gemm", ["x2", "fcw", "fc_b"], ["logits"], transB=1))
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    # ORT's own QDQ fusions (QLinearConv, QLinearConcat) take float32 scales only: run the graph as written
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, {"input": x})[
        0
    ]


@pytest.mark.parametrize("dead_channel", [False, True])
def test_fp16_rewrite_runs_in_onnxruntime_close_to_fp32(tmp_path, dead_channel):
    import onnx
    from onnx import TensorProto

    from edgecnn.tensorrt.fp16 import to_strongly_typed_fp16

    src = _qdq_onnx(tmp_path / "qdq.onnx", dead_channel=dead_channel)
    r = to_strongly_typed_fp16(src, tmp_path / "fp16.onnx")
    assert r.opset == 19 and r.max_scale_rel_error <= 2.0**-11
    assert r.kept_fp32 == (1 if dead_channel else 0)  # the weight DequantizeLinear with an epsilon scale
    assert r.initializers == 10 - (1 if dead_channel else 0) and r.scales == 8 - (1 if dead_channel else 0)
    m = onnx.load(str(tmp_path / "fp16.onnx"))
    floats = {i.name for i in m.graph.initializer if i.data_type == TensorProto.FLOAT}
    assert floats == ({"w_s"} if dead_channel else set())
    assert [i.type.tensor_type.elem_type for i in (*m.graph.input, *m.graph.output)] == [
        TensorProto.FLOAT
    ] * 2
    x = np.random.default_rng(1).standard_normal((64, 3, 8, 8)).astype(np.float32)
    y32, y16 = _ort(src, x), _ort(tmp_path / "fp16.onnx", x)
    assert y16.dtype == np.float32 and y16.shape == y32.shape == (64, 10)
    # float16 rounding moves a few activations across a quantization step: logits within a few
    # steps of the last Q/DQ (0.005 x |weights|), top-1 the same for nearly every input
    assert np.abs(y16 - y32).max() < 0.02 * (y32.max() - y32.min())
    assert (y16.argmax(1) == y32.argmax(1)).mean() >= 0.95
    assert not np.array_equal(y16, y32)  # it did compute in float16


def test_fp16_rewrite_of_a_float_graph(tmp_path):
    """A graph with no Q/DQ keeps its opset and matches float32 within float16's tolerance."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgecnn.tensorrt.fp16 import to_strongly_typed_fp16

    w = np.random.default_rng(2).standard_normal((4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["c"]), helper.make_node("Relu", ["c"], ["logits"])],
        "f",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 6, 6])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4, 4, 4])],
        [numpy_helper.from_array(w, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(tmp_path / "f.onnx"))
    r = to_strongly_typed_fp16(tmp_path / "f.onnx", tmp_path / "h.onnx")
    assert (r.opset, r.scales, r.initializers) == (18, 0, 1)
    x = np.random.default_rng(3).standard_normal((4, 3, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(
        _ort(tmp_path / "h.onnx", x), _ort(tmp_path / "f.onnx", x), rtol=2e-2, atol=2e-2
    )


def _builder_trt(version: str, calls: dict) -> types.ModuleType:  # noqa: C901  # a fake TensorRT, one branch per API
    """A fake tensorrt with the builder API: TensorRT 11 has no FP16/INT8 builder flags."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    major = int(version.split(".")[0])
    trt.BuilderFlag = types.SimpleNamespace(
        **({"TF32": 7} if major >= 11 else {"FP16": 0, "INT8": 1, "TF32": 7})
    )
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=5)  # kept and ignored in 11
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE=0)
    calls.update(flags=[], network_flags=None, parsed=None, timing_in=None, profiles=[])

    class Logger:
        WARNING = 2

        def __init__(self, *_):
            pass

    class Input:
        name, shape = "input", (-1, 3, 8, 8)

    class Network:
        def get_input(self, i):
            return Input()

    class Parser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse(self, data, path):
            calls["parsed"] = (bytes(data), path)
            return True

    class TimingCache:
        def __init__(self, blob):
            self.blob = bytes(blob)

        def serialize(self):
            return self.blob + b"+timings"

    class Profile:
        def set_shape(self, name, *shapes):
            calls["profiles"].append((name, shapes))

    class Config:
        cache = None

        def set_memory_pool_limit(self, pool, size):
            calls["workspace"] = size

        def set_flag(self, flag):
            calls["flags"].append(flag)

        def create_timing_cache(self, blob):
            calls["timing_in"] = bytes(blob)
            return TimingCache(blob)

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache

        def get_timing_cache(self):
            return self.cache

        def add_optimization_profile(self, profile):
            pass

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls["network_flags"] = flags
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            return b"ENGINE"

    trt.Logger, trt.OnnxParser, trt.Builder = Logger, Parser, Builder
    return trt


@pytest.mark.parametrize(
    ("version", "precision", "flags", "network_flags", "rewritten"),
    [
        ("10.3.0.30", "int8", [0, 1], 0, False),
        ("10.3.0.30", "fp16", [0], 0, False),
        ("10.3.0.30", "fp32", [], 0, False),
        ("11.4.0.106", "int8", [], 1 << 5, False),
        ("11.4.0.106", "fp16", [], 1 << 5, False),
        ("11.4.0.106", "fp32", [], 1 << 5, False),
        ("11.4.0.106", "int8-fp16-outside-qdq", [], 1 << 5, True),
    ],
)
def test_python_builder_per_tensorrt_version(tmp_path, version, precision, flags, network_flags, rewritten):
    import onnx
    from onnx import TensorProto

    calls: dict = {}
    onnx_path = _qdq_onnx(tmp_path / "model.onnx")
    timing = tmp_path / "engines" / "timing" / "t.cache"
    precision, _, variant = precision.partition("-")
    build = {"timing_cache": timing, "fp16_rewrite": bool(variant)}
    data = tb.build_engine(onnx_path, precision, trt=_builder_trt(version, calls), **build)
    assert data == b"ENGINE" and calls["flags"] == flags and calls["network_flags"] == network_flags
    assert calls["profiles"] == [("input", ((1, 3, 8, 8), (1, 3, 8, 8), (64, 3, 8, 8)))]
    parsed, parsed_path = calls["parsed"]
    assert parsed_path.endswith(".fp16.onnx") == rewritten
    m = onnx.load_from_string(parsed)
    assert any(i.data_type == TensorProto.FLOAT16 for i in m.graph.initializer) == rewritten
    if rewritten:  # the rewritten graph lived in a temporary directory, removed after the build
        assert not Path(parsed_path).exists()
    # the timing cache: empty the first time, written after, read back by the next build
    assert calls["timing_in"] == b"" and timing.read_bytes() == b"+timings"
    tb.build_engine(onnx_path, precision, trt=_builder_trt(version, calls), **build)
    assert calls["timing_in"] == b"+timings" and timing.read_bytes() == b"+timings+timings"


def test_python_builder_refuses_old_tensorrt(tmp_path):
    with pytest.raises(
        EdgecnnError,
        match=r"^TensorRT 8.6.1 is too old: edgecnn builds and runs engines with "
        r"TensorRT 10.x-11.x",
    ):
        tb.build_engine(_qdq_onnx(tmp_path / "m.onnx"), "int8", trt=_builder_trt("8.6.1.6", {}))


def test_versions_and_plans(tmp_path):
    from edgecnn.tensorrt.versions import (
        TrtVersion,
        build_plan,
        check_precision,
        check_supported,
        trtexec_version,
    )

    assert TrtVersion.parse("10.3.0.30") == TrtVersion(10, 3, 0) and str(TrtVersion.parse("11")) == "11.0.0"
    assert trtexec_version(TRTEXEC_LOG) == TrtVersion(10, 3, 0)
    assert trtexec_version(
        "&&&& RUNNING TensorRT.trtexec [TensorRT v110400] [b106] # trtexec --help"
    ) == TrtVersion(11, 4, 0)
    assert trtexec_version("[I] TensorRT version: 10.13.3") == TrtVersion(10, 13, 3)
    assert trtexec_version("no banner") is None
    p10, p11 = build_plan("int8", TrtVersion(10, 3)), build_plan("int8", TrtVersion(11, 4))
    assert (p10.trtexec_flags, p10.strongly_typed, p10.fp16_rewrite) == (("--int8", "--fp16"), False, False)
    assert (p11.trtexec_flags, p11.builder_flags, p11.strongly_typed, p11.fp16_rewrite) == (
        (),
        (),
        True,
        False,
    )
    assert build_plan("int8", TrtVersion(11, 4), fp16_rewrite=True).variant == "fp16-outside-qdq"
    assert p11.variant is None
    for precision, version in (("fp16", TrtVersion(11, 4)), ("int8", TrtVersion(10, 3))):
        with pytest.raises(EdgecnnError, match="^--fp16-outside-qdq is for an int8 artifact on TensorRT 11"):
            build_plan(precision, version, fp16_rewrite=True)
    tegra = tmp_path / "nv_tegra_release"
    tegra.write_text(
        "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: ...\n"
    )
    with pytest.raises(
        EdgecnnError,
        match=r"^TensorRT 8.5.2 is too old: .*; this Jetson runs L4T R35.4.1 "
        r"\(JetPack 5\)$",
    ):
        check_supported(TrtVersion(8, 5, 2), tegra_release=str(tegra))
    logs: list[str] = []
    check_supported(TrtVersion(12, 0), logs.append)
    assert logs and "newer than edgecnn's tested range" in logs[0]
    check_precision("int8", "8.7")
    check_precision("fp16", "5.3", "Jetson Nano")
    with pytest.raises(
        EdgecnnError,
        match=r"^NVIDIA Tegra X1 has compute capability 5.3, and TensorRT has no "
        r"INT8 kernels below 6.1 .*export --precision fp16",
    ):
        check_precision("int8", "5.3", "NVIDIA Tegra X1")


@pytest.mark.parametrize("fp16_outside_qdq", [False, True])
def test_trtexec_11_builds_strongly_typed(tmp_path, edgecnn_home, fp16_outside_qdq):
    """A stand-in TensorRT 11 trtexec: no precision flags; --onnx is the artifact's graph, or its FP16 rewrite
    when asked for (cached under its own key); the timing cache beside the engines."""
    fake = tmp_path / "bin" / "trtexec"
    fake.parent.mkdir()
    args_log, seen = tmp_path / "args", tmp_path / "seen.onnx"
    log11 = TRTEXEC_LOG.replace("v100300", "v110400").replace(
        "TensorRT version: 10.3.0", "TensorRT version: 11.4.0"
    )
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f"printf '%s\\n' \"$@\" > {shlex.quote(str(args_log))}\n"
        f"cat <<'LOG'\n{log11}LOG\n"
        'for a in "$@"; do case $a in\n'
        '  --int8|--fp16) echo "Unknown option: $a" >&2; exit 1;;\n'
        f'  --onnx=*) cp "${{a#--onnx=}}" {shlex.quote(str(seen))};;\n'
        "  --saveEngine=*) printf 'ENGINE11' > \"${a#--saveEngine=}\";;\n"
        "  --timingCacheFile=*) printf 'TC' > \"${a#--timingCacheFile=}\";;\n"
        "esac; done\n"
    )
    fake.chmod(0o755)
    art = _artifact(tmp_path / "a", "int8")
    (art / "model.onnx").unlink()
    _qdq_onnx(art / "model.onnx")
    meta = json.loads((art / "metadata.json").read_text())
    write_metadata(
        art, {k: v for k, v in meta.items() if k not in ("files", "sha256")} | {"files": ["model.onnx"]}
    )
    r = tb.build_artifact(art, trtexec=str(fake), fp16_rewrite=fp16_outside_qdq, log=lambda s: None)
    args = args_log.read_text().split()
    assert "--int8" not in args and "--fp16" not in args
    onnx_arg = next(a for a in args if a.startswith("--onnx="))
    import onnx

    if fp16_outside_qdq:
        assert onnx_arg.endswith(".fp16.onnx") and not Path(onnx_arg[7:]).exists()  # temporary, removed
        assert onnx.load(str(seen)).opset_import[0].version == 19
    else:
        assert (
            onnx_arg == f"--onnx={art / 'model.onnx'}"
            and seen.read_bytes() == (art / "model.onnx").read_bytes()
        )
    timing = edgecnn_home / "engines" / "timing" / "trt11.4.0.cache"
    assert f"--timingCacheFile={timing}" in args and timing.read_bytes() == b"TC"
    side = r["meta"]
    assert side["plan"]["strongly_typed"] and side["plan"]["trtexec_flags"] == []
    assert side["plan"]["fp16_rewrite"] == fp16_outside_qdq
    if fp16_outside_qdq:
        assert side["fp16_rewrite"]["kept_fp32"] == 0 and side["fp16_rewrite"]["opset"] == 19
    else:
        assert side["fp16_rewrite"] is None
    assert (art / "model.engine").read_bytes() == b"ENGINE11" and side["tensorrt"] == "11.4.0"
    device = ec.DeviceInfo("11.4.0", "Orin", "8.7")
    plain = ec.engine_key(side["onnx_sha256"], "int8", device)
    assert (side["key"] == plain) != fp16_outside_qdq  # the rewrite's engine is never the session's


def test_session_refuses_tensorrt_older_than_10(tmp_path, monkeypatch):
    from edgecnn.runtimes import open_session

    trt = _fake_tensorrt([])
    trt.__version__ = "8.5.2.2"  # JetPack 5
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    with pytest.raises(EdgecnnError, match=r"^TensorRT 8.5.2 is too old"):
        open_session(_artifact(tmp_path / "a", "fp16"))


def test_tensorrt_extra_pins_the_tested_range():
    from edgecnn.config import read_toml
    from edgecnn.tensorrt.versions import MAX_TESTED_MAJOR, MIN_MAJOR

    extra = read_toml(REPO / "pyproject.toml")["project"]["optional-dependencies"]["tensorrt"]
    assert f"tensorrt>={MIN_MAJOR}.0,<{MAX_TESTED_MAJOR + 1}" in extra


@pytest.mark.needs_tensorrt
def test_real_int8_engine_matches_onnxruntime(tmp_path, edgecnn_home):
    """On this GPU's TensorRT (10.x flags or 11.x strongly typed with the FP16 rewrite), the INT8 engine of a
    QDQ graph computes what ONNX Runtime computes from the same graph in FP32."""
    from edgecnn.runtimes import open_session

    art = _artifact(tmp_path / "a", "int8", shape=(None, 3, 8, 8))
    (art / "model.onnx").unlink()
    _qdq_onnx(art / "model.onnx")
    meta = json.loads((art / "metadata.json").read_text())
    write_metadata(
        art, {k: v for k, v in meta.items() if k not in ("files", "sha256")} | {"files": ["model.onnx"]}
    )
    x = np.random.default_rng(4).standard_normal((48, 3, 8, 8)).astype(np.float32)
    ref = _ort(art / "model.onnx", x)
    with open_session(art) as s:
        y = s.run(x)
    assert y.shape == ref.shape and np.abs(y - ref).max() < 0.05 * (ref.max() - ref.min())
    assert (y.argmax(1) == ref.argmax(1)).mean() >= 0.9
