"""MLflow side of `perfpred train`: one parent run per (target, metric, algorithm), a registered version, the champion."""

from __future__ import annotations

import hashlib
import math
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from perfpred import config
from perfpred.data import schema
from perfpred.model import estimators
from perfpred.serve import registry

#: MLflow's log_batch accepts at most 1000 metrics per call.
BATCH = 1000


def flat_params(node, prefix: str = "") -> dict[str, str]:
    """A nested config flattened to dotted keys (MLflow params), values cut to MLflow's 500 characters."""
    flat: dict[str, str] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_params(value, f"{name}."))
        else:
            flat[name] = str(value)[:500]
    return flat


def data_version(target: str) -> str:
    """md5 of the target's measurement table: which data trained a version."""
    return hashlib.md5(estimators.measurement_table_path(target).read_bytes()).hexdigest()


def git_commit() -> str:
    """The project's git commit (with '-dirty' when the tree has changes), or 'unknown' outside git."""
    root = str(config.project_root())
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _finite(metrics: dict) -> dict[str, float]:
    return {
        k: float(v) for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def log_evaluation(cfg, evaluation) -> str | None:
    """Log a parent run (params, summary, per-seed MAPE, plots, tags) and register the refit predictor."""
    import mlflow
    from mlflow.entities import Metric
    from omegaconf import OmegaConf

    predictor = evaluation.predictor
    target, metric, algorithm = predictor.target, predictor.metric, predictor.algorithm
    mlflow_client = registry.client()
    with registry.locked("registry"):
        experiment = registry.experiment_id(target)
    composed = OmegaConf.to_container(cfg, resolve=True)
    composed.pop("paths", None)
    tags = {"target": target, "metric": metric, "algorithm": algorithm,
            "data_version": data_version(target), "git_commit": git_commit()}
    with mlflow.start_run(experiment_id=experiment, run_name=f"{metric}-{algorithm}", tags=tags) as run:
        mlflow.log_params({**flat_params(composed), "features": ",".join(predictor.features)})
        mlflow.log_metrics(_finite(evaluation.metrics))
        now = int(time.time() * 1000)
        per_seed = [Metric("seed_mape", float(v), now, int(s)) for s, v in
                    zip(evaluation.sweep.seeds, evaluation.sweep.mape_pct, strict=True) if np.isfinite(v)]
        for start in range(0, len(per_seed), BATCH):
            mlflow_client.log_batch(run.info.run_id, metrics=per_seed[start:start + BATCH])
        with tempfile.TemporaryDirectory() as folder:
            for path in write_figures(evaluation, Path(folder)):
                mlflow.log_artifact(str(path))
        if evaluation.sweep.failures:
            mlflow.log_dict({str(k): v for k, v in evaluation.sweep.failures.items()}, "failed_seeds.json")
        if not cfg.train.register:
            return None
        return register(predictor, evaluation.metrics, tags, float(cfg.train.unseen_weight), run.info.run_id)


def register(predictor, metrics: dict, tags: dict, unseen_weight: float, run_id: str) -> str:
    """Log the predictor as a pyfunc model, register it as a version of <target>-<metric>, re-elect the champion."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from perfpred.serve.pyfunc import PredictorModel

    mlflow_client = registry.client()
    name = registry.model_name(predictor.target, predictor.metric)
    example = pd.DataFrame({c: [1.0e6, 2.0e6] for c in schema.FEATURE_COLUMNS})
    signature = infer_signature(example, np.array([1.0, 2.0]))
    # SQLite takes one writer at a time: parallel jobs register one after the other.
    with registry.locked("registry"):
        info = mlflow.pyfunc.log_model(
            name="predictor",
            python_model=PredictorModel(predictor),
            signature=signature,
            pip_requirements=_requirements(),
            registered_model_name=name,
            await_registration_for=60,
        )
        version = str(info.registered_model_version)
        mlflow_client.set_registered_model_tag(name, "target", predictor.target)
        mlflow_client.set_registered_model_tag(name, "metric", predictor.metric)
        version_tags = {**tags, "features": ",".join(predictor.features), "column": predictor.column, "run_id": run_id}
        version_tags.update({k: f"{v:.6g}" if isinstance(v, float) else str(v) for k, v in metrics.items()})
        for key, value in version_tags.items():
            mlflow_client.set_model_version_tag(name, version, key, value)
        champion = registry.choose_champion(predictor.target, predictor.metric, unseen_weight)
    print(f"{name}: version {version} ({predictor.algorithm}); champion is version {champion}")
    return version


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("mlflow", "scikit-learn", "xgboost", "pandas", "numpy", "cloudpickle"):
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            continue
    return pins


def write_figures(evaluation, folder: Path) -> list[Path]:
    """Predicted-vs-measured (random splits and unseen families) and the per-seed MAPE histogram, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    predictor, result = evaluation.predictor, evaluation.sweep
    measured = evaluation.table[predictor.column].to_numpy("float64")
    title = f"{predictor.target} {predictor.metric} {predictor.algorithm}"
    figure, axes = plt.subplots(figsize=(5, 5))
    axes.scatter(measured[result.rows], result.predicted, s=3, alpha=0.2, label="held out, random 80/20 splits")
    axes.scatter(measured, evaluation.unseen_predicted, s=6, marker="x", label="family never seen (GroupKFold)")
    low, high = np.nanmin(measured), np.nanmax(measured)
    axes.plot([low, high], [low, high], color="black", linewidth=0.8)
    axes.set(xscale="log", yscale="log", xlabel=f"measured {predictor.column}", ylabel=f"predicted {predictor.column}",
             title=title)
    axes.legend(fontsize=7)
    scatter = folder / "predicted_vs_measured.png"
    figure.savefig(scatter, dpi=110, bbox_inches="tight")
    plt.close(figure)
    figure, axes = plt.subplots(figsize=(5, 3.5))
    axes.hist(result.mape_pct[np.isfinite(result.mape_pct)], bins=40)
    axes.set(xlabel="MAPE on the 20 % held out (%)", ylabel="seeds", title=title)
    histogram = folder / "mape_histogram.png"
    figure.savefig(histogram, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return [scatter, histogram]
