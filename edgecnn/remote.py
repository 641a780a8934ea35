"""Benchmark an exported artifact on remote devices over SSH.

>>> from edgecnn.remote import bench_hosts
>>> for r in bench_hosts("runs/export/resnet18-rpi-int8", ["pi@raspberrypi.local"]):  # doctest: +SKIP
...     print(r.host, r.error or r.result["latency_ms"]["p50"])

This drives the system OpenSSH client (the ``ssh`` binary, through :mod:`subprocess`),
so ``~/.ssh/config`` (aliases, ``User``, ``Port``, ``ProxyJump``, ``IdentityFile``), the
ssh agent and ``known_hosts`` all apply as they do for ``ssh HOST``. For each host one
connection runs a POSIX ``sh`` script on the device that:

1. makes a temporary directory (``mktemp -d`` under ``$TMPDIR`` or ``/tmp``) and removes
   it again on exit (``trap``), whatever happens next;
2. unpacks the artifact into it from a tar stream sent over the connection's stdin
   (files, names and metadata.json as they are here; the device checks their sha256);
3. runs ``PY -m edgecnn bench DIR --json ...`` with the device's Python (``python3``,
   or ``remote_python`` / ``--remote-python`` / ``EDGECNN_REMOTE_PYTHON``).

The device's JSON comes back as the result, with ``host`` added, ``latency_source``
"measured" ("emulated" where the device is an emulated Pi: ``scripts/emulated-pi``) and the
device's own ``env`` fingerprint (CPU, governor, load, runtime
versions, L4T/nvpmodel on a Jetson, throttling on a Pi); ``artifact`` is the local path
and ``remote`` says where and how it ran. Several hosts run in parallel, one thread
each; every host gets a result or a one-line error of its own (unreachable, refused
host key, failed authentication, lost connection, edgecnn or a runtime missing there,
with what to install), so one failing device never hides the others' results.

Safety: ``BatchMode=yes`` (never a password or host-key prompt: set up key login first,
e.g. ``ssh-copy-id HOST``, and connect once with ``ssh HOST`` to check and accept the
host key); host-key checking stays as configured (it is never turned off here); every
word sent to the remote shell is quoted with :func:`shlex.quote`; a host starting with
``-`` is refused. Defaults, each only where the user's ssh config (``ssh -G HOST``) leaves
ssh's own: ``ConnectTimeout=20``, ``ServerAliveInterval=15``, ``ServerAliveCountMax=4`` (a
device that vanishes is given up about a minute later); the caller's options come first.
``timeout`` (``--timeout``) bounds each whole run on a host: copy, run and answer.
``ssh_config`` is passed as ``ssh -F`` (``--ssh-config`` or ``EDGECNN_SSH_CONFIG``).

The device needs Python 3.10+, ``sh``, ``mktemp`` and ``tar`` (busybox will do), and a
torch-free install of edgecnn::

    pip install --no-deps edgecnn
    pip install numpy click           # and tomli on Python 3.10
    pip install ai-edge-litert        # Raspberry Pi; a Jetson uses JetPack's TensorRT
                                      # (python3-libnvinfer) plus pip install cuda-python
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.errors import EdgecnnError

REMOTE_PYTHON_ENV = "EDGECNN_REMOTE_PYTHON"
SSH_CONFIG_ENV = "EDGECNN_SSH_CONFIG"
# Our defaults, each beside the value ``ssh -G`` prints when no config sets the option. Given on the
# command line they would override the user's ssh config, so each is passed only where the config
# (as ``ssh -G HOST`` reports it) left ssh's own default.
DEFAULT_OPTIONS = {
    "ConnectTimeout": ("20", "none"),
    "ServerAliveInterval": ("15", "0"),
    "ServerAliveCountMax": ("4", "3"),
}
DIR_MARK = "edgecnn-remote-dir:"
DEVICE_INSTALL = (
    "pip install --no-deps edgecnn && pip install numpy click, plus the runtime "
    "(README: 'Benchmarking on a device over SSH')"
)
# What to install on the device for each runtime: plain packages, never edgecnn[extra] (that pulls torch).
DEVICE_PACKAGES = {
    "onnxruntime": "pip install onnxruntime",
    "openvino": "pip install openvino",
    "tflite": "pip install ai-edge-litert (or tflite-runtime)",
    "tensorrt": "on a Jetson TensorRT comes with JetPack (apt install python3-libnvinfer), elsewhere "
    "pip install tensorrt",
}


@dataclass
class HostResult:
    """One host's outcome: ``result`` (the bench dict) or ``error`` (one line), never both."""

    host: str
    result: dict[str, Any] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return self.result if self.result is not None else {"host": self.host, "error": self.error}


