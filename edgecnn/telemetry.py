"""edgecnn sends no telemetry: OpenVINO and NNCF are imported here, with theirs off.

``import openvino`` (its model converter, ``openvino.tools.ovc``, is imported with it) and
``import nncf`` report usage to Google Analytics through the ``openvino_telemetry`` package
unless the user has opted out: with no consent file (``~/intel/openvino_telemetry``) they count
as consent, write a client id to ``~/intel/openvino_ga_cid`` and send each event from a
``multiprocessing`` child (which a Ctrl-C then interrupts with a traceback of its own). Only the
variables that mark a CI job (``CI=true``, ``TF_BUILD``, ``JENKINS_URL``) turn it off.

Both packages fall back to their own no-op stubs when ``openvino_telemetry`` cannot be imported
(``openvino/tools/ovc/telemetry_stub.py``; NNCF's ``NNCFTelemetryStub``: "openvino_telemetry
package not found. No telemetry will be sent."). :func:`telemetry_off` takes that path for this
process: a ``None`` entry in :data:`sys.modules` makes ``import openvino_telemetry`` fail. It
writes nothing to the user's home (their own opt-in or opt-out file is left as it is), sets no
environment variable and starts no process. It must run before the first ``import openvino`` or
``import nncf`` of the process; a program that imported them before edgecnn keeps their setting.
"""

from __future__ import annotations

import sys

from edgecnn.errors import EdgecnnError

TELEMETRY_MODULE = "openvino_telemetry"


def telemetry_off() -> None:
    """OpenVINO's and NNCF's telemetry off for this process (unless ``openvino_telemetry`` is loaded)."""
    sys.modules.setdefault(TELEMETRY_MODULE, None)


def import_openvino(missing: str = "OpenVINO is not installed: pip install 'edgecnn[openvino]'"):
    """``openvino``, imported with its telemetry off; ``missing`` is the error when it is not installed."""
    return _import("openvino", missing)


def import_nncf(missing: str = "NNCF is not installed: pip install 'edgecnn[openvino]'"):
    """``nncf``, imported with its telemetry off; ``missing`` is the error when it is not installed."""
    return _import("nncf", missing)


def _import(name: str, missing: str):
    import importlib

    telemetry_off()
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise EdgecnnError(missing) from e
