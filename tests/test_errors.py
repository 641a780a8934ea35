"""The error contract, through the real CLI: every input a user can get wrong ends in exactly one
line on stderr starting ``error:``, exit status 2 (130 when interrupted), and no traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

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


def run_real(args: list[str], home: Path, **kw) -> subprocess.CompletedProcess:
    """``python -m edgecnn ARGS`` as a user runs it (worktree first on the path)."""
    env = {**os.environ, "EDGECNN_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "edgecnn", *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=home.parent,
        timeout=300,
        **kw,
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
