"""Repeatability of `perfpred measure`: two independent runs over >= 10 models; relative differences.

    PYTHONPATH=src:benchmarks python benchmarks/measure_repeatability.py [--target host-cpu-tf] [--schedule adaptive] [--rounds 1]

Each run is its own fork server (its own framework import), the runs one after the other, each model in
a fresh worker, pipelined exactly as the `measure` stage does (`measure.parallel` workers in flight). Prints one line per model and the worst differences.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from bench_models import build_descriptors

from perfpred import config
from perfpred.measure import runners
from perfpred.measure import stage as measure


def measure_all(descriptors: dict[str, Path], target: dict, settings: dict, rounds: int = 1) -> dict[str, dict]:
    """One independent run: every model, one fresh worker each, in `rounds` passes over the set.

    With several rounds a model's `latency_ms` is the median of its rounds' figures: the passes are
    minutes apart, so a slow phase of the machine hits one round, not the estimate.
    """
    entries = [(name, path, None) for name, path in descriptors.items()]
    passes: dict[str, list[dict]] = {}
    with runners.ForkServer(measure.parallel_workers(settings)) as server:
        for _ in range(rounds):
            for entry, row in measure.measure_many(entries, target, settings, server):
                passes.setdefault(entry[0], []).append(row)
    rows = {}
    for name, measured in passes.items():
        ok = [r for r in measured if r["status"] == "ok"]
        rows[name] = dict(ok[0] if ok else measured[0])
        if ok:
            rows[name]["latency_ms"] = statistics.median(r["latency_ms"] for r in ok)
            rows[name]["memory_mb"] = statistics.median(r["memory_mb"] for r in ok)
    return rows


def relative_difference(a: float, b: float) -> float:
    return abs(a - b) / min(a, b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="host-cpu-tf")
    parser.add_argument("--schedule", default=None, help="conf/measure/ option (default: the configured one)")
    parser.add_argument("--models", default="/tmp/perfpred-bench-models")
    parser.add_argument("--rounds", type=int, default=1, help="passes over the models per run (median of rounds)")
    args = parser.parse_args()
    descriptors = build_descriptors(Path(args.models))
    target, settings = measure.target_settings(args.target, config.load_params(), args.schedule)
    print(f"target {args.target}, schedule {settings['kind']}, {len(descriptors)} models, load {os.getloadavg()}")
    started = time.time()
    first, second = (measure_all(descriptors, target, settings, args.rounds) for _ in range(2))
    print(f"{'model':24} {'lat1 ms':>9} {'lat2 ms':>9} {'dlat%':>6} {'mem1 MB':>8} {'mem2 MB':>8} {'dmem%':>6} "
          f"{'iters':>9} {'pattern':>12}")
    latency, memory = [], []
    for name in descriptors:
        a, b = first[name], second[name]
        if a["status"] != "ok" or b["status"] != "ok":
            print(f"{name:24} failed: {a['reason'] or b['reason']}")
            continue
        latency.append(relative_difference(a["latency_ms"], b["latency_ms"]))
        memory.append(relative_difference(a["memory_mb"], b["memory_mb"]))
        print(f"{name:24} {a['latency_ms']:9.3f} {b['latency_ms']:9.3f} {100 * latency[-1]:6.2f} {a['memory_mb']:8.1f} "
              f"{b['memory_mb']:8.1f} {100 * memory[-1]:6.2f} {a['iterations']:4d}/{b['iterations']:<4d} {a['pattern']:>12}")
    within = sum(d <= 0.02 for d in latency), sum(d <= 0.05 for d in memory)
    print(f"latency: max diff {100 * max(latency):.2f}%, median {100 * sorted(latency)[len(latency) // 2]:.2f}%, "
          f"{within[0]}/{len(latency)} within 2%")
    print(f"memory:  max diff {100 * max(memory):.2f}%, {within[1]}/{len(memory)} within 5%")
    print(f"wall {time.time() - started:.0f} s, load after {os.getloadavg()}")


if __name__ == "__main__":
    main()
