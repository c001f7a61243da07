"""The three test domains of Bouzidi et al. (TECS 2022) as evaluation splits: unseen input sizes, unseen
architectures of known families, unseen synthetic configurations.

A random 80/20 split flatters a predictor: a test row's architecture has almost always been seen at
other input sizes. Each domain split holds out what a user meets instead:

- `sizes`: a set of input widths, held out for the architectures seen at other widths (the rest of
  their rows train);
- `architectures`: whole architectures (every input size of `ResNet-50`), a group k-fold on the
  architecture name whose family (ResNet) keeps its other members in training;
- `synthetic`: whole synthetic `basic_model` configurations.

One seed draws the three held-out sets at once, fits once on what is left and scores each domain, so a
domain evaluation costs one fit per seed. Pure functions; MLflow and files stay at the edge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from perfpred.model import sweep

DOMAINS = ("sizes", "architectures", "synthetic")
TRAIN = "train"
#: the interval calibration on leave-family-out predictions (a family never seen: a user's own architecture), kept
#: beside the domains' (Predictor.domain_calibrations) and served by `perfpred predict --calibration families`
FAMILIES = "families"


def architecture(model: str, input_width: int | float) -> str:
    """The architecture of a row: its model name without a trailing `_<input width>` (`ResNet50_224` -> `ResNet50`)."""
    return re.sub(rf"_{int(input_width)}$", "", str(model))


def architectures(table: pd.DataFrame) -> np.ndarray:
    """The architecture name of every row of a measurement table."""
    return np.array([architecture(m, w) for m, w in zip(table["model"], table["input_width"], strict=True)], dtype=object)


def _held(rng: np.random.Generator, names: np.ndarray, fraction: float) -> set:
    """A random `fraction` of the distinct names (at least one where there are two or more)."""
    distinct = np.unique(names)
    if len(distinct) < 2:
        return set()
    count = min(len(distinct) - 1, max(1, round(fraction * len(distinct))))
    return set(rng.choice(distinct, size=count, replace=False))


def split(table: pd.DataFrame, seed: int, fractions: dict[str, float]) -> np.ndarray:
    """The role of every row for one seed: 'train' or the domain ('sizes', 'architectures', 'synthetic') it tests."""
    rng = np.random.default_rng(seed)
    names = architectures(table)
    synthetic = table["synthetic"].to_numpy(bool)
    widths = table["input_width"].to_numpy("int64")
    roles = np.full(len(table), TRAIN, dtype=object)
    held_synthetic = _held(rng, names[synthetic], float(fractions["synthetic"]))
    roles[synthetic & np.isin(names, list(held_synthetic))] = "synthetic"
    held_real = _held(rng, names[~synthetic], float(fractions["architectures"]))
    roles[~synthetic & np.isin(names, list(held_real))] = "architectures"
    seen = (roles == TRAIN) & ~synthetic
    held_widths = _held(rng, widths[seen], float(fractions["sizes"]))
    for name in np.unique(names[seen]):
        rows = np.flatnonzero(seen & (names == name))
        at_held = np.isin(widths[rows], list(held_widths))
        if at_held.all():  # every width of this architecture held: one stays, so the architecture is seen
            at_held[rng.integers(len(rows))] = False
        roles[rows[at_held]] = "sizes"
    return roles


@dataclass
class DomainResult:
    """Per-seed MAPE of each domain (NaN where a seed held out no row of it) and the pooled held-out predictions."""

    seeds: np.ndarray
    mape_pct: dict[str, np.ndarray]
    rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype="int64"))
    domain: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    predicted: np.ndarray = field(default_factory=lambda: np.empty(0))


def _one_seed(estimator, table: pd.DataFrame, features: list[str], target: np.ndarray, seed: int, fractions: dict):
    import warnings

    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning

    roles = split(table, seed, fractions)
    train = roles == TRAIN
    test = np.flatnonzero(~train)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fitted = clone(estimator).fit(table.loc[train, features], target[train])
        predicted = np.asarray(fitted.predict(table.iloc[test][features]), dtype="float64")
        if not np.all(np.isfinite(predicted)):
            raise ValueError("non-finite predictions")
    except Exception:  # as in the seed sweep: a failed seed scores nothing, the others still count
        return seed, test[:0], roles[test][:0], np.empty(0)
    return seed, test, roles[test], predicted


def evaluate(estimator, table: pd.DataFrame, features: list[str], target: np.ndarray, seeds, fractions: dict,
             n_jobs: int = 1) -> DomainResult:
    """Fit once per seed on the rows no domain holds out; score each domain's held-out rows."""
    from joblib import Parallel, delayed

    target = np.asarray(target, dtype="float64")
    seeds = np.asarray(list(seeds), dtype="int64")
    outcomes = Parallel(n_jobs=n_jobs)(
        delayed(_one_seed)(estimator, table, features, target, int(s), fractions) for s in seeds)
    result = DomainResult(seeds=seeds, mape_pct={d: np.full(len(seeds), np.nan) for d in DOMAINS})
    for index, (_, rows, roles, predicted) in enumerate(outcomes):
        for domain in DOMAINS:
            mine = roles == domain
            if mine.any():
                result.mape_pct[domain][index] = sweep.mape_pct(target[rows[mine]], predicted[mine])
    result.rows = np.concatenate([o[1] for o in outcomes]).astype("int64")
    result.domain = np.concatenate([o[2] for o in outcomes]).astype(object)
    result.predicted = np.concatenate([o[3] for o in outcomes])
    return result


