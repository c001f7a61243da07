"""A farm of boards: the jobs of one SSH target as a work queue over its hosts, one job per host at a time.

A job whose host fails it for a reason that is not the model's (connection refused or lost, agent
not started, board hanging) goes back to the front of the queue and the host is probed: a host that
no longer answers leaves the farm, one that answers takes the next job. So a host that dies mid-run
loses nothing, and each job ends with exactly one result: the model's own (ok, or a model failure),
or, once every host is gone or the job was tried on `max_tries` hosts, an infrastructure failure that
the stage does not keep (the model is measured by a later run).
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from perfpred.measure import runners


def _attempt(job: dict, host: dict, timeout_s: float) -> tuple[dict, bool]:
    """Run a job on a host; after an infrastructure failure, also say whether the host still answers."""
    result = runners.run_ssh(job, host, timeout_s)
    if result.get("failure") != runners.INFRASTRUCTURE:
        return result, True
    return result, runners.check_host(host) is None


def measure_on_farm(jobs: list[dict], hosts: list[dict], timeout_s: float,
                    max_tries: int | None = None) -> Iterator[tuple[dict, dict]]:
    """Measure jobs on the hosts (one in flight per host); yield (job, result) as each job ends, once per job."""
    max_tries = max_tries or len(hosts) + 1
    queue = collections.deque(jobs)
    idle = list(hosts)
    tries: collections.Counter = collections.Counter()
    flight: dict[Future, tuple[dict, dict]] = {}
    with ThreadPoolExecutor(max_workers=max(len(hosts), 1), thread_name_prefix="perfpred-farm") as pool:
        while queue or flight:
            while queue and idle:
                job, host = queue.popleft(), idle.pop(0)
                flight[pool.submit(_attempt, job, host, timeout_s)] = (job, host)
            if not flight:  # jobs left and no host: every host of the farm has gone
                while queue:
                    job = queue.popleft()
                    yield job, {"status": "failed", "failure": runners.INFRASTRUCTURE,
                                "reason": "no host of the target answers any more; measure again when one does"}
                return
            done, _ = wait(flight, return_when=FIRST_COMPLETED)
            for future in done:
                job, host = flight.pop(future)
                result, host_alive = future.result()
                if host_alive:
                    idle.append(host)
                if result.get("failure") == runners.INFRASTRUCTURE:
                    tries[job["entry"]] += 1
                    if tries[job["entry"]] < max_tries:
                        queue.appendleft(job)  # back to the queue: another host (or this one, if it answers) takes it
                        continue
                yield job, result
