"""The emulated Raspberry Pi (scripts/emulated-pi) end to end: `edgecnn bench --host` over SSH
into an arm64 Debian run by QEMU user-mode, and INT8 outputs on ARM's kernels against x86's.

Opt-in: marked ``emulated_arm64`` (and ``slow``), skipped unless a root made by
``sudo scripts/emulated-pi/make.sh ROOT`` exists at ``$EDGECNN_EMULATED_PI`` (default
``.cache/emulated-pi/root``) and the tests run as root (mount namespaces, chroot).
Building the root takes about 10 minutes, so CI does not build it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_runtimes import batch, tflite_int8, tiny  # noqa: F401 - fixtures: a tiny full-integer .tflite

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts" / "emulated-pi"))
import emulated_pi

WHY = emulated_pi.unavailable()
pytestmark = [
    pytest.mark.emulated_arm64,
    pytest.mark.slow,
    pytest.mark.skipif(WHY is not None, reason=WHY or ""),
]
ALIAS = "edgecnn-test-pi5"
FAST_ARGS = ["--min-seconds", "0", "--min-runs", "2", "--warmup", "1", "--threads", "1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pi5_ssh_config():
    config = emulated_pi.start_sshd(ALIAS, "cortex-a76", _free_port())
    yield config
    emulated_pi.stop_sshd(ALIAS, "cortex-a76")


def _bench(artifact, config, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "edgecnn",
            "bench",
            str(artifact),
            "--host",
            ALIAS,
            "--ssh-config",
            str(config),
            *FAST_ARGS,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
        check=False,
    )


def test_bench_host_runs_on_the_emulated_pi5_and_labels_its_latency(pi5_ssh_config, tflite_int8):  # noqa: F811
    d, _ = tflite_int8
    proc = _bench(d, pi5_ssh_config, "--json")
    assert proc.returncode == 0, proc.stderr
    (r,) = json.loads(proc.stdout)
    env = r["env"]
    # the remote machine is an arm64 "Raspberry Pi 5" whose CPU QEMU pins to a Cortex-A76
    assert (
        env["machine"] == "aarch64" and env["device"] == "rpi5" and env["board"].startswith("Raspberry Pi 5")
    )
    assert env["emulated"]["emulated"] == "qemu-user" and env["emulated"]["cpu"] == "cortex-a76"
    assert "asimddp" in env["hwcaps"] and not {"sve", "sve2", "sme", "i8mm"} & set(env["hwcaps"])
    assert (
        r["runtime"] == "tflite"
        and r["precision"] == "int8"
        and r["runtime_info"]["package"] == "ai-edge-litert"
    )
    # its time is QEMU's: labelled, and no energy is made from it
    assert r["latency_source"] == "emulated" and r["host"] == ALIAS and r["energy_mj"] is None
    assert any("never a latency figure" in n for n in r["notes"])
    proc = _bench(d, pi5_ssh_config)
    assert proc.returncode == 0 and "EMULATED (qemu-user, CPU model cortex-a76)" in proc.stdout, proc.stderr


@pytest.mark.parametrize(("cpu", "dotprod"), [("cortex-a72", False), ("cortex-a76", True)])
def test_the_cpu_model_is_pinned(cpu, dotprod):
    code = "from edgecnn.devices.detect import arm64_hwcaps; print(' '.join(arm64_hwcaps()))"
    proc = subprocess.run(
        [
            str(emulated_pi.HERE / "run.sh"),
            str(emulated_pi.root()),
            "--cpu",
            cpu,
            "--",
            "python3",
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    caps = set(proc.stdout.split())
    assert "asimd" in caps and ("asimddp" in caps) == dotprod
    assert not {"sve", "sve2", "sme", "i8mm"} & caps  # QEMU's default "max" model would offer these


def test_int8_outputs_on_arm_equal_x86(tflite_int8):  # noqa: F811
    from edgecnn.runtimes import open_session

    d, _ = tflite_int8
    x = batch(8)
    with open_session(d, threads=1) as s:
        host = s.run(x)
    for cpu in emulated_pi.CPUS:
        arm = emulated_pi.run_on_pi(d, x, cpu=cpu)
        assert arm.shape == host.shape and np.array_equal(arm, host), (cpu, np.abs(arm - host).max())
