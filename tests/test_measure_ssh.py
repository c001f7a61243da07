"""The SSH runner against a real sshd on 127.0.0.1: the agent is copied, run there, its JSON read back."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import yaml

from perfpred import cli, config
from perfpred.measure import agent, runners
from perfpred.measure import stage as measure
from servers import free_port
from test_measure import QUICK, stage_params, tiny_descriptor, write_manifest

pytestmark = [pytest.mark.ssh, pytest.mark.slow, pytest.mark.tensorflow]

SSHD = "/usr/sbin/sshd"


def start_sshd(folder: Path) -> tuple[dict, subprocess.Popen]:
    """A throw-away sshd on 127.0.0.1 with its own host key and one authorized client key: (ssh settings, daemon)."""
    keys = folder / "keys"
    keys.mkdir(parents=True)
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
           "python": sys.executable, "workdir": str(folder / "board"),
           "options": [f"UserKnownHostsFile={keys / 'known_hosts'}"]}
    return ssh, daemon


def require_sshd() -> None:
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        pytest.skip("openssh-server is not installed (apt-get install openssh-server; .ci/run installs it)")


@pytest.fixture
def sshd(tmp_path):
    """One sshd on 127.0.0.1; yields its ssh settings."""
    require_sshd()
    ssh, daemon = start_sshd(tmp_path)
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
    assert row["measured_on"] == runners.host_label(sshd) and row["failure"] is None


def board_project(root: Path, ssh: dict, models: dict[str, Path]) -> dict:
    """A project folder (params.yaml, zoo manifest) whose target `my-board` is an SSH board with these settings."""
    params = stage_params(root)
    target, _ = measure.target_settings("jetson-orin", params)
    params["local"] = {"my-board": target | {"name": "my-board", "ssh": ssh, "device": "cpu"}}
    (root / "zoo").mkdir(exist_ok=True)
    write_manifest(root / "zoo", models)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    (root / "conf").symlink_to(config.conf_dir(), target_is_directory=True)  # the stage's summary reads conf/measure
    return params


def kill_when_measuring(daemon: subprocess.Popen, timeout_s: float = 300) -> bool:
    """Kill an sshd and everything it started (by pid) as soon as an agent runs under it: a board that dies mid-run."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        tree = agent._process_tree(daemon.pid)
        # "" for a process that exited between the listing and the read
        commands = [agent._read_text(f"/proc/{pid}/cmdline") or "" for pid in tree[1:]]
        # the agent's own Python, not the login shell whose command line names it: killing that shell while its
        # startup files run (e.g. pyenv's rehash, which holds a lock file) would leave the lock and hang later logins
        if any(Path(argv[0]).name.startswith("python") and "agent.py" in argv
               for argv in (command.split("\0") for command in commands) if argv[0]):
            for pid in tree:  # the listener first: the board accepts no new connection
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            daemon.wait()
            return True
        time.sleep(0.1)
    return False


def test_an_unreachable_board_fails_fast_and_leaves_the_journal_alone(sshd, tmp_path, monkeypatch, capsys):
    refused = sshd | {"port": free_port()}
    target, settings = board_target(refused)
    params = board_project(tmp_path, refused, {"tiny_a": tiny_descriptor(tmp_path, "tiny_a")})
    monkeypatch.setenv("PERFPRED_ROOT", str(tmp_path))
    for _ in range(2):  # a rerun is refused the same way: nothing was recorded as measured
        assert cli.main(["measure", "--zoo", "--target", "my-board"]) == 3
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and f"127.0.0.1:{refused['port']}" in error and "connect" in error
    assert not (tmp_path / "measure_runs").exists() and not (tmp_path / "measurements").exists()
    with pytest.raises(runners.TargetUnreachable, match="no host answers"):
        measure.measure_model("tiny_a", tiny_descriptor(tmp_path, "tiny_a"), None, target, settings)
    assert params["local"]["my-board"]["kind"] == "ssh"
    no_python = sshd | {"python": str(tmp_path / "no-python")}  # the board answers, the agent could not start
    with pytest.raises(runners.TargetUnreachable, match="no-python does not start"):
        runners.check_target({"name": "my-board", "ssh": no_python})


def test_a_board_gone_mid_run_loses_nothing_and_the_stage_exits_non_zero(tmp_path, monkeypatch, capsys):
    require_sshd()
    ssh, daemon = start_sshd(tmp_path / "board")
    models = {f"tiny_{i}": tiny_descriptor(tmp_path, f"tiny_{i}", filters=4 + 2 * i) for i in range(2)}
    board_project(tmp_path, ssh, models)
    monkeypatch.setenv("PERFPRED_ROOT", str(tmp_path))
    with ThreadPoolExecutor(1) as pool:
        killed = pool.submit(kill_when_measuring, daemon)
        code = cli.main(["measure", "--zoo", "--target", "my-board"])
    assert killed.result() and code == 1
    assert "2 models not measured" in capsys.readouterr().err
    journal = tmp_path / "measure_runs" / "my-board" / "journal.jsonl"
    assert measure.read_journal(journal) == []  # no failed row stands in for a model the board never ran


def test_a_farm_of_two_boards_measures_every_model_once_when_one_dies(tmp_path, monkeypatch):
    require_sshd()
    (first, first_daemon), (second, second_daemon) = (start_sshd(tmp_path / name) for name in ("first", "second"))
    per_host = ("host", "port", "key", "workdir", "options")
    refused = {k: first[k] for k in per_host} | {"port": free_port()}  # a third board that is off: skipped at start
    farm = {k: v for k, v in first.items() if k not in per_host} | {
        "hosts": [{k: first[k] for k in per_host}, {k: second[k] for k in per_host}, refused]}
    models = {f"tiny_{i}": tiny_descriptor(tmp_path, f"tiny_{i}", filters=4 + 2 * i) for i in range(5)}
    params = board_project(tmp_path, farm, models)
    try:
        with ThreadPoolExecutor(1) as pool:
            killed = pool.submit(kill_when_measuring, second_daemon)
            summary = measure.measure_zoo("my-board", params, progress=False)
        assert killed.result()
    finally:
        for daemon in (first_daemon, second_daemon):
            daemon.kill()
            daemon.wait()
    journal = measure.read_journal(tmp_path / "measure_runs" / "my-board" / "journal.jsonl")
    rows = [r for r in journal if r["timings"] == 1]  # a model timed in a slow spell is timed again after the pass
    assert sorted(r["model"] for r in rows) == sorted(models)  # every model once: the killed one's went back
    assert all(r["timings"] == 2 for r in journal[len(rows):])
    assert all(r["status"] == "ok" for r in rows), [r["reason"] for r in rows]
    assert summary["not_measured"] == 0 and measure.zoo_exit_code(summary) == 0
    assert len(summary["hosts_unreachable"]) == 1 and str(refused["port"]) in summary["hosts_unreachable"][0]
    assert {r["measured_on"] for r in rows} <= {runners.host_label(first), runners.host_label(second)}
    assert runners.host_label(first) in {r["measured_on"] for r in rows}
    table = pd.read_parquet(tmp_path / "measurements" / "my-board.parquet")
    assert table["measured_on"].notna().all() and len(table) == len(models)