def summary(result: DomainResult) -> dict[str, float]:
    """mape_<domain> (mean over seeds), mape_<domain>_std and rows_<domain> (held-out rows pooled over seeds)."""
    metrics: dict[str, float] = {}
    for domain in DOMAINS:
        values = result.mape_pct[domain][np.isfinite(result.mape_pct[domain])]
        metrics[f"mape_{domain}"] = float(values.mean()) if values.size else float("nan")
        metrics[f"mape_{domain}_std"] = float(values.std(ddof=1)) if values.size > 1 else float("nan")
        metrics[f"rows_{domain}"] = int((result.domain == domain).sum())
    return metrics


def coverage(measured: np.ndarray, result: DomainResult, levels, folds: int) -> dict[str, float]:
    """coverage_<level>_<domain>: interval coverage of each domain's held-out rows, calibrated on that domain's other rows."""
    covered = {}
    for domain in DOMAINS:
        mine = result.domain == domain
        values = sweep.coverage(measured, result.rows[mine], result.predicted[mine], levels, folds) if mine.sum() >= 2 * folds \
            else dict.fromkeys(levels, float("nan"))
        covered.update({f"coverage_{round(level * 100)}_{domain}": value for level, value in values.items()})
    return covered


def calibrations(measured: np.ndarray, result: DomainResult) -> dict[str, np.ndarray]:
    """Split-conformal calibration of each domain from its held-out predictions (domains without rows left out)."""
    return {domain: sweep.calibration(measured, result.rows[result.domain == domain], result.predicted[result.domain == domain])
            for domain in DOMAINS if (result.domain == domain).any()}


def champion_score(metrics: dict, weights: dict[str, float]) -> float:
    """The weighted mean MAPE over the splits a user meets ('random' = the seed sweep's mape_mean, and the domains).

    Splits without a figure (a table without synthetic networks) drop out and the other weights are renormalised.
    """
    figures = {"random": metrics.get("mape_mean"), **{d: metrics.get(f"mape_{d}") for d in DOMAINS}}
    unknown = sorted(set(weights) - set(figures))
    if unknown:
        raise ValueError(f"champion weights name {unknown}: use {', '.join(figures)} (conf/train/default.yaml champion_weights)")
    known = {k: float(w) for k, w in weights.items() if figures[k] is not None and np.isfinite(float(figures[k]))}
    total = sum(known.values())
    if total <= 0:
        return float("nan")
    return float(sum(w * float(figures[k]) for k, w in known.items()) / total)
