"""edgecnn.remote and `edgecnn bench --host`, against a real OpenSSH server on 127.0.0.1.

The test starts its own ``sshd`` (keys, known_hosts, config all in a temporary directory)
on a free port; host-key checking stays on. The "device" is this machine: the remote
Python is this venv's, with a ``torch`` stub first on its PYTHONPATH that fails to import,
as on a device where edgecnn is installed without torch.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_bench import _onnx_artifact  # a tiny float ONNX artifact built with onnx alone

from edgecnn.errors import EdgecnnError
from edgecnn.remote import bench_hosts, bench_remote, bench_script, ssh_command

SSHD = "/usr/sbin/sshd"
PY = sys.executable
REPO = Path(__file__).resolve().parents[1]
FAST = {"min_seconds": 0.2, "min_runs": 3, "warmup": 1, "threads": 1}
FAST_ARGS = ["--min-seconds", "0.2", "--min-runs", "3", "--warmup", "1", "--threads", "1"]
NO_MODULE = 'raise ModuleNotFoundError("No module named {0!r} (not installed on this device)", name={0!r})\n'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgecnn-test", "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def _wrapper(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


class Sshd:
    """A running sshd and the client side that reaches it: ``config`` (ssh -F) with host aliases
    ``dev1``/``dev2`` (the server), ``badport`` (nothing listens), ``wrongkey`` (a known_hosts
    holding another key) and ``unknownkey`` (an empty known_hosts)."""

    def __init__(self, root: Path):
        self.root = root
        self.remote_tmp = root / "remote-tmp"  # the device's $TMPDIR: where the artifacts land
        self.remote_tmp.mkdir()
        (root / "remote-home").mkdir()
        notorch = root / "notorch"
        notorch.mkdir()
        (notorch / "torch.py").write_text(NO_MODULE.format("torch"))
        host_key = _keygen(root / "host_key")
        other_key = _keygen(root / "other_host_key")
        _keygen(root / "id")
        (root / "authorized_keys").write_text((root / "id.pub").read_text())
        self.port = _free_port()
        (root / "sshd_config").write_text(
            "\n".join(
                [
                    f"ListenAddress 127.0.0.1:{self.port}",
                    f"HostKey {root / 'host_key'}",
                    f"PidFile {root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {root / 'authorized_keys'}",
                    "UsePAM no",
                    "StrictModes no",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "LogLevel VERBOSE",
                    # REPO after the stub: the device runs this checkout's edgecnn, not whichever one the venv
                    # installed.
                    f"SetEnv TMPDIR={self.remote_tmp} EDGECNN_HOME={root / 'remote-home'} "
                    f"PYTHONPATH={notorch}:{REPO}",
                    "",
                ]
            )
        )
        (root / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {host_key}\n")
        (root / "known_hosts_wrong").write_text(f"[127.0.0.1]:{self.port} {other_key}\n")
        self.config = root / "ssh_config"
        self.config.write_text(f"""\
Host wrongkey
  Port {self.port}
  UserKnownHostsFile {root / "known_hosts_wrong"}
Host unknownkey
  Port {self.port}
  UserKnownHostsFile /dev/null
Host badport
  Port {_free_port()}