def _ssh_binary() -> str:
    ssh = shutil.which("ssh")
    if ssh is None:
        raise EdgecnnError(
            "the OpenSSH client (ssh) is not installed here: apt install openssh-client "
            "(or your system's OpenSSH package)"
        )
    return ssh


def ssh_command(
    host: str,
    remote_command: str,
    *,
    ssh_config: str | os.PathLike | None = None,
    ssh_options: Sequence[str] = (),
) -> list[str]:
    """The ``ssh`` argv that runs ``remote_command`` (one shell string) on ``host``, never prompting."""
    if not host or host.startswith("-") or any(c.isspace() for c in host):
        raise EdgecnnError(f"'{host}' is not a host: give user@address or an ~/.ssh/config alias")
    argv = [_ssh_binary()]
    if ssh_config is not None:
        if not Path(ssh_config).is_file():
            raise EdgecnnError(f"ssh config {ssh_config} does not exist")
        argv += ["-F", str(ssh_config)]
    # ssh keeps the first value it sees for an option: BatchMode is forced, the caller's options beat our
    # defaults.
    argv += ["-o", "BatchMode=yes"]
    for opt in ssh_options:
        argv += ["-o", opt]
    effective = _effective_config(
        argv[0], host, None if ssh_config is None else str(ssh_config), tuple(ssh_options)
    )
    for name, (ours, ssh_default) in DEFAULT_OPTIONS.items():
        if effective.get(name.lower(), ssh_default) == ssh_default:
            argv += ["-o", f"{name}={ours}"]
    return [*argv, "-T", "--", host, remote_command]


@functools.lru_cache(maxsize=64)
def _effective_config(
    ssh: str, host: str, ssh_config: str | None, options: tuple[str, ...]
) -> dict[str, str]:
    """What ``ssh -G`` says ssh would use for ``host`` (lower-case option -> value); {} where it cannot
    tell."""
    argv = [
        ssh,
        *(["-F", ssh_config] if ssh_config else []),
        *(x for o in options for x in ("-o", o)),
        "-G",
        "--",
        host,
    ]
    try:
        proc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    if proc.returncode != 0:
        return {}
    return dict(ln.split(" ", 1) for ln in proc.stdout.splitlines() if " " in ln)


def _python_words(remote_python: str) -> str:
    """``remote_python`` for the remote shell: each word quoted, a leading ``~/`` kept as $HOME."""
    try:
        words = shlex.split(remote_python)
    except ValueError as e:
        raise EdgecnnError(f"cannot read the remote Python {remote_python!r}: {e}") from None
    if not words:
        raise EdgecnnError("the remote Python is empty: pass --remote-python PATH (default python3)")
    out = []
    for w in words:
        out.append('"$HOME"/' + shlex.quote(w[2:]) if w.startswith("~/") else shlex.quote(w))
    return " ".join(out)


def bench_script(name: str, remote_python: str, bench_args: Sequence[str]) -> str:
    """The ``sh`` script run on the device: temp dir (removed on exit), untar stdin, bench it."""
    bench = f'{_python_words(remote_python)} -m edgecnn bench "$d"/{shlex.quote(name)} --json'
    bench += "".join(" " + shlex.quote(a) for a in bench_args)
    return device_script(bench)


