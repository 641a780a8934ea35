"""The architecture registry: builders registered by a decorator, looked up by name."""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from edgecnn.errors import EdgecnnError, suggest
from edgecnn.models.weights import PublishedWeights

_ARCHS: dict[str, ArchInfo] = {}


@dataclass(frozen=True)
class ArchInfo:
    """What edgecnn knows about one architecture.

    ``options`` are the builder's keyword-only options with their defaults;
    ``small_input_note`` says in one line what ``small_input=True`` changes.
    """

    name: str
    family: str
    paper: str
    small_input_note: str
    published: PublishedWeights | None
    test_variant: bool
    builder: Callable[..., Any] = field(repr=False, compare=False)
    options: Mapping[str, Any] = field(compare=False)


def register_arch(
    name: str,
    *,
    family: str,
    paper: str,
    published: PublishedWeights | None = None,
    small_input_note: str,
    test_variant: bool = False,
):
    """Decorator registering a builder ``fn(*, num_classes, in_channels, small_input, ...)``."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _ARCHS:
            raise ValueError(f"architecture '{name}' is already registered")
        params = inspect.signature(fn).parameters.values()
        if any(p.kind is not p.KEYWORD_ONLY for p in params):
            raise TypeError(f"builder of '{name}' must take keyword-only options")
        options = MappingProxyType({p.name: p.default for p in params})
        _ARCHS[name] = ArchInfo(
            name=name,
            family=family,
            paper=paper,
            small_input_note=small_input_note,
            published=published,
            test_variant=test_variant,
            builder=fn,
            options=options,
        )
        return fn

    return deco


def arch_info(name: str) -> ArchInfo:
    """The :class:`ArchInfo` of ``name``; EdgecnnError with suggestions when unknown."""
    try:
        return _ARCHS[name]
    except KeyError:
        near = suggest(name, list_archs(include_test=name.startswith("test_")))
        raise EdgecnnError(f"unknown architecture '{name}'.{near} Known: {', '.join(list_archs())}") from None


def list_archs(pattern: str = "*", include_test: bool = False) -> list[str]:
    """Registered names matching the fnmatch ``pattern``, in registration order."""
    return [
        n
        for n, info in _ARCHS.items()
        if fnmatch.fnmatchcase(n, pattern) and (include_test or not info.test_variant)
    ]