Host *
  HostName 127.0.0.1
  Port {self.port}
  User {getpass.getuser()}
  IdentityFile {root / "id"}
  IdentitiesOnly yes
  UserKnownHostsFile {root / "known_hosts"}
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  PasswordAuthentication no
""")
        self.log = root / "sshd.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(root / "sshd_config")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"sshd did not start: {self.log.read_text()[-2000:]}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def leftovers(self, wait: float = 0.0) -> list[str]:
        """The bench directories left in the remote $TMPDIR (waits up to ``wait`` s for them to go).

        Only ours count: onnxruntime itself writes a ``.ses`` file there."""
        deadline = time.monotonic() + wait
        while True:
            left = sorted(n for n in os.listdir(self.remote_tmp) if n.startswith("edgecnn-bench."))
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.1)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    for tool in (SSHD, "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs OpenSSH ({tool} is missing): apt-get install openssh-server openssh-client")
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        # sshd running as root insists on its privilege-separation directory (Debian's service makes it).
        try:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        except OSError as e:
            pytest.skip(f"sshd as root needs /run/sshd and it cannot be made: {e}")
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    return _onnx_artifact(tmp_path_factory.mktemp("remote-art") / "tiny")


def _one_line(msg: str) -> bool:
    return "\n" not in msg and msg.strip() == msg and len(msg) > 0


def test_bench_over_ssh_returns_the_devices_json(sshd, artifact):
    r = bench_remote(artifact, "dev1", remote_python=PY, ssh_config=sshd.config, **FAST)
    assert r["host"] == "dev1" and r["latency_source"] == "measured" and r["format"] == "edgecnn.bench/1"
    assert {"p50", "p90", "p99", "mean", "min", "max", "std", "n"} <= set(r["latency_ms"])
    assert r["latency_ms"]["n"] >= 3 and r["runtime"] == "onnxruntime" and r["arch"] == "tiny"
    assert r["artifact"] == str(artifact.resolve()) and r["env"]["python"]  # the device's own fingerprint
    assert r["remote"]["artifact"].startswith(str(sshd.remote_tmp)) and r["remote"]["python"] == PY
    assert sshd.leftovers() == []  # the device's temp dir is gone


def test_cli_hosts_run_in_parallel_and_one_refused_port_keeps_the_others(sshd, artifact):
    env = {**os.environ, "EDGECNN_SSH_CONFIG": str(sshd.config), "EDGECNN_REMOTE_PYTHON": PY}
    t0 = time.monotonic()
    p = subprocess.run(
        [
            PY,
            "-m",
            "edgecnn",
            "bench",
            str(artifact),
            "--host",
            "dev1",
            "--host",
            "badport",
            "--host",
            "dev2",
            "--json",
            *FAST_ARGS,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert p.returncode == 2, p.stderr
    out = json.loads(p.stdout)
    assert [o["host"] for o in out] == ["dev1", "badport", "dev2"]
    assert out[0]["latency_ms"]["n"] >= 3 and out[2]["latency_ms"]["n"] >= 3
    assert "cannot connect" in out[1]["error"] and "Connection refused" in out[1]["error"]
    errors = p.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: badport: cannot connect"), p.stderr
    assert sshd.leftovers() == []
    print(f"3 hosts in {time.monotonic() - t0:.1f} s")


def test_cli_human_output_for_one_host(sshd, artifact):
    p = subprocess.run(
        [
            PY,
            "-m",
            "edgecnn",
            "bench",
            str(artifact),
            "--host",
            "dev1",
            "--ssh-config",
            str(sshd.config),
            "--remote-python",
            PY,
            *FAST_ARGS,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("dev1:\n") and "measured p50" in p.stdout


def test_changed_or_unknown_host_key_is_refused(sshd, artifact):
    changed, unknown = bench_hosts(
        artifact, ["wrongkey", "unknownkey"], remote_python=PY, ssh_config=sshd.config, **FAST
    )
    assert changed.result is None and _one_line(changed.error)
    assert changed.error.startswith("wrongkey: its host key does not match known_hosts"), changed.error
    assert unknown.result is None and _one_line(unknown.error)
    assert unknown.error.startswith("unknownkey: host key not verified"), unknown.error
    assert sshd.leftovers() == []  # nothing ran there


def test_hostile_artifact_directory_name(sshd, artifact, tmp_path):
    name = 'it\'s a "model" $(touch $TMPDIR.pwned1); touch $TMPDIR.pwned2 ;`touch $TMPDIR.pwned3` & x'
    hostile = tmp_path / name
    shutil.copytree(artifact, hostile)
    r = bench_remote(hostile, "dev1", remote_python=PY, ssh_config=sshd.config, **FAST)
    assert r["remote"]["artifact"].endswith("/" + name) and r["latency_ms"]["n"] >= 3
    assert not list(sshd.root.glob("remote-tmp.pwned*"))
    assert sshd.leftovers() == []


@pytest.mark.parametrize(
    "case, message",
    [
        (
            "no-onnxruntime",
            "dev1: ONNX Runtime is not installed on the device; install it there: pip install onnxruntime",
        ),
        ("no-edgecnn", "edgecnn is not installed for"),
        ("no-python", "not found on the device"),
    ],
    ids=["no-onnxruntime", "no-edgecnn", "no-python"],
)
def test_what_to_install_on_the_device(sshd, artifact, tmp_path, case, message):
    if case == "no-onnxruntime":
        blocked = tmp_path / "blocked"
        blocked.mkdir()
        (blocked / "onnxruntime.py").write_text(NO_MODULE.format("onnxruntime"))
        python = _wrapper(tmp_path / "python", f'PYTHONPATH={blocked}:$PYTHONPATH exec {PY} "$@"\n')
    elif case == "no-edgecnn":
        python = _wrapper(tmp_path / "python", f'unset PYTHONPATH; exec {PY} -S "$@"\n')  # a bare Python
    else:
        python = str(tmp_path / "no such dir" / "python3")
    (r,) = bench_hosts(artifact, ["dev1"], remote_python=python, ssh_config=sshd.config, **FAST)
    assert r.result is None and _one_line(r.error) and message in r.error, r.error
    assert "edgecnn[" not in r.error  # extras pull torch: never advised for a device
    assert sshd.leftovers() == []


def test_connection_killed_mid_run(sshd, artifact, tmp_path):
    # The "device's Python" starts the bench, then kills this connection's sshd session process.
    python = _wrapper(
        tmp_path / "python",
        f"""\
{PY} "$@" >/dev/null 2>&1 &
bench=$!
sleep 1
p=$$
while [ "$p" -gt 1 ]; do
  case "$(cat /proc/$p/comm)" in sshd*) kill -9 "$p"; break;; esac
  p=$(cut -d' ' -f4 /proc/$p/stat)
