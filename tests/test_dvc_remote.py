"""`dvc push` of the pipeline's data to a remote and `dvc pull` into a fresh clone: `dvc status` clean without measuring
(issue 15, item 4). A real `dvc repro` of the ci zoo on one local target, in a temporary copy of the repository."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import test_measure_ssh

BIN = Path(sys.executable).parent
#: three synthetic models of the ci zoo, one local target (host-cpu-tf), a short schedule: what travels is the
#: point, not the figures; `spawn` workers, whose start is bounded per model (timeout_s), not by a fork server's wait
PARAMS = ["zoo=ci", "zoo.applications=[]", "zoo.synthetic.count=3", "~target@local.host-cpu-tflite",
          "~target@local.host-cpu-onnxruntime", "measure.worker=spawn",
          "measure.priority=0", "measure.warmup=2", "measure.warmup_seconds=0.05", "measure.min_iterations=5",
          "measure.min_seconds=0.05", "measure.max_seconds=0.2"]
sshd = test_measure_ssh.sshd  # the real sshd on 127.0.0.1 of the SSH measurement tests
DATA_STAGES = ("import", "measure")  # the imported Jetson tables; measure covers zoo and features upstream of it


def run(root: Path, *command: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PERFPRED_ROOT": str(root), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return run(root, "git", "-c", "user.name=test", "-c", "user.email=test@example.org", *args)


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """A repository that ran its data stages and pushed them to a local-path remote; returns (repo, remote)."""
    from conftest import copy_repository

    folder = tmp_path_factory.mktemp("dvc")
    origin = copy_repository(folder / "origin")
    remote = folder / "remote"
    run(origin, str(BIN / "perfpred"), "params", *PARAMS)
    run(origin, str(BIN / "dvc"), "remote", "add", "--default", "team", str(remote))
    run(origin, str(BIN / "dvc"), "repro", *DATA_STAGES)
    git(origin, "add", "-A")
    git(origin, "commit", "-qm", "data stages run")
    run(origin, str(BIN / "dvc"), "push", "--with-deps", *DATA_STAGES)
    return origin, remote


@pytest.mark.slow
@pytest.mark.tensorflow
def test_a_pulled_clone_is_up_to_date_without_measuring(pushed, tmp_path):
    origin, remote = pushed
    assert list(remote.rglob("*")), "dvc push wrote nothing"
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    assert "changed outs" in run(clone, str(BIN / "dvc"), "status", *DATA_STAGES).stdout  # nothing there before the pull
    run(clone, str(BIN / "dvc"), "pull", "--with-deps", *DATA_STAGES)  # every cached output of the stages that ran (dvc.lock also
    # names the kernel and train stages' outputs of the repository this was copied from: they were never pushed)
    assert "up to date" in run(clone, str(BIN / "dvc"), "status", *DATA_STAGES).stdout
    journal = clone / "data/measurements/runs/host-cpu-tf/journal.jsonl"
    assert journal.read_bytes() == (origin / "data/measurements/runs/host-cpu-tf/journal.jsonl").read_bytes()
    for table in ("host-cpu-tf.parquet", "jetson-nano.parquet"):
        assert (clone / "data/measurements" / table).read_bytes() == (origin / "data/measurements" / table).read_bytes()
    assert (clone / "data/features/features.parquet").exists() and (clone / "data/zoo/manifest.csv").exists()
    # Nothing is measured again: repro finds every stage unchanged.
    repro = run(clone, str(BIN / "dvc"), "repro", *DATA_STAGES)
    assert "Running stage" not in repro.stdout, repro.stdout


@pytest.mark.slow
@pytest.mark.ssh
@pytest.mark.tensorflow
def test_push_and_pull_through_an_ssh_remote(pushed, sshd, tmp_path):
    """The same data through a real sshd on 127.0.0.1 (dvc-ssh), host key checked against a known_hosts file."""
    origin, _ = pushed
    keys = Path(sshd["key"]).parent
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh/known_hosts").write_text(f"[127.0.0.1]:{sshd['port']} {(keys / 'host.pub').read_text()}")
    url = f"ssh://127.0.0.1{tmp_path / 'ssh-remote'}"
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    for root in (origin, clone):  # --local: the key and user are each engineer's, not the repository's
        run(root, str(BIN / "dvc"), "remote", "add", "--local", "ssh-team", url)
        for option, value in (("port", str(sshd["port"])), ("user", sshd["user"]), ("keyfile", sshd["key"])):
            run(root, str(BIN / "dvc"), "remote", "modify", "--local", "ssh-team", option, value)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        run(origin, str(BIN / "dvc"), "push", "-r", "ssh-team", "--with-deps", *DATA_STAGES)
        assert list((tmp_path / "ssh-remote").rglob("*"))
        run(clone, str(BIN / "dvc"), "pull", "-r", "ssh-team", "--with-deps", *DATA_STAGES)
    assert "up to date" in run(clone, str(BIN / "dvc"), "status", *DATA_STAGES).stdout
