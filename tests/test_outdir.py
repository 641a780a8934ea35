"""Output folders (``edgecnn.outdir``): edgecnn never deletes or overwrites what it did not write.

Each command is driven through the real CLI: one ``error:`` line, exit status 2, and every
file of the user's byte-identical afterwards. The work runs from a float checkpoint with
random weights (no training), at fp32, so a whole export or deploy takes seconds.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_recipes import fp32_command, int8_recipe, random_checkpoint

from edgecnn import outdir
from edgecnn.cli import cli
from edgecnn.errors import EdgecnnError

REPO = Path(__file__).resolve().parents[1]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (the marker left out) and its bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != outdir.MARKER
    }


def one_error(result, *words: str) -> str:
    """The run failed with exit 2 and printed exactly one line on stderr, an ``error:`` naming ``words``."""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny recipe and a float test_resnet18 checkpoint with random weights."""
    d = tmp_path_factory.mktemp("outdir")
    recipe_path, recipe = int8_recipe(d)
    return recipe_path, random_checkpoint(d, recipe)


def export_args(setup, out: Path, *extra) -> list[str]:
    return fp32_command("export", *setup, "--out", out, *extra)


def deploy_args(setup, out: Path, *extra) -> list[str]:
    return fp32_command("deploy", *setup, "--out", out, *extra)


# ---------------------------------------------------------------- the rule, on the module itself


