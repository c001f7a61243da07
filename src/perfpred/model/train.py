"""`perfpred train`: seed sweeps of one (target, metric, algorithm) per Hydra job, tracked and registered in MLflow.

    perfpred train target=jetson-nano metric=latency algorithm=xgb
    perfpred train -m target=jetson-nano,jetson-tx2 metric=latency,memory algorithm=poly,svr,mlp,rf,xgb

The core, `evaluate(table, metric, algorithm_cfg, settings)`, is pure; MLflow (perfpred.model.tracking) and
the DVC outputs (perfpred.model.summary) stay at the edge.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from perfpred import config
from perfpred.data import schema
from perfpred.model import estimators, sweep
from perfpred.serve.predictor import Predictor

HYDRA_APP = True


@dataclass
class Evaluation:
    """Everything a sweep found about one algorithm on one (target, metric)."""

    metrics: dict
    predictor: Predictor
    sweep: sweep.SweepResult
    unseen_predicted: np.ndarray
    table: pd.DataFrame
    started_at_s: float | None = None  # epoch seconds when the work began: the MLflow run's true start


def evaluate(table: pd.DataFrame, target: str, metric: str, algorithm_cfg, settings, first_seed: int = 0) -> Evaluation:
    """Seed sweep (seeds first_seed..), leave-family-out, synthetic-from-real, interval calibration and coverage, then a refit."""
    column = schema.metric_column(metric)
    features = estimators.feature_columns(table)
    if not features:
        raise ValueError(f"{target}-{metric}: no feature column is complete in its {len(table)} rows")
    estimator = build_estimator(algorithm_cfg, target, metric, bool(settings.get("use_tuned", True)))
    X, y = table[features], table[column].to_numpy("float64")
    result = sweep.seed_sweep(estimator, X, y, int(settings.seeds), float(settings.test_size), int(settings.n_jobs),
                              first_seed=first_seed)
    metrics = sweep.summary(result)
    unseen = np.full(len(y), np.nan)
    try:
        unseen = sweep.unseen_family_predictions(estimator, X, y, table["family"], int(settings.family_folds))
        metrics["mape_unseen_family"] = sweep.mape_pct(y, unseen)
    except ValueError as error:  # a single family: nothing is unseen
        print(f"{target}-{metric}: no leave-family-out ({error})", file=sys.stderr)
        metrics["mape_unseen_family"] = float("nan")
    metrics["mape_synthetic_from_real"] = sweep.synthetic_mape(estimator, table, features, column)
    metrics["rows"] = len(table)
    levels = [float(level) for level in settings.levels]
    for level, covered in sweep.coverage(y, result.rows, result.predicted, levels, int(settings.coverage_folds)).items():
        metrics[f"coverage_{round(level * 100)}"] = covered
    predictor = Predictor(
        estimator=_refit(estimator, X, y),
        target=target,
        metric=metric,
        column=column,
        algorithm=str(algorithm_cfg["name"]),
        features=features,
        calibration=sweep.calibration(y, result.rows, result.predicted),
    )
    return Evaluation(metrics, predictor, result, unseen, table)


def _refit(estimator, features, target):
    from sklearn.base import clone

    return clone(estimator).fit(features, target)


def build_estimator(algorithm_cfg, target: str, metric: str, use_tuned: bool = True):
    """The estimator of an algorithm for one (target, metric); an ensemble (`members:`) averages its members,
    each built as `perfpred train` builds it alone (its conf/tuned/ file, the metric's prior)."""
    baseline = estimators.metric_baseline(metric)
    members = algorithm_cfg.get("members")
    if not members:
        return estimators.build(algorithm_cfg, baseline)
    from sklearn.ensemble import VotingRegressor

    built = []
    for member in members:
        cfg, _ = tuned_config(target, metric, str(member), use_tuned=use_tuned)
        if cfg.algorithm.get("members"):
            raise ValueError(f"ensemble {algorithm_cfg.get('name')!r}: member {member!r} is an ensemble itself")
        built.append((str(member), estimators.build(cfg.algorithm, baseline)))
    weights = algorithm_cfg.get("weights")
    if weights is not None and len(weights) != len(built):
        raise ValueError(f"ensemble {algorithm_cfg.get('name')!r}: {len(weights)} weights for {len(built)} members {list(members)}")
    return VotingRegressor(built, weights=[float(w) for w in weights] if weights is not None else None)


def tuned_config(target: str, metric: str, algorithm: str, overrides=(), use_tuned: bool = True):
    """conf/train.yaml composed for one (target, metric, algorithm), with its conf/tuned/ file applied as
    `perfpred train` applies it; returns the config and whether a tuned file was applied."""
    cfg = config.compose("train", [f"target={target}", f"metric={metric}", f"algorithm={algorithm}", *overrides])
    return cfg, use_tuned and apply_tuned(cfg, target, metric, algorithm)


def merge_estimator_options(cfg, options) -> None:
    """Merge hand-chosen `estimator:` options (features, target transform, fixed regressor settings) into the config."""
    from omegaconf import OmegaConf, open_dict

    with open_dict(cfg):
        cfg.algorithm.estimator = OmegaConf.merge(cfg.algorithm.estimator, options or {})


def apply_tuned(cfg, target: str, metric: str, algorithm: str) -> bool:
    """Merge what conf/tuned/ holds for this (target, metric, algorithm) into the config.

    `estimator:` (chosen by hand: features, target transform, fixed regressor settings) goes in first,
    then `regressor:` (found by `perfpred tune`).
    """
    from omegaconf import OmegaConf, open_dict

    stored = tuned_settings(target, metric, algorithm)
    if stored is None:
        return False
    merge_estimator_options(cfg, stored.get("estimator"))
    with open_dict(cfg):
        cfg.algorithm.estimator.regressor = OmegaConf.merge(cfg.algorithm.estimator.regressor, stored.get("regressor") or {})
    return True


def tuned_settings(target: str, metric: str, algorithm: str) -> dict | None:
    """The mapping stored in conf/tuned/<target>-<metric>-<algorithm>.yaml (None without that file)."""
    import yaml

    path = tuned_path(target, metric, algorithm)
    if not path.exists():
        return None
    stored = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(stored) - {"estimator", "regressor"})
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; a tuned file holds `estimator:` and `regressor:` mappings")
    return stored


