"""``edgecnn frontier`` and ``edgecnn choose``: a real tiny frontier end to end, then the chooser's rules."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from dataclasses import replace

import pytest
from click.testing import CliRunner
from tiny_recipes import int8_recipe

from edgecnn.cli import cli
from edgecnn.errors import EdgecnnError
from edgecnn.frontier import (
    FILES,
    SCHEMA,
    FrontierOptions,
    FrontierPoint,
    choose,
    flag_pareto,
    load_points,
    parse_accuracy,
    parse_latency,
    parse_targets,
    run_frontier,
    work_order,
)
from edgecnn.outdir import MARKER
from edgecnn.recipes import load_recipe

fast = {"bench_seconds": 0.2, "bench_runs": 5, "threads": 1}
TARGETS = [("cpu", None), ("jetson", None), ("rpi", "rpi4")]


@pytest.fixture(scope="module")
def recipe_dir(tmp_path_factory):
    """The tiny int8 recipe with a seed of its own: its training is this module's first run's, not
    one another test module left in the session's cache (the first-run ETA times its steps)."""
    d = tmp_path_factory.mktemp("recipes")
    p, _ = int8_recipe(d, name="test_resnet18.toml")
    p.write_text(p.read_text().replace("[quick.train]\n", "[quick.train]\nseed = 11\n", 1))
    return d


FIRST_RUN: dict = {"log": [], "updates": []}  # what the module's run logged, and its files after each point


def _snapshot(out, result):
    """The report files as a reader opening them mid-run sees them."""
    FIRST_RUN["updates"].append(
        {
            "result": result.to_json(),
            "files": sorted(p.name for p in out.iterdir()),
            "json": json.loads((out / "frontier.json").read_text()),
            "html": (out / "report.html").read_text(),
            "md": (out / "report.md").read_text(),
        }
    )


@pytest.fixture(scope="module")
def run(recipe_dir, tmp_path_factory):
    recipe = load_recipe("test_resnet18", str(recipe_dir / "test_resnet18.toml"))
    out = tmp_path_factory.mktemp("frontier") / "f"
    t0 = time.perf_counter()
    opts = FrontierOptions(
        recipe_for=lambda a: recipe,
        out=out,
        **fast,
        log=FIRST_RUN["log"].append,
        progress=False,
        on_update=_snapshot,
    )
    path, res = run_frontier(["test_resnet18"], TARGETS, ["int8", "fp16", "fp32"], opts)
    return path, res.to_json(), time.perf_counter() - t0, recipe


@pytest.mark.slow
def test_the_report_is_written_after_every_point_and_reloads_until_the_end(run):
    path, res, _, _ = run
    ups = FIRST_RUN["updates"]
    assert len(ups) == len(res["points"]) - 1  # after each point but the last; then the final files
    first = ups[0]
    assert first["files"] == sorted([*FILES, MARKER])
    assert (
        first["json"]["in_progress"]
        # a new folder, no recorded times: the first run trained; the rest is estimated from its
        # time less its training's estimate
        == {
            "done": 1,
            "of": len(res["points"]),
            "eta_s": first["json"]["in_progress"]["eta_s"],
            "eta_basis": "estimated",
        }
        == first["result"]["in_progress"]
    )
    [pt] = first["json"]["points"]
    assert pt["id"] == res["points"][0]["id"] and pt["top1"] == res["points"][0]["top1"]
    assert '<meta http-equiv="refresh"' in first["html"] and pt["device"] in first["html"]
    assert first["json"]["in_progress"]["eta_s"] > 0
    for text in (first["md"], first["html"]):
        assert f"In progress: 1 of {len(res['points'])} runs done, ETA 0:" in text
        assert "(estimated from the trainings" in text and "timed steps and this run" in text  # html: &#x27;
    assert [len(u["json"]["points"]) for u in ups] == list(range(1, len(res["points"])))
    html = (path / "report.html").read_text()
    assert "refresh" not in html and "In progress" not in html and "in_progress" not in res


