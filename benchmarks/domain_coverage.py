"""What the training-domain check and the widened intervals buy on families a predictor never saw.

For each (target, metric) with a measurement table: GroupKFold on `family`; in each fold a predictor is
built exactly as `perfpred train` builds one, on the other families only (seed-sweep calibration of its
intervals, refit, training domain), then predicts the held-out families. Reported: the share of
held-out rows that the domain rule puts outside, and the coverage of the `--level` intervals before
(plain split-conformal) and after widening, over all held-out rows and over those outside. Nothing here
was tuned on these rows: the rule and its constants are fixed in perfpred.serve.domain.

Run by hand from the repository root (after `perfpred import`; the host-CPU tables too if present):

    PYTHONPATH=src python benchmarks/domain_coverage.py [--algorithm poly] [--folds 5] [--seeds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Row:
    """Coverage of one (target, metric) on held-out families."""

    target: str
    metric: str
    algorithm: str
    rows: int
    outside_share: float
    coverage_plain: float
    coverage_widened: float
    coverage_outside_plain: float
    coverage_outside_widened: float
    width_ratio_outside_median: float  # high/low of the widened interval over the plain one, rows outside
    width_ratio_outside_mean: float


def held_out_family_coverage(target: str, metric: str, algorithm: str, folds: int, seeds: int, level: float) -> Row | None:
    """Coverage before and after widening, on GroupKFold family folds of one (target, metric)."""
    from sklearn.base import clone
    from sklearn.model_selection import GroupKFold

    from perfpred.data import schema
    from perfpred.model import estimators, sweep, train
    from perfpred.serve.domain import Domain
    from perfpred.serve.predictor import Predictor

    try:
        table = estimators.training_table(target, metric)
    except (FileNotFoundError, ValueError):
        return None
    features = estimators.feature_columns(table)
    cfg, _ = train.tuned_config(target, metric, algorithm)
    estimator = train.build_estimator(cfg.algorithm, target, metric)
    column = schema.metric_column(metric)
    y = table[column].to_numpy("float64")
    families = table["family"].to_numpy()
    low_plain, high_plain = np.full(len(y), np.nan), np.full(len(y), np.nan)
    low_wide, high_wide = np.full(len(y), np.nan), np.full(len(y), np.nan)
    outside = np.zeros(len(y), dtype=bool)
    for train_rows, test_rows in GroupKFold(n_splits=min(folds, len(set(families)))).split(table, y, families):
        part = table.iloc[train_rows].reset_index(drop=True)
        swept = sweep.seed_sweep(estimator, part[features], y[train_rows], seeds, 0.2, 1, progress=False)
        predictor = Predictor(
            estimator=clone(estimator).fit(part[features], y[train_rows]), target=target, metric=metric, column=column,
            algorithm=algorithm, features=features, calibration=sweep.calibration(y[train_rows], swept.rows, swept.predicted),
            domain=Domain.fit(part, features),
        )
        held = table.iloc[test_rows]
        low_plain[test_rows], high_plain[test_rows] = predictor.predict_interval(held, level, widen=False)
        low_wide[test_rows], high_wide[test_rows] = predictor.predict_interval(held, level, widen=True)
        outside[test_rows] = ~predictor.check_domain(held)["in_domain"].to_numpy(dtype=bool)

    def covered(low, high, rows):
        return float(np.mean((low[rows] <= y[rows]) & (y[rows] <= high[rows]))) if rows.any() else float("nan")

    every = np.ones(len(y), dtype=bool)
    ratio = (high_wide / low_wide) / (high_plain / low_plain)
    return Row(
        target, metric, algorithm, len(y), float(outside.mean()),
        covered(low_plain, high_plain, every), covered(low_wide, high_wide, every),
        covered(low_plain, high_plain, outside), covered(low_wide, high_wide, outside),
        float(np.median(ratio[outside])) if outside.any() else float("nan"),
        float(np.mean(ratio[outside])) if outside.any() else float("nan"),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Print the coverage table of every (target, metric) with measurements."""
    from perfpred import config
    from perfpred.data import schema

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithm", default="poly")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=5, help="seed-sweep splits that calibrate each fold's intervals")
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--target", action="append", help="a target (repeatable; default: every configured one)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    rows = []
    print("target             metric   algo  rows  outside  coverage plain -> widened  (outside rows: plain -> widened, width x median/mean)")
    for target in args.target or config.group_options("target"):
        for metric in schema.METRIC_COLUMNS:
            row = held_out_family_coverage(target, metric, args.algorithm, args.folds, args.seeds, args.level)
            if row is None:
                continue
            rows.append(row)
            print(f"{row.target:18} {row.metric:8} {row.algorithm:5} {row.rows:5}  {row.outside_share:6.1%}   "
                  f"{row.coverage_plain:6.1%} -> {row.coverage_widened:6.1%}            "
                  f"{row.coverage_outside_plain:6.1%} -> {row.coverage_outside_widened:6.1%}, {row.width_ratio_outside_median:.2f}x/{row.width_ratio_outside_mean:.1f}x",
                  flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump([asdict(row) for row in rows], handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
