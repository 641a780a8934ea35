"""The command line: help everywhere, one-line errors with exit 2, a fast start."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgecnn.cli import cli


def test_version_and_help():
    r = CliRunner().invoke(cli, ["--version"], catch_exceptions=False)
    assert r.exit_code == 0 and "edgecnn, version" in r.output
    r = CliRunner().invoke(cli, ["-h"], catch_exceptions=False)
    assert r.exit_code == 0
    for name in ("models", "train"):
        assert name in r.output


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_has_help_with_an_example(name):
    r = CliRunner().invoke(cli, [name, "--help"], catch_exceptions=False)
    assert r.exit_code == 0
    assert "Example" in r.output


def test_unknown_arch_is_one_line_with_suggestion():
    r = CliRunner().invoke(cli, ["train", "resnt18"])
    assert r.exit_code == 2
    assert r.output.strip().count("\n") == 0
    assert r.output.startswith("error: unknown architecture 'resnt18'") and "resnet18" in r.output


def test_unknown_recipe_key_from_cli(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('arch = "resnet18"\n[quick.train]\nepochz = 1\n')
    r = CliRunner().invoke(cli, ["train", "resnet18", "--recipe", str(p)])
    assert r.exit_code == 2 and "unknown key 'epochz'" in r.output and str(p) in r.output


def test_import_and_help_do_not_import_torch():
    code = "import sys, edgecnn, edgecnn.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