def test_a_rerun_replaces_only_what_edgecnn_wrote(tmp_path):
    out = tmp_path / "out"
    with outdir.replace(out, "deploy") as tmp:
        (tmp / "report.json").write_text("1")
        (tmp / "artifact").mkdir()
        (tmp / "artifact" / "model.onnx").write_text("m1")
        (tmp / "old.txt").write_text("only the first run writes this")
    (out / "notes.txt").write_text("mine")
    (out / "artifact" / "mine.txt").write_text("mine too")
    (out / "empty").mkdir()
    os.symlink("notes.txt", out / "link")
    mine = snapshot(out)
    with outdir.replace(out, "deploy") as tmp:
        (tmp / "report.json").write_text("2")
        (tmp / "artifact").mkdir()
        (tmp / "artifact" / "model.onnx").write_text("m2")
    assert (out / "report.json").read_text() == "2" and (out / "artifact" / "model.onnx").read_text() == "m2"
    assert not (out / "old.txt").exists()  # edgecnn's own file of the first run went
    for f in ("notes.txt", "artifact/mine.txt"):
        assert (out / f).read_bytes() == mine[f]
    assert (out / "empty").is_dir() and os.readlink(out / "link") == "notes.txt"
    assert sorted(json.loads((out / outdir.MARKER).read_text())["files"]) == [
        "artifact/model.onnx",
        "report.json",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left


def test_a_folder_without_the_marker_is_never_edgecnns(tmp_path):
    out = tmp_path / "album"
    out.mkdir()
    (out / "metadata.json").write_text('{"format": "edgecnn.artifact/1"}')
    (out / "report.json").write_text('{"schema": "edgecnn.report/1"}')
    with pytest.raises(EdgecnnError, match="edgecnn did not write"):
        outdir.check(out, "export")
    with pytest.raises(EdgecnnError, match="not a folder"):
        outdir.check(out / "report.json", "deploy")


def test_changed_or_clashing_files_are_refused_by_name(tmp_path):
    out = tmp_path / "b"
    with outdir.replace(out, "deploy") as tmp:
        (tmp / "report.md").write_text("edgecnn's")
    (out / "report.md").write_text("edited by hand")
    with (
        pytest.raises(EdgecnnError, match="report.md is not a file edgecnn wrote"),
        outdir.replace(out, "deploy") as tmp,
    ):
        (tmp / "report.md").write_text("new")
    assert (out / "report.md").read_text() == "edited by hand"
    with pytest.raises(EdgecnnError, match="holds edgecnn's deploy output, not a frontier"):
        outdir.check(out, "frontier")


def test_a_swap_cut_short_is_recovered(tmp_path):
    out = tmp_path / "b"
    with outdir.replace(out, "deploy") as tmp:
        (tmp / "report.json").write_text("1")
    (out / "notes.txt").write_text("mine")
    old = tmp_path / f".b{outdir.OLD_TAG}"
    os.replace(out, old)  # killed between the two renames of a swap
    with outdir.lock(out):
        outdir.clean(out)  # what the next run of the stage does, holding its lock
    assert (out / "notes.txt").read_text() == "mine" and not old.exists()


# ---------------------------------------------------------------- through the CLI


def test_export_refuses_a_folder_that_merely_holds_a_metadata_json(setup, tmp_path):
    album = tmp_path / "album"
    album.mkdir()
    (album / "metadata.json").write_text('{"camera": "x100"}')
    (album / "IMG_0001.jpg").write_bytes(b"\xff\xd8 photo")
    before = snapshot(album)
    one_error(invoke(*export_args(setup, album)), str(album), "edgecnn did not write")
    one_error(invoke(*export_args(setup, album, "--force")), "edgecnn did not write")
    assert snapshot(album) == before


@pytest.mark.slow
def test_export_rerun_keeps_user_files_and_removes_stale_temporaries(setup, tmp_path):
    out = tmp_path / "art"
    r = invoke(*export_args(setup, out))
    assert r.exit_code == 0, r.output
    (out / "notes.txt").write_text("mine")
    stale_dir = tmp_path / f".art{outdir.TMP_TAG}abcd1234"  # what a SIGKILLed export leaves
    stale_dir.mkdir()
    (stale_dir / "model.onnx").write_bytes(b"half")
    stale_file = out / ".metadata.json.k3j4h5.tmp"
    stale_file.write_text("{")
    r = invoke(*export_args(setup, out, "--force"))
    assert r.exit_code == 0, r.output
    assert (out / "notes.txt").read_text() == "mine" and (out / "metadata.json").is_file()
    assert not stale_dir.exists() and not stale_file.exists()


@pytest.mark.slow
def test_deploy_refuses_a_stub_report_and_keeps_user_files_on_rerun(setup, tmp_path):
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "report.json").write_text('{"schema": "edgecnn.report/1"}')
    (stub / "thesis.tex").write_text("chapter 1")
    before = snapshot(stub)
    one_error(invoke(*deploy_args(setup, stub, "--force")), "edgecnn did not write")
    assert snapshot(stub) == before

    bundle = tmp_path / "bundle"
    r = invoke(*deploy_args(setup, bundle))
    assert r.exit_code == 0, r.output
    (bundle / "notes.md").write_text("my notes on this run")
    (bundle / "artifact" / "labels.txt").write_text("mine")
    mine = {k: v for k, v in snapshot(bundle).items() if k in ("notes.md", "artifact/labels.txt")}
    r = invoke(*deploy_args(setup, bundle, "--force"))
    assert r.exit_code == 0, r.output
    after = snapshot(bundle)
    assert {k: after[k] for k in mine} == mine and "report.json" in after
    (bundle / "RUN.md").write_text("edited")
    one_error(invoke(*deploy_args(setup, bundle)), "RUN.md is not a file edgecnn wrote")
    assert (bundle / "RUN.md").read_text() == "edited"


def test_train_refuses_a_folder_with_a_foreign_model_or_train_json(setup, tmp_path):
    recipe, _ = setup
    d = tmp_path / "run"
    d.mkdir()
    (d / "model.pt").write_bytes(b"somebody's model")
    (d / "train.json").write_text("{not json")
    before = snapshot(d)
    one_error(invoke("train", "test_resnet18", "--recipe", recipe, "--out", d), "edgecnn did not write")
    one_error(
        invoke("train", "test_resnet18", "--recipe", recipe, "--out", d, "--force"), "edgecnn did not write"
    )
    assert snapshot(d) == before


def test_a_full_disk_leaves_nothing_half_written(setup, tmp_path, monkeypatch):
    from edgecnn import bundle

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bundle, "run_md", full)  # the disk fills up while the bundle is written
    out = tmp_path / "b"
    one_error(invoke(*deploy_args(setup, out)), "no space left on the device")
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == []


