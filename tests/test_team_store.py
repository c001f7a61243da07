"""The team store: 8 engineers train at once into one `mlflow server` on a real PostgreSQL (issue 15, item 1)."""

import json
import os

import pytest

import parallel_trainers
import servers
import trained_store

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture(scope="module")
def team_store(tmp_path_factory):
    """A real PostgreSQL in a temporary folder, an `mlflow server` on it with served artifacts, and 8 checkouts
    that each ran one `perfpred train store=team` job at the same time."""
    folder = tmp_path_factory.mktemp("team")
    projects = parallel_trainers.make_checkouts(folder, len(parallel_trainers.JOBS))
    with servers.postgres() as database, servers.mlflow_server(folder, backend_uri=database) as url:
        finished = parallel_trainers.train_in_parallel(projects, url)
        yield projects, url, finished


def test_eight_parallel_trainers_lose_nothing(team_store):
    projects, url, finished = team_store
    failed = [f"{' '.join(f.args[-8:])}: {f.stderr[-1500:]}" for f in finished if f.returncode != 0]
    assert not failed, "\n".join(failed)
    report = parallel_trainers.audit(url)
    assert report == {
        "jobs": 8, "runs_finished": 8, "runs_lost": 0, "runs_duplicated": 0, "versions_missing": 0,
        "versions_duplicated": 0, "version_numbers_gapped": 0, "champions": 2, "champions_wrong": 0,
    }
    # store=team sent everything to the server: no checkout made a store of its own
    assert not any((project / "mlruns" / "mlflow.db").exists() for project in projects)


def test_predict_through_the_team_store(team_store):
    projects, url, _ = team_store
    from perfpred.serve import registry

    answer = trained_store.perfpred(projects[0], "predict", str(trained_store.DESCRIPTOR), "--tracking-uri", url, "--json")
    (record,) = json.loads(answer.stdout)
    client = registry.client(url)
    for metric, column in (("latency", "latency_ms"), ("memory", "memory_mb")):
        champion = client.get_model_version_by_alias(f"jetson-nano-{metric}", "champion")
        assert record[f"{metric}_predictor"] == f"{champion.tags['algorithm']} v{champion.version}"
        assert record[f"{column}_low"] < record[column] < record[f"{column}_high"]


def test_team_store_selected_by_configuration(tmp_path, monkeypatch):
    from perfpred import config
    from perfpred.model import store

    monkeypatch.setenv("PERFPRED_TEAM_STORE", "http://store.lab:5000")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")  # restored after the test
    assert store.use(config.compose("train", ["store=local"])) is None
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///elsewhere.db"  # local keeps what the environment says
    assert store.use(config.compose("train", ["store=team"])) == "http://store.lab:5000"
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://store.lab:5000"
    assert store.is_local(["target=x", "store=local"]) and not store.is_local(["store=team"])