done
kill "$bench"
wait
""",
    )
    t0 = time.monotonic()
    (r,) = bench_hosts(
        artifact, ["dev1"], remote_python=python, ssh_config=sshd.config, **{**FAST, "min_seconds": 30}
    )
    assert time.monotonic() - t0 < 20
    assert r.result is None and _one_line(r.error), r.error
    assert r.error.startswith("dev1: lost the connection"), r.error
    assert sshd.leftovers(wait=5) == []  # cleaned by the device's trap or the reconnect afterwards
    assert sshd.proc.poll() is None  # the server itself is still up
    r = bench_remote(artifact, "dev2", remote_python=PY, ssh_config=sshd.config, **FAST)
    assert r["latency_ms"]["n"] >= 3


def test_device_side_bench_imports_no_torch(artifact, tmp_path):
    """`python -m edgecnn bench ARTIFACT` (what runs on the device) works where torch cannot import."""
    (tmp_path / "torch.py").write_text(NO_MODULE.format("torch"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "EDGECNN_HOME": str(tmp_path / "home")}
    p = subprocess.run(
        [PY, "-m", "edgecnn", "bench", str(artifact), "--json", *FAST_ARGS],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["latency_ms"]["n"] >= 3


def test_arguments_that_could_inject_are_refused(artifact, monkeypatch):
    for host in ["-oProxyCommand=touch /tmp/x", "dev1 -v", ""]:
        with pytest.raises(EdgecnnError, match="is not a host"):
            ssh_command(host, "true")
    with pytest.raises(EdgecnnError, match="no host given"):
        bench_hosts(artifact, [])
    argv = ssh_command("pi@pi.local", "true", ssh_options=["Port=2222"])
    assert argv[-3:] == ["--", "pi@pi.local", "true"] and "BatchMode=yes" in argv
    assert argv.index("BatchMode=yes") < argv.index("Port=2222") < argv.index("ConnectTimeout=20")
    assert not any("StrictHostKeyChecking" in a for a in argv)
    script = bench_script("a'b", "~/venv/bin/python -X dev", ["--runtime", "x;y"])
    assert (
        "\"$HOME\"/venv/bin/python -X dev -m edgecnn bench \"$d\"/'a'\"'\"'b' --json --runtime 'x;y'"
        in script
    )


def test_the_users_connect_timeout_wins(sshd, tmp_path):
    """ssh takes a -o option over the config file: edgecnn adds its defaults only where the config sets
    none."""
    config = tmp_path / "ssh_config"
    config.write_text("Host patient\n  ConnectTimeout 7\n  ServerAliveCountMax 9\n" + sshd.config.read_text())
    mine = ssh_command("patient", "true", ssh_config=config)
    assert not any(a.startswith(("ConnectTimeout=", "ServerAliveCountMax=")) for a in mine), mine
    assert "ServerAliveInterval=15" in mine  # not set there: ours
    theirs = ssh_command("dev1", "true", ssh_config=config)
    assert {"ConnectTimeout=20", "ServerAliveInterval=15", "ServerAliveCountMax=4"} <= set(theirs)
    assert "ConnectTimeout=5" in ssh_command(
        "patient", "true", ssh_config=config, ssh_options=["ConnectTimeout=5"]
    )
    # and the connection itself works with the user's own timeout
    p = subprocess.run(
        mine[:-1] + ["echo connected"], capture_output=True, text=True, timeout=60, check=False
    )
    assert p.returncode == 0 and p.stdout.strip() == "connected", p.stderr


def test_timeout_ends_a_host_that_hangs_mid_run(sshd, artifact, tmp_path):
    """The device's Python hangs: --timeout ends the run as one line for that host; the device works again
    after."""
    hangs = _wrapper(tmp_path / "python", "sleep 60\n")
    t0 = time.monotonic()
    p = subprocess.run(
        [
            PY,
            "-m",
            "edgecnn",
            "bench",
            str(artifact),
            "--host",
            "dev1",
            "--ssh-config",
            str(sshd.config),
            "--remote-python",
            hangs,
            "--timeout",
            "3",
            *FAST_ARGS,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert time.monotonic() - t0 < 45
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: dev1: the bench did not finish within --timeout 3 s"
    ), p.stderr
    assert "Traceback" not in p.stderr
    assert sshd.leftovers(wait=10) == []  # removed by the reconnect after the timeout
    r = bench_remote(artifact, "dev2", remote_python=PY, ssh_config=sshd.config, timeout=120, **FAST)
    assert r["latency_ms"]["n"] >= 3


def test_timeout_must_be_a_positive_number(artifact):
    for bad in ("0", "-1", "nan", "soon"):
        p = subprocess.run(
            [PY, "-m", "edgecnn", "bench", str(artifact), "--host", "dev1", "--timeout", bad],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
            check=False,
        )
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and "--timeout" in p.stderr, p.stderr