def tuned_path(target: str, metric: str, algorithm: str):
    """Where `perfpred tune` stores the best parameters (conf/tuned/<target>-<metric>-<algorithm>.yaml)."""
    return config.path("tuned") / f"{target}-{metric}-{algorithm}.yaml"


def check_selection(cfg) -> tuple[str, str, str] | None:
    """(target, metric, algorithm) of a job; None (skipped) or an error when the target lacks the metric."""
    target, metric, algorithm = str(cfg.target.name), str(cfg.metric.name), str(cfg.algorithm.name)
    if metric not in list(cfg.target.get("metrics", [])):
        message = f"target {target!r} has no metric {metric!r}: it has {', '.join(cfg.target.metrics)}"
        if cfg.train.skip_missing:
            print(f"skip: {message}", file=sys.stderr)
            return None
        raise ValueError(message)
    return target, metric, algorithm


def train_job(cfg) -> dict | None:
    """One Hydra job: evaluate, log and register one (target, metric, algorithm); returns its metrics."""
    from perfpred.model import summary, tracking

    selection = check_selection(cfg)
    if selection is None:
        return None
    target, metric, algorithm = selection
    try:
        table = estimators.training_table(target, metric)
    except FileNotFoundError:
        if cfg.train.skip_missing:
            print(f"skip: target {target!r} has no measurement table yet", file=sys.stderr)
            return None
        raise
    tuned = bool(cfg.train.use_tuned) and apply_tuned(cfg, target, metric, algorithm)
    started = time.time()
    evaluation = evaluate(table, target, metric, cfg.algorithm, cfg.train)
    evaluation.started_at_s = started
    evaluation.metrics["tuned"] = tuned
    version = tracking.log_evaluation(cfg, evaluation)
    evaluation.metrics["version"] = version
    if cfg.train.get("outputs", True):  # false: an experiment against another store leaves metrics/ and plots/ alone
        summary.record(target, metric, algorithm, evaluation, float(cfg.train.unseen_weight))
    m = evaluation.metrics
    print(
        f"{target}-{metric} {algorithm}: MAPE {m['mape_mean']:.2f} +- {m['mape_std']:.2f} % over {m['seeds']} seeds "
        f"(best {m['mape_best']:.2f} % at seed {m['best_seed']}), unseen family {m['mape_unseen_family']:.2f} %"
        + (f", registered version {version}" if version else "")
    )
    return m


def main(argv: list[str]) -> int:
    """Entry point of `perfpred train`: Hydra overrides in, one job per combination."""
    return run_hydra(argv, train_job, "train")


def run_hydra(argv: list[str], job, name: str) -> int:
    """Run `job(cfg)` as a Hydra app on conf/train.yaml; bad input is one line on stderr and exit status 2."""
    import hydra

    from perfpred.serve import registry

    if not any(a in ("-h", "--help", "--hydra-help", "--info", "-c", "--cfg") for a in argv):
        registry.ensure_store()  # before parallel jobs: concurrent creation of the database races

    def task(cfg) -> None:
        try:
            job(cfg)
        except (ValueError, FileNotFoundError, KeyError, LookupError) as error:
            print(f"perfpred {name}: error: {error}", file=sys.stderr)
            raise SystemExit(2) from None

    app = hydra.main(config_path=str(config.conf_dir()), config_name="train", version_base=None)(task)
    saved = sys.argv
    sys.argv = [f"perfpred-{name}", *argv]
    try:
        app()
    finally:
        sys.argv = saved
    return 0
