"""Predictors through a real `mlflow server` (--tracking-uri) and served over REST by `mlflow models serve`."""

import json
import urllib.request

import pandas as pd
import pytest

import servers
import trained_store
from perfpred.serve import champion_cache, predict, registry

pytestmark = [pytest.mark.server, pytest.mark.slow]
DESCRIPTOR = str(trained_store.DESCRIPTOR)


@pytest.fixture(scope="module")
def served_store(tmp_path_factory):
    """A real MLflow server (SQLite backend, served artifacts) holding a Jetson Nano latency predictor."""
    folder = tmp_path_factory.mktemp("server")
    project = folder / "project"
    project.mkdir()
    trained_store.make_project(project, {"jetson-nano": "nano"}, train_fraction=0.3)
    with servers.mlflow_server(folder) as url:
        trained_store.train(project, ["jetson-nano"], ["latency"], tracking_uri=url)
        yield project, url


def test_predict_through_a_tracking_server(served_store):
    project, url = served_store
    assert not (project / "mlruns" / "mlflow.db").exists()  # everything went to the server
    first = trained_store.perfpred(project, "predict", DESCRIPTOR, "--tracking-uri", url, "--json")
    (record,) = json.loads(first.stdout)
    assert record["target"] == "jetson-nano" and record["latency_predictor"] == "poly v1"
    assert record["latency_ms_low"] < record["latency_ms"] < record["latency_ms_high"]
    # The champion is read over REST without MLflow; the predictor loaded once is kept for the next call.
    champions = champion_cache.champion_versions(url)
    assert {(c.target, c.metric) for c in champions.values()} == set(registry.champions(url)) == {("jetson-nano", "latency")}
    assert list((project / ".cache").glob("jetson-nano-latency-v1-*.pickle"))
    again = trained_store.perfpred(project, "predict", DESCRIPTOR, "--json", tracking_uri=url)  # $MLFLOW_TRACKING_URI
    assert json.loads(again.stdout) == [record]


def test_registered_predictor_served_over_rest(served_store):
    project, url = served_store
    features = predict.describe_model(DESCRIPTOR)
    predictor = registry.load_predictor("jetson-nano", "latency", tracking_uri=url)
    payload = {"dataframe_records": [features]}  # all of `perfpred describe --json`, as the README sends it
    with servers.model_server("models:/jetson-nano-latency@champion", url, project) as serve_url:
        request = urllib.request.Request(
            f"{serve_url}/invocations", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.load(response)
    expected = predictor.predict(pd.DataFrame([features]))[0]
    assert answer["predictions"][0] == pytest.approx(expected, rel=1e-9)
