"""Property test: any TOML value at any recipe or device-profile key loads or ends in one
``error:`` line, never a traceback; a value of the wrong type is always that error."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from typing import Any

import tomllib
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecnn.cli import cli
from edgecnn.devices.profile import (
    DEVICES_DIR,
    CalibrationPoint,
    DeviceProfile,
    RuntimeSupport,
    parse_profile,
)
from edgecnn.errors import EdgecnnError
from edgecnn.quantize.calibset import CalibrationManifest, parse_calibration
from edgecnn.recipes import _ProfileTable, parse_recipe

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Every TOML value: scalars of each type, arrays and tables of them.
SCALARS = (
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(["int8", "cpu", "minmax", "flip", "sgd", "auto", "tflite"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=5,
)


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"


def toml_doc(d: dict) -> str:
    return "".join(f"{toml_value(str(k))} = {toml_value(v)}\n" for k, v in d.items())


def kinds(tp: Any) -> set[type]:
    """The TOML value types a field of type ``tp`` accepts at all."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return set().union(*(kinds(a) for a in typing.get_args(tp) if a is not type(None)))
    if origin is typing.Literal:
        return {type(a) for a in typing.get_args(tp)}
    if origin in (tuple, list):
        return {list}
    if origin is dict or dataclasses.is_dataclass(tp):
        return {dict}
    return {tp, int} if tp is float else {tp}


def key_paths(cls: type, prefix: tuple = ()) -> list[tuple[tuple, Any]]:
    """(path, type) of every key of ``cls`` and of the tables nested in it."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        out.append(((*prefix, f.name), tp))
        inner = [a for a in (typing.get_args(tp) or (tp,)) if dataclasses.is_dataclass(a)]
        if inner:
            out += key_paths(inner[0], (*prefix, f.name))
    return out


def put(doc: dict, path: tuple, value: Any) -> dict:
    doc = json.loads(json.dumps(doc))  # deep copy
    d = doc
    for k in path[:-1]:
        d = d[k] if isinstance(k, int) else d.setdefault(k, {})
    d[path[-1]] = value
    return doc


RECIPE_KEYS = [(("quick",), _ProfileTable), *[(("quick", *p), tp) for p, tp in key_paths(_ProfileTable)]]
DEVICE_BASE = tomllib.loads((DEVICES_DIR / "rpi5.toml").read_text())
DEVICE_KEYS = [
    *[
        (p, tp)
        for p, tp in key_paths(DeviceProfile)
        if p[0] not in ("runtimes", "sources", "source") and not (p[0] == "calibration_points" and len(p) > 1)
    ],
    *[(("runtimes", "tflite", *p), tp) for p, tp in key_paths(RuntimeSupport)],
    *[(("calibration_points", 0, *p), tp) for p, tp in key_paths(CalibrationPoint)],
]


MANIFEST_KEYS = [(p, tp) for p, tp in key_paths(CalibrationManifest) if p != ("source",)]


def wrong_type(value: Any, tp: Any) -> bool:
    return type(value) not in kinds(tp)


def one_line_error_or_none(load) -> str | None:
    try:
        load()
    except EdgecnnError as e:
        assert "\n" not in str(e) and str(e)
        return str(e)
    return None


@SETTINGS
@given(key=st.sampled_from(RECIPE_KEYS), value=VALUES)
def test_any_value_at_any_recipe_key(key, value, tmp_path_factory):
    path, tp = key
    doc = put({"arch": "test_resnet18"}, path, value)
    text = toml_doc(doc)
    err = one_line_error_or_none(
        lambda: parse_recipe(tomllib.loads(text), "quick", "r.toml", "test_resnet18")
    )
    if wrong_type(value, tp):
        assert err is not None and path[-1] in err, (path, value, err)
        f = tmp_path_factory.mktemp("recipe") / "r.toml"
        f.write_text(text)
        r = CliRunner().invoke(cli, ["train", "test_resnet18", "--recipe", str(f)])
        assert r.exit_code == 2 and isinstance(r.exception, SystemExit), (path, value, r.exception)
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr


@SETTINGS
@given(key=st.sampled_from(DEVICE_KEYS), value=VALUES)
def test_any_value_at_any_device_profile_key(key, value, tmp_path_factory):
    path, tp = key
    text = toml_doc(put(DEVICE_BASE, path, value))
    err = one_line_error_or_none(lambda: parse_profile(tomllib.loads(text), "dev.toml"))
    if wrong_type(value, tp):
        assert err is not None, (path, value)
        f = tmp_path_factory.mktemp("device") / "dev.toml"
        f.write_text(text)
        r = CliRunner().invoke(cli, ["bench", "resnet18", "--target", str(f), "--predict"])
        assert r.exit_code == 2 and isinstance(r.exception, SystemExit), (path, value, r.exception)
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr


@SETTINGS
@given(key=st.sampled_from(MANIFEST_KEYS), value=VALUES)
def test_any_value_at_any_calibration_manifest_key(key, value):
    path, tp = key
    text = toml_doc(put({"dataset": "fashion-mnist"}, path, value))
    err = one_line_error_or_none(lambda: parse_calibration(tomllib.loads(text), "m.toml"))
    if wrong_type(value, tp):
        assert err is not None and path[-1] in err, (path, value, err)


def test_the_fuzzed_documents_load_unchanged():
    """Errors come from the fuzzed key: the base documents load, and the key lists are the loaders' keys."""
    assert parse_profile(tomllib.loads(toml_doc(DEVICE_BASE)), "rpi5.toml").name == "rpi5"
    assert parse_recipe({"arch": "test_resnet18", "quick": {}}, "quick", "r.toml").arch == "test_resnet18"
    assert ("quick", "train", "lr") in dict(RECIPE_KEYS) and ("memory", "bandwidth_gbps") in dict(DEVICE_KEYS)
    assert parse_calibration({"dataset": "fashion-mnist"}, "m.toml").images > 0
    assert ("percentile", "percentile") in dict(MANIFEST_KEYS) and ("images",) in dict(MANIFEST_KEYS)
    assert ("cpu", "peak_tops", "int8") in dict(DEVICE_KEYS) and (
        "calibration_points",
        0,
        "latency_ms",
    ) in dict(DEVICE_KEYS)