def device_script(command: str) -> str:
    """The ``sh`` script that makes a temp dir ``$d`` (removed on exit), untars stdin into it, runs
    ``command``."""
    return "\n".join(
        [
            (
                'd=$(mktemp -d "${TMPDIR:-/tmp}/edgecnn-bench.XXXXXX") || '
                '{ echo "error: cannot make a temporary directory (mktemp -d) on the device" >&2; exit 3; }'
            ),
            "trap 'rm -rf \"$d\"' EXIT",
            "trap 'exit 129' HUP INT TERM",
            f'echo "{DIR_MARK}$d" >&2',
            'if ! out=$(tar -xf - -C "$d" 2>&1); then',
            '  echo "error: unpacking the artifact on the device failed (tar): '
            '$(echo "$out" | tail -n 1)" >&2',
            "  exit 3",
            "fi",
            command,
        ]
    )


def _tar_artifact(art_dir: Path, name: str, dest: Path, extra: dict[str, Path] | None = None) -> None:
    """A tar of the artifact as ``name/``, plus ``extra`` files (name in the tar -> file here)."""

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(dest, "w", dereference=True) as tar:  # a symlinked model file travels as a file
        tar.add(art_dir, arcname=name, filter=clean)
        for arcname, path in (extra or {}).items():
            tar.add(path, arcname=arcname, filter=clean)


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _ssh_failure(host: str, stderr: str, what: str = "bench") -> str:
    """One line for an error of ssh itself (exit status 255)."""
    lines = [ln for ln in _lines(stderr) if not set(ln) <= {"@"} and not ln.startswith("@")]
    text = " ".join(lines)
    last = lines[-1] if lines else "exit status 255 and no message (LogLevel QUIET?)"
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
        return (
            f"{host}: its host key does not match known_hosts (REMOTE HOST IDENTIFICATION HAS CHANGED); "
            f"if the device was reinstalled, check the new key and replace it: ssh-keygen -R HOSTNAME"
        )
    if (
        "Host key verification failed" in text
        or "No ED25519 host key is known" in text
        or re.search(r"No \S+ host key is known", text)
    ):
        return (
            f"{host}: host key not verified (not in known_hosts, or changed); connect once with "
            f"`ssh {host}` to check and accept it (edgecnn never prompts)"
        )
    if "Permission denied" in text or "Too many authentication failures" in text:
        return (
            f"{host}: authentication failed ({last}); set up key login (ssh-copy-id {host}) or load "
            f"the key into ssh-agent: passwords are never asked for"
        )
    reach = (
        "Connection refused",
        "Connection timed out",
        "No route to host",
        "Could not resolve hostname",
        "Network is unreachable",
        "Name or service not known",
        "Operation timed out",
    )
    if any(r in text for r in reach):
        return f"{host}: cannot connect: {last}"
    lost = (
        "closed by remote host",
        "Connection reset",
        "Broken pipe",
        "Timeout, server",
        "not responding",
        "Connection closed",
    )
    if any(r in text for r in lost):
        return f"{host}: lost the connection during the {what} ({last})"
    return f"{host}: ssh failed: {last}"