@pytest.mark.slow
def test_a_first_run_estimates_its_eta_from_timed_training_steps_and_its_finished_runs(run):
    """A new folder has no recorded times: the first line's ETA is the training alone, timed from a
    few of its steps (a lower bound); once a run has finished, the rest is estimated from the
    runs done. Reads what `run` logged."""
    log = FIRST_RUN["log"]
    [timed] = [s for s in log if s.startswith("training steps timed for the ETA: ")]
    num = r"(\d+(?:\.\d+)?)"
    pattern = (
        rf"training steps timed for the ETA: test_resnet18 {num} x {num} s"
        rf" \+ validation {num} s \+ test {num} s"
    )
    m = re.fullmatch(pattern, timed)
    assert m and int(m[1]) > 0 and float(m[2]) > 0  # the evaluation passes' own times: tests/test_train.py
    lines = [s for s in log if s.startswith("[")]
    assert lines[0].startswith("[1/9] test_resnet18 on cpu, int8 | 0 of 7 done, 0:00:")
    assert "ETA at least 0:" in lines[0] and "(the trainings still to do, from their timed steps" in lines[0]
    assert all(
        "(estimated from the trainings' timed steps and this run's finished runs)" in s for s in lines[1:]
    )
    assert " of 7 done" in lines[-1] and "6 of 7 done" in lines[-1]
    assert [u["json"]["in_progress"]["eta_basis"] for u in FIRST_RUN["updates"]] == ["estimated"] * 6


def test_eta_adds_recorded_times_trainings_still_to_do_and_each_networks_runs_after_training():
    from edgecnn.frontier.eta import eta_basis, eta_text

    runs = [
        ("resnet18", "cpu", None, "int8"),
        ("resnet18", "rpi", None, "int8"),
        ("vgg16", "cpu", None, "int8"),
    ]
    recorded = {("resnet18", "cpu", "host", "int8"): 100.0}
    # resnet18 on cpu recorded (100); resnet18 on rpi: its training was done (0) + 20; vgg16: 300 + 40
    after = {"resnet18": 20.0, "vgg16": 40.0}
    assert eta_basis(runs, recorded, {"resnet18": 0.0, "vgg16": 300.0}, after) == (460.0, "estimated")
    # the training counts once per network however many of its runs remain
    assert eta_basis(runs[2:] * 3, {}, {"vgg16": 300.0}, after) == (420.0, "estimated")
    # no run after training timed yet: the trainings alone, a lower bound; 0 of them says nothing
    assert eta_basis(runs, {}, {"resnet18": 50.0, "vgg16": 300.0}, None) == (350.0, "lower bound")
    assert eta_basis(runs[:2], {}, {"resnet18": 0.0}, None) == (None, None)
    # a run with neither a recorded time nor a training estimate: unknown, never a guess
    assert eta_basis(runs, recorded, {"resnet18": 0.0}, after) == (None, None)
    assert eta_basis(runs[:1], recorded, {}, None) == (100.0, "recorded")
    # a network with a training to do (a changed recipe) does not take its old recorded times
    assert eta_basis(runs[:1], recorded, {"resnet18": 50.0}, after) == (70.0, "estimated")
    assert eta_text(350.0, "lower bound").startswith("ETA at least 0:05:50 (the trainings still to do")
    assert eta_text(None, None) == "ETA unknown"


def test_the_eta_learns_from_finished_runs_not_from_failed_ones():
    from edgecnn.frontier.run import Combo, _Run

    run = _Run(
        ["a", "b"], [], [], FrontierOptions(recipe_for=lambda a: None, out="x"), {"a": 100.0, "b": 200.0}
    )
    rest = [Combo("a", "cpu", None, "fp32"), Combo("b", "cpu", None, "int8")]
    assert run.eta(rest, {}) == (300.0, "lower bound")
    run.finished("a", 1.0, None)  # failed at once: says nothing, and a's training is still to do
    assert run.eta(rest, {}) == (300.0, "lower bound")
    run.finished("c", 500.0, ("latency",))  # trained with no estimate: its time after training unknown
    assert run.eta(rest, {}) == (300.0, "lower bound")
    run.finished("a", 130.0, ("latency",))  # trained (100 estimated): 30 s after training
    assert run.eta(rest, {}) == (30.0 + 200.0 + 30.0, "estimated")
    run.finished("a", 10.0, ("train", "export"))  # a run after training: now the mean of those
    run.finished("a", 20.0, ("train",))
    assert run.eta(rest, {}) == (15.0 + 200.0 + 15.0, "estimated")


