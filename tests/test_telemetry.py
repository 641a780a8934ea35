"""edgecnn sends no telemetry: OpenVINO's model conversion and NNCF run with theirs off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The conversion edgecnn's OpenVINO export runs, in a fresh process (OpenVINO reads its consent at
# import), with every process it starts counted: openvino_telemetry sends each event from a child.
SCRIPT = """
import multiprocessing, sys
started = []
start = multiprocessing.Process.start
multiprocessing.Process.start = lambda self: (started.append(self), start(self))[1]
import onnx
from onnx import TensorProto, helper
x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in "xy")
graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), sys.argv[1])
from edgecnn.export.openvino import onnx_to_ir
from edgecnn.telemetry import import_nncf
onnx_to_ir(sys.argv[1], sys.argv[2])
import_nncf()
print(len(started), sys.modules.get("openvino_telemetry"))
"""


def test_openvino_conversion_sends_no_telemetry(tmp_path):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    home = tmp_path / "home"
    home.mkdir()
    # outside a CI job (CI=true is openvino_telemetry's own off switch), with no consent file in HOME:
    # what OpenVINO counts as consent
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")}
    env |= {"HOME": str(home), "PYTHONPATH": str(REPO)}
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "m.onnx"), str(tmp_path / "m.xml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "m.xml").is_file() and (tmp_path / "m.bin").is_file()  # the conversion ran
    assert r.stdout.split() == ["0", "None"]  # no sender process; openvino_telemetry never loaded
    assert list(home.iterdir()) == []  # no ~/intel/openvino_ga_cid, no consent file, no stats


def test_openvino_and_nncf_are_imported_only_through_edgecnn_telemetry():
    """A plain ``import openvino`` anywhere in edgecnn would turn the telemetry back on for the process."""
    import ast

    found = []
    for path in sorted((REPO / "edgecnn").rglob("*.py")):
        if path.name == "telemetry.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [
                f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] in ("openvino", "nncf")
            ]
    assert found == []
