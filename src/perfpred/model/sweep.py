"""The seed sweep: many random train/test splits, MAPE on each, and what the held-out predictions tell.

Pure functions of an estimator and a table; MLflow and files stay in perfpred.model.train.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: Probabilities at which the calibration keeps quantiles of log(measured / predicted).
CALIBRATION_PROBABILITIES = np.linspace(0.0, 1.0, 401)


@dataclass
class SweepResult:
    """Per-seed MAPE (percent, NaN where the fit failed) and the pooled held-out predictions."""

    seeds: np.ndarray
    mape_pct: np.ndarray
    failures: dict[int, str] = field(default_factory=dict)
    rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype="int64"))  # held-out row of each prediction
    predicted: np.ndarray = field(default_factory=lambda: np.empty(0))


def mape_pct(measured: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute percentage error, in percent."""
    measured = np.asarray(measured, dtype="float64")
    return float(100.0 * np.mean(np.abs(np.asarray(predicted) - measured) / np.abs(measured)))


def _one_seed(estimator, features: pd.DataFrame, target: np.ndarray, seed: int, test_size: float):
    import warnings

    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(target))
    train_rows, test_rows = train_test_split(rows, test_size=test_size, random_state=seed)
    try:
        with warnings.catch_warnings():  # an iteration cap hit on every seed (mlp max_iter) is a setting, not news
            warnings.simplefilter("ignore", ConvergenceWarning)
            fitted = clone(estimator).fit(features.iloc[train_rows], target[train_rows])
        predicted = np.asarray(fitted.predict(features.iloc[test_rows]), dtype="float64")
        if not np.all(np.isfinite(predicted)):
            raise ValueError("non-finite predictions")
    except Exception as error:  # one failed seed is recorded, the sweep goes on
        return seed, float("nan"), test_rows[:0], np.empty(0), f"{type(error).__name__}: {error}"
    return seed, mape_pct(target[test_rows], predicted), test_rows, predicted, None


def seed_sweep(
    estimator, features: pd.DataFrame, target: np.ndarray, seeds: int, test_size: float = 0.2, n_jobs: int = 1,
    progress: bool = True, first_seed: int = 0,
) -> SweepResult:
    """Fit on a random (1 - test_size) split for each seed first_seed..first_seed+seeds-1 and score MAPE on the rest."""
    from joblib import Parallel, delayed
    from tqdm import tqdm

    target = np.asarray(target, dtype="float64")
    seed_values = np.arange(first_seed, first_seed + seeds)
    jobs = (delayed(_one_seed)(estimator, features, target, int(seed), test_size) for seed in seed_values)
    runner = Parallel(n_jobs=n_jobs, return_as="generator")
    outcomes = list(tqdm(runner(jobs), total=seeds, desc="seeds", disable=not progress, leave=False))
    result = SweepResult(seeds=seed_values, mape_pct=np.array([o[1] for o in outcomes]))
    result.failures = {o[0]: o[4] for o in outcomes if o[4] is not None}
    result.rows = np.concatenate([o[2] for o in outcomes]).astype("int64")
    result.predicted = np.concatenate([o[3] for o in outcomes])
    return result


def summary(result: SweepResult) -> dict[str, float]:
    """The distribution of per-seed MAPE: mean, std, median, p5, p95, best and worst, and the best seed."""
    ok = result.mape_pct[np.isfinite(result.mape_pct)]
    if ok.size == 0:
        raise ValueError(f"every one of {len(result.seeds)} seeds failed; first error: {next(iter(result.failures.values()))}")
    best = int(result.seeds[np.nanargmin(result.mape_pct)])
    return {
        "mape_mean": float(ok.mean()),
        "mape_std": float(ok.std(ddof=1)) if ok.size > 1 else 0.0,
        "mape_median": float(np.median(ok)),
        "mape_p5": float(np.percentile(ok, 5)),
        "mape_p95": float(np.percentile(ok, 95)),
        "mape_best": float(ok.min()),
        "mape_worst": float(ok.max()),
        "accuracy_mean": float(100.0 - ok.mean()),
        "accuracy_best": float(100.0 - ok.min()),
        "best_seed": best,
        "seeds": int(len(result.seeds)),
        "seeds_failed": len(result.failures),
    }


def unseen_family_predictions(estimator, features: pd.DataFrame, target: np.ndarray, families, folds: int) -> np.ndarray:
    """Out-of-fold predictions of a GroupKFold on `family`: each family predicted by a model that never saw it."""
    from sklearn.base import clone
    from sklearn.model_selection import GroupKFold

    families = np.asarray(families)
    folds = min(folds, len(np.unique(families)))
    if folds < 2:
        raise ValueError("leave-family-out needs at least two families")
    predicted = np.full(len(target), np.nan)
    for train_rows, test_rows in GroupKFold(n_splits=folds).split(features, target, families):
        fitted = clone(estimator).fit(features.iloc[train_rows], target[train_rows])
        predicted[test_rows] = fitted.predict(features.iloc[test_rows])
    return predicted


