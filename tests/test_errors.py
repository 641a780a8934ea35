"""The error contract, through the real CLI: every input a user can get wrong ends in exactly one
line on stderr starting ``error:``, exit status 2 (130 when interrupted), and no traceback."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import edgecnn
from edgecnn.cli import cli

REPO = Path(__file__).resolve().parents[1]


def assert_one_error(stderr: str, exit_code: int, expect: int = 2, *, says: tuple[str, ...] = ()) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert exit_code == expect, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    for s in says:
        assert s in lines[0], lines[0]
    return lines[0]


def run(args: list[str], expect: int = 2) -> str:
    """``edgecnn ARGS`` in this process; the one ``error:`` line it printed."""
    r = CliRunner().invoke(cli, args, catch_exceptions=True)
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return assert_one_error(r.stderr, r.exit_code, expect)


def run_real(args: list[str], home: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m edgecnn ARGS`` as a user runs it (worktree first on the path)."""
    env = {**os.environ, "EDGECNN_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "edgecnn", *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=home.parent,
        timeout=timeout,
    )


# ------------------------------------------------------------------ Click's own usage errors


@pytest.mark.parametrize(
    "args, says",
    [
        (
            ["export", "resnet18", "--target", "cpu", "--precision", "int4"],
            ("'int8', 'fp16', 'fp32'", "--help"),
        ),
        (["deploy", "resnet18", "--target", "cpu", "--max-drop", "abc"], ("--max-drop", "not a number")),
        (["deploy", "resnet18", "--bogus"], ("No such option '--bogus'", "edgecnn deploy --help")),
        (["train"], ("Missing argument 'ARCH'",)),
        (["bogus"], ("No such command 'bogus'",)),
        (["--bogus"], ("No such option",)),
        (["deploy", "resnet18"], ("Missing option '--target'",)),
        (["deploy", "resnet18", "--target", "cpu", "--qat", "--max-drop", "1"], ("conflict",)),
        (["deploy", "resnet18", "--target", "cpu", "--verbose"], ("edgecnn --verbose deploy ...",)),
    ],
)
def test_usage_errors_are_one_line(args, says):
    line = run(args)
    for s in says:
        assert s in line


def test_usage_error_through_python_m(tmp_path):
    r = run_real(["export", "resnet18", "--target", "cpu", "--precision", "int4"], tmp_path / "home")
    line = assert_one_error(r.stderr, r.returncode)
    assert "'int8', 'fp16', 'fp32'" in line and "see 'edgecnn export --help'" in line


def test_bare_edgecnn_prints_help_not_an_error():
    r = CliRunner().invoke(cli, [])
    assert r.exit_code == 0 and "Usage:" in r.stdout and r.stderr == ""


# ------------------------------------------------------------------ numbers


@pytest.mark.parametrize(
    "args, says",
    [
        (["deploy", "resnet18", "--target", "cpu", "--max-drop", "nan"], "not a finite number"),
        (["deploy", "resnet18", "--target", "cpu", "--max-drop", "-1"], "must be >= 0"),
        (["qat", "resnet18", "--max-drop", "nan"], "not a finite number"),
        (["qat", "resnet18", "--max-drop", "-1"], "must be >= 0"),
        (["export", "resnet18", "--target", "cpu", "--max-drop", "inf"], "not a finite number"),
        (["frontier", "--out", "f", "--max-drop", "-0.5"], "must be >= 0"),
        (["bench", "resnet18", "--min-seconds", "nan"], "not a finite number"),
        (["deploy", "resnet18", "--target", "cpu", "--min-seconds", "-inf"], "not a finite number"),
        (["devices", "calibrate", "--seconds", "0.01"], "must be >= 0.1"),
        (["choose", "--target", "cpu", "--max-latency", "nanms"], "finite number > 0"),
        (["choose", "--target", "cpu", "--max-latency", "infs"], "finite number > 0"),
        (["choose", "--target", "cpu", "--min-accuracy", "nan"], "between 0 and 1"),
    ],
)
def test_non_finite_and_out_of_range_numbers(args, says, edgecnn_home):
    assert says in run(args)


# ------------------------------------------------------------------ recipes, profiles, manifests


def _recipe(tmp_path: Path, body: bytes, name: str = "r.toml") -> str:
    p = tmp_path / name
    p.write_bytes(b'arch = "test_resnet18"\n' + body)
    return str(p)


def test_recipe_not_utf8(tmp_path):
    assert "not UTF-8" in run(["train", "test_resnet18", "--recipe", _recipe(tmp_path, b"# caf\xe9\n")])


def test_recipe_is_a_folder(tmp_path):
    (tmp_path / "r.toml").mkdir()
    assert "is a directory" in run(["train", "test_resnet18", "--recipe", str(tmp_path / "r.toml")])