def test_the_eta_scales_each_networks_runs_after_training_by_its_evaluation_cost():
    """A larger network's runs after training take longer (they evaluate the test split in several
    runtimes): the fixed part is learned from the finished runs, the rest scales with the
    network's FP32 test pass; without every network's pass, the plain mean."""
    from edgecnn.frontier.eta import EVAL_PASSES_PER_RUN as K
    from edgecnn.frontier.eta import after_training_s
    from edgecnn.frontier.run import Combo, _Run

    assert after_training_s([], {"a": 1.0}, ["a"]) is None
    fixed = 12.0
    done = [("small", fixed + K * 4.0), ("small", fixed + K * 4.0)]
    got = after_training_s(done, {"small": 4.0, "big": 30.0}, ["big"])
    assert got == pytest.approx({"small": fixed + K * 4.0, "big": fixed + K * 30.0})
    assert after_training_s(done, {"small": 4.0}, ["big"]) == pytest.approx(
        {"small": fixed + K * 4.0, "big": fixed + K * 4.0}
    )
    # a network cheaper than its evaluations suggest: the fixed part never goes below zero
    assert after_training_s([("small", 1.0)], {"small": 10.0, "big": 20.0}, ["big"])["big"] == pytest.approx(
        K * 20.0
    )

    opts = FrontierOptions(recipe_for=lambda a: None, out="x")
    run = _Run(["small", "big"], [], [], opts, {"small": 100.0, "big": 300.0}, {"small": 4.0, "big": 30.0})
    run.finished("small", 100.0 + fixed + K * 4.0, ("latency",))  # trained: its rest is work after training
    rest = [Combo("big", "cpu", None, "int8"), Combo("big", "cpu", None, "fp32")]
    assert run.eta(rest, {})[0] == pytest.approx(300.0 + 2 * (fixed + K * 30.0))


def test_the_eta_leaves_out_cache_hits_and_networks_without_an_evaluation_time():
    """A resumed frontier: a network trained before this run (no estimate) may only read caches,
    so its runs do not set the others' time while a network this run trained has finished runs;
    a network with no FP32 pass timed takes the plain mean."""
    from edgecnn.frontier.eta import EVAL_PASSES_PER_RUN as K
    from edgecnn.frontier.run import Combo, _Run

    opts = FrontierOptions(recipe_for=lambda a: None, out="x")
    run = _Run(
        ["old", "new", "big"],
        [],
        [],
        opts,
        {"old": 0.0, "new": 50.0, "big": 300.0},
        {"new": 5.0, "big": 30.0},
    )
    run.finished("old", 1.0, ("train", "export", "evaluate"))  # a cache hit
    rest = [Combo("big", "cpu", None, "int8")]
    assert run.eta(rest, {})[0] == pytest.approx(300.0 + 1.0)  # only the cache hit so far: its mean
    run.finished("new", 50.0 + 20.0, ("latency",))  # trained here: 20 s after its training
    assert run.eta(rest, {})[0] == pytest.approx(300.0 + (20.0 - K * 5.0) + K * 30.0)
    run.finished("new", 12.0, ("train",))  # a run after training of a network trained here
    assert run.eta(rest, {})[0] == pytest.approx(300.0 + (12.0 - K * 5.0) + K * 30.0)
    assert run.eta([Combo("old", "cpu", None, "fp32")], {})[0] == pytest.approx(12.0)


def test_a_network_about_to_train_is_timed_again_and_the_lesser_timing_counts():
    from edgecnn.frontier.run import _Run
    from edgecnn.train import TrainingEstimate

    opts = FrontierOptions(recipe_for=lambda a: None, out="x")
    run = _Run(["a", "b"], [], [], opts, {"a": 0.0, "b": 500.0}, {"b": 30.0})
    run.retime("b", TrainingEstimate(100, 2.0, 10.0, 20.0))  # 230 s: the first timing was slow
    assert (run.training_s["b"], run.eval_s["b"]) == (230.0, 20.0)
    run.retime("b", TrainingEstimate(100, 4.0, 10.0, 40.0))  # slower again: kept
    assert (run.training_s["b"], run.eval_s["b"]) == (230.0, 20.0)
    run.retime("b", None)  # the second timing failed
    run.retime("a", TrainingEstimate(100, 1.0))  # a's training is done (cached): nothing to time
    assert run.training_s == {"a": 0.0, "b": 230.0}


