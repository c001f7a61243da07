"""`perfpred train`: seed sweeps of one (target, metric, algorithm) per Hydra job, tracked and registered in MLflow.

    perfpred train target=jetson-nano metric=latency algorithm=xgb
    perfpred train -m target=jetson-nano,jetson-tx2 metric=latency,memory algorithm=poly,svr,mlp,rf,xgb
    perfpred train --pipeline     (the train stage)

Settings come from params.yaml (see conf/train.yaml). The core, `evaluate(table, target, metric,
algorithm_cfg, settings)`, is pure; Hydra (perfpred.model.jobs), MLflow (perfpred.model.tracking) and the
DVC outputs (perfpred.model.summary, only with train.outputs=true) stay at the edge.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from logging import getLogger

import numpy as np
import pandas as pd

from perfpred import config
from perfpred.data import schema
from perfpred.kernels.predictor import TERM_COLUMNS as KERNEL_TERMS
from perfpred.model import crossboard, domains, estimators, fitcache, jobs, sweep
from perfpred.serve.predictor import Predictor, architecture_keys

HYDRA_APP = True
#: Hydra writes this logger's lines to the job's train.log as well as to the console.
log = getLogger("perfpred.train")


@dataclass
class Evaluation:
    """Everything a sweep found about one algorithm on one (target, metric)."""

    metrics: dict
    predictor: Predictor
    sweep: sweep.SweepResult
    unseen_predicted: np.ndarray
    table: pd.DataFrame
    domains: domains.DomainResult | None = None
    started_at_s: float | None = None  # epoch seconds when the work began: the MLflow run's true start


def evaluate(table: pd.DataFrame, target: str, metric: str, algorithm_cfg, settings, first_seed: int = 0) -> Evaluation:
    """Seed sweep (seeds first_seed..), leave-family-out, synthetic-from-real, the three test domains, interval
    calibration and coverage, the champion score, then a refit."""
    column = schema.metric_column(metric)
    features = estimators.feature_columns(table, bool(algorithm_cfg.get("kernel_groups", False)))
    if not features:
        raise ValueError(f"{target}-{metric}: no feature column is complete in its {len(table)} rows")
    estimator = build_estimator(algorithm_cfg, target, metric, bool(settings.get("use_tuned", True)))
    estimator = crossboard.wrap(estimator, target, metric, table, estimators.metric_option(metric, "borrow_from", []))
    if fitcache.is_member(str(algorithm_cfg["name"]), settings.get("algorithms") or []):
        fitcache.want(estimator)  # an ensemble of this run refits it on the same rows: keep its fits (perfpred.model.fitcache)
    X, y = table[features], table[column].to_numpy("float64")
    if settings.get("executor", "local") == "ray":  # blocks of seeds as Ray tasks on a cluster (conf/train/)
        from perfpred.model import ray_sweep

        result = ray_sweep.seed_sweep(estimator, X, y, int(settings.seeds), float(settings.test_size), first_seed,
                                      settings.get("ray_address"))
    else:
        result = sweep.seed_sweep(estimator, X, y, int(settings.seeds), float(settings.test_size), int(settings.n_jobs),
                                  first_seed=first_seed)
    metrics = sweep.summary(result)
    unseen = np.full(len(y), np.nan)
    try:
        unseen = sweep.unseen_family_predictions(estimator, X, y, table["family"], int(settings.family_folds))
        metrics["mape_unseen_family"] = sweep.mape_pct(y, unseen)
    except ValueError as error:  # a single family: nothing is unseen
        log.warning(f"{target}-{metric}: no leave-family-out ({error})")
        metrics["mape_unseen_family"] = float("nan")
    metrics["mape_synthetic_from_real"] = sweep.synthetic_mape(estimator, table, features, column)
    metrics["rows"] = len(table)
    levels = [float(level) for level in settings.levels]
    for level, covered in sweep.coverage(y, result.rows, result.predicted, levels, int(settings.coverage_folds)).items():
        metrics[f"coverage_{round(level * 100)}"] = covered
    held_domains = domains.evaluate(estimator, table, features, y, range(first_seed, first_seed + int(settings.domain_seeds)),
                                    dict(settings.domain_fractions), int(settings.n_jobs))
    metrics |= domains.summary(held_domains) | domains.coverage(y, held_domains, levels, int(settings.coverage_folds))
    calibrations = domains.calibrations(y, held_domains)
    unseen_rows = np.flatnonzero(np.isfinite(unseen))
    if len(unseen_rows) >= 2 * int(settings.coverage_folds):  # intervals for a family never seen, and their coverage
        calibrations[domains.FAMILIES] = sweep.calibration(y, unseen_rows, unseen[unseen_rows])
        for level, covered in sweep.coverage(y, unseen_rows, unseen[unseen_rows], levels,
                                             int(settings.coverage_folds)).items():
            metrics[f"coverage_{round(level * 100)}_{domains.FAMILIES}"] = covered
    metrics["champion_score"] = domains.champion_score(metrics, dict(settings.champion_weights))
    predictor = Predictor(
        estimator=_refit(estimator, X, y),
        target=target,
        metric=metric,
        column=column,
        algorithm=str(algorithm_cfg["name"]),
        features=features,
        calibration=sweep.calibration(y, result.rows, result.predicted),
        domain_calibrations=calibrations,
        architectures=frozenset(key for key in architecture_keys(table) if key is not None),
    )
    if predictor.kernel_columns:
        attach_kernel_model(predictor)
    return Evaluation(metrics, predictor, result, unseen, table, held_domains)


def attach_kernel_model(predictor: Predictor) -> None:
    """Give a predictor that reads kernel terms the target's kernel predictors and fusion rules, so that it computes
    a model's terms from its descriptor wherever it is loaded (perfpred.serve.predictor.Predictor.kernel_terms)."""
    from perfpred.kernels import detector, store

    predictor.kernel_model = store.load_model(predictor.target)
    predictor.kernel_rules = detector.fusion_rules(predictor.target)


