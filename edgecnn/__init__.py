"""edgecnn: put AlexNet, VGG16, ResNet18 and GoogLeNet on edge hardware.

``import edgecnn`` stays light: it imports no torch and no backend. Submodules
(``edgecnn.models``, ``edgecnn.data``, ``edgecnn.train``) are imported when used.

The Python API mirrors the CLI (:mod:`edgecnn.api`): ``edgecnn.train``, ``calibrate``, ``qat``,
``export``, ``evaluate``, ``bench``, ``deploy``, ``frontier`` and ``choose``, each returning its
typed result (:mod:`edgecnn.results`). Six of those names are also submodules (``edgecnn.train``
is ``train.py``); such a submodule is callable, its call being the API function, so
``edgecnn.train("resnet18")`` and ``edgecnn.train.train`` (the stage) both work whichever was
imported first.
"""

import importlib
import sys
import types

from edgecnn.version import __version__

_SUBMODULE_API = frozenset({"train", "export", "evaluate", "bench", "deploy", "frontier"})
_FUNCTION_API = frozenset({"calibrate", "qat", "choose"})

__all__ = ["__version__", *sorted(_SUBMODULE_API | _FUNCTION_API)]


class _CallableModule(types.ModuleType):
    """A submodule whose call is the API function of its name (``edgecnn.api.<name>``)."""

    def __call__(self, *args, **kwargs):
        from edgecnn import api

        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


class _Package(types.ModuleType):
    """``edgecnn`` itself: hands out the API's submodules callable."""

    def __getattribute__(self, name: str):
        value = super().__getattribute__(name)
        if name in _SUBMODULE_API and type(value) is types.ModuleType:
            value.__class__ = _CallableModule
        return value


def __getattr__(name: str):
    """The API on first use (PEP 562): imported only then, so ``import edgecnn`` stays light."""
    if name in _SUBMODULE_API:
        return importlib.import_module(f"edgecnn.{name}")
    if name in _FUNCTION_API:
        from edgecnn import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgecnn' has no attribute {name!r}")


sys.modules[__name__].__class__ = _Package
