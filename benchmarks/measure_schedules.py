"""Adaptive vs fixed (250 runs, 50 discarded) schedules: wall time per model and repeatability.

    PYTHONPATH=src:benchmarks python benchmarks/measure_schedules.py [--target host-cpu-tf] [--zoo]

Two independent runs per schedule, interleaved (adaptive, fixed, adaptive, fixed) so that a change of
machine load hits both alike. Wall time per model: the schedule's own time (warm-up + timed) and the
whole worker (build, first call, schedule).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from bench_models import build_descriptors
from measure_repeatability import measure_all, relative_difference

from perfpred import config
from perfpred.measure import stage as measure


def zoo_schedule_time(target_name: str, params: dict) -> None:
    """Both schedules over every model of the configured zoo, one pass each: seconds of schedule (warm-up + timed).

    Nothing is written to the stage's journal or table.
    """
    from perfpred.measure import runners
    from perfpred.zoo import build as zoo

    manifest = zoo.read_manifest(config.path("zoo", params) / zoo.MANIFEST)
    entries = [(e.name, config.project_root() / e.descriptor, int(e.input_width)) for e in manifest.itertuples()]
    totals = {}
    for kind in ("adaptive", "fixed"):
        target, settings = measure.target_settings(target_name, params, kind)
        started, seconds, ok = time.time(), 0.0, 0
        with runners.ForkServer(measure.parallel_workers(settings)) as server:
            for _, row in measure.measure_many(entries, target, settings, server):
                if row["status"] == "ok":
                    ok += 1
                    seconds += row["warmup_s"] + row["timed_s"]
        totals[kind] = seconds
        print(f"{kind}: {ok}/{len(entries)} ok, schedule {seconds:.0f} s ({seconds / max(ok, 1):.2f} s/model), "
              f"wall {time.time() - started:.0f} s", flush=True)
    print(f"zoo: fixed/adaptive schedule time = {totals['fixed'] / totals['adaptive']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="host-cpu-tf")
    parser.add_argument("--models", default="/tmp/perfpred-bench-models")
    parser.add_argument("--zoo", action="store_true", help="time both schedules over the configured zoo instead")
    args = parser.parse_args()
    if args.zoo:
        zoo_schedule_time(args.target, config.load_params())
        return
    descriptors = build_descriptors(Path(args.models))
    params = config.load_params()
    setups = {kind: measure.target_settings(args.target, params, kind) for kind in ("adaptive", "fixed")}
    print(f"target {args.target}, {len(descriptors)} models, load {os.getloadavg()}")
    started = time.time()
    runs: dict[str, list[dict]] = {"adaptive": [], "fixed": []}
    for _ in range(2):
        for kind, (target, settings) in setups.items():
            runs[kind].append(measure_all(descriptors, target, settings))
    print(f"{'model':24} {'adaptive s':>10} {'fixed s':>8} {'ratio':>6} {'ad. iters':>9} {'ad. dlat%':>9} {'fx dlat%':>8}")
    totals = {"adaptive": [0.0, 0.0], "fixed": [0.0, 0.0]}
    diffs: dict[str, list[float]] = {"adaptive": [], "fixed": []}
    for name in descriptors:
        rows = {kind: runs[kind] for kind in runs}
        if any(r[name]["status"] != "ok" for kind in rows for r in rows[kind]):
            print(f"{name:24} failed")
            continue
        schedule_s = {k: statistics.fmean(r[name]["warmup_s"] + r[name]["timed_s"] for r in rows[k]) for k in rows}
        worker_s = {k: statistics.fmean(r[name]["wall_s"] for r in rows[k]) for k in rows}
        for kind in rows:
            totals[kind][0] += schedule_s[kind]
            totals[kind][1] += worker_s[kind]
            diffs[kind].append(relative_difference(rows[kind][0][name]["latency_ms"], rows[kind][1][name]["latency_ms"]))
        print(f"{name:24} {schedule_s['adaptive']:10.2f} {schedule_s['fixed']:8.2f} "
              f"{schedule_s['fixed'] / schedule_s['adaptive']:6.2f} {rows['adaptive'][0][name]['iterations']:9d} "
              f"{100 * diffs['adaptive'][-1]:9.2f} {100 * diffs['fixed'][-1]:8.2f}")
    n = len(diffs["adaptive"])
    for label, index in (("schedule (warm-up + timed)", 0), ("whole worker (build + first call + schedule)", 1)):
        a, f = totals["adaptive"][index] / n, totals["fixed"][index] / n
        print(f"{label}: adaptive {a:.2f} s/model, fixed {f:.2f} s/model, fixed/adaptive = {f / a:.2f}x")
    for kind in diffs:
        values = sorted(diffs[kind])
        print(f"{kind}: latency diff between runs: median {100 * values[n // 2]:.2f}%, max {100 * values[-1]:.2f}%, "
              f"{sum(v <= 0.02 for v in values)}/{n} within 2%")
    for kind in runs:  # the same runs judged by other estimators than the configured central one
        for statistic in ("min_ms", "trimmed_mean_ms", "mean_ms"):
            values = sorted(relative_difference(runs[kind][0][m][statistic], runs[kind][1][m][statistic])
                            for m in descriptors if runs[kind][0][m]["status"] == runs[kind][1][m]["status"] == "ok")
            print(f"{kind} {statistic}: diff between runs median {100 * values[len(values) // 2]:.2f}%, "
                  f"max {100 * values[-1]:.2f}%")
    print(f"wall {time.time() - started:.0f} s, load after {os.getloadavg()}")


if __name__ == "__main__":
    main()
