"""`perfpred kernel-train`: the kernel predictors of every kernel-measured target, tracked in MLflow.

Per target: one regressor per kernel kind on the kernel table (perfpred.kernels.predictor), its
out-of-fold error per kind, and the whole-model overhead fitted on the target's model measurements (the
zoo manifest gives each row's descriptor). The interval comes from residuals of families left out of the
overhead fit, so that it holds on architectures the zoo lacks. The fitted KernelModel is pickled to
data/kernels/predictors/<target>.pkl (read by `perfpred kernels` and the `kernels` algorithm).
"""

from __future__ import annotations

import argparse
import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from perfpred import config
from perfpred.kernels import detector, predictor
from perfpred.kernels.measurement import kernels_dir
from perfpred.kernels.store import features_path, predictor_path


def model_rows(target: str, params: dict) -> pd.DataFrame:
    """The target's ok whole-model measurements with each model's kernels detected (by the target's rules)."""
    from perfpred.zoo import build as zoo

    table = pd.read_parquet(config.path("measurements", params) / f"{target}.parquet")
    table = table[(table["status"] == "ok") & (table["latency_ms"] > 0)]
    manifest = zoo.read_manifest(config.path("zoo", params) / zoo.MANIFEST)
    paths = dict(zip(manifest["name"], manifest["descriptor"], strict=True))
    rules = detector.fusion_rules(target)
    rows = []
    for entry in table.itertuples(index=False):
        if entry.model not in paths:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                graph = detector.descriptors.load(config.project_root() / paths[entry.model])
                kernels = detector.detect_graph(graph, rules, int(entry.input_width))
            except (ValueError, KeyError):
                continue
        rows.append({"model": entry.model, "family": entry.family, "input_width": int(entry.input_width),
                     "latency_ms": float(entry.latency_ms), "kernels": kernels})
    return pd.DataFrame(rows)


def terms_by_candidate(models: pd.DataFrame, model: predictor.KernelModel) -> dict[tuple[float, float], np.ndarray]:
    """Every model's overhead terms (predictor.model_terms: in-model kernel sums per group, count, MB read, 1) under
    each candidate cache size (predictor.CACHE_GRID_MB), I/O share (predictor.IO_SHARE_GRID) and count mode
    (predictor.COUNT_MODES): key -> matrix."""
    per_model = [model.terms_by_candidate(kernels) for kernels in models["kernels"]]
    return {key: np.array([terms[key] for terms in per_model]) for key in per_model[0]}


