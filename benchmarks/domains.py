"""MAPE on the three test domains of Bouzidi et al. (TECS 2022) per (board, metric, algorithm), the champion each
pair gets by the champion rule, and the champions' table beside the published best-of-five figures.

    PYTHONPATH=src python benchmarks/domains.py [--targets jetson-nano ...] [--metrics latency ...] [--algorithms svr xgb]

No MLflow: the pure core of `perfpred train` (perfpred.model.train.evaluate) on the imported tables, with the
seeds `perfpred train` reports (train.seeds random splits from 0, train.domain_seeds domain splits from 0).
`--first-seed 1000` evaluates on other splits, to choose settings without looking at the reported ones.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from perfpred import config
from perfpred.model import estimators, train
from perfpred.model.summary import published_figures

DOMAIN_COLUMNS = ("mape_sizes", "mape_architectures", "mape_synthetic")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="*", default=["jetson-nano", "jetson-tx2", "jetson-agx-xavier"])
    parser.add_argument("--metrics", nargs="*", default=["latency", "memory", "power"])
    parser.add_argument("--algorithms", nargs="*", default=config.group_options("algorithm"))
    parser.add_argument("--seeds", type=int, default=None, help="random splits (default: train.seeds)")
    parser.add_argument("--domain-seeds", type=int, default=None, help="domain splits (default: train.domain_seeds)")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed.. (0: the seeds `perfpred train` reports)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    published = published_figures()
    champions: dict[tuple[str, str], tuple[str, dict]] = {}
    print("| target | metric | algorithm | random | sizes | architectures | synthetic | score | coverage 90 random/1/2/3 | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for target in args.targets:
        for metric in args.metrics:
            table = estimators.training_table(target, metric)
            scored = {}
            for algorithm in args.algorithms:
                overrides = [f"train.n_jobs={args.n_jobs}"] + ([f"train.seeds={args.seeds}"] if args.seeds else []) \
                    + ([f"train.domain_seeds={args.domain_seeds}"] if args.domain_seeds else [])
                cfg, _ = train.tuned_config(target, metric, algorithm, overrides)
                started = time.perf_counter()
                m = train.evaluate(table, target, metric, cfg.algorithm, cfg.train, args.first_seed).metrics
                scored[algorithm] = m
                cover = "/".join(f"{100 * m.get(k, np.nan):.0f}" for k in
                                 ("coverage_90", "coverage_90_sizes", "coverage_90_architectures", "coverage_90_synthetic"))
                print(f"| {target} | {metric} | {algorithm} | {m['mape_mean']:.2f} | "
                      + " | ".join(f"{m[c]:.2f}" for c in DOMAIN_COLUMNS)
                      + f" | {m['champion_score']:.2f} | {cover} | {time.perf_counter() - started:.0f} |", flush=True)
            best = min(scored, key=lambda a: scored[a]["champion_score"])
            champions[(target, metric)] = (best, scored[best])
    print("\nChampions (ours / published, MAPE % on domains 1 / 2 / 3):\n")
    print("| target | metric | champion | random | domains ours | published | beats all |")
    print("|---|---|---|---|---|---|---|")
    ours_all, theirs_all, won = [], [], 0
    for (target, metric), (algorithm, m) in champions.items():
        ours = [m[c] for c in DOMAIN_COLUMNS]
        theirs = published.get(target, {}).get(metric)
        beats = theirs is not None and all(o < t for o, t in zip(ours, theirs, strict=True))
        won += beats
        if theirs is not None:
            ours_all += ours
            theirs_all += list(theirs)
        print(f"| {target} | {metric} | {algorithm} | {m['mape_mean']:.2f} | {' / '.join(f'{o:.1f}' for o in ours)} | "
              f"{' / '.join(f'{t:.1f}' for t in theirs) if theirs else '-'} | {'yes' if beats else 'no'} |")
    if ours_all:
        print(f"\nmean MAPE of the champions {np.mean(ours_all):.2f} % against the published {np.mean(theirs_all):.2f} % "
              f"(ratio {np.mean(ours_all) / np.mean(theirs_all):.2f}); {won} of {len(champions)} pairs beat every domain")


if __name__ == "__main__":
    main()
