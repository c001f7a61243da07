"""Seeds per second of each algorithm's sweep on one (target, metric) (default: AGX Xavier latency, 1,611 rows).

    PYTHONPATH=src python benchmarks/sweep_throughput.py --seeds 100 [--n-jobs 2]

Prints seeds/s per algorithm and the projected time of 1,000 seeds x 5 algorithms. With --n-jobs 1 it
also prints seeds per CPU second of this process: on a shared core (`taskset -c 1`) other people's
processes slow the wall clock, not the CPU time a seed costs.
"""

from __future__ import annotations

import argparse
import time
import warnings

from perfpred import config
from perfpred.data import schema
from perfpred.model import estimators, sweep, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="jetson-agx-xavier")
    parser.add_argument("--metric", default="latency")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--algorithms", nargs="*", default=config.group_options("algorithm"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    table = estimators.training_table(args.target, args.metric)
    features = estimators.feature_columns(table)
    X, y = table[features], table[schema.metric_column(args.metric)].to_numpy("float64")
    total_s = total_cpu_s = 0.0
    print(f"{args.target} {args.metric}: {len(table)} rows, {args.seeds} seeds, n_jobs={args.n_jobs}")
    for algorithm in args.algorithms:
        cfg, _ = train.tuned_config(args.target, args.metric, algorithm)
        estimator = train.build_estimator(cfg.algorithm, args.target, args.metric)  # as `perfpred train` builds it
        sweep.seed_sweep(estimator, X, y, seeds=args.n_jobs, n_jobs=args.n_jobs, progress=False)  # warm the pool
        started, started_cpu = time.perf_counter(), time.process_time()
        result = sweep.seed_sweep(estimator, X, y, seeds=args.seeds, n_jobs=args.n_jobs, progress=False)
        seconds, cpu_s = time.perf_counter() - started, time.process_time() - started_cpu
        total_s += seconds / args.seeds * 1000
        total_cpu_s += cpu_s / args.seeds * 1000
        per_cpu_s = f", {args.seeds / cpu_s:7.2f} seeds per CPU s" if args.n_jobs == 1 else ""
        print(f"{algorithm:5s} {args.seeds / seconds:7.2f} seeds/s{per_cpu_s}  (MAPE {sweep.summary(result)['mape_mean']:.2f} %)",
              flush=True)
    print(f"projected 1,000 seeds x {len(args.algorithms)} algorithms: {total_s / 60:.1f} min wall"
          + (f", {total_cpu_s / 60:.1f} min of one core's CPU time" if args.n_jobs == 1 else ""))


if __name__ == "__main__":
    main()