def test_edgecnn_home_that_is_a_file(setup, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.write_text("not a folder")
    monkeypatch.setenv("EDGECNN_HOME", str(home))
    one_error(invoke(*export_args(setup, tmp_path / "a")), f"EDGECNN_HOME {home} is a file")
    assert home.read_text() == "not a folder" and not (tmp_path / "a").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_edgecnn_home_unwritable(setup, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir(mode=0o500)
    monkeypatch.setenv("EDGECNN_HOME", str(home))
    one_error(invoke(*export_args(setup, tmp_path / "a")), f"EDGECNN_HOME {home}")


@pytest.mark.slow
def test_a_second_identical_deploy_waits_and_reads_the_cache(setup, tmp_path):
    """Two real processes, one EDGECNN_HOME: the second says it waits, then does none of the work."""
    env = {**os.environ, "EDGECNN_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "edgecnn", *map(str, deploy_args(setup, tmp_path / "b")), "--json"]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    reports = [json.loads(out) for out, _ in results]
    waited = [err for _, err in results if "waiting for another run" in err]
    assert len(waited) == 1, [err[-2000:] for _, err in results]
    for stage in ("export", "evaluate", "latency"):
        assert sorted(r["stages"][stage]["cached"] for r in reports) == [False, True], stage


@pytest.fixture(scope="module")
def small_train(tmp_path_factory):
    """A recipe that trains test_resnet18 for one epoch of 256 images (seconds)."""
    d = tmp_path_factory.mktemp("small")
    text = int8_recipe(d)[0].read_text().replace("train_subset = 1024", "train_subset = 256")
    p = d / "small.toml"
    p.write_text(text.replace("epochs = 2", "epochs = 1"))
    return p


def test_train_rerun_removes_what_a_killed_run_left(small_train, tmp_path):
    run = tmp_path / "run"
    args = ("train", "test_resnet18", "--recipe", small_train, "--out", run)
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    model = (run / "model.pt").read_bytes()
    stale = run / ".state.pt.x1y2z3w4.tmp"  # what a SIGKILL during a state save leaves
    stale.write_bytes(b"\0" * 1000)
    (run / "notes.txt").write_text("mine")
    r = invoke(*args)
    assert r.exit_code == 0 and "reusing finished run" in r.output, r.output
    assert not stale.exists() and (run / "model.pt").read_bytes() == model
    assert (run / "notes.txt").read_text() == "mine"
    (run / "train.json").write_text(
        "{broken"
    )  # edgecnn's file, changed since: refused by name, never a traceback
    one_error(invoke(*args), "train.json is not a file edgecnn wrote")


def test_a_full_disk_while_training_leaves_no_temporary(small_train, tmp_path, monkeypatch):
    import torch

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    run = tmp_path / "run"
    one_error(
        invoke("train", "test_resnet18", "--recipe", small_train, "--out", run), "no space left on the device"
    )
    assert [p.name for p in run.iterdir()] == [outdir.MARKER]  # no state.pt, no .state.pt.*.tmp


@pytest.mark.slow
def test_a_sigkilled_training_resumes_and_its_temporary_goes(small_train, tmp_path):
    """A real SIGKILL while state.pt is being rewritten leaves .state.pt.*.tmp; the next run resumes and
    removes it."""
    recipe = tmp_path / "every-step.toml"  # save the state after every step: a save is always close
    recipe.write_text(small_train.read_text().replace('amp = "off"', 'amp = "off"\ncheckpoint_seconds = 0'))
    run = tmp_path / "run"
    env = {**os.environ, "EDGECNN_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "edgecnn",
        "train",
        "test_resnet18",
        "--recipe",
        str(recipe),
        "--out",
        str(run),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    left: list[str] = []
    while proc.poll() is None and not left:
        names = os.listdir(run) if run.is_dir() else []
        if "state.pt" in names:  # a state to resume from exists; catch the next save in flight
            left = [n for n in names if n.startswith(".state.pt.") and n.endswith(".tmp")]
        time.sleep(0.0005)
    proc.kill()
    proc.wait()
    assert left and (run / left[0]).exists(), "the run ended before a save was caught in flight"
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming" in res.stdout and (run / "model.pt").is_file()
    assert not [n for n in os.listdir(run) if n.endswith(".tmp")]