@pytest.mark.parametrize(
    "body, says",
    [
        (b"quick = 5\n", "[quick] must be a table"),
        (b"[quick]\ntrain = [1, 2]\n", "train must be a table"),
        (b"[quick.train]\nlr = nan\n", "finite number"),
        (b"[quick.train]\nepochs = inf\n", "must be an integer"),
        (b"[quick.data]\nimage_size = '32'\n", "must be an integer"),
    ],
)
def test_recipe_wrong_shapes(tmp_path, body, says):
    assert says in run(["train", "test_resnet18", "--recipe", _recipe(tmp_path, body)])


MEMORY = r"^\[memory\]\n(?:\w+ = .*\n)+"


def _rpi5(*edits: tuple[str, str]) -> bytes:
    """The shipped rpi5 profile with each (regex, replacement) applied once."""
    from edgecnn.devices.profile import DEVICES_DIR

    text = (DEVICES_DIR / "rpi5.toml").read_text()
    for old, new in edits:
        changed = re.sub(old, new, text, count=1, flags=re.MULTILINE)
        assert changed != text, old
        text = changed
    return text.encode()


@pytest.mark.parametrize(
    "body, says",
    [
        (b"\xff\xfe", "not UTF-8"),
        (_rpi5((r'^name = "rpi5"', "name = 5")), "must be a string"),
        (_rpi5((MEMORY, "")), "missing key 'memory'"),
        (_rpi5((MEMORY, ""), (r"^power_w = 8.0", "power_w = 8.0\nmemory = 5")), "memory must be a table"),
        (_rpi5((r"^bandwidth_gbps = 17.1", "bandwidth_gbps = nan")), "finite number"),
        (_rpi5((r"^\[runtimes.tflite\]", "[runtimes.tflite_x]")), "unknown runtime"),
    ],
)
def test_device_profile_wrong_shapes(tmp_path, body, says):
    p = tmp_path / "dev.toml"
    p.write_bytes(body)
    assert says in run(["bench", "resnet18", "--target", str(p), "--predict"])


def test_device_profile_is_a_folder(tmp_path):
    (tmp_path / "dev.toml").mkdir()
    assert "is a directory" in run(["bench", "resnet18", "--target", str(tmp_path / "dev.toml"), "--predict"])


@pytest.mark.parametrize(
    "body, says",
    [
        (b"\xc3\x28", "not UTF-8"),
        (b"dataset = 5\n", "must be a string"),
        (b'dataset = "fashion-mnist"\npercentile = 5\n', "must be a table"),
    ],
)
def test_calibration_manifest_wrong_shapes(tmp_path, body, says):
    from edgecnn.errors import EdgecnnError
    from edgecnn.quantize.calibset import load_calibration

    p = tmp_path / "m.toml"
    p.write_bytes(body)
    with pytest.raises(EdgecnnError) as e:
        load_calibration(p)
    assert says in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------ metadata.json and frontier.json


def _artifact(tmp_path: Path, **changes) -> Path:
    """A well-formed artifact directory (a dummy model file) with ``changes`` applied to its metadata."""
    from edgecnn.artifact import write_metadata

    d = tmp_path / "art"
    d.mkdir(exist_ok=True)
    (d / "model.onnx").write_bytes(b"not really onnx")
    io = {"name": "x", "shape": [1, 3, 8, 8], "dtype": "float32", "scale": None, "zero_point": None}
    meta = write_metadata(
        d,
        {
            "arch": "test_resnet18",
            "model_options": {},
            "num_classes": 2,
            "class_names": ["a", "b"],
            "target": "cpu",
            "runtime": "onnxruntime",
            "precision": "fp32",
            "files": ["model.onnx"],
            "input": {**io, "layout": "NCHW"},
            "output": io,
            "preprocess": {},
            "quantization": None,
            "float_layers": [],
            "source": {},
            "tools": {},
        },
    )
    for k, v in changes.items():
        if v is KeyError:
            del meta[k]
        else:
            meta[k] = v
    (d / "metadata.json").write_text(json.dumps(meta))
    return d


def test_well_formed_artifact_loads(tmp_path):
    from edgecnn.artifact import load_artifact

    assert load_artifact(_artifact(tmp_path)).meta["tools"]["edgecnn"] == edgecnn.__version__


