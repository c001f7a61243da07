"""The registry: champion rule, load_predictor errors, champions(), a served model's point predictions."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from sklearn.linear_model import Ridge

import train_helpers
from perfpred.model import estimators, sweep
from perfpred.serve import registry
from perfpred.serve.predictor import Predictor

project = train_helpers.project
nano_subset = train_helpers.nano_subset


def _register(table, algorithm: str, mape_mean: float, mape_unseen_family: float) -> str:
    from perfpred.model import tracking

    features = estimators.feature_columns(table)
    estimator = estimators.regression_pipeline(Ridge()).fit(table[features], table["latency_ms"])
    predictor = Predictor(estimator, "jetson-nano", "latency", "latency_ms", algorithm, features,
                          calibration=np.log(np.linspace(0.8, 1.25, len(sweep.CALIBRATION_PROBABILITIES))))
    metrics = {"mape_mean": mape_mean, "mape_unseen_family": mape_unseen_family}
    with mlflow.start_run(experiment_id=registry.experiment_id("jetson-nano")) as run:
        return tracking.register(predictor, metrics, {"algorithm": algorithm}, 0.5, run.info.run_id)


def test_champion_score_weighs_random_splits_and_unseen_families():
    assert registry.champion_score({"mape_mean": "4", "mape_unseen_family": "20"}, 0.5) == pytest.approx(12.0)
    assert registry.champion_score({"mape_mean": "4", "mape_unseen_family": "nan"}, 0.5) == pytest.approx(4.0)
    assert registry.champion_score({"mape_mean": "4", "mape_unseen_family": "20"}, 0.0) == pytest.approx(4.0)


@pytest.mark.slow
def test_champion_is_the_version_that_generalises_best(project, nano_subset):
    registry.ensure_store()
    with pytest.raises(LookupError, match="no registered model 'jetson-nano-latency'.*perfpred train target=jetson-nano"):
        registry.load_predictor("jetson-nano", "latency")
    assert registry.champions() == []
    sharp = _register(nano_subset, "svr", mape_mean=3.0, mape_unseen_family=140.0)  # excellent on random splits only
    steady = _register(nano_subset, "rf", mape_mean=7.0, mape_unseen_family=17.0)
    client = registry.client()
    assert str(client.get_model_version_by_alias("jetson-nano-latency", "champion").version) == steady != sharp
    assert registry.champions() == [("jetson-nano", "latency")]
    predictor = registry.load_predictor("jetson-nano", "latency")
    assert predictor.algorithm == "rf" and predictor.version == int(steady)
    with pytest.raises(LookupError, match="has no version '@staging'"):
        registry.load_predictor("jetson-nano", "latency", alias="staging")
    with pytest.raises(ValueError, match="missing from the input"):
        predictor.predict(nano_subset.drop(columns=["flops"]))
    served = mlflow.pyfunc.load_model("models:/jetson-nano-latency@champion")
    np.testing.assert_allclose(served.predict(nano_subset[list(train_helpers.FEATURES)]), predictor.predict(nano_subset))


def test_unknown_target_and_metric_name_the_known_ones(project):
    from perfpred import config

    known = ", ".join(config.group_options("target"))
    with pytest.raises(config.ConfigError, match=f"known targets are {known}"):
        registry.load_predictor("jetson-orin-nx", "latency")
    with pytest.raises(ValueError, match="known metrics are latency, memory, power"):
        registry.load_predictor("jetson-nano", "energy")


def test_tracking_uri_defaults_to_the_project_store(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("PERFPRED_ROOT", str(train_helpers.REPO))
    assert registry.tracking_uri() == f"sqlite:///{train_helpers.REPO / 'mlruns/mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert registry.tracking_uri() == "sqlite:///elsewhere.db"
    assert registry.tracking_uri("sqlite:///given.db") == "sqlite:///given.db"
