"""Where the agent runs: a fresh local subprocess per model, or a board reached over SSH."""

from __future__ import annotations

import json
import os
import select
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from perfpred.measure import agent

AGENT_FILE = Path(agent.__file__)


def parse_result(stdout: str, returncode: int, stderr: str) -> dict:
    """The agent's result line, or a failed result saying how the worker died (signal, exit code, stderr)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(agent.RESULT_MARKER):
            return json.loads(line[len(agent.RESULT_MARKER):])
    tail = " | ".join(stderr.strip().splitlines()[-3:])
    return {"status": "failed", "reason": f"{agent.death_reason(returncode)} without a result: {tail}"[:500]}


def run_local(job: dict, timeout_s: float) -> dict:
    """Run the agent on this machine in a fresh Python process; a crash or a hang is a failed result."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(job, handle)
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, str(AGENT_FILE), handle.name], capture_output=True, text=True,
                              timeout=timeout_s, env=env, start_new_session=True)
        result = parse_result(done.stdout, done.returncode, done.stderr)
    except subprocess.TimeoutExpired:
        result = agent.timeout_result(timeout_s)
    finally:
        os.unlink(handle.name)
    return result | {"wall_s": time.perf_counter() - started}


class ForkServer:
    """A local perfpred.measure.forkserver: one framework import, then one fresh forked worker per model.

    With `parallel=2` the next model is prepared (built, converted, traced) on the preparation CPUs
    while the current one is timed alone on the timing CPUs (see perfpred.measure.forkserver).
    """

    def __init__(self, parallel: int = 1) -> None:
        self.parallel = max(int(parallel), 1)
        self.process: subprocess.Popen | None = None
        self.import_s = 0.0
        self._buffer = b""
        self._next_id = 0

    def _start(self) -> None:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        source = str(AGENT_FILE.parent.parent)  # the perfpred package this process runs, wherever it lies
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
        self.process = subprocess.Popen([sys.executable, "-m", "perfpred.measure.forkserver", "--parallel", str(self.parallel)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        env=env, start_new_session=True)
        self._buffer = b""
        ready = self._read_result(120.0)
        if not ready or not ready.get("ready"):
            self.close()
            raise RuntimeError("the measurement fork server did not start: run `python -m perfpred.measure.forkserver`")
        self.import_s = ready["import_s"]

    def _read_result(self, timeout_s: float) -> dict | None:
        deadline = time.monotonic() + timeout_s
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                text = line.decode(errors="replace")
                if text.startswith(agent.RESULT_MARKER):
                    return json.loads(text[len(agent.RESULT_MARKER):])
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.process.stdout], [], [], remaining)[0]:
                return None
            data = os.read(self.process.stdout.fileno(), 1 << 16)
            if not data:
                return None
            self._buffer += data

    def _submit(self, job: dict, timeout_s: float) -> int:
        if self.process is None or self.process.poll() is not None:
            self._start()
        self._next_id += 1
        self.process.stdin.write((json.dumps(job | {"timeout_s": timeout_s, "job_id": self._next_id}) + "\n").encode())
        self.process.stdin.flush()
        return self._next_id

    def map(self, jobs, timeout_s: float):
        """Measure jobs, `parallel` in flight; yield (job, result) as each finishes (not in job order)."""
        jobs, flight = iter(jobs), {}
        while True:
            while len(flight) < self.parallel and (job := next(jobs, None)) is not None:
                flight[self._submit(job, timeout_s)] = (job, time.perf_counter())
            if not flight:
                return
            # a job may wait for the timed runs of the others in flight: allow one timeout for each, and its own
            result = self._read_result(timeout_s * (self.parallel + 1) + 60)
            if result is None:  # the server itself died or hung: what was in flight fails, the rest get a new one
                self.close()
                for job, started in flight.values():
                    yield job, infrastructure_failure("the fork server stopped answering", started)
                flight = {}
                continue
            job, started = flight.pop(result.pop("job_id", None), (None, time.perf_counter()))
            if job is not None:
                yield job, result | {"wall_s": result.get("wall_s") or time.perf_counter() - started}

    def close(self) -> None:
        """Stop the server."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: `failure` of a failed result that says nothing about the model (connection, agent start, board gone):
#: never a final row; the model is measured again (on another host of a farm, or in a later run).
INFRASTRUCTURE = "infrastructure"
#: `failure` of a failed result that the model caused (out of memory, timeout, unbuildable): a final row.
MODEL = "model"
#: ssh's exit status when the connection failed or was lost (the remote command's own status otherwise).
SSH_CONNECTION_LOST = 255


class TargetUnreachable(RuntimeError):
    """No host of a target answers: nothing can be measured there now."""


def ssh_hosts(ssh: dict) -> list[dict]:
    """One `ssh:` setting per host: `hosts: [{host, port, ...}, ...]` (a farm) or the single `host`/`port` form."""
    base = {k: v for k, v in ssh.items() if k != "hosts"}
    entries = ssh.get("hosts") or [{}]
    return [base | dict(entry) for entry in entries]


def host_label(ssh: dict) -> str:
    """How a row names the host that measured it: user@host:port."""
    return f"{ssh['user']}@{ssh['host']}:{ssh.get('port', 22)}"


def ssh_command(ssh: dict, program: str = "ssh") -> list[str]:
    """The ssh or scp command line (without destination) for a target's `ssh:` settings."""
    port_flag = "-p" if program == "ssh" else "-P"
    command = [program, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
               "-o", f"ConnectTimeout={int(ssh.get('connect_timeout_s', 20))}",
               port_flag, str(ssh.get("port", 22)), "-i", os.path.expanduser(str(ssh["key"]))]
    for option in ssh.get("options") or []:
        command += ["-o", str(option)]
    return command


