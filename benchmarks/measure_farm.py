"""A farm of boards: wall time of the `ci` zoo on 1 vs 2 SSH hosts, and 2 hosts with one killed mid-run.

    PYTHONPATH=src:benchmarks:tests python benchmarks/measure_farm.py [--quick] [--two-first]

The "boards" are real sshd daemons on 127.0.0.1 (different ports), each running the agent in a new
interpreter as a Jetson would. They share this machine's CPUs: the two hosts' workers import, build and
time at once on the same cores (and their timed runs are pinned to the same timing CPU), so the 2-host
wall time shows how much of a model's wall time overlaps (import, build, copies), not the speed-up of two
real boards, and the 2-host latencies are not board figures. Prints one line per run and the checks.
"""

from __future__ import annotations

import argparse
import collections
import copy
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from perfpred import config
from perfpred.measure import runners
from perfpred.measure import stage as measure
from perfpred.zoo import build as zoo
from test_measure import QUICK
from test_measure_ssh import kill_when_measuring, start_sshd

PER_HOST = ("host", "port", "key", "workdir", "options")


def farm_params(root: Path, boards: list[dict], run: str, quick: bool) -> dict:
    """Params of a project whose target `farm` lists these boards; each run has its own journal and table."""
    params = copy.deepcopy(config.load_params(config.PACKAGE_ROOT / config.PARAMS_FILE))
    for key in ("features", "measurements", "measure_runs"):
        params["paths"][key] = str(root / run / key)
    params["paths"]["zoo"] = str(root / "zoo")
    if quick:
        params["measure"] |= QUICK
    ssh = {k: v for k, v in boards[0].items() if k not in PER_HOST}
    ssh["hosts"] = [{k: board[k] for k in PER_HOST} for board in boards]
    target, _ = measure.target_settings("jetson-orin", params)
    params["local"] = {"farm": target | {"name": "farm", "ssh": ssh, "device": "cpu"}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return params


def run_once(root: Path, boards: list[dict], run: str, quick: bool, victim=None) -> dict:
    """Measure the zoo on the boards (killing `victim`'s sshd once an agent runs there); wall time and rows."""
    params = farm_params(root, boards, run, quick)
    started = time.perf_counter()
    with ThreadPoolExecutor(1) as pool:
        killed = pool.submit(kill_when_measuring, victim) if victim is not None else None
        summary = measure.measure_zoo("farm", params, progress=False)
    wall_s = time.perf_counter() - started
    rows = measure.read_journal(root / run / "measure_runs" / "farm" / "journal.jsonl")
    return {"wall_s": wall_s, "summary": summary, "rows": rows, "killed": killed.result() if killed else None,
            "load_after": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the tests' short schedule instead of the configured one")
    parser.add_argument("--two-first", action="store_true",
                        help="run 2 hosts before 1 host (a second run in the other order shows the load's drift)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="perfpred-farm-") as folder:
        root = Path(folder)
        (root / "conf").symlink_to(config.conf_dir(), target_is_directory=True)
        os.environ["PERFPRED_ROOT"] = str(root)
        built = zoo.write_zoo(config.group_option("zoo", "ci"), root / "zoo", root)
        print(f"ci zoo: {built['built']} models; load before: {os.getloadavg()[0]:.1f}; cpus: {os.cpu_count()}")
        daemons = [start_sshd(root / f"board{i}") for i in range(3)]
        try:
            order = [("1 host", [daemons[0][0]], "one"), ("2 hosts", [daemons[0][0], daemons[1][0]], "two")]
            runs = {name: run_once(root, boards, run, args.quick) for name, boards, run in
                    (order[::-1] if args.two_first else order)}
            runs["2 hosts, one killed"] = run_once(root, [daemons[0][0], daemons[2][0]], "killed", args.quick,
                                                   victim=daemons[2][1])
        finally:
            for _, daemon in daemons:
                daemon.kill()
                daemon.wait()
        for name, result in runs.items():
            counts = collections.Counter(r["model"] for r in result["rows"])
            hosts = collections.Counter(r["measured_on"] for r in result["rows"])
            print(f"{name:>20}: wall {result['wall_s']:6.1f} s (load after {result['load_after']:.0f}); models measured once: "
                  f"{sum(c == 1 for c in counts.values())}/{built['built']} (more than once: "
                  f"{sum(c > 1 for c in counts.values())}); ok {result['summary']['ok']}; not measured "
                  f"{result['summary']['not_measured']}; per host {dict(hosts)}"
                  + (f"; killed mid-run: {result['killed']}" if result["killed"] is not None else ""))
        one, two = runs["1 host"], runs["2 hosts"]
        print(f"wall time 2 hosts / 1 host: {two['wall_s'] / one['wall_s']:.2f}")
        latency = {r["model"]: r["latency_ms"] for r in one["rows"] if r["status"] == "ok"}
        ratios = [r["latency_ms"] / latency[r["model"]] for r in two["rows"]
                  if r["status"] == "ok" and r["model"] in latency]
        if ratios:
            print(f"latency 2 hosts / 1 host, per model: median {statistics.median(ratios):.2f}, "
                  f"range {min(ratios):.2f}-{max(ratios):.2f} (the hosts share the timing CPU)")
        print(f"hosts known to the runner: {[runners.host_label(d[0]) for d in daemons]}")


if __name__ == "__main__":
    main()