def _remote_failure(host: str, rc: int, stderr: str, remote_python: str, what: str = "bench") -> str:
    """One line for a failure of the script or of edgecnn on the device."""
    lines = _lines(stderr)
    errors = [ln[len("error:") :].strip() for ln in lines if ln.startswith("error:")]
    if errors:
        msg = errors[-1]
        for runtime, hint in _install_hints().items():
            if msg.split(":")[0] == hint.split(":")[0]:  # the device's own hint would pull torch in
                return (
                    f"{host}: {msg.split(':')[0]} on the device; install it there: {DEVICE_PACKAGES[runtime]}"
                )
        return f"{host}: {msg}"
    last = lines[-1] if lines else "no message"
    # A traceback's last line, or python -m's own "python3: No module named edgecnn".
    missing = re.search(r"(?:^|: )No module named '?([\w.]+)'?", last)
    if missing:
        mod = missing.group(1).split(".")[0]
        if mod == "edgecnn" and missing.group(1) != "edgecnn":  # the package is there, the module is not
            return (
                f"{host}: edgecnn on the device is too old for this (it has no {missing.group(1)}): "
                f"upgrade it there (pip install --no-deps -U edgecnn)"
            )
        if mod == "edgecnn":
            return (
                f"{host}: edgecnn is not installed for {remote_python} on the device: there, "
                f"{DEVICE_INSTALL}; or pass --remote-python"
            )
        if mod == "torch":
            return (
                f"{host}: edgecnn on the device imported torch, which a device install leaves out; "
                f"upgrade edgecnn there (this is a bug if it is current)"
            )
        return (
            f"{host}: {remote_python} on the device lacks the Python package '{mod}': there, "
            f"pip install {mod} ({DEVICE_INSTALL})"
        )
    if rc in (126, 127):  # the shell could not find or run it
        return (
            f"{host}: {remote_python} not found on the device ({lines[-1] if lines else 'exit 127'}); "
            f"install Python 3 there or pass --remote-python PATH"
        )
    return f"{host}: the remote {what} failed with exit status {rc}: {last}"


def _install_hints() -> dict[str, str]:
    from edgecnn.runtimes.base import INSTALL_HINTS

    return INSTALL_HINTS


def _parse_json(stdout: str) -> dict[str, Any] | None:
    import json

    decoder = json.JSONDecoder()
    for m in re.finditer(r"^\{", stdout, flags=re.MULTILINE):
        try:
            obj, _ = decoder.raw_decode(stdout, m.start())
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


def _cleanup(host: str, remote_dir: str, ssh_config, ssh_options: Sequence[str]) -> None:
    """Best effort after a lost connection: the device's own trap normally removes the directory."""
    if not re.fullmatch(r"/[^\n]*/edgecnn-bench\.[A-Za-z0-9]+", remote_dir):
        return
    argv = ssh_command(
        host,
        f"rm -rf -- {shlex.quote(remote_dir)}",
        ssh_config=ssh_config,
        ssh_options=[*ssh_options, "ConnectTimeout=5"],
    )
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=20, check=False)


def _bench_args(
    runtime: str | None,
    threads: int | None,
    batch: int | None,
    warmup: int,
    min_seconds: float,
    min_runs: int,
) -> list[str]:
    args = ["--min-seconds", f"{min_seconds:g}", "--min-runs", str(min_runs), "--warmup", str(warmup)]
    for flag, value in (("--runtime", runtime), ("--threads", threads), ("--batch", batch)):
        if value is not None:
            args += [flag, str(value)]
    return args