def check_host(ssh: dict) -> str | None:
    """None if the host answers over SSH and its Python finds TensorFlow; else one line saying what fails."""
    probe = ("import importlib.util, sys; "
             "sys.exit(0 if importlib.util.find_spec('tensorflow') else 3)")
    command = ssh_command(ssh) + [f"{ssh['user']}@{ssh['host']}",
                                  f"{shlex.quote(str(ssh['python']))} -c {shlex.quote(probe)}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return f"{host_label(ssh)}: no answer over SSH within 60 s"
    if done.returncode == 0:
        return None
    if done.returncode == 3:
        return f"{host_label(ssh)}: {ssh['python']} cannot import tensorflow (install it on the board)"
    last = (done.stderr.strip().splitlines() or ["no message"])[-1]
    if done.returncode == SSH_CONNECTION_LOST:
        return f"{host_label(ssh)}: cannot connect over SSH: {last}"
    return f"{host_label(ssh)}: {ssh['python']} does not start (exit {done.returncode}): {last}"


def check_target(target: dict) -> tuple[list[dict], list[str]]:
    """The hosts of an ssh target that answer and a line for each that does not; TargetUnreachable when none does."""
    from concurrent.futures import ThreadPoolExecutor

    hosts = ssh_hosts(target["ssh"])
    with ThreadPoolExecutor(max_workers=min(len(hosts), 16)) as pool:  # a farm's checks wait in parallel
        problems = list(pool.map(check_host, hosts))
    alive = [host for host, problem in zip(hosts, problems, strict=True) if problem is None]
    problems = [problem for problem in problems if problem]
    if not alive:
        raise TargetUnreachable(f"target {target['name']}: no host answers ({'; '.join(problems)}); nothing was measured")
    return alive, problems


def infrastructure_failure(reason: str, started: float) -> dict:
    """A failed result that says nothing about the model."""
    return {"status": "failed", "failure": INFRASTRUCTURE, "reason": reason[:500],
            "wall_s": time.perf_counter() - started}


def classify(result: dict) -> dict:
    """Mark a failed result as a model failure unless a runner already marked it as infrastructure."""
    if result.get("status") == "failed" and not result.get("failure"):
        result["failure"] = MODEL
    return result


def run_ssh(job: dict, ssh: dict, timeout_s: float) -> dict:
    """Copy the agent and the descriptor to the board, run the agent there, read its JSON result back."""
    destination = f"{ssh['user']}@{ssh['host']}"
    workdir = str(ssh.get("workdir", "/tmp/perfpred-agent"))
    descriptor = Path(job["descriptor"])
    remote_descriptor = f"{workdir}/{job.get('model') or descriptor.stem}.json".replace(" ", "_")
    started = time.perf_counter()
    try:
        steps = [
            ssh_command(ssh) + [destination, f"mkdir -p {shlex.quote(workdir)}"],
            ssh_command(ssh, "scp") + ["-q", str(AGENT_FILE), f"{destination}:{workdir}/agent.py"],
            ssh_command(ssh, "scp") + ["-q", str(descriptor), f"{destination}:{remote_descriptor}"],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=60)
            if done.returncode != 0:
                reason = f"ssh to {host_label(ssh)}: {' '.join(step[:1] + step[-2:])} failed: {done.stderr.strip()[-300:]}"
                return infrastructure_failure(reason, started)
        remote_job = dict(job, descriptor=remote_descriptor)
        remote = (f"cd {shlex.quote(workdir)} && TF_CPP_MIN_LOG_LEVEL=2 timeout -s KILL {int(timeout_s)} "
                  f"{shlex.quote(str(ssh['python']))} agent.py -")
        done = subprocess.run(ssh_command(ssh) + [destination, remote], input=json.dumps(remote_job),
                              capture_output=True, text=True, timeout=timeout_s + 30)
    except subprocess.TimeoutExpired:  # the board's own `timeout` did not end it: the board or the link hangs
        return infrastructure_failure(f"{host_label(ssh)} stopped answering (no result {timeout_s:g} s + 30 s)", started)
    result = parse_result(done.stdout, done.returncode, done.stderr)
    if result["status"] == "failed" and agent.RESULT_MARKER not in done.stdout:
        if done.returncode == SSH_CONNECTION_LOST:  # the link or the board went away mid-run
            return infrastructure_failure(f"{host_label(ssh)}: connection lost: {result['reason']}", started)
        if done.returncode in (1, 126, 127):  # the agent did not start (no Python, unreadable agent.py)
            return infrastructure_failure(f"{host_label(ssh)}: the agent did not start: {result['reason']}", started)
    return classify(result) | {"wall_s": time.perf_counter() - started, "measured_on": host_label(ssh)}


def run(job: dict, target: dict, timeout_s: float) -> dict:
    """Run one job on a target: locally in a new interpreter (ForkServer.map forks them instead) or over SSH."""
    if target["kind"] == "local":
        return classify(run_local(job, timeout_s))
    if target["kind"] == "ssh":
        return run_ssh(job, ssh_hosts(target["ssh"])[0], timeout_s)
    raise ValueError(f"target {target['name']!r} has kind {target['kind']!r}: only local and ssh targets are measured")
