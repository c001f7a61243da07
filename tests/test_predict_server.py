"""Predictors through a real `mlflow server` (--tracking-uri), and served over REST by `mlflow models serve` from
a folder outside the checkout."""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

import servers
import trained_store
from perfpred.serve import loader, predict, registry

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
    assert record["in_domain"] is True and record["outside"] == []
    # The champion is read through MLflow's client; the predictor loaded once is kept for the next call.
    champions = registry.champions(url)
    assert {(c.target, c.metric, c.version) for c in champions.values()} == {("jetson-nano", "latency", "1")}
    assert list((project / ".cache").glob("jetson-nano-latency-v1-*.pickle"))
    again = trained_store.perfpred(project, "predict", DESCRIPTOR, "--json", tracking_uri=url)  # $MLFLOW_TRACKING_URI
    assert json.loads(again.stdout) == [record]


def _invoke(serve_url: str, payload: dict) -> list[dict]:
    request = urllib.request.Request(
        f"{serve_url}/invocations", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["predictions"]


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory):
    """A project whose own SQLite store holds a Jetson Nano latency predictor (no tracking server to wait for)."""
    project = tmp_path_factory.mktemp("sqlite-project")
    trained_store.make_project(project, {"jetson-nano": "nano"}, train_fraction=0.3)
    trained_store.train(project, ["jetson-nano"], ["latency"])
    return project, f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"


def test_registered_model_served_outside_the_checkout(sqlite_store, tmp_path_factory):
    project, url = sqlite_store
    elsewhere = tmp_path_factory.mktemp("elsewhere")  # no conf/, no checkout, no PYTHONPATH to src/
    assert not (elsewhere / "conf").exists() and trained_store.REPO not in elsewhere.parents
    features = predict.describe_model(DESCRIPTOR)
    table = pd.DataFrame([features])
    predictor = loader.load_predictor("jetson-nano", "latency", tracking_uri=url)
    payload = {"dataframe_records": [features]}  # all of `perfpred describe --json`, as the README sends it
    with servers.model_server("models:/jetson-nano-latency@champion", url, elsewhere) as serve_url:
        (point,) = _invoke(serve_url, payload)
        (bounds,) = _invoke(serve_url, payload | {"params": {"level": 0.9}})
    assert point["latency_ms"] == pytest.approx(predictor.predict(table)[0], rel=1e-9)
    assert point["in_domain"] is True and "latency_ms_low" not in point
    low, high = predictor.predict_interval(table, level=0.9)
    assert [bounds["latency_ms_low"], bounds["latency_ms_high"]] == pytest.approx([low[0], high[0]], rel=1e-9)
    # The perfpred code such a process runs is the copy logged with the model, not a checkout's.
    probe = (
        "import mlflow.pyfunc, sys; mlflow.pyfunc.load_model('models:/jetson-nano-latency@champion'); "
        "print(sys.modules['perfpred'].__file__)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PERFPRED_ROOT", "PERFPRED_PREDICTOR_CACHE")}
    completed = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env | {"MLFLOW_TRACKING_URI": url},
                               capture_output=True, text=True, timeout=300, check=True)
    module = Path(completed.stdout.strip().splitlines()[-1])
    assert module.parts[-3:] == ("code", "perfpred", "__init__.py") and trained_store.REPO not in module.parents
