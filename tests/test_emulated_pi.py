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
from test_evaluate import CLASSES, PREPROCESS, folder  # noqa: F401 - folder: an ImageFolder fixture
from test_runtimes import TFLITE_BATCH, batch, metadata, tflite_int8, tiny_net  # noqa: F401 - a fixture

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts" / "emulated-pi"))
import emulated_pi  # noqa: E402 - found through the sys.path entry above

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
def tiny():  # the network of test_runtimes' tflite_int8, with test_evaluate's classes
    return tiny_net(len(CLASSES))


@pytest.fixture(scope="module")
def pi_artifact(tflite_int8, tmp_path_factory):  # noqa: F811
    """A full-integer INT8 .tflite (litert-torch) for test_evaluate's folder: 6 classes, 16 px grey."""
    from edgecnn.artifact import write_metadata

    d = tmp_path_factory.mktemp("pi") / "tiny-rpi-int8"
    d.mkdir()
    (d / "model.tflite").write_bytes((tflite_int8[0] / "model.tflite").read_bytes())
    write_metadata(
        d,
        metadata(
            ["model.tflite"],
            runtime="tflite",
            target="rpi",
            precision="int8",
            shape=[TFLITE_BATCH, 1, 16, 16],
            num_classes=len(CLASSES),
            class_names=CLASSES,
            preprocess=PREPROCESS,
        ),
    )
    return d


@pytest.fixture(scope="module")
def pi5_ssh_config():
    config = emulated_pi.start_sshd(ALIAS, "cortex-a76", _free_port())
    yield config
    emulated_pi.stop_sshd(ALIAS, "cortex-a76")


def _edgecnn(command: str, artifact, config, *extra) -> subprocess.CompletedProcess:
    """``edgecnn COMMAND ARTIFACT --host ALIAS --ssh-config CONFIG ...`` as a user runs it."""
    argv = [
        sys.executable,
        "-m",
        "edgecnn",
        command,
        str(artifact),
        "--host",
        ALIAS,
        "--ssh-config",
        str(config),
    ]
    return subprocess.run([*argv, *extra], capture_output=True, text=True, timeout=900, cwd=REPO, check=False)


def test_bench_host_runs_on_the_emulated_pi5_and_labels_its_latency(pi5_ssh_config, pi_artifact):
    d = pi_artifact
    proc = _edgecnn("bench", d, pi5_ssh_config, *FAST_ARGS, "--json")
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
    proc = _edgecnn("bench", d, pi5_ssh_config, *FAST_ARGS)
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


def test_int8_outputs_on_arm_equal_x86(pi_artifact):
    from edgecnn.runtimes import open_session

    d = pi_artifact
    x = batch(8)
    with open_session(d, threads=1) as s:
        host = s.run(x)
    for cpu in emulated_pi.CPUS:
        arm = emulated_pi.run_on_pi(d, x, cpu=cpu)
        assert arm.shape == host.shape and np.array_equal(arm, host), (cpu, np.abs(arm - host).max())


def test_evaluate_host_measures_accuracy_on_the_emulated_pi5(pi5_ssh_config, pi_artifact, folder):  # noqa: F811
    from edgecnn.device_eval import evaluate_hosts
    from edgecnn.evaluate import evaluate_artifact

    here = evaluate_artifact(pi_artifact, data=folder)
    (r,) = evaluate_hosts(pi_artifact, [ALIAS], data=folder, ssh_config=pi5_ssh_config, threads=1)
    assert r.ok, r.error
    acc = r.result
    # ARM's kernels give this machine's answers on every image, and the report says where they ran
    assert (
        acc.num_images == here["num_images"] == 54 and acc.top1 == here["top1"] and acc.top5 == here["top5"]
    )
    assert acc.host_run.agreement == 1.0 and acc.host_run.flipped == () and acc.runtime == "tflite"
    assert acc.machine["machine"] == "aarch64" and acc.machine["device"] == "rpi5"
    assert acc.machine["emulated"]["cpu"] == "cortex-a76" and "asimddp" in acc.machine["hwcaps"]
    assert acc.to_json()["accuracy_where"] == f"emulated:{ALIAS}"
    proc = _edgecnn("evaluate", pi_artifact, pi5_ssh_config, "--data", str(folder))
    assert proc.returncode == 0 and "on an EMULATED device: QEMU, CPU model cortex-a76" in proc.stdout, (
        proc.stderr
    )