def test_the_frontier_gives_the_eta_each_networks_training_and_test_pass(monkeypatch, tmp_path):
    """run_frontier's wiring: the training estimate's whole time and its FP32 test pass."""
    from edgecnn.frontier import run as frontier_run
    from edgecnn.train import TrainingEstimate

    seen = {}

    class Stop(Exception):
        pass

    def fake_run(*args):
        seen["training_s"], seen["eval_s"] = args[4], args[5]
        raise Stop

    monkeypatch.setattr(frontier_run, "_Run", fake_run)
    monkeypatch.setattr(
        frontier_run,
        "training_estimates",
        lambda runnable, opts: {
            "resnet18": TrainingEstimate(10, 2.0, 3.0, 4.0),
            "vgg16": TrainingEstimate(0, 0.0),
        },
    )
    opts = FrontierOptions(recipe_for=lambda a: None, out=tmp_path / "f")
    with pytest.raises(Stop):
        run_frontier(["resnet18", "vgg16"], [("cpu", None)], ["fp32"], opts)
    assert seen == {"training_s": {"resnet18": 27.0, "vgg16": 0.0}, "eval_s": {"resnet18": 4.0}}


def test_work_order_puts_the_cheapest_network_first():
    from edgecnn.models import arch_info

    def family(a):
        return arch_info(a).family

    assert work_order(["vgg16", "alexnet", "googlenet", "resnet18"], family) == [
        "resnet18",
        "googlenet",
        "alexnet",
        "vgg16",
    ]
    assert work_order(["test_vgg16", "test_resnet18"], family) == ["test_resnet18", "test_vgg16"]


@pytest.mark.slow
def test_frontier_runs_every_combination_and_writes_its_files(run):
    path, res, _, _ = run
    assert sorted(p.name for p in path.iterdir()) == sorted([*FILES, MARKER])  # MARKER: edgecnn made it
    assert json.loads((path / "frontier.json").read_text()) == res
    assert res["schema"] == SCHEMA and res["cost"] == "p50" and res["cost_unit"] == "ms"
    # fp16 only exists for TensorRT: the other two targets list it as not applicable
    assert sorted((s["target"], s["precision"]) for s in res["skipped"]) == [
        ("cpu", "fp16"),
        ("rpi4", "fp16"),
    ]
    assert res["failed"] == []
    got = sorted((p["device"], p["runtime"], p["precision"]) for p in res["points"])
    host = next(p["device"] for p in res["points"] if p["target"] == "cpu")
    assert got == sorted(
        [
            (host, "openvino", "int8"),
            (host, "openvino", "fp32"),
            ("jetson-orin-nano", "tensorrt", "int8"),
            ("jetson-orin-nano", "tensorrt", "fp16"),
            ("jetson-orin-nano", "tensorrt", "fp32"),
            ("rpi4", "tflite", "int8"),
            ("rpi4", "tflite", "fp32"),
        ]
    )
    for p in res["points"]:
        assert p["latency_source"] == ("measured" if p["target"] == "cpu" else "predicted")
        assert 0.3 < p["top1"] <= 1 and p["ci95_low"] <= p["top1"] <= p["ci95_high"]
        assert p["cost"] == p["p50_ms"] > 0 and p["size_mb"] > 0
        assert (path.parent / p["bundle"]).joinpath("report.json").is_file()
        if p["latency_source"] == "predicted":
            assert (
                p["latency_band_low_ms"] < p["p50_ms"] < p["latency_band_high_ms"] and p["memory_mb"] is None
            )
    # the int8 artifact is smaller than the fp32 one on every device (the tiny net has graph overhead)
    for dev in {p["device"] for p in res["points"]}:
        size = {p["precision"]: p["size_mb"] for p in res["points"] if p["device"] == dev}
        assert size["int8"] < 0.6 * size["fp32"]


