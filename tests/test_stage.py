"""The one stage cache (edgecnn.stage): the key, skipping what is done, the atomic write, the lock."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgecnn import outdir
from edgecnn.errors import EdgecnnError
from edgecnn.stage import folder, json_result, stage, stage_key

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECNN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_key_is_the_sha256_of_the_sorted_json_and_stable():
    inputs = {"stage": "calibrate", "arch": "resnet18", "scheme": {"b": 1, "a": [1, 2]}}
    assert stage_key(inputs) == "6436b95a958b"  # pinned: a changed key function would orphan every cache
    assert stage_key(dict(reversed(inputs.items()))) == stage_key(inputs)
    old = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()  # train.run_key's formula
    assert stage_key(inputs) == old[:12] and stage_key(inputs, length=20) == old[:20]  # and engine_key's
    assert stage_key({"path": Path("/a/b")}) == stage_key({"path": "/a/b"})  # what JSON cannot hold: its str
    assert stage_key({**inputs, "arch": "vgg16"}) != stage_key(inputs)


def test_made_once_then_skipped(home):
    calls = []

    def make(d: Path) -> None:
        calls.append(d)
        (d / "result.txt").write_text("42")

    first = stage("calibrate", {"x": 1}, make, name="net")
    assert not first.cached and first.key == stage_key({"x": 1})
    assert (
        first.path
        == folder("calibrate", "net", first.key)
        == home / "runs" / "calibrate" / f"net-{first.key}"
    )
    assert (first.path / "result.txt").read_text() == "42"
    assert outdir.read_marker(first.path).kind == "calibrate"  # edgecnn's folder, with its files recorded
    assert calls[0] != first.path  # written in a hidden temporary folder, renamed into place
    again = stage("calibrate", {"x": 1}, make, name="net")
    assert again.cached and again.path == first.path and len(calls) == 1
    other = stage("calibrate", {"x": 2}, make, name="net")
    assert not other.cached and other.path != first.path and len(calls) == 2
    forced = stage("calibrate", {"x": 1}, make, name="net", force=True)
    assert not forced.cached and len(calls) == 3
    assert stage("calibrate", {"x": 1}, make, name="net", done=lambda d: False).cached is False
    assert (
        stage("export", {"x": 1}, make, name="a", runs="artifacts").path.parent == home / "runs" / "artifacts"
    )


def test_a_failed_make_leaves_nothing_half_written(home):
    def broken(d: Path) -> None:
        (d / "half.bin").write_bytes(b"x" * 10)
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        stage("calibrate", {"x": 1}, broken, name="net")
    parent = home / "runs" / "calibrate"
    assert not parent.exists() or list(parent.iterdir()) == []  # no folder, no temporary left
    good = stage("calibrate", {"x": 1}, lambda d: (d / "r.txt").write_text("ok"), name="net")
    with pytest.raises(RuntimeError, match="killed"):
        stage("calibrate", {"x": 1}, broken, name="net", force=True)
    assert sorted(p.name for p in good.path.iterdir()) == [outdir.MARKER, "r.txt"]  # the old one, whole


def test_resumable_stage_writes_in_place_and_resumes(home):
    seen = []

    def make(d: Path) -> None:
        seen.append(sorted(p.name for p in d.iterdir() if p.name != outdir.MARKER))
        (d / "state.pt").write_text("step 1")
        if len(seen) == 1:
            raise KeyboardInterrupt  # killed after its first checkpoint
        (d / "model.pt").write_text("done")

    with pytest.raises(KeyboardInterrupt):
        stage("train", {"x": 1}, make, name="net", writes=("state.pt", "model.pt"))
    second = stage("train", {"x": 1}, make, name="net", writes=("state.pt", "model.pt"))
    assert not second.cached and seen == [[], ["state.pt"]]  # the second run found the first one's state
    marker = outdir.read_marker(second.path)
    assert set(marker.files) == {"state.pt", "model.pt"} and all(marker.files.values())  # sealed
    assert stage("train", {"x": 1}, make, name="net", writes=("state.pt", "model.pt")).cached
    assert len(seen) == 2


def test_a_folder_of_yours_is_refused_before_make(tmp_path, home):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(EdgecnnError, match="did not write"):
        stage("export", {"x": 1}, lambda d: pytest.fail("make ran"), out=mine)
    assert (mine / "notes.txt").read_text() == "keep"


CHILD = """
import sys, time
from pathlib import Path
from edgecnn.stage import stage

flags = Path(sys.argv[1])

def make(d):
    (d / "r.txt").write_text("child")
    (flags / "started").touch()
    while not (flags / "go").exists():
        time.sleep(0.02)

print(stage("calibrate", {"x": 1}, make, name="net").cached)
"""


def test_json_result_is_made_once_reused_remade_on_force_and_never_half_written(home):
    calls = []

    def make():
        calls.append(1)
        return {"top1": 0.9, "n": len(calls)}

    value, cached, path = json_result("evaluate", "k1", False, make)
    assert (value, cached) == ({"top1": 0.9, "n": 1}, False)
    assert path == home / "runs" / "evaluate" / "k1.json" and json.loads(path.read_text()) == value
    assert json_result("evaluate", "k1", False, make)[:2] == ({"top1": 0.9, "n": 1}, True)
    assert json_result("evaluate", "k1", True, make)[:2] == ({"top1": 0.9, "n": 2}, False)  # --force
    path.write_text('{"top1": 0.')  # a damaged result (not JSON) is made again, not trusted
    assert json_result("evaluate", "k1", False, make)[:2] == ({"top1": 0.9, "n": 3}, False)

    def fails():
        raise RuntimeError("killed mid-make")

    with pytest.raises(RuntimeError):
        json_result("evaluate", "k2", False, fails)
    assert not (home / "runs" / "evaluate" / "k2.json").exists()
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.startswith(".")) == ["k1.json"]


def test_a_second_identical_run_waits_for_the_first_and_uses_its_result(tmp_path, home, capfd):
    flags = tmp_path / "flags"
    flags.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGECNN_HOME": str(home)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(flags)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not (flags / "started").exists():
            assert child.poll() is None and time.monotonic() < deadline, "the first run did not start"
            time.sleep(0.02)
        result = {}
        t = threading.Thread(
            target=lambda: result.update(
                made=stage("calibrate", {"x": 1}, lambda d: pytest.fail("made twice"), name="net")
            )
        )
        t.start()
        t.join(0.5)
        assert t.is_alive()  # held by the first run's lock
        (flags / "go").touch()
        t.join(30)
        assert not t.is_alive()
    finally:
        (flags / "go").touch()
        out, _ = child.communicate(timeout=60)
    assert out.strip() == "False" and result["made"].cached
    assert (result["made"].path / "r.txt").read_text() == "child"
    assert "waiting for another run" in capfd.readouterr().err
