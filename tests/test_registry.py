"""The registry and the loader: champion rule, load_predictor errors, champions(), what a registered version carries."""

from __future__ import annotations

import warnings

import mlflow
import numpy as np
import pytest
from sklearn.linear_model import Ridge

import train_helpers
from perfpred.model import estimators, sweep
from perfpred.serve import loader, registry
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
        tags = {"algorithm": algorithm, "data_version": "d41d8", "git_commit": "abc"}
        return tracking.register(predictor, metrics | {"rows": len(table)}, tags, 0.5, run.info.run_id, table)


def test_champion_score_weighs_random_splits_and_unseen_families():
    assert registry.champion_score({"mape_mean": "4", "mape_unseen_family": "20"}, 0.5) == pytest.approx(12.0)
    assert registry.champion_score({"mape_mean": "4", "mape_unseen_family": "nan"}, 0.5) == pytest.approx(4.0)
    assert registry.champion_score({"mape_mean": "4", "mape_unseen_family": "20"}, 0.0) == pytest.approx(4.0)
    candidates = {"svr": {"mape_mean": 3, "mape_unseen_family": 140}, "rf": {"mape_mean": 7, "mape_unseen_family": 17},
                  "mlp": {"mape_mean": "nan", "mape_unseen_family": "nan"}}
    assert registry.best_candidate(candidates, 0.5) == "rf"
    assert registry.best_candidate(candidates, 0.0) == "svr"
    assert registry.best_candidate({"2": {"mape_mean": 5}, "3": {"mape_mean": 5}}, 0.5) == "3"  # a tie: the newer
    assert registry.best_candidate({"mlp": candidates["mlp"]}, 0.5) is None


@pytest.mark.slow
def test_champion_is_the_version_that_generalises_best(project, nano_subset):
    registry.ensure_store()
    with pytest.raises(LookupError, match="no registered model 'jetson-nano-latency'.*perfpred train target=jetson-nano"):
        loader.load_predictor("jetson-nano", "latency")
    assert registry.champions() == {}
    sharp = _register(nano_subset, "svr", mape_mean=3.0, mape_unseen_family=140.0)  # excellent on random splits only
    steady = _register(nano_subset, "rf", mape_mean=7.0, mape_unseen_family=17.0)
    client = registry.client()
    assert str(client.get_model_version_by_alias("jetson-nano-latency", "champion").version) == steady != sharp
    (champion,) = registry.champions().values()
    assert (champion.target, champion.metric, champion.version) == ("jetson-nano", "latency", steady)
    predictor = loader.load_predictor("jetson-nano", "latency")
    assert predictor.algorithm == "rf" and predictor.version == int(steady)
    with pytest.raises(LookupError, match="has no version '@staging'"):
        loader.load_predictor("jetson-nano", "latency", alias="staging")
    # The champion list of a SQLite store is kept while its file is unchanged; a new champion changes it.
    assert loader.champions()["jetson-nano-latency"].version == steady
    assert len(list(loader.cache_dir().glob("champions-*.json"))) == 1
    assert loader.champions() == registry.champions()
    with pytest.raises(ValueError, match="missing from the input"):
        predictor.predict(nano_subset.drop(columns=["flops"]))
    # The registered version: a reader's tags only, the real feature columns as its signature, an input example.
    version = client.get_model_version("jetson-nano-latency", steady)
    assert set(version.tags) == {"algorithm", "mape_mean", "mape_unseen_family", "data_version", "kernel_terms"}
    assert version.tags["kernel_terms"] == "false"  # descriptor-level features only: it is also @model-level
    assert str(client.get_model_version_by_alias("jetson-nano-latency", registry.MODEL_LEVEL).version) == steady
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        served = mlflow.pyfunc.load_model("models:/jetson-nano-latency@champion")
    assert not [w for w in caught if "type hint" in str(w.message).lower()]  # the predict method is typed
    assert served.metadata.get_input_schema().input_names() == predictor.features
    assert served.metadata.get_params_schema().to_dict()[0]["name"] == "level"
    assert served.metadata.saved_input_example_info is not None
    answer = served.predict(nano_subset[list(train_helpers.FEATURES)])
    np.testing.assert_allclose(answer["latency_ms"], predictor.predict(nano_subset))
    assert answer["in_domain"].all() and "latency_ms_low" not in answer  # its own training rows, no interval unasked
    bounds = served.predict(nano_subset[list(train_helpers.FEATURES)], params={"level": 0.8})
    low, high = predictor.predict_interval(nano_subset, level=0.8)
    np.testing.assert_allclose(bounds["latency_ms_low"], low)
    np.testing.assert_allclose(bounds["latency_ms_high"], high)
    better = _register(nano_subset, "poly", mape_mean=2.0, mape_unseen_family=9.0)
    assert loader.champions()["jetson-nano-latency"].version == better != steady
    assert loader.load_predictor("jetson-nano", "latency").algorithm == "poly"


def test_unknown_target_and_metric_name_the_known_ones(project):
    from perfpred import config

    known = ", ".join(config.group_options("target"))
    with pytest.raises(config.ConfigError, match=f"known targets are {known}"):
        loader.load_predictor("jetson-orin-nx", "latency")
    with pytest.raises(ValueError, match="known metrics are latency, memory, power"):
        loader.load_predictor("jetson-nano", "energy")


def test_tracking_uri_defaults_to_the_project_store(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("PERFPRED_ROOT", str(train_helpers.REPO))
    assert registry.tracking_uri() == f"sqlite:///{train_helpers.REPO / 'mlruns/mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert registry.tracking_uri() == "sqlite:///elsewhere.db"
    assert registry.tracking_uri("sqlite:///given.db") == "sqlite:///given.db"


def test_a_registry_write_that_lost_an_insert_race_is_tried_again():
    """A team store's SQL store inserts a tag or alias after finding no row: a concurrent insert makes it fail once."""
    from mlflow.exceptions import MlflowException

    calls = []

    def write(name, key, value):
        calls.append((name, key, value))
        if len(calls) < 3:
            raise MlflowException('BAD_REQUEST: (psycopg.errors.UniqueViolation) duplicate key value violates unique '
                                  'constraint "registered_model_tag_pk"')
        return "written"

    assert registry.write_retrying(write, "jetson-nano-memory", "target", "jetson-nano") == "written"
    assert calls == [("jetson-nano-memory", "target", "jetson-nano")] * 3

    def refused(*args):
        raise MlflowException("RESOURCE_DOES_NOT_EXIST: registered model 'x' not found")

    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):  # other errors are not retried
        registry.write_retrying(refused, "x", "target", "t")
