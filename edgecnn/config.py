"""TOML configuration loaded into frozen dataclasses that reject unknown keys.

Recipes (``recipes/<arch>.toml``) and, later, device profiles (``devices/*.toml``) are
data files. :func:`from_mapping` turns a parsed TOML table into a frozen dataclass and
checks every key and type, so a typo is a one-line error naming the key and the file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from edgecnn.errors import EdgecnnError, suggest

T = TypeVar("T")


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise EdgecnnError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise EdgecnnError(f"{path} is a directory, not a TOML file; pass the .toml file") from None
    except UnicodeDecodeError as e:
        raise EdgecnnError(
            f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise EdgecnnError(f"{path} is not valid TOML: {e}; fix the file") from None
    except OSError as e:
        raise EdgecnnError(f"cannot read {path}: {e.strerror or e}") from None


def _check_value(value: Any, tp: Any, where: str) -> Any:  # noqa: C901  # issue 14: split this stage
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_value(value, arg, where)
            except EdgecnnError as e:
                errors.append(str(e))
        raise EdgecnnError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise EdgecnnError(f"{where} = {value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise EdgecnnError(f"{where} must be a list, got {value!r}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        return tuple(_check_value(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise EdgecnnError(f"{where} must be a table, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise EdgecnnError(f"{where} must be a table, got {value!r}")
        return from_mapping(tp, value, where)
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EdgecnnError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise EdgecnnError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EdgecnnError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise EdgecnnError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise EdgecnnError(f"{where} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {where}")  # programming error


def from_mapping(cls: type[T], data: dict[str, Any], where: str) -> T:
    """Build the frozen dataclass ``cls`` from ``data``; unknown or mistyped keys raise.

    ``where`` names the place for error messages, e.g. ``recipes/resnet18.toml [quick.train]``.
    """
    if not isinstance(data, dict):
        raise EdgecnnError(f"{where} must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        k = unknown[0]
        raise EdgecnnError(
            f"unknown key '{k}' in {where}.{suggest(k, fields)} Valid keys: {', '.join(fields)}"
        )
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _check_value(data[name], hints[name], f"{where} {name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise EdgecnnError(f"missing key '{name}' in {where}")
    try:
        return cls(**kwargs)
    except ValueError as e:  # __post_init__ validation
        raise EdgecnnError(f"{where}: {e}") from None


_JSON_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a finite number",
    list: "a list",
    dict: "an object",
    type(None): "null",
}


def check_json_types(
    obj: dict[str, Any], types: dict[str, type | tuple[type, ...]], where: str, fix: str
) -> None:
    """EdgecnnError naming ``where`` and the key unless every ``obj[key]`` has its JSON type.

    ``types`` maps key -> type or tuple of types (``(int, float)`` for a number; floats must be
    finite, and ``true``/``false`` are no numbers); ``fix`` says what to do.
    """
    for key, t in types.items():
        t = t if isinstance(t, tuple) else (t,)
        v = obj.get(key)
        if (
            key in obj
            and not isinstance(v, bool)
            and isinstance(v, t)
            and not (isinstance(v, float) and not math.isfinite(v))
        ):
            continue
        want = " or ".join(_JSON_NAMES[x] for x in t if not (x is int and float in t))
        got = "missing" if key not in obj else f"not {json.dumps(v)[:40]}"
        raise EdgecnnError(f"{where} '{key}' must be {want}, {got}; {fix}")


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as plain JSON-able data (tuples become lists)."""

    def conv(v):
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (tuple, list)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(obj)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"TOML cannot hold {v!r}")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {type(v).__name__}")


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def dumps_toml(data: dict[str, Any], _prefix: str = "") -> str:
    """``data`` (plain dicts, lists, strings, numbers, booleans; None values left out) as TOML text:
    scalars and inline arrays first, then ``[tables]``, then ``[[arrays of tables]]``."""
    lines, tables, arrays = [], [], []
    for k, v in data.items():
        if v is None:
            continue
        if isinstance(v, dict):
            tables.append((k, v))
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, dict) for x in v):
            arrays.append((k, v))
        else:
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, v in tables:
        name = f"{_prefix}{_toml_key(k)}"
        out += f"\n[{name}]\n" + dumps_toml(v, name + ".")
    for k, items in arrays:
        name = f"{_prefix}{_toml_key(k)}"
        for item in items:
            out += f"\n[[{name}]]\n" + dumps_toml(item, name + ".")
    return out
