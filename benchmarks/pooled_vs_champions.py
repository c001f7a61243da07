"""The pooled algorithms against the per-target ones, from the train stage's figures (metrics/algorithms/).

    python benchmarks/pooled_vs_champions.py [--metrics-dir metrics/algorithms]

For each (target, metric): the best pooled algorithm (a name starting with `pooled`: pooled_svr, pooled_ens,
pooled_ens_kernels) and the best per-target one (every
other algorithm of the train stage), each by the champion rule's score, with random-split accuracy (mean over the
train stage's seeds; seed splits are by network across targets for the pooled ones), the three test domains and
the score. Reads only what `dvc repro train` wrote: nothing is refitted here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def best(algorithms: dict, names) -> tuple[str, dict] | None:
    found = [(n, a) for n, a in algorithms.items() if n in names and a.get("champion_score") is not None]
    return min(found, key=lambda item: item[1]["champion_score"]) if found else None


def cells(row: dict) -> str:
    return (f"{row['accuracy_mean']:.2f} | {row['mape_sizes']:.2f} / {row['mape_architectures']:.2f} / "
            f"{row.get('mape_synthetic', float('nan')):.2f} | {row['champion_score']:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics-dir", default="metrics/algorithms")
    args = parser.parse_args()
    print("| target | metric | pooled | accuracy % | domains 1 / 2 / 3 MAPE % | score | per-target | accuracy % | "
          "domains 1 / 2 / 3 MAPE % | score | champion |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for path in sorted(Path(args.metrics_dir).glob("*.json")):
        summary = json.loads(path.read_text())
        algorithms = summary["algorithms"]
        pooled = best(algorithms, [n for n in algorithms if n.startswith("pooled")])
        own = best(algorithms, [n for n in algorithms if not n.startswith("pooled")])
        if pooled is None or own is None:
            continue
        print(f"| {summary.get('target', path.stem)} | {summary['metric']} | {pooled[0]} | {cells(pooled[1])} | "
              f"{own[0]} | {cells(own[1])} | {summary['champion']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
