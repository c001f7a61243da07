"""champion_cache: champions read without MLflow, predictors kept on disk under their exact version."""

import sqlite3

from perfpred.serve import champion_cache
from perfpred.serve.champion_cache import Champion


def test_stores_it_cannot_read_directly_fall_back(tmp_path):
    assert champion_cache.champion_versions("file:///somewhere/mlruns") is None
    assert champion_cache.champion_versions(f"sqlite:///{tmp_path / 'missing.db'}") == {}  # no store, no champion
    assert not (tmp_path / "missing.db").exists()
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.commit()
    assert champion_cache.champion_versions(f"sqlite:///{tmp_path / 'other.db'}") is None
    assert champion_cache.champion_versions("http://127.0.0.1:9") is None  # nothing listens there


def test_a_loaded_predictor_is_kept_per_exact_version(tmp_path, monkeypatch):
    monkeypatch.setenv(champion_cache.CACHE_ENV, str(tmp_path / "cache"))
    loads = []

    def loader():
        loads.append(1)
        return {"predictor": len(loads)}

    champions = {"jetson-nano-latency": Champion("jetson-nano", "latency", "3", "run-a")}
    uri = "sqlite:////store/mlflow.db"
    assert champion_cache.load("jetson-nano-latency", uri, loader, champions) == {"predictor": 1}
    assert champion_cache.load("jetson-nano-latency", uri, loader, champions) == {"predictor": 1}
    assert len(loads) == 1
    # A new champion version, or the same version number in a recreated store (another run), is loaded afresh.
    newer = {"jetson-nano-latency": Champion("jetson-nano", "latency", "4", "run-b")}
    assert champion_cache.load("jetson-nano-latency", uri, loader, newer) == {"predictor": 2}
    recreated = {"jetson-nano-latency": Champion("jetson-nano", "latency", "3", "run-c")}
    assert champion_cache.load("jetson-nano-latency", uri, loader, recreated) == {"predictor": 3}
    # Without a directly read champion nothing is cached.
    assert champion_cache.load("jetson-nano-latency", uri, loader, None) == {"predictor": 4}
    assert len(list((tmp_path / "cache").glob("*.pickle"))) == 3