def synthetic_mape(estimator, table: pd.DataFrame, features: list[str], column: str) -> float:
    """MAPE on the synthetic networks of a predictor trained on real CNNs only (NaN without both kinds)."""
    from sklearn.base import clone

    synthetic = table["synthetic"].to_numpy(bool)
    if synthetic.all() or not synthetic.any():
        return float("nan")
    fitted = clone(estimator).fit(table.loc[~synthetic, features], table.loc[~synthetic, column].to_numpy())
    return mape_pct(table.loc[synthetic, column].to_numpy(), fitted.predict(table.loc[synthetic, features]))


def conformal_probabilities(distinct_rows: int) -> np.ndarray:
    """CALIBRATION_PROBABILITIES pushed out by split-conformal's finite-sample margin for `distinct_rows` calibrating rows.

    An empirical quantile at p of n calibration rows covers a new row with probability below p when n is small
    (a test domain of 35 synthetic networks); conformal prediction takes the quantile at p (n + 1) / n for the
    upper tail and 1 - (1 - p) (n + 1) / n for the lower one. Repeated predictions of one row (one per seed)
    count once: they are not independent draws. With thousands of rows the change is negligible.
    """
    p = CALIBRATION_PROBABILITIES
    n = max(int(distinct_rows), 1)
    return np.where(p >= 0.5, np.minimum(1.0, p * (n + 1) / n), np.maximum(0.0, 1.0 - (1.0 - p) * (n + 1) / n))


def calibration(measured: np.ndarray, rows: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Split-conformal calibration: quantiles of log(measured / predicted) over held-out predictions, with the
    finite-sample margin of `conformal_probabilities` for the number of distinct rows."""
    log_ratio = np.log(np.asarray(measured, dtype="float64")[rows] / predicted)
    return np.quantile(log_ratio, conformal_probabilities(len(np.unique(rows))), method="higher")


def student_t_calibration(measured: np.ndarray, rows: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Quantiles (at CALIBRATION_PROBABILITIES) of a Student-t prediction interval of log(measured / predicted):
    mean + t(n - 1) x s x sqrt(1 + 1/n) over the n held-out predictions.

    For a handful of rows (`perfpred adapt` from k = 10), split-conformal can do no better than the range of what it
    saw: n rows bound a two-sided interval's coverage by (n - 1) / (n + 1), 82 % for 10 rows, whatever the level asked.
    The t interval assumes the log errors are roughly normal and widens with the uncertainty of their spread instead.
    """
    from scipy import stats

    log_ratio = np.log(np.asarray(measured, dtype="float64")[rows] / predicted)
    n = len(log_ratio)
    if n < 3:
        raise ValueError(f"a t interval needs at least 3 held-out predictions, got {n}")
    spread = log_ratio.std(ddof=1) * np.sqrt(1.0 + 1.0 / n)
    step = CALIBRATION_PROBABILITIES[1] - CALIBRATION_PROBABILITIES[0]
    probabilities = np.clip(CALIBRATION_PROBABILITIES, step / 2, 1.0 - step / 2)  # finite at the grid's ends
    return log_ratio.mean() + stats.t.ppf(probabilities, n - 1) * spread


def interval_factors(quantiles: np.ndarray, level: float) -> tuple[float, float]:
    """Factors (low, high) that multiply a point prediction into a `level` interval."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"interval level must be between 0 and 1 (e.g. 0.9), got {level}")
    alpha = 1.0 - level
    low, high = np.interp([alpha / 2, 1 - alpha / 2], CALIBRATION_PROBABILITIES, quantiles)
    return float(np.exp(low)), float(np.exp(high))


def coverage(measured: np.ndarray, rows: np.ndarray, predicted: np.ndarray, levels, folds: int, seed: int = 0,
             calibrate=calibration) -> dict:
    """Interval coverage on rows that did not calibrate it: calibrate (`calibrate`: calibration or
    student_t_calibration) on the other row folds, test on each fold."""
    measured = np.asarray(measured, dtype="float64")
    fold_of_row = np.random.default_rng(seed).permutation(len(measured)) % folds
    covered = {level: [] for level in levels}
    for fold in range(folds):
        held = fold_of_row[rows] == fold
        if held.all() or not held.any():
            continue
        quantiles = calibrate(measured, rows[~held], predicted[~held])
        for level in levels:
            low, high = interval_factors(quantiles, level)
            inside = (measured[rows[held]] >= predicted[held] * low) & (measured[rows[held]] <= predicted[held] * high)
            covered[level].append(inside)
    return {level: float(np.concatenate(c).mean()) if c else float("nan") for level, c in covered.items()}