@pytest.mark.slow
def test_pareto_flags_are_consistent_per_device(run):
    _, res, _, _ = run
    pts = res["points"]
    for p in pts:
        same = [q for q in pts if q["device"] == p["device"] and q is not p]
        dominators = [
            q["id"]
            for q in same
            if q["top1"] >= p["top1"]
            and q["cost"] <= p["cost"]
            and (q["top1"] > p["top1"] or q["cost"] < p["cost"])
        ]
        assert sorted(p["dominated_by"]) == sorted(dominators)
        assert p["pareto"] is (not dominators)
    for dev in {p["device"] for p in pts}:
        assert any(p["pareto"] for p in pts if p["device"] == dev)
    # by size, int8 is never dominated: it is the smallest artifact on each device
    for p in flag_pareto([FrontierPoint.from_json(q) for q in pts], "size"):
        if p.precision == "int8":
            assert p.pareto is True


@pytest.mark.slow
def test_reports_label_every_figure(run):
    path, res, _, _ = run
    rows = list(csv.DictReader(io.StringIO((path / "frontier.csv").read_text())))
    assert len(rows) == len(res["points"]) and {r["latency_source"] for r in rows} == {
        "measured",
        "predicted",
    }
    md = (path / "report.md").read_text()
    html = (path / "report.html").read_text()
    for text in (md, html):
        assert "rpi4" in text and "jetson-orin-nano" in text and "predicted" in text and "measured" in text
        assert "PUBLISHED" in text and "agreement with the fake-quant graph" in text
        for q in res["points"]:  # each INT8 artifact's agreement is in the report, as a percentage
            if q["agreement"] is not None:
                assert f"{100 * q['agreement']:.2f}%" in text
    assert any(q["agreement"] is not None for q in res["points"])
    assert "data:image/png;base64," in html and 'src="http' not in html and "<link" not in html
    png = (path / "frontier.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


@pytest.mark.slow
def test_same_command_again_reuses_every_stage(run, recipe_dir):
    path, res, first, recipe = run
    (path / "notes.md").write_text("my reading of it")  # a file of the user's survives the re-run
    t0 = time.perf_counter()
    logged: list[str] = []
    updates: list[dict] = []
    opts = FrontierOptions(
        recipe_for=lambda a: recipe,
        out=path,
        **fast,
        log=logged.append,
        progress=False,
        on_update=lambda out, r: updates.append(
            {"eta_s": r.in_progress.eta_s, "html": (out / "report.html").read_text()}
        ),
    )
    _, again = run_frontier(["test_resnet18"], TARGETS, ["int8", "fp16", "fp32"], opts)
    again = again.to_json()
    took = time.perf_counter() - t0
    # the ETA now comes from the first run's recorded times (the sum of the runs still to do)
    eta = sum(p["seconds"] for p in res["points"])
    first_line = next(s for s in logged if s.startswith("[1/"))
    assert "ETA unknown" not in first_line and f"ETA {int(eta // 3600)}:" in first_line
    assert "(the last run's recorded times)" in first_line
    assert not any(s.startswith("training steps timed") for s in logged)  # no step timed on a re-run
    # and so does the report a reader has open: after the first run, the rest's recorded times
    rest = sum(p["seconds"] for p in res["points"][1:])
    assert updates[0]["eta_s"] == pytest.approx(rest) and "ETA 0:" in updates[0]["html"]
    assert '<meta http-equiv="refresh"' in updates[0]["html"]
    assert (path / "notes.md").read_text() == "my reading of it"
    for p, q in zip(res["points"], again["points"], strict=True):
        assert p["id"] == q["id"] and p["top1"] == q["top1"] and p["p50_ms"] == q["p50_ms"]
        assert set(q["reused"]) == {"train", "quantize", "export", "evaluate", "latency"} or (
            q["precision"] != "int8" and set(q["reused"]) == {"train", "export", "evaluate", "latency"}
        )
    assert took < first / 3


def test_frontier_refuses_a_foreign_directory_and_bad_lists(tmp_path, recipe_dir):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    r = CliRunner().invoke(
        cli,
        [
            "frontier",
            "--archs",
            "test_resnet18",
            "--targets",
            "cpu",
            "--recipe",
            str(recipe_dir),
            "--out",
            str(foreign),
        ],
    )
    assert (
        r.exit_code == 2 and "did not write" in r.output and (foreign / "notes.txt").read_text() == "keep me"
    )
    for args, msg in (
        (["--targets", "rpi9"], "unknown device 'rpi9'"),
        (["--precisions", "int4"], "int8"),
        (["--archs", "resnet19"], "resnet18"),
        (["--cost", "watts"], "energy"),
        (["--qat", "--max-drop", "1"], "conflict"),
    ):
        r = CliRunner().invoke(cli, ["frontier", "--out", str(tmp_path / "x"), *args])
        assert r.exit_code == 2 and msg in r.output, r.output
        assert not (tmp_path / "x").exists()
    r = CliRunner().invoke(
        cli,
        [
            "frontier",
            "--archs",
            "test_resnet18,test_alexnet",
            "--recipe",
            str(recipe_dir / "test_resnet18.toml"),
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert r.exit_code == 2 and "directory holding <arch>.toml" in r.output


def test_parse_targets_maps_devices_to_their_export_target():
    assert parse_targets("cpu,jetson,rpi") == [("cpu", None), ("jetson", None), ("rpi", None)]
    assert parse_targets("rpi5,rpi4,jetson-agx-orin,host") == [
        ("rpi", None),
        ("rpi", "rpi4"),
        ("jetson", "jetson-agx-orin"),
        ("cpu", None),
    ]


# ---------------------------------------------------------------- choose


def _pt(arch, top1, p90, *, device="rpi5", prec="int8", ci=0.005, src="measured", band=None, size=10.0):
    return FrontierPoint.from_json(
        {
            "id": f"{arch}-{device}-tflite-{prec}",
            "arch": arch,
            "target": "rpi",
            "device": device,
            "runtime": "tflite",
            "precision": prec,
            "image_size": 32,
            "dataset": "FashionMNIST",
            "test_images": 10000,
            "top1": top1,
            "ci95_low": top1 - ci,
            "ci95_high": top1 + ci,
            "accuracy_runtime": "tflite",
            "p50_ms": p90 * 0.9,
            "p90_ms": p90,
            "p99_ms": p90 * 1.1,
            "latency_source": src,
            "latency_band_low_ms": None if band is None else band[0],
            "latency_band_high_ms": None if band is None else band[1],
            "size_mb": size,
            "energy_mj": None,
            "memory_mb": None,
            "bundle": f"/b/{arch}",
        }
    )


POINTS = [
    _pt("resnet18", 0.912, 20),
    _pt("googlenet", 0.915, 40),
    _pt("vgg16", 0.93, 300),
    _pt("alexnet", 0.88, 5),
    _pt("resnet18", 0.90, 60, prec="fp32"),
]


def test_choose_prefers_the_cheaper_of_two_equally_accurate_runs():
    r = choose(POINTS, "rpi5", max_latency_ms=50, min_accuracy=0.9)
    # googlenet is 0.3 points better, inside its own 95% interval: resnet18 is as accurate and 2x faster
    assert r.ok and r.choice.arch == "resnet18" and r.choice.precision == "int8"
    assert "googlenet" in r.paragraph and "does not resolve" in r.paragraph
    assert set(r.rejected) == {
        "vgg16-rpi5-tflite-int8",
        "alexnet-rpi5-tflite-int8",
        "resnet18-rpi5-tflite-fp32",
    }
    assert "300 ms > 50 ms" in r.rejected["vgg16-rpi5-tflite-int8"]
    assert "88.00% < 90.00%" in r.rejected["alexnet-rpi5-tflite-int8"]
    # with a tight interval googlenet's lead is real: it wins
    tight = [replace(p, ci95_low=p.top1 - 0.001, ci95_high=p.top1 + 0.001) for p in POINTS]
    assert choose(tight, "rpi", max_latency_ms=50, min_accuracy=0.9).choice.arch == "googlenet"
    # with no latency limit the most accurate of all wins
    assert choose(POINTS, "rpi5").choice.arch == "vgg16"


def test_choose_warns_when_a_predicted_band_crosses_the_limit():
    pts = [_pt("resnet18", 0.91, 40, src="predicted", band=(25, 60))]
    r = choose(pts, "rpi5", max_latency_ms=50)
    assert r.ok and "PREDICTED" in r.paragraph and "crosses your 50 ms limit" in r.paragraph
    assert "edgecnn bench /b/resnet18/artifact --host" in r.paragraph


def test_choose_says_what_to_relax_or_which_runs_to_make():
    r = choose(POINTS, "rpi5", max_latency_ms=2)
    assert not r.ok and r.choice is None and "at least 5 ms" in r.paragraph
    with pytest.raises(EdgecnnError, match="run `edgecnn frontier --targets jetson-agx-orin"):
        choose(POINTS, "jetson-agx-orin")
    with pytest.raises(EdgecnnError, match="unknown cost"):
        choose(POINTS, "rpi5", cost="watts")


def test_an_emulated_latency_is_never_chosen_nor_on_the_frontier():
    # the fastest and most accurate run was timed on an emulated Pi (QEMU): it must not win on that time
    emu = _pt("resnet18", 0.95, 900, src="emulated")
    emu = replace(emu, id="resnet18-rpi5-tflite-int8-emulated")
    r = choose([*POINTS, emu], "rpi5", max_latency_ms=50)
    assert r.choice.arch == "resnet18" and r.choice.latency_source == "measured"
    assert "emulated" in r.rejected[emu.id]
    emu_fast = replace(emu, p50_ms=0.1, p90_ms=0.1)
    assert choose([*POINTS, emu_fast], "rpi5").choice.latency_source == "measured"
    with pytest.raises(EdgecnnError, match="emulated latency.*--host"):
        choose([emu_fast], "rpi5")
    flagged = {p.id: p for p in flag_pareto([*POINTS, emu_fast], "p50")}
    assert flagged[emu.id].pareto is None and "emulated" in flagged[emu.id].excluded
    assert flagged["alexnet-rpi5-tflite-int8"].pareto is True  # would be dominated by the emulated point
    # a cost that is no latency (the artifact's size) keeps the point
    assert flag_pareto([*POINTS, emu_fast], "size")[-1].pareto is not None


def test_parse_limits():
    assert parse_latency("50ms") == 50 and parse_latency("0.05s") == 50 and parse_latency("50") == 50
    assert parse_latency("500us") == pytest.approx(0.5)
    assert parse_accuracy("0.9") == 0.9 and parse_accuracy("90%") == 0.9 and parse_accuracy("90") == 0.9
    for bad in ("fast", "-3ms"):
        with pytest.raises(EdgecnnError, match="latency"):
            parse_latency(bad)
    with pytest.raises(EdgecnnError, match="between 0 and 1"):
        parse_accuracy("120%")


@pytest.mark.slow
def test_choose_cli_reads_the_frontier_it_names(run, tmp_path):
    path, res, _, _ = run
    r = CliRunner().invoke(
        cli, ["choose", "--target", "rpi4", "--max-latency", "1000ms", "--from", str(path), "--json"]
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["ok"] and out["choice"]["device"] == "rpi4" and out["choice"]["latency_source"] == "predicted"
    assert out["choice"]["id"] in {p["id"] for p in res["points"]}
    r = CliRunner().invoke(cli, ["choose", "--target", "rpi4", "--max-latency", "1us", "--from", str(path)])
    assert r.exit_code == 1 and "Relax --max-latency" in r.output
    r = CliRunner().invoke(cli, ["choose", "--target", "rpi5", "--from", str(path)])
    assert r.exit_code == 2 and "edgecnn frontier --targets rpi5" in r.output
    r = CliRunner().invoke(cli, ["choose", "--target", "rpi4", "--from", str(tmp_path)])
    assert r.exit_code == 2 and "no frontier results" in r.output
    # without --from: every frontier recorded under $EDGECNN_HOME (the run above recorded this one)
    assert {p["id"] for p in res["points"]} <= {p.id for p in load_points()}


@pytest.mark.slow
def test_killed_frontier_resumes_to_the_same_figures(run, recipe_dir, tmp_path):
    """kill -9 in the middle of the quantize/export/evaluate stages, run again: the same accuracy
    figures as the uninterrupted run, and no half-written output directory in between."""
    import os
    import shutil
    import signal
    import subprocess
    import sys

    from edgecnn import paths

    _, first, _, _ = run
    home = tmp_path / "home"
    shutil.copytree(paths.runs_dir() / "train", home / "runs" / "train")  # the same float checkpoint
    out = tmp_path / "f"
    cmd = [
        sys.executable,
        "-m",
        "edgecnn.cli",
        "frontier",
        "--archs",
        "test_resnet18",
        "--targets",
        "cpu,jetson,rpi4",
        "--precisions",
        "int8,fp16,fp32",
        "--recipe",
        str(recipe_dir),
        "--out",
        str(out),
        "--threads",
        "1",
        "--min-seconds",
        "0.2",
        "--json",
    ]
    env = {**os.environ, "EDGECNN_HOME": str(home)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if len(list((home / "runs" / "evaluate").glob("*.json"))) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the frontier finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if out.exists():  # a report written after a finished point: whole, and marked in progress
        assert sorted(p.name for p in out.iterdir()) == sorted([*FILES, MARKER])
        assert json.loads((out / "frontier.json").read_text())["in_progress"]["done"] >= 1
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    again = json.loads(res.stdout)
    assert any(set(p["reused"]) >= {"evaluate"} for p in again["points"])  # the killed run's work was kept
    key = ("top1", "top5", "agreement", "drop_points")
    assert {p["id"]: [p[k] for k in key] for p in again["points"]} == {
        p["id"]: [p[k] for k in key] for p in first["points"]
    }
    # the IR's layer names count up across the ONNX exports of one process: sizes differ by bytes
    for p, q in zip(
        sorted(again["points"], key=lambda p: p["id"]),
        sorted(first["points"], key=lambda p: p["id"]),
        strict=True,
    ):
        assert p["size_mb"] == pytest.approx(q["size_mb"], rel=2e-3)


def _frontier(**kw):
    from edgecnn.frontier import Frontier, cost_fields

    return Frontier(
        **cost_fields("p50"),
        archs=("resnet18", "googlenet", "vgg16", "alexnet"),
        targets=("rpi5",),
        precisions=("int8", "fp32"),
        int8="ptq",
        points=tuple(flag_pareto(POINTS, "p50")),
        created="2026-12-02T12:00:00+0000",
        seconds=61.0,
        **kw,
    )


def test_a_running_frontier_reloads_and_says_how_far_it_is():
    from edgecnn.frontier import render_html, render_markdown
    from edgecnn.results import FrontierProgress

    running = _frontier(in_progress=FrontierProgress(2, 5, 125.0))
    html, md = render_html(running, b"png"), render_markdown(running)
    line = "In progress: 2 of 5 runs done, ETA 0:02:05 (the last run"
    assert line in html and line in md and '<meta http-equiv="refresh" content="15">' in html
    assert "ETA unknown" in render_markdown(_frontier(in_progress=FrontierProgress(2, 5)))
    done = _frontier()
    assert "In progress" not in render_html(done, b"png") + render_markdown(done)
    assert "refresh" not in render_html(done, b"png") and "in_progress" not in done.to_json()


def test_frontier_json_round_trips_through_its_types(tmp_path):
    from edgecnn.frontier import Frontier, read_frontier

    res = _frontier().to_json()
    assert res["schema"] == SCHEMA and list(res)[:4] == ["schema", "cost", "cost_unit", "cost_what"]
    assert "kind" not in res and "timings" not in res  # keys of --imagenet only
    assert Frontier.from_json(res) == _frontier() and Frontier.from_json(res).to_json() == res
    p = res["points"][0]
    assert "accuracy_where" in p and "artifact" not in p and "float_layers" not in p  # a bundle's point
    mixed = replace(POINTS[0], precision="mixed", float_layers=2)
    assert FrontierPoint.from_json(mixed.to_json()) == mixed and mixed.to_json()["float_layers"] == 2
    f = tmp_path / "frontier.json"
    f.write_text(json.dumps(res))
    assert read_frontier(f) == _frontier()
    bad = {**res, "points": [{**p, "p90_ms": "fast"}]}
    f.write_text(json.dumps(bad))
    with pytest.raises(EdgecnnError, match=r"points\[0\] 'p90_ms' must be a finite number, not \"fast\""):
        load_points([f])
    f.write_text(json.dumps({**res, "points": [{k: v for k, v in p.items() if k != "top1"}]}))
    with pytest.raises(EdgecnnError, match="'top1' must be a finite number or null, missing"):
        load_points([f])