def run_on_host(
    host: str,
    tar_path: Path,
    script: str,
    *,
    remote_python: str,
    ssh_config,
    ssh_options: Sequence[str],
    timeout: float | None,
    expect: str,
    what: str = "bench",
) -> tuple[dict[str, Any], float]:
    """Run ``script`` on ``host`` with ``tar_path`` on its stdin; (the JSON it printed, wall seconds).

    The JSON must hold the key ``expect``; any failure is an :class:`EdgecnnError` of one line.
    """
    # sh -c: the script is POSIX sh whatever the login shell (bash, dash, busybox ash, fish) is.
    argv = ssh_command(host, "sh -c " + shlex.quote(script), ssh_config=ssh_config, ssh_options=ssh_options)
    t0 = time.perf_counter()
    with open(tar_path, "rb") as stdin:  # one open file per host: each ssh reads from the start
        try:
            proc = subprocess.run(argv, stdin=stdin, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as e:
            stderr = (e.stderr or b"").decode(errors="replace")
            remote_dir = _remote_dir(stderr)
            if remote_dir:
                _cleanup(host, remote_dir, ssh_config, ssh_options)
            raise EdgecnnError(
                f"{host}: the {what} did not finish within --timeout {timeout:g} s and was stopped; "
                f"check the device, or allow more time"
            ) from None
    wall_s = time.perf_counter() - t0
    stdout = proc.stdout.decode(errors="replace")
    stderr = proc.stderr.decode(errors="replace")
    remote_dir = _remote_dir(stderr)
    stderr = "\n".join(ln for ln in stderr.splitlines() if not ln.startswith(DIR_MARK))
    if proc.returncode == 255:
        if remote_dir:
            _cleanup(host, remote_dir, ssh_config, ssh_options)
        raise EdgecnnError(_ssh_failure(host, stderr, what))
    if proc.returncode != 0:
        raise EdgecnnError(_remote_failure(host, proc.returncode, stderr, remote_python, what))
    result = _parse_json(stdout)
    if result is None or expect not in result:
        last = (_lines(stdout) or _lines(stderr) or ["nothing"])[-1]
        raise EdgecnnError(
            f"{host}: the remote {what} printed no result JSON (last line: {last}); "
            f"is edgecnn there too old? upgrade it: {DEVICE_INSTALL}"
        )
    return result, wall_s


def _run_host(
    host: str,
    tar_path: Path,
    art_dir: Path,
    name: str,
    remote_python: str,
    bench_args: list[str],
    ssh_config,
    ssh_options: Sequence[str],
    timeout: float | None,
) -> dict[str, Any]:
    result, wall_s = run_on_host(
        host,
        tar_path,
        bench_script(name, remote_python, bench_args),
        remote_python=remote_python,
        ssh_config=ssh_config,
        ssh_options=ssh_options,
        timeout=timeout,
        expect="latency_ms",
    )
    result["host"] = host
    # QEMU's time is never a device's: a device that knows it is emulated keeps that label.
    result["latency_source"] = "emulated" if result.get("latency_source") == "emulated" else "measured"
    result["remote"] = {
        "host": host,
        "python": remote_python,
        "artifact": result.get("artifact"),
        "wall_s": wall_s,
    }
    result["artifact"] = str(art_dir)
    return result


def _remote_dir(stderr: str) -> str | None:
    for ln in stderr.splitlines():
        if ln.startswith(DIR_MARK):
            return ln[len(DIR_MARK) :].strip()
    return None


def bench_hosts(
    path: str | os.PathLike,
    hosts: Iterable[str],
    *,
    remote_python: str | None = None,
    ssh_config: str | os.PathLike | None = None,
    ssh_options: Sequence[str] = (),
    runtime: str | None = None,
    threads: int | None = None,
    batch: int | None = None,
    warmup: int = 5,
    min_seconds: float = 2.0,
    min_runs: int = 10,
    timeout: float | None = None,
) -> list[HostResult]:
    """Bench the artifact at ``path`` on every host at once; one :class:`HostResult` per host, in order.

    ``remote_python`` defaults to ``$EDGECNN_REMOTE_PYTHON`` or ``python3``; ``ssh_config``
    to ``$EDGECNN_SSH_CONFIG`` (else ssh's own ``~/.ssh/config``); ``ssh_options`` are
    extra ``-o`` options. ``timeout`` (seconds) stops a host that takes longer. The artifact
    is checked here (sha256) before anything is sent; a problem with it, with ``ssh`` here
    or with an argument raises :class:`EdgecnnError`, a problem with a host is that host's
    ``error``.
    """
    from edgecnn.artifact import load_artifact

    hosts = list(hosts)
    remote_python, ssh_config = check_hosts(hosts, remote_python, ssh_config, ssh_options)
    art = load_artifact(path, verify=True)
    art_dir = Path(art.dir).resolve()
    name = art_dir.name or "artifact"
    args = _bench_args(runtime, threads, batch, warmup, min_seconds, min_runs)
    with tempfile.TemporaryDirectory(prefix="edgecnn-remote-") as tmp:
        tar_path = Path(tmp) / "artifact.tar"
        _tar_artifact(art_dir, name, tar_path)
        return for_each_host(
            hosts,
            lambda host: _run_host(
                host, tar_path, art_dir, name, remote_python, args, ssh_config, ssh_options, timeout
            ),
        )


def check_hosts(
    hosts: Sequence[str], remote_python: str | None, ssh_config, ssh_options: Sequence[str]
) -> tuple[str, str | os.PathLike | None]:
    """Refuse bad hosts and options before any connection; (remote Python, ssh config) with their defaults."""
    if not hosts:
        raise EdgecnnError("no host given: pass --host user@address (repeat it for several devices)")
    remote_python = remote_python or os.environ.get(REMOTE_PYTHON_ENV) or "python3"
    ssh_config = ssh_config or os.environ.get(SSH_CONFIG_ENV) or None
    _python_words(remote_python)
    for h in hosts:
        ssh_command(h, "true", ssh_config=ssh_config, ssh_options=ssh_options)
    return remote_python, ssh_config


def for_each_host(hosts: Sequence[str], run: Callable[[str], Any]) -> list[HostResult]:
    """``run(host)`` on every host at once, one thread each; its result or its one-line error, in order."""

    def one(host: str) -> HostResult:
        try:
            return HostResult(host, result=run(host))
        except EdgecnnError as e:
            return HostResult(host, error=str(e))
        except Exception as e:  # noqa: BLE001 - one host's surprise must not lose the others' results
            return HostResult(host, error=EdgecnnError(f"{host}: {type(e).__name__}: {e}").args[0])

    with ThreadPoolExecutor(max_workers=len(hosts), thread_name_prefix="edgecnn-ssh") as pool:
        return list(pool.map(one, hosts))


def bench_remote(path: str | os.PathLike, host: str, **kwargs: Any) -> dict[str, Any]:
    """Bench on one host and return its result dict; its failure raises :class:`EdgecnnError`."""
    (r,) = bench_hosts(path, [host], **kwargs)
    if r.error is not None:
        raise EdgecnnError(r.error)
    return r.result


def profile_hosts(
    path: str | os.PathLike,
    hosts: Iterable[str],
    *,
    remote_python: str | None = None,
    ssh_config: str | os.PathLike | None = None,
    ssh_options: Sequence[str] = (),
    runtime: str | None = None,
    threads: int | None = None,
    runs: int = 20,
    warmup: int = 3,
    timeout: float | None = None,
) -> list[HostResult]:
    """Per-layer times of the artifact on every host, from the device's runtime profiler (``edgecnn bench
    --profile --json`` run there); each result is an :class:`edgecnn.profiling.LayerProfile` JSON dict with
    ``host`` set."""
    from edgecnn.artifact import load_artifact

    hosts = list(hosts)
    remote_python, ssh_config = check_hosts(hosts, remote_python, ssh_config, ssh_options)
    art = load_artifact(path, verify=True)
    art_dir = Path(art.dir).resolve()
    name = art_dir.name or "artifact"
    args = ["--profile", "--min-runs", str(runs), "--warmup", str(warmup)]
    for flag, value in (("--runtime", runtime), ("--threads", threads)):
        if value is not None:
            args += [flag, str(value)]

    def one(host: str, tar_path: Path) -> dict[str, Any]:
        result, _ = run_on_host(
            host,
            tar_path,
            bench_script(name, remote_python, args),
            remote_python=remote_python,
            ssh_config=ssh_config,
            ssh_options=ssh_options,
            timeout=timeout,
            expect="layers",
            what="profile",
        )
        return {**result, "host": host, "artifact": str(art_dir)}

    with tempfile.TemporaryDirectory(prefix="edgecnn-remote-") as tmp:
        tar_path = Path(tmp) / "artifact.tar"
        _tar_artifact(art_dir, name, tar_path)
        return for_each_host(hosts, lambda host: one(host, tar_path))
