"""`perfpred tune`: Optuna search of an algorithm's hyperparameters for one (target, metric).

    perfpred tune target=jetson-nano metric=latency algorithm=xgb tune.trials=30

The study lives in SQLite (mlruns/optuna.db), so a second call resumes it; each trial is a nested
MLflow run under one parent run; the best parameters go to conf/tuned/, which Hydra composes into every later
train and tune job of that (target, metric, algorithm). Settings (tune.*) come from params.yaml.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import yaml

from perfpred import config
from perfpred.data import schema
from perfpred.model import estimators, jobs, sweep
from perfpred.model.train import check_selection, tuned_path
from perfpred.serve import registry

HYDRA_APP = True
STUDY_FILE = "optuna.db"


def study_storage() -> str:
    """The Optuna storage: a SQLite file beside the MLflow store."""
    folder = config.path("mlruns")
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / STUDY_FILE}"


def suggest(trial, search: dict) -> dict:
    """Parameters of one trial from the algorithm's `search` space: name -> [low, high, log scale]."""
    params = {}
    for name, (low, high, log) in search.items():
        if isinstance(low, int) and isinstance(high, int):
            params[name] = trial.suggest_int(name, low, high, log=bool(log))
        else:
            params[name] = trial.suggest_float(name, float(low), float(high), log=bool(log))
    return params


def objective_mape(estimator, table, features: list[str], column: str, objective: str, seeds: int, folds: int,
                   first_seed: int = 0) -> float:
    """Mean MAPE over `seeds` random 80/20 splits from `first_seed` on ('seeds') or leave-family-out MAPE ('families').

    `first_seed` keeps the tuning splits apart from the ones `perfpred train` reports (seeds 0, 1, ...):
    parameters chosen on a split's test rows would flatter that split's MAPE.
    """
    X, y = table[features], table[column].to_numpy("float64")
    if objective == "families":
        return sweep.mape_pct(y, sweep.unseen_family_predictions(estimator, X, y, table["family"], folds))
    if objective != "seeds":
        raise ValueError(f"unknown tune.objective {objective!r}: use seeds or families")
    result = sweep.seed_sweep(estimator, X, y, seeds, n_jobs=1, progress=False, first_seed=first_seed)
    return float(np.nanmean(result.mape_pct))


def tune_job(cfg) -> dict | None:
    """One Hydra job: run `tune.trials` more trials of the study and store the best parameters."""
    import mlflow
    import optuna
    from omegaconf import OmegaConf

    selection = check_selection(cfg)
    if selection is None:
        return None
    target, metric, algorithm = selection
    if cfg.algorithm.get("members"):
        raise ValueError(f"algorithm {algorithm!r} is an ensemble of {list(cfg.algorithm.members)}: tune its members, "
                         "whose conf/tuned/ files it uses")
    search = OmegaConf.to_container(cfg.algorithm.search, resolve=True) if cfg.algorithm.get("search") else {}
    if not search:
        raise ValueError(f"algorithm {algorithm!r} has no `search:` space in conf/algorithm/{algorithm}.yaml")
    # The job config already holds this (target, metric, algorithm)'s conf/tuned/ file; what it sets beyond the
    # search space was chosen by hand (features, target transform, fixed regressor settings): the search runs
    # with it and the rewritten file keeps it.
    fixed = hand_chosen(cfg, search) if cfg.train.use_tuned and tuned_path(target, metric, algorithm).exists() else {}
    table = estimators.training_table(target, metric)
    features, column = estimators.feature_columns(table), schema.metric_column(metric)
    registry.client()
    study_name = f"{target}-{metric}-{algorithm}-{cfg.tune.objective}"
    if cfg.tune.objective == "seeds":
        study_name += f"-from{int(cfg.tune.first_seed)}"  # studies of other splits are not resumed
    if fixed:  # nor studies of other hand-chosen estimator settings
        study_name += "-" + hashlib.sha1(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:6]
    if cfg.tune.objective == "seeds" and int(cfg.tune.first_seed) < int(cfg.train.seeds):
        raise ValueError(f"tune.first_seed={cfg.tune.first_seed} overlaps the seeds 0..{int(cfg.train.seeds) - 1} that "
                         "`perfpred train` reports: tune on other splits (tune.first_seed >= train.seeds)")
    study = optuna.create_study(study_name=study_name, storage=study_storage(), direction="minimize",
                                load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=len(study_trials(study_name))))
    with mlflow.start_run(experiment_id=registry.experiment_id(target), run_name=f"tune-{metric}-{algorithm}",
                          tags={"target": target, "metric": metric, "algorithm": algorithm, "optuna_study": study_name}):

        def objective(trial) -> float:
            params = suggest(trial, search)
            algorithm_cfg = OmegaConf.to_container(cfg.algorithm, resolve=True)
            algorithm_cfg["estimator"]["regressor"].update(params)
            estimator = estimators.build(algorithm_cfg, estimators.metric_baseline(metric), estimators.metric_kernel_baseline(metric))
            value = objective_mape(estimator, table, features, column, str(cfg.tune.objective),
                                   int(cfg.tune.seeds), int(cfg.train.family_folds), int(cfg.tune.first_seed))
            with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True):
                mlflow.log_params(params)
                mlflow.log_metric("objective_mape", value)
            return value

        study.optimize(objective, n_trials=int(cfg.tune.trials), catch=(ValueError, ArithmeticError))
        best = study.best_trial
        mlflow.log_params({f"best.{k}": v for k, v in best.params.items()})
        mlflow.log_metrics({"best_objective_mape": best.value, "trials": len(study.trials)})
    path = tuned_path(target, metric, algorithm)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# @package algorithm.estimator\n# Best of {len(study.trials)} Optuna trials (study {study_name}, objective {cfg.tune.objective}: "
              f"MAPE {best.value:.3f} %). Written by `perfpred tune`.\n")
    stored = {**fixed, "regressor": {**fixed.get("regressor", {}), **best.params}}
    path.write_text(header + yaml.safe_dump(stored, sort_keys=True))
    print(f"{study_name}: best MAPE {best.value:.3f} % after {len(study.trials)} trials; parameters in {path}")
    return {"best_mape": best.value, "trials": len(study.trials), "params": best.params}


def hand_chosen(cfg, search: dict) -> dict:
    """What a conf/tuned/ file set by hand: its whole content but the regressor parameters of the search space."""
    import yaml

    path = tuned_path(str(cfg.target.name), str(cfg.metric.name), str(cfg.algorithm.name))
    stored = yaml.safe_load(path.read_text()) or {}
    regressor = {k: v for k, v in (stored.pop("regressor", None) or {}).items() if k not in search}
    return {**stored, **({"regressor": regressor} if regressor else {})}


def study_trials(study_name: str) -> list:
    """The trials a stored study already has (empty for a new study)."""
    import optuna

    try:
        return optuna.load_study(study_name=study_name, storage=study_storage()).trials
    except KeyError:
        return []


def main(argv: list[str]) -> int:
    """Entry point of `perfpred tune`."""
    return jobs.run_hydra(argv, tune_job, "tune")
