"""What the user types: target and host lists (``--targets``, ``--host``), names, and limits with units
(``--max-latency 50ms``, ``--min-accuracy 90%``).

>>> parse_latency("0.05s"), parse_accuracy("90%")
(50.0, 0.9)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from edgecnn.errors import EdgecnnError, suggest


def parse_targets(spec: str | Sequence[str]) -> list[tuple[str, str | None]]:
    """``cpu,jetson,rpi`` or device names (``rpi4``, ``jetson-agx-orin``) -> [(target, device or None)]."""
    from edgecnn.devices import ALIASES, HOST, load_device
    from edgecnn.export import SUPPORT

    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not names:
        raise EdgecnnError("--targets is empty; pass e.g. cpu,jetson,rpi")
    out: list[tuple[str, str | None]] = []
    for n in names:
        if n in SUPPORT:
            item = (n, None)
        else:
            prof = load_device(n)  # unknown: error suggesting the nearest
            if prof.name == HOST or ALIASES.get(prof.target) == prof.name:
                item = (prof.target, None)
            else:
                item = (prof.target, prof.name)
        if item not in out:
            out.append(item)
    return out


def parse_hosts(specs: Sequence[str], targets: Sequence[tuple[str, str | None]]) -> dict[str, list[str]]:
    """``["rpi=pi@10.0.0.7", "jetson=nvidia@orin"]`` -> {target or device as in ``targets``: [hosts]}."""
    out: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, host = spec.partition("=")
        name, host = name.strip(), host.strip()
        if not sep or not name or not host or host.startswith("-"):
            raise EdgecnnError(f"bad --host '{spec}': pass TARGET=[USER@]HOST, e.g. rpi=pi@10.0.0.7")
        where = next((d or t for t, d in targets if name in (t, d)), None)
        if where is None:
            raise EdgecnnError(
                f"--host {spec}: '{name}' is none of --targets ({', '.join(d or t for t, d in targets)})"
            )
        out.setdefault(where, []).append(host)
    return out


def parse_list(spec: str | Sequence[str], known: Sequence[str], what: str) -> list[str]:
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not items:
        raise EdgecnnError(f"--{what} is empty; pass some of {', '.join(known)}")
    for s in items:
        if s not in known:
            raise EdgecnnError(f"unknown {what[:-1]} '{s}'.{suggest(s, known)} Known: {', '.join(known)}")
    return list(dict.fromkeys(items))


def parse_latency(text: str) -> float:
    """``50ms``, ``50 ms``, ``0.05s``, ``50`` (ms) -> milliseconds."""
    t = str(text).strip().lower().replace(" ", "")
    mult = 1.0
    for suffix, m in (("ms", 1.0), ("us", 1e-3), ("s", 1e3)):
        if t.endswith(suffix):
            t, mult = t[: -len(suffix)], m
            break
    try:
        v = float(t) * mult
    except ValueError:
        raise EdgecnnError(f"bad latency '{text}': pass e.g. 50ms, 0.05s or 50") from None
    if not math.isfinite(v) or v <= 0:
        raise EdgecnnError(f"latency limit must be a finite number > 0, got '{text}'")
    return v


def parse_accuracy(text: str) -> float:
    """``0.9``, ``90%`` or ``90`` -> 0.9."""
    t = str(text).strip()
    try:
        v = float(t.rstrip("%"))
    except ValueError:
        raise EdgecnnError(f"bad accuracy '{text}': pass a fraction (0.9) or a percentage (90%)") from None
    v = v / 100 if t.endswith("%") or v > 1 else v
    if not 0 <= v <= 1:
        raise EdgecnnError(f"accuracy must be between 0 and 1 (or 0% and 100%), got '{text}'")
    return v