def family_residuals(models: pd.DataFrame, candidates: dict[tuple[float, float], np.ndarray],
                     constant_ms: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Predicted latency of every model with its family left out of the overhead fit (the shrinkage strength, and
    the cache size, I/O share and count mode of `candidates` (terms_by_candidate), chosen by leave-family-out among the other
    families: nested), and log(measured / predicted). `constant_ms`: the overhead's constant, pinned (KernelModel.call_ms)."""
    measured = models["latency_ms"].to_numpy()
    families = models["family"].to_numpy()
    predicted = np.zeros(len(models))
    for family in models["family"].unique():
        held = families == family
        key, coefficients = predictor.fit_overhead_choosing({k: t[~held] for k, t in candidates.items()},
                                                            measured[~held], families[~held], constant_ms=constant_ms)
        predicted[held] = np.maximum(candidates[key][held] @ coefficients, 1e-3)
    return predicted, np.log(measured / predicted)


def kernel_table(target: str, params: dict) -> pd.DataFrame:
    """A target's kernel table as its predictors learn from it (predictor.rated_for its rules' function_rates)."""
    table = pd.read_parquet(kernels_dir(params) / "measurements" / f"{target}.parquet")
    return predictor.rated_for(table, detector.fusion_rules(target).get(detector.FUNCTION_RATES_KEY, ()))


def overhead_groups(target: str) -> tuple[str, ...]:
    """The optional groups of a target's whole-model overhead (its rules' detector.OVERHEAD_GROUPS_KEY)."""
    return tuple(detector.fusion_rules(target).get(detector.OVERHEAD_GROUPS_KEY, ()))


def fit_target(target: str, params: dict, seed: int = 0) -> tuple[predictor.KernelModel, dict]:
    """Fit one target's KernelModel; return it with its evaluation (per-kind and whole-model figures)."""
    kernels = kernel_table(target, params)
    by_block = predictor.cross_validated_by_block(kernels, seed)  # chooses the blocks, ...
    blocks = predictor.choose_channel_blocks(kernels, seed, by_block)
    by_alignment = predictor.cross_validated_by_alignment(kernels, seed, blocks, by_block)  # ... the alignments ...
    model = predictor.KernelModel.fit(target, kernels, seed, by_block, by_alignment, overhead_groups(target))
    oof = predictor.chosen_out_of_fold(by_alignment, kernels, model.alignments).dropna()  # ... and scores the kinds
    truth = kernels.loc[oof.index, "latency_ms"]
    errors = (oof - truth).abs() / truth
    by_kind = errors.groupby(kernels.loc[oof.index, "kind"]).mean()
    metrics = {f"kernel_mape_{kind}": 100 * float(value) for kind, value in by_kind.items()}
    metrics["kernel_mape"] = 100 * float(errors.mean())
    models = model_rows(target, params)
    candidates = terms_by_candidate(models, model)
    key, model.overhead = predictor.fit_overhead_choosing(
        candidates, models["latency_ms"].to_numpy(), models["family"].to_numpy(), constant_ms=model.call_ms)
    model.cache_mb, model.io_share, model.count_mode = key
    terms = candidates[key]
    predicted, residuals = family_residuals(models, candidates, model.call_ms)
    model.log_residuals = residuals
    relative = np.abs(predicted - models["latency_ms"].to_numpy()) / models["latency_ms"].to_numpy()
    metrics |= {"model_mape_unseen_family": 100 * float(relative.mean()), "cache_mb": float(model.cache_mb),
                "io_share": float(model.io_share),
                "model_within_10pct_unseen_family": 100 * float((relative <= 0.10).mean()),
                "models": float(len(models)), "kernels_measured": float((kernels["kind"] != predictor.CHAIN).sum())}
    metrics |= {f"channel_block_{kind}": float(block) for kind, block in (model.channel_blocks or {}).items()}
    metrics |= {f"alignment_{kind}": float(alignment) for kind, alignment in (model.alignments or {}).items()}
    metrics |= {"count_mode_dispatch": float(model.count_mode == "dispatch"),
                "batch_norm_ms_per_mb": float(model.batch_norm_ms_per_mb or 0.0)}
    metrics |= {f"dispatch_us_{kind}": 1000 * ms for kind, ms in (model.dispatch_ms or {}).items()}
    groups = len(predictor.KIND_GROUPS)
    model.zoo_terms = models[["model", "input_width"]].assign(
        kernel_sum_ms=terms[:, :groups].sum(axis=1), kernel_count=models["kernels"].map(len).to_numpy(float),
        kernel_read_mb=terms[:, groups + 1], kernel_dispatch_ms=models["kernels"].map(model.dispatch_sum_ms).to_numpy(float),
        **{column: terms[:, i] for i, column in enumerate(predictor.GROUP_COLUMNS)},
        kernel_latency_ms=np.maximum(terms @ model.overhead, 1e-3))
    return model, metrics


def kernel_features(model: predictor.KernelModel) -> pd.DataFrame:
    """Per zoo model on the target: in-model kernel sum, kernel count, MB read (no model-level fit: a feature
    for the model-level algorithms; but the MB read counts the weights beyond the cache size `kernel-train` chose on
    every zoo model, one number out of predictor.CACHE_GRID_MB that a seed's test rows had a say in) and the kernel
    model's whole-model prediction (whose overhead saw them all)."""
    return model.zoo_terms


def track(target: str, model: predictor.KernelModel, metrics: dict, path: Path) -> None:
    """One MLflow run per target in the experiment `kernels-<target>`: figures, overhead, the pickled predictor."""
    import mlflow

    from perfpred.serve import registry

    registry.client()
    with mlflow.start_run(experiment_id=registry.experiment_id(f"kernels-{target}"), run_name=f"kernels-{target}"):
        mlflow.log_params({"target": target, "kinds": ",".join(sorted(model.regressors)),
                           "overhead": json.dumps([round(float(v), 6) for v in model.overhead])})
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_artifact(str(path))


def measured_targets(params: dict) -> list[str]:
    """Targets whose kernel table exists."""
    return sorted(p.stem for p in (kernels_dir(params) / "measurements").glob("*.parquet"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `perfpred kernel-train`."""
    parser.add_argument("--target", action="append", help="only this target (repeatable); default: every measured one")
    parser.add_argument("--no-track", action="store_true", help="do not log to MLflow")


def _fit_targets(targets: list[str], params: dict) -> list[tuple[predictor.KernelModel, dict]]:
    """fit_target for each target, one process per target (the cache and I/O choice, nested in the leave-family-out,
    and the kernel predictors' cross-validation are most of kernel-train's time); in order. All at once even with
    fewer CPUs: three targets on two CPUs end in about 1.5 target-times, where one process per CPU took two (the
    third target alone at the end); at most two per CPU. The fits are seeded: the schedule changes no result."""
    import os
    from concurrent.futures import ProcessPoolExecutor

    cpus = len(os.sched_getaffinity(0))
    workers = min(len(targets), 2 * cpus) if cpus > 1 else 1
    if workers <= 1:
        return [fit_target(target, params) for target in targets]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(fit_target, targets, [params] * len(targets)))


def run(args: argparse.Namespace) -> int:
    """Fit, save and track the kernel predictors of the measured targets."""
    params = config.load_params()
    targets = args.target or measured_targets(params)
    if not targets:
        raise FileNotFoundError(f"no kernel measurements in {kernels_dir(params) / 'measurements'}: run "
                                "`perfpred kernel-measure --target T` first")
    summary = {}
    for target, (model, metrics) in zip(targets, _fit_targets(targets, params), strict=True):
        path = predictor_path(target, params)
        path.parent.mkdir(parents=True, exist_ok=True)
        kernel_features(model).to_parquet(features_path(target, params), index=False)
        model.zoo_terms = None  # the pickle is what `perfpred kernels` loads: keep it small
        path.write_bytes(pickle.dumps(model))
        if not args.no_track:
            track(target, model, metrics, path)
        summary[target] = metrics
        print(f"{target}: kernels {metrics['kernel_mape']:.1f}% MAPE out of fold; whole models (family left out) "
              f"{metrics['model_mape_unseen_family']:.1f}% MAPE, {metrics['model_within_10pct_unseen_family']:.0f}% "
              "within 10%")
    out = kernels_dir(params) / "predictors" / "summary.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0
