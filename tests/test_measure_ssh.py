"""The SSH runner against a real sshd on 127.0.0.1: the agent is copied, run there, its JSON read back."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perfpred import config
from perfpred.measure import stage as measure
from servers import free_port
from test_measure import QUICK, tiny_descriptor

pytestmark = [pytest.mark.ssh, pytest.mark.slow, pytest.mark.tensorflow]

SSHD = "/usr/sbin/sshd"


@pytest.fixture
def sshd(tmp_path):
    """A throw-away sshd on 127.0.0.1 with its own host key and one authorized client key."""
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        pytest.skip("openssh-server is not installed (apt-get install openssh-server; .ci/run installs it)")
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True)
    (keys / "authorized_keys").write_text((keys / "client.pub").read_text())
    port = free_port()
    (keys / "sshd_config").write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {keys / 'host'}", f"PidFile {keys / 'sshd.pid'}",
        f"AuthorizedKeysFile {keys / 'authorized_keys'}", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes", "UsePAM no", "StrictModes no", "PermitRootLogin yes",
        "Subsystem sftp internal-sftp", ""]))
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation folder that sshd insists on
    daemon = subprocess.Popen([SSHD, "-D", "-e", "-f", str(keys / "sshd_config")], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        if daemon.poll() is not None:
            pytest.fail(f"sshd did not start: {daemon.stderr.read()}")
        time.sleep(0.1)
    ssh = {"host": "127.0.0.1", "port": port, "user": getpass.getuser(), "key": str(keys / "client"),
           "python": sys.executable, "workdir": str(tmp_path / "board"),
           "options": [f"UserKnownHostsFile={keys / 'known_hosts'}"]}
    yield ssh
    daemon.kill()
    daemon.wait()


def board_target(ssh: dict) -> tuple[dict, dict]:
    target, settings = measure.target_settings("jetson-orin", config.load_params())
    # this machine has no GPU: the board here is its CPU, reached over SSH like a Jetson
    return target | {"ssh": ssh, "device": "cpu"}, settings | QUICK


def test_a_model_measured_over_ssh_has_the_local_statistics(sshd, tmp_path):
    target, settings = board_target(sshd)
    row = measure.measure_model("tiny_remote", tiny_descriptor(tmp_path, "tiny_remote"), None, target, settings)
    assert row["status"] == "ok", row["reason"]
    assert row["target"] == "jetson-orin" and row["input_width"] == 24
    assert (Path(sshd["workdir"]) / "agent.py").exists() and (Path(sshd["workdir"]) / "tiny_remote.json").exists()
    assert 10 <= row["iterations"] <= 60 and len(row["times_ms"]) == row["iterations"]
    assert row["memory_mb"] > 50 and row["latency_ms"] == row["median_ms"]
    assert row["pattern"] in {"white_noise", "drift", "high_spikes", "low_spikes"}


def test_an_unreachable_board_is_a_failed_row_naming_the_host(sshd, tmp_path):
    target, settings = board_target(sshd | {"port": free_port()})
    row = measure.measure_model("tiny_remote", tiny_descriptor(tmp_path, "tiny_remote"), None, target, settings)
    assert row["status"] == "failed" and "127.0.0.1" in row["reason"]
