"""MLflow side of `perfpred train`: one parent run per (target, metric, algorithm), a registered version, the champion."""

from __future__ import annotations

import hashlib
import math
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import perfpred as perfpred_package
from perfpred import config
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


#: the registered version's tags: what a reader of the registry needs (everything else is on the run)
VERSION_TAGS = ("algorithm", "champion_score", "mape_mean", "mape_unseen_family", "data_version", "kernel_terms")


def log_evaluation(cfg, evaluation) -> str | None:
    """Log a parent run (params, summary, per-seed MAPE, plots, duration, tags) and register the refit predictor.

    The run starts when the training started (evaluation.started_at_s), so the UI's duration is the real one.
    """
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
    started = getattr(evaluation, "started_at_s", None) or time.time()
    run_info = mlflow_client.create_run(experiment, start_time=int(started * 1000), tags=tags, run_name=f"{metric}-{algorithm}")
    with mlflow.start_run(run_id=run_info.info.run_id) as run:
        mlflow.log_params({**flat_params(composed), "features": ",".join(predictor.features)})
        mlflow.log_metrics({**_finite(evaluation.metrics), "train_duration_s": time.time() - started})
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
        return register(predictor, evaluation.metrics, tags, float(cfg.train.unseen_weight), run.info.run_id, evaluation.table)


def register(predictor, metrics: dict, tags: dict, unseen_weight: float, run_id: str, table) -> str:
    """Log the predictor as a self-contained pyfunc model, register it as a version of <target>-<metric>, re-elect the champion.

    The model carries its training domain, a signature of its real feature columns with a `level` param, an
    input example (training rows), perfpred's code with a copy of conf/ (which the code reads, e.g. metric
    columns) and pinned requirements: it loads without a checkout.
    """
    import mlflow
    from mlflow.models import infer_signature

    from perfpred.serve.domain import Domain
    from perfpred.serve.pyfunc import PredictorModel

    if predictor.domain is None:
        predictor.domain = Domain.fit(table, predictor.features)
    model = PredictorModel(predictor)
    example = table[predictor.features].astype("float64").head(2).reset_index(drop=True)
    signature = infer_signature(example, model.predict(None, example, {"level": 0.9}), params={"level": 0.0})
    mlflow_client = registry.client()
    name = registry.model_name(predictor.target, predictor.metric)
    # SQLite takes one writer at a time: parallel jobs register one after the other.
    with registry.locked("registry"):
        info = mlflow.pyfunc.log_model(
            name="predictor",
            python_model=model,
            signature=signature,
            input_example=example,
            code_paths=[str(Path(perfpred_package.__file__).parent), str(config.conf_dir())],  # code/perfpred, code/conf
            pip_requirements=_requirements(),
            registered_model_name=name,
            await_registration_for=60,
        )
        version = str(info.registered_model_version)
        registry.write_retrying(mlflow_client.set_registered_model_tag, name, "target", predictor.target)
        registry.write_retrying(mlflow_client.set_registered_model_tag, name, "metric", predictor.metric)
        values = {**tags, **{k: f"{v:.6g}" if isinstance(v, float) else str(v) for k, v in metrics.items()}}
        values["kernel_terms"] = str(bool(predictor.kernel_columns)).lower()  # registry.MODEL_LEVEL leaves these out
        for key in VERSION_TAGS:
            if key in values:
                registry.write_retrying(mlflow_client.set_model_version_tag, name, version, key, values[key])
        champion = registry.choose_champion(predictor.target, predictor.metric, unseen_weight)
    print(f"{name}: version {version} ({predictor.algorithm}); champion is version {champion}")
    return version


def _requirements() -> list[str]:
    """Pinned versions of what the served model imports (perfpred's own code travels in code_paths)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("mlflow", "scikit-learn", "scipy", "xgboost", "pandas", "numpy", "cloudpickle", "pyyaml"):
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
