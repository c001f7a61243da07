"""Accuracy of every algorithm per (target, metric): seed-sweep distribution, unseen family, synthetic from real.

    PYTHONPATH=src python benchmarks/train_accuracy.py --seeds 20 [--targets jetson-nano ...] [--metrics latency ...]

No MLflow: the pure core of `perfpred train` (perfpred.model.train.evaluate) on the imported tables.
"""

from __future__ import annotations

import argparse
import time
import warnings

from perfpred import config
from perfpred.model import estimators, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--targets", nargs="*", default=["jetson-nano", "jetson-tx2", "jetson-agx-xavier"])
    parser.add_argument("--metrics", nargs="*", default=["latency", "memory", "power"])
    parser.add_argument("--algorithms", nargs="*", default=config.group_options("algorithm"))
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed.. (0: the seeds `perfpred train` reports)")
    parser.add_argument("--no-tuned", action="store_true", help="leave out the parameters stored under conf/tuned/")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    print("| target | metric | rows | algorithm | accuracy mean +- std | median | p5-p95 | best (seed) | worst "
          "| unseen-family MAPE | synthetic MAPE (trained on real) | coverage 90 | seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for target in args.targets:
        for metric in args.metrics:
            table = estimators.training_table(target, metric)
            for algorithm in args.algorithms:
                cfg, tuned = train.tuned_config(target, metric, algorithm, [
                    f"train.seeds={args.seeds}", f"train.n_jobs={args.n_jobs}", f"train.use_tuned={not args.no_tuned}"],
                    use_tuned=not args.no_tuned)
                started = time.perf_counter()
                m = train.evaluate(table, target, metric, cfg.algorithm, cfg.train, args.first_seed).metrics
                seconds = time.perf_counter() - started
                print(f"| {target} | {metric} | {len(table)} | {algorithm}{' (tuned)' if tuned else ''} | {m['accuracy_mean']:.2f} +- {m['mape_std']:.2f} "
                      f"| {100 - m['mape_median']:.2f} | {100 - m['mape_p95']:.2f}-{100 - m['mape_p5']:.2f} "
                      f"| {m['accuracy_best']:.2f} ({m['best_seed']}) | {100 - m['mape_worst']:.2f} "
                      f"| {m['mape_unseen_family']:.1f} | {m['mape_synthetic_from_real']:.1f} "
                      f"| {100 * m['coverage_90']:.1f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