@pytest.mark.parametrize(
    "changes, says",
    [
        ({"files": ["model.onnx"]}, "'files' must be an object"),
        ({"files": {}}, "must map each file name"),
        ({"files": {"model.onnx": 5}}, "must map each file name"),
        ({"input": []}, "'input' must be an object"),
        ({"num_classes": "2"}, "'num_classes' must be an integer"),
        ({"runtime": "onnx"}, "unknown runtime 'onnx'"),
        ({"arch": KeyError}, "lacks arch"),
        ({"format": "edgecnn.artifact/99", "tools": {"edgecnn": "9.1"}}, "pip install -U 'edgecnn>=9.1'"),
        ({"format": "edgecnn.artifact/99"}, "reads edgecnn.artifact/1"),
        ({"format": "edgecnn.artifact/0"}, "older than this edgecnn's edgecnn.artifact/1"),
        ({"format": "something/1"}, "not edgecnn artifact metadata"),
        ({"files": {"../outside.onnx": "0" * 64}}, "not a file inside the artifact directory"),
        ({"files": {"/etc/passwd": "0" * 64}}, "not a file inside the artifact directory"),
        ({"files": {".": "0" * 64}}, "not a file inside the artifact directory"),
    ],
)
def test_artifact_metadata_wrong_shapes(tmp_path, changes, says):
    d = _artifact(tmp_path, **changes)
    assert says in run(["bench", str(d)])
    assert says in run(["evaluate", str(d)])


@pytest.mark.parametrize("text", ["[]", "null", '"x"', "{", '{"format": 1}'])
def test_artifact_metadata_not_an_object(tmp_path, text):
    d = _artifact(tmp_path)
    (d / "metadata.json").write_text(text)
    assert "re-export the artifact" in run(["bench", str(d)])


def test_artifact_file_symlinked_out(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"x")
    d = _artifact(tmp_path)
    (d / "link.bin").symlink_to(secret)
    meta = json.loads((d / "metadata.json").read_text())
    meta["files"]["link.bin"] = "0" * 64
    (d / "metadata.json").write_text(json.dumps(meta))
    assert "link out of it" in run(["bench", str(d)])


def _point(**changes) -> dict:
    p = {
        "id": "resnet18-host-openvino-int8",
        "arch": "resnet18",
        "target": "cpu",
        "device": "host",
        "runtime": "openvino",
        "precision": "int8",
        "dataset": "fashion-mnist",
        "image_size": 32,
        "test_images": 10000,
        "top1": 0.9,
        "ci95_low": 0.89,
        "ci95_high": 0.91,
        "accuracy_runtime": "openvino",
        "p50_ms": 1.0,
        "p90_ms": 1.1,
        "p99_ms": 1.2,
        "latency_source": "measured",
        "latency_band_high_ms": None,
        "energy_mj": None,
        "size_mb": 11.0,
        "memory_mb": None,
        "bundle": None,
    }
    p.update(changes)
    return {k: v for k, v in p.items() if v is not KeyError}


def _frontier(tmp_path: Path, res) -> str:
    d = tmp_path / "front"
    d.mkdir(exist_ok=True)
    (d / "frontier.json").write_text(res if isinstance(res, str) else json.dumps(res))
    return str(d)


def _result(**changes) -> dict:
    res = {"schema": "edgecnn.frontier/1", "created": "2026-12-02T08:00:00", "points": [_point()]}
    res.update(changes)
    return {k: v for k, v in res.items() if v is not KeyError}


def test_well_formed_frontier_chooses(tmp_path):
    r = CliRunner().invoke(cli, ["choose", "--target", "cpu", "--from", _frontier(tmp_path, _result())])
    assert r.exit_code == 0 and "Ship resnet18 INT8" in r.stdout, r.output


@pytest.mark.parametrize(
    "res, says",
    [
        ("[]", "not a frontier.json"),
        ("{", "not a frontier.json"),
        (_result(schema="edgecnn.frontier/99"), "this edgecnn reads edgecnn.frontier/1"),
        (_result(points=KeyError), "'points' (a list)"),
        (_result(points={"a": 1}), "'points' (a list)"),
        (_result(points=[5]), "points[0] is not an object"),
        (_result(points=[_point(top1="0.9")]), "'top1' must be a finite number"),
        (_result(points=[_point(p90_ms=float("nan"))]), "'p90_ms' must be a finite number"),
        (_result(points=[_point(device=KeyError)]), "'device' must be a string, missing"),
        (_result(points=[_point(ci95_low=True)]), "'ci95_low' must be a finite number or null"),
    ],
)
def test_frontier_json_wrong_shapes(tmp_path, res, says):
    assert says in run(["choose", "--target", "cpu", "--from", _frontier(tmp_path, res)])


# ------------------------------------------------------------------ checkpoints


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this-ran",))