def _refit(estimator, features, target):
    from sklearn.base import clone

    return clone(estimator).fit(features, target)


def build_estimator(algorithm_cfg, target: str, metric: str, use_tuned: bool = True):
    """The estimator of an algorithm for one (target, metric); an ensemble (`members:`) averages its members,
    each built as `perfpred train` builds it alone (its conf/tuned/ file, the metric's prior)."""
    baseline, kernel_baseline = estimators.metric_baseline(metric), estimators.metric_kernel_baseline(metric)
    members = algorithm_cfg.get("members")
    if not members:
        return with_call_cost(estimators.build(algorithm_cfg, baseline, kernel_baseline), target)
    if algorithm_cfg.get("mean") == "geometric":
        return geometric_blend(algorithm_cfg, target, metric, use_tuned)
    from sklearn.ensemble import VotingRegressor

    built = []
    for member in members:
        cfg, _ = tuned_config(target, metric, str(member), use_tuned=use_tuned)
        if cfg.algorithm.get("members"):
            raise ValueError(f"ensemble {algorithm_cfg.get('name')!r}: member {member!r} is an ensemble itself")
        built.append((str(member), with_call_cost(estimators.build(cfg.algorithm, baseline, kernel_baseline), target)))
    weights = algorithm_cfg.get("weights")
    if weights is not None and len(weights) != len(built):
        raise ValueError(f"ensemble {algorithm_cfg.get('name')!r}: {len(weights)} weights for {len(built)} members {list(members)}")
    return VotingRegressor(built, weights=[float(w) for w in weights] if weights is not None else None)


def with_call_cost(estimator, target: str):
    """The estimator, with the `kernels` algorithm's per-model constant pinned at the target's call cost (the kernel
    model's KernelModel.call_ms) and its count mode the kernel model's, where it has kernel predictors and the
    constant is not set already."""
    from perfpred.kernels import store

    if isinstance(estimator, estimators.KernelOverhead) and estimator.call_ms is None \
            and store.predictor_path(target).exists():
        model = store.load_model(target)
        estimator.call_ms = model.call_ms
        estimator.count_mode = getattr(model, "count_mode", None)  # how the kernel model prices a kernel's dispatch
    return estimator


def geometric_blend(algorithm_cfg, target: str, metric: str, use_tuned: bool = True):
    """An algorithm with `mean: geometric`: its members (algorithms, ensembles among them) each built as `perfpred
    train` builds it alone and fitted on the columns it would read alone (the per-group kernel sums only for a
    member that sets `kernel_groups`), their predictions averaged geometrically (estimators.GeometricBlend)."""
    from perfpred.kernels.predictor import GROUP_COLUMNS

    built = []
    for member in algorithm_cfg["members"]:
        cfg, _ = tuned_config(target, metric, str(member), use_tuned=use_tuned)
        if cfg.algorithm.get("mean") == "geometric":
            raise ValueError(f"blend {algorithm_cfg.get('name')!r}: member {member!r} is a geometric blend itself")
        dropped = [] if cfg.algorithm.get("kernel_groups", False) else list(GROUP_COLUMNS)
        built.append((str(member), build_estimator(cfg.algorithm, target, metric, use_tuned), dropped))
    weights = algorithm_cfg.get("weights")
    return estimators.GeometricBlend(built, [float(w) for w in weights] if weights is not None else None)


