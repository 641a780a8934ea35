"""The Python API (edgecnn.api, reached as edgecnn.train, edgecnn.calibrate, ...): typed results that
say what the CLI says for the same inputs, and ``import edgecnn`` staying light."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import edgecnn
from edgecnn.cli import cli
from edgecnn.errors import EdgecnnError
from edgecnn.results import Accuracy, Artifact, Bench, QuantizedGraph, Report
from edgecnn.vocab import LatencySource, Method, QuantStage

sys.path.insert(0, str(Path(__file__).parent))
from tiny_recipes import int8_recipe, random_checkpoint  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_api_names_resolve_lazily_without_torch():
    code = (
        "import sys, edgecnn\n"
        "fns = [edgecnn.calibrate, edgecnn.qat, edgecnn.choose]\n"
        "print(all(callable(f) for f in fns), 'torch' in sys.modules)\n"
        "import edgecnn.train as t\n"  # the submodule, imported first: still callable, still the module
        "print(callable(edgecnn.train), t is edgecnn.train, t.train.__module__)\n"
        "print(sorted(edgecnn.__all__))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[0] == "True False"  # the API functions are reachable with no torch imported
    assert lines[1] == "True True edgecnn.train"
    names = ["bench", "calibrate", "choose", "deploy", "evaluate", "export", "frontier", "qat", "train"]
    assert lines[2] == str(sorted(["__version__", *names]))


def test_errors_are_the_clis_one_liners():
    with pytest.raises(EdgecnnError, match="unknown architecture"):
        edgecnn.calibrate("resnet19")
    with pytest.raises(EdgecnnError, match="no frontier results"):
        edgecnn.choose("rpi5", frontiers=["/nonexistent"])


def test_choose_reads_the_frontier_folders_it_is_given(tmp_path):
    from test_frontier import _frontier

    (tmp_path / "frontier.json").write_text(json.dumps(_frontier().to_json()))
    c = edgecnn.choose("rpi5", frontiers=[tmp_path], max_latency_ms=50, min_accuracy=0.9)
    assert c.ok and c.choice.arch == "resnet18"  # as test_frontier's chooser test, read from the folder
    assert c.choice.id == "resnet18-rpi5-tflite-int8" and c.choice.pareto is not None
    args = ["choose", "--target", "rpi5", "--max-latency", "50ms", "--min-accuracy", "0.9", "--json"]
    cli_json = json.loads(CliRunner().invoke(cli, [*args, "--from", str(tmp_path)]).stdout)
    assert cli_json["choice"]["id"] == c.choice.id and cli_json["paragraph"] == c.paragraph


def test_bench_predicts_an_absent_device():
    b = edgecnn.bench("resnet18", target="rpi4", precision="int8")
    assert isinstance(b, Bench) and b.latency_source is LatencySource.PREDICTED
    assert b.device == "rpi4" and b.latency_ms.n == 0 and b.band_ms[0] < b.latency_ms.p50 < b.band_ms[1]
    cli_json = json.loads(
        CliRunner()
        .invoke(cli, ["bench", "resnet18", "--target", "rpi4", "--precision", "int8", "--json"])
        .stdout
    )
    assert cli_json["latency_ms"]["p50"] == b.latency_ms.p50 and b.raw["notes"] == cli_json["notes"]
    assert Bench.from_json(json.loads(json.dumps(b.to_json()))) == b


def test_deploy_returns_the_report_it_wrote(edgecnn_home, tmp_path):
    recipe_path, recipe = int8_recipe(tmp_path)
    ckpt = random_checkpoint(tmp_path, recipe)
    bench = edgecnn.deploy.BenchOptions(seconds=0.05, runs=3)  # edgecnn.deploy is also the module
    out = tmp_path / "bundle"
    options = {"precision": "fp32", "runtime": "onnxruntime", "threads": 1, "bench": bench, "out": out}
    report = edgecnn.deploy("test_resnet18", "cpu", recipe=recipe_path, checkpoint=ckpt, **options)
    assert isinstance(report, Report) and report.arch == "test_resnet18" and report.precision == "fp32"
    assert Report.from_json(json.loads((out / "report.json").read_text())) == report
    assert report.latency_source is LatencySource.MEASURED and report.accuracy.where == "host"


@pytest.mark.slow
def test_calibrate_export_evaluate_bench_agree_with_the_cli(edgecnn_home, tmp_path):
    recipe_path, recipe = int8_recipe(tmp_path)
    ckpt = random_checkpoint(tmp_path, recipe)
    q = edgecnn.calibrate("test_resnet18", recipe=recipe_path, checkpoint=ckpt)
    assert isinstance(q, QuantizedGraph) and q.stage is QuantStage.CALIBRATE and q.method is Method.MINMAX
    assert q.graph.is_file() and not q.cached
    again = edgecnn.calibrate("test_resnet18", recipe=recipe, checkpoint=str(ckpt))  # a loaded Recipe too
    assert again.cached and again.key == q.key and again.fakequant_top1 == q.fakequant_top1
    art = edgecnn.export("test_resnet18", "cpu", recipe=recipe_path, checkpoint=ckpt, runtime="onnxruntime")
    assert isinstance(art, Artifact) and art.runtime == "onnxruntime" and art.model_file.is_file()
    assert art.meta["source"]["quantized_graph"] == str(q.graph)  # the same graph, not a second one
    same = edgecnn.export(q, "cpu", recipe=recipe_path, runtime="onnxruntime")  # a stage result, as it is
    assert same.cached and same.dir == art.dir and same.meta["files"] == art.meta["files"]
    acc = edgecnn.evaluate(art)
    assert isinstance(acc, Accuracy) and acc.ci95[0] <= acc.top1 <= acc.ci95[1]
    cli_acc = json.loads(CliRunner().invoke(cli, ["evaluate", str(art.dir), "--json"]).stdout)
    assert (acc.top1, acc.top5, acc.agreement) == (cli_acc["top1"], cli_acc["top5"], cli_acc["agreement"])
    b = edgecnn.bench(art, threads=1, min_seconds=0.05, min_runs=3, warmup=1)
    assert (
        b.latency_source is LatencySource.MEASURED
        and b.latency_ms.n >= 3
        and b.raw["artifact"] == str(art.dir)
    )


def _readme_example() -> str:
    text = README.read_text()
    section = text[text.index("## Python API") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_example_runs(edgecnn_home, tmp_path, capsys):
    """The README's notebook example, run as written, with its first line (the network and recipe)
    pointed at the tiny test variant so that training takes seconds."""
    recipe_path, _ = int8_recipe(tmp_path)
    code = _readme_example()
    first, rest = code.split("\n", 1)
    assert first.startswith("ARCH, RECIPE = ")
    exec(f"ARCH, RECIPE = 'test_resnet18', {str(recipe_path)!r}\n{rest}", {})
    out = capsys.readouterr().out
    assert "fake-quant top-1" in out and "ms p50 (measured)" in out and "ms predicted" in out


@pytest.mark.slow
def test_frontier_returns_the_frontier_it_wrote(edgecnn_home, tmp_path):
    from edgecnn.results import Frontier

    recipe_path, _ = int8_recipe(tmp_path)
    out = tmp_path / "front"
    f = edgecnn.frontier(
        ["test_resnet18"],
        ["cpu"],
        out=out,
        precisions=["fp32"],
        recipe=recipe_path,
        threads=1,
        bench_seconds=0.05,
    )
    assert isinstance(f, Frontier) and [p.arch for p in f.points] == ["test_resnet18"]
    assert Frontier.from_json(json.loads((out / "frontier.json").read_text())) == f
