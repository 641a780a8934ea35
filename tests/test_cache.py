"""``edgecnn cache`` and ``edgecnn cache prune`` on a cache a real deploy filled."""

from __future__ import annotations

import json
import shutil
import tempfile

import pytest
from click.testing import CliRunner
from tiny_recipes import fp32_command, int8_recipe, random_checkpoint

from edgecnn import outdir
from edgecnn.cli import cli


def cache_json(*args: str) -> dict:
    r = CliRunner().invoke(cli, ["cache", *args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def by_kind(listing: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for e in listing["entries"]:
        out.setdefault(e["kind"], []).append(e)
    return out


@pytest.fixture
def deployed(edgecnn_home, tmp_path):
    """A cache holding one fp32 deploy (from a random-weight checkpoint) and what it made on the way."""
    recipe_path, recipe = int8_recipe(tmp_path)
    r = CliRunner().invoke(cli, fp32_command("deploy", recipe_path, random_checkpoint(tmp_path, recipe)))
    assert r.exit_code == 0, r.output
    return edgecnn_home


@pytest.mark.slow
def test_cache_lists_each_entry_and_prunes_what_nothing_refers_to(deployed):
    listing = cache_json()
    kinds = by_kind(listing)
    assert {"fp32", "artifacts", "evaluate", "latency", "deploy"} <= set(kinds)
    for e in listing["entries"]:
        assert e["size_bytes"] > 0 and e["made_by"] and e["created"]
    (bundle,) = kinds["deploy"]
    assert bundle["made_by"].startswith("edgecnn deploy test_resnet18") and bundle["status"] == "kept"
    assert all(e["status"] == "kept" for k in ("artifacts", "evaluate", "latency") for e in kinds[k])
    assert listing["temporaries"] == [] and listing["total_bytes"] >= sum(
        e["size_bytes"] for e in listing["entries"]
    )
    r = CliRunner().invoke(cli, ["cache"])
    assert r.exit_code == 0 and "kept" in r.output and kinds["deploy"][0]["path"].split("/")[-1] in r.output
    assert cache_json("prune")["removed"] == []  # everything is referenced

    art = deployed / kinds["artifacts"][0]["path"]
    shutil.rmtree(
        deployed / bundle["path"]
    )  # the bundle went: its artifact, accuracy and latency are orphans
    stale = tempfile.mkstemp(prefix=".metadata.json.", suffix=".tmp", dir=art)[
        1
    ]  # as a SIGKILLed write leaves it
    listing = cache_json()
    statuses = {e["kind"]: e["status"] for e in listing["entries"]}
    assert statuses["artifacts"] == statuses["evaluate"] == statuses["latency"] == "unreferenced"
    assert [t["path"] for t in listing["temporaries"]] == [stale]
    with outdir.lock(art):  # an entry a running edgecnn holds is never touched
        assert {e["status"] for e in cache_json()["entries"] if e["kind"] == "artifacts"} == {"in use"}
        cache_json("prune")
        assert art.is_dir()

    dry = cache_json("prune", "--dry-run")
    assert dry["dry_run"] and dry["freed_bytes"] > 0 and art.is_dir() and (deployed / stale).exists()
    done = cache_json("prune")
    assert sorted(r["path"] for r in done["removed"]) == sorted(r["path"] for r in dry["removed"])
    assert not art.exists()
    after = cache_json()
    assert not {"artifacts", "evaluate", "latency"} & set(by_kind(after)) and after["temporaries"] == []
    assert cache_json("prune")["removed"] == []


def test_cache_of_an_empty_or_missing_home(edgecnn_home):
    assert cache_json() == {
        "format": "edgecnn.cache/1",
        "home": str(edgecnn_home),
        "total_bytes": 0,
        "entries": [],
        "temporaries": [],
    }
    assert cache_json("prune")["removed"] == []


def test_cache_of_a_home_that_is_a_file(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.write_text("x")
    monkeypatch.setenv("EDGECNN_HOME", str(home))
    for args in (["cache"], ["cache", "prune"]):
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 2 and r.stderr.strip().splitlines() == [
            f"error: EDGECNN_HOME {home} is a file: edgecnn keeps its cache in a folder there"
        ]
    assert home.read_text() == "x"