def tuned_config(target: str, metric: str, algorithm: str, overrides=(), use_tuned: bool = True):
    """The job config of one (target, metric, algorithm) as `perfpred train` composes it (params.yaml, the groups,
    conf/tuned/ unless use_tuned is false); returns the config and whether a tuned file went in."""
    selection = [f"target={target}", f"metric={metric}", f"algorithm={algorithm}"]
    cfg = config.compose(config.JOB_CONFIG, [*selection, *overrides, *([] if use_tuned else ["~tuned"])])
    return cfg, use_tuned and tuned_path(target, metric, algorithm).exists()


def tuned_path(target: str, metric: str, algorithm: str):
    """Where `perfpred tune` stores the best parameters (conf/tuned/<target>-<metric>-<algorithm>.yaml)."""
    return config.path("tuned") / f"{target}-{metric}-{algorithm}.yaml"


def check_selection(cfg) -> tuple[str, str, str] | None:
    """(target, metric, algorithm) of a job; None (skipped) or an error when the target lacks the metric."""
    target, metric, algorithm = str(cfg.target.name), str(cfg.metric.name), str(cfg.algorithm.name)
    if "tuned" in cfg:  # a conf/tuned/ file without its package line lands beside the algorithm, unused
        raise ValueError(f"{tuned_path(target, metric, algorithm)}: the first line must be "
                         "`# @package algorithm.estimator`")
    if metric not in list(cfg.target.get("metrics", [])):
        message = f"target {target!r} has no metric {metric!r}: it has {', '.join(cfg.target.metrics)}"
        if cfg.train.skip_missing:
            log.info(f"skip: {message}")
            return None
        raise ValueError(message)
    return target, metric, algorithm


def kernel_terms_table(cfg, table: pd.DataFrame, target: str, metric: str) -> pd.DataFrame:
    """The table an algorithm trains on: with the target's kernel terms joined when the algorithm reads them
    (its `kernel_terms:`, else `train.kernel_terms`). An algorithm that names its `metrics:` or sets its own
    `kernel_terms: true` (the `kernels` algorithm) cannot train without them: a ValueError says why."""
    algorithm_cfg, name = cfg.algorithm, str(cfg.algorithm.name)
    metrics = algorithm_cfg.get("metrics")
    if metrics and metric not in list(metrics):
        raise ValueError(f"algorithm {name!r} predicts {', '.join(metrics)}, not {metric}")
    own = algorithm_cfg.get("kernel_terms")
    if not (own if own is not None else cfg.train.get("kernel_terms", False)):
        return table
    joined = estimators.with_kernel_terms(table, target)
    if own and not all(c in joined.columns and joined[c].notna().all() for c in KERNEL_TERMS):
        raise ValueError(f"algorithm {name!r} reads kernel terms, and target {target!r} has none for every row: "
                         f"its kernel predictors come from `perfpred kernel-measure --target {target}` and "
                         "`perfpred kernel-train` (params.yaml kernel_zoo.targets)")
    return joined


def train_job(cfg) -> dict | None:
    """One Hydra job: evaluate, log and register one (target, metric, algorithm); returns its metrics."""
    from omegaconf import OmegaConf

    from perfpred.model import summary, tracking

    selection = check_selection(cfg)
    if selection is None:
        return None
    target, metric, algorithm = selection
    try:
        table = estimators.training_table(target, metric)
    except FileNotFoundError:
        if cfg.train.skip_missing:
            log.info(f"skip: target {target!r} has no measurement table yet")
            return None
        raise
    try:
        table = kernel_terms_table(cfg, table, target, metric)
    except ValueError as error:
        if cfg.train.skip_missing:
            log.info(f"skip: {error}")
            return None
        raise
    started = time.time()
    evaluation = evaluate(table, target, metric, cfg.algorithm, cfg.train)
    evaluation.started_at_s = started
    evaluation.metrics["tuned"] = bool(cfg.train.use_tuned) and tuned_path(target, metric, algorithm).exists()
    # What the run was trained with; the rest of params.yaml (zoo, measure, paths) is another stage's.
    version = tracking.log_evaluation(OmegaConf.masked_copy(cfg, ["target", "metric", "algorithm", "train"]), evaluation)
    evaluation.metrics["version"] = version
    if cfg.train.outputs:  # only the pipeline's train stage sets it: ad-hoc runs leave metrics/, plots/, reports/ alone
        summary.record(target, metric, algorithm, evaluation, float(cfg.train.unseen_weight))
    m = evaluation.metrics
    log.info(
        f"{target}-{metric} {algorithm}: MAPE {m['mape_mean']:.2f} +- {m['mape_std']:.2f} % over {m['seeds']} seeds "
        f"(best {m['mape_best']:.2f} % at seed {m['best_seed']}), unseen family {m['mape_unseen_family']:.2f} %"
        + (f", registered version {version}" if version else "")
    )
    return m


def main(argv: list[str]) -> int:
    """Entry point of `perfpred train`: Hydra overrides in, one job per combination."""
    return jobs.run_hydra(argv, train_job, "train")
