"""The local fork server: import the framework once, measure each job in a fresh forked child.

Run as `python -m perfpred.measure.forkserver [--parallel N]`; job lines (JSON) come on stdin, result lines
(RESULT_MARKER + JSON, with the job's `job_id`) go to stdout in the order the jobs finish.

With `--parallel 2` two children run at once: one prepares its model (import is done, so: build,
TFLite conversion, first call) on the preparation CPUs while the other holds the timing turn (a file
lock) and runs its timed schedule alone on the timing CPUs. The preparation, which is most of a
model's wall time, no longer adds to the stage's time. Only modules are imported before a fork (no
TensorFlow runtime, thread pool or model exists yet), so each child starts as a new process would.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field

from perfpred.measure import agent


@dataclass
class Child:
    """A forked worker measuring one job: its pid, the pipe it writes its result to, its deadline."""

    job: dict
    pid: int
    fd: int
    started: float
    deadline: float
    chunks: list[bytes] = field(default_factory=list)


def start_child(job: dict) -> Child:
    """Fork a fresh child that measures the job and writes its result (JSON) to a pipe."""
    started = time.perf_counter()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own process, so a crash, an out-of-memory kill or a hang ends only it
        os.close(read_end)
        try:
            result = agent.measure(job)
        except BaseException as error:
            result = agent.crash_result(job, error)
        with os.fdopen(write_end, "w") as pipe:
            pipe.write(json.dumps(result))
        os._exit(0)
    os.close(write_end)
    return Child(job, pid, read_end, started, started + float(job.get("timeout_s", 300)))


def finish_child(child: Child, timed_out: bool) -> dict:
    """Reap a child (killed first if past its deadline) and return its result or why it has none."""
    if timed_out:
        os.kill(child.pid, signal.SIGKILL)
    os.close(child.fd)
    _, status = os.waitpid(child.pid, 0)
    if timed_out:
        result = agent.timeout_result(float(child.job.get("timeout_s", 300)))
    else:
        try:
            result = json.loads(b"".join(child.chunks))
        except json.JSONDecodeError:
            reason = f"{agent.death_reason(os.waitstatus_to_exitcode(status))} without a result"
            result = {"status": "failed", "reason": reason}
    return result | {"wall_s": time.perf_counter() - child.started, "job_id": child.job.get("job_id")}


def emit(payload: dict) -> None:
    """One result line on stdout."""
    sys.stdout.write(agent.RESULT_MARKER + json.dumps(payload) + "\n")
    sys.stdout.flush()


def serve(parallel: int = 1) -> int:
    """Read job lines from stdin until it closes; measure each in a fresh child, `parallel` at a time."""
    started = time.perf_counter()
    import keras  # noqa: F401
    import tensorflow  # noqa: F401

    emit({"ready": True, "import_s": time.perf_counter() - started, "parallel": parallel})
    with tempfile.NamedTemporaryFile(prefix="perfpred-timing-", suffix=".lock") as lock:
        return _loop(parallel, lock.name)


def _loop(parallel: int, lock_path: str) -> int:
    """The server's loop: read jobs, keep `parallel` children running, emit each result as it comes."""
    queue: list[dict] = []
    children: dict[int, Child] = {}
    # The server's own CPUs: the holder of the timing turn moves the other workers, never the server,
    # so a worker reads its CPUs from here, not from itself (it may already have been moved at birth).
    shared = {"timing_lock": lock_path, "allowed_cpus": sorted(os.sched_getaffinity(0))} if parallel > 1 else {}
    pending, stdin_open = b"", True
    while stdin_open or queue or children:
        while queue and len(children) < parallel:
            job = queue.pop(0)
            child = start_child(job | shared)
            children[child.fd] = child
        watched = list(children) + ([0] if stdin_open else [])
        now = time.perf_counter()
        wait = min((c.deadline - now for c in children.values()), default=None)
        ready = select.select(watched, [], [], max(wait, 0.0) if wait is not None else None)[0]
        for fd in ready:
            data = os.read(fd, 1 << 16)
            if fd == 0:
                stdin_open = bool(data)
                pending += data
                *lines, pending = pending.split(b"\n")
                queue += [json.loads(line) for line in lines if line.strip()]
            elif data:
                children[fd].chunks.append(data)
            else:
                emit(finish_child(children.pop(fd), timed_out=False))
        now = time.perf_counter()
        for fd in [fd for fd, child in children.items() if child.deadline <= now]:
            emit(finish_child(children.pop(fd), timed_out=True))
    return 0


def main(argv: list[str]) -> int:
    """`python -m perfpred.measure.forkserver [--parallel N]`."""
    parallel = int(argv[argv.index("--parallel") + 1]) if "--parallel" in argv else 1
    return serve(max(parallel, 1))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