@pytest.mark.parametrize("kind", ["pickle", "truncated", "text"])
@pytest.mark.parametrize("option", ["--weights", "--checkpoint"])
def test_checkpoint_errors_in_edgecnn_words(tmp_path, edgecnn_home, kind, option):
    import torch

    bad = tmp_path / "bad.pt"
    if kind == "pickle":
        torch.save({"state_dict": _RunsCode()}, bad)
    elif kind == "truncated":
        torch.save({"w": torch.ones(64)}, tmp_path / "good.pt")
        bad.write_bytes((tmp_path / "good.pt").read_bytes()[:300])
    else:
        bad.write_text("<html>404</html>")
    recipe = _recipe(tmp_path, b"[quick.data]\nimage_size = 32\n")
    command = ["train" if option == "--weights" else "calibrate", "test_resnet18", "--recipe", recipe]
    line = run([*command, option, str(bad)])
    assert line.startswith(f"error: cannot read checkpoint {bad}: ")
    assert "weights_only" not in line and "Re-running" not in line
    if kind == "pickle":
        assert "posix.system" in line and "refused" in line and "from a source you trust" in line
    else:
        assert line.endswith("re-download or re-train it")


# ------------------------------------------------------------------ Ctrl-C and third-party noise


def test_ctrl_c_is_one_line_and_exit_130(tmp_path):
    """SIGINT to the process group (what a terminal's Ctrl-C sends) in the middle of a bench."""
    pytest.importorskip("openvino")  # bench ARCH on this machine measures through OpenVINO
    env = {**os.environ, "EDGECNN_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    args = ["bench", "test_resnet18", "--target", "cpu", "--image-size", "32", "--min-seconds", "600"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgecnn", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        # a terminal's Ctrl-C reaches a process whose SIGINT is not ignored; a CI runner or shell
        # that started pytest in the background (`cmd &` without job control) ignores it, and a
        # child inherits that: give the child the default back
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Inside the bench itself: OpenVINO is loaded after the imports (on a loaded machine a fixed 8 s
    # could land in a third-party import, where one run ignored the signal: see issue 13's note).
    maps, deadline = Path(f"/proc/{proc.pid}/maps"), time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline and "libopenvino" not in maps.read_text():
        time.sleep(0.2)
    time.sleep(1)
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    line = assert_one_error(err, proc.returncode, 130)
    assert "interrupted" in line and "run the same command again" in line


def test_library_noise_goes_to_the_log_and_verbose_shows_it(tmp_path):
    """torch warns about a plain pickle's protocol while refusing it: a log line, not a terminal line."""
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump({"w": [1.0]}, f, protocol=4)
    recipe = _recipe(tmp_path, b"[quick.data]\nimage_size = 32\n")
    args = ["train", "test_resnet18", "--recipe", recipe, "--weights", str(tmp_path / "plain.pkl")]
    home = tmp_path / "home"
    r = run_real(args, home)
    line = assert_one_error(r.stderr, r.returncode)
    assert "not a PyTorch weights file" in line
    (log,) = (home / "logs").glob("*-train-*.log")
    assert "UserWarning" in log.read_text() and "pickle protocol" in log.read_text()
    loud = run_real(["--verbose", *args], home)
    assert loud.returncode == 2 and "pickle protocol" in loud.stderr
    assert loud.stderr.splitlines()[-1] == line
    assert len(list((home / "logs").glob("*.log"))) == 1  # --verbose writes no log


@pytest.mark.slow
def test_native_noise_of_a_tflite_export_stays_off_the_terminal(tmp_path):
    """LiteRT/TensorFlow's absl and oneDNN lines (C++ on fd 2) and torchao's .so warnings go to the log."""
    pytest.importorskip("litert_torch")
    from edgecnn.checkpoint import save_checkpoint
    from edgecnn.data.preprocess import Preprocess
    from edgecnn.models import create

    options = {"num_classes": 10, "small_input": True}
    ckpt = tmp_path / "model.pt"
    pre = Preprocess(image_size=32, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3)
    save_checkpoint(
        ckpt,
        arch="test_resnet18",
        model_options=options,
        state_dict=create("test_resnet18", **options).state_dict(),
        preprocess=pre.to_dict(),
    )
    recipe = _recipe(tmp_path, b"[quick.data]\nimage_size = 32\n")
    home = tmp_path / "home"
    r = run_real(
        [
            "export",
            "test_resnet18",
            "--target",
            "rpi",
            "--precision",
            "fp32",
            "--checkpoint",
            str(ckpt),
            "--recipe",
            recipe,
            "--out",
            str(tmp_path / "art"),
        ],
        home,
        timeout=1200,  # a minute alone; several on a shared 2-core machine
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    logged = "".join(p.read_text() for p in (home / "logs").glob("*-export-*.log"))
    assert "absl" in logged or "oneDNN" in logged or "Failed to load" in logged, logged
