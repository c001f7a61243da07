"""Champion predictors loaded fast: aliases read without importing MLflow, loaded predictors kept on disk.

`perfpred predict` has to answer in about a second; importing MLflow and loading nine models through
`mlflow.pyfunc` takes several. A registered model version never changes once made, so a predictor
loaded once can be kept on disk under a key that names it exactly: (tracking URI, model name,
version, run id). Which version is the champion is read on every call, straight from the store (the
SQLite file of a local store, the REST API of a server), so a new champion is picked up at once.
Any store this module cannot read that way falls back to the MLflow client.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import sqlite3
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from perfpred.atomic import replace_file

ALIAS = "champion"
#: environment variable that moves the cache (tests point it into tmp_path)
CACHE_ENV = "PERFPRED_PREDICTOR_CACHE"
_REST_TIMEOUT_S = 10


@dataclass(frozen=True)
class Champion:
    """The champion version of one registered model, as the store names it."""

    target: str
    metric: str
    version: str
    run_id: str


def champion_versions(tracking_uri: str, alias: str = ALIAS) -> dict[str, Champion] | None:
    """Registered model name -> its `alias` version (models tagged target and metric), or None if not readable directly."""
    try:
        if tracking_uri.startswith("sqlite:///"):
            return _sqlite_versions(tracking_uri, alias)
        if tracking_uri.startswith(("http://", "https://")):
            return _rest_versions(tracking_uri.rstrip("/"), alias)
    except (sqlite3.Error, OSError, ValueError, KeyError, TypeError):
        return None  # an unexpected schema or answer: the MLflow client knows better
    return None


def _sqlite_versions(tracking_uri: str, alias: str) -> dict[str, Champion]:
    database = tracking_uri[len("sqlite:///") :].split("?")[0]
    if not Path(database).exists():
        return {}  # no store yet, so no champion (and asking MLflow would create an empty store)
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        rows = connection.execute(
            "SELECT a.name, target.value, metric.value, a.version, v.run_id FROM registered_model_aliases a "
            "JOIN model_versions v ON v.name = a.name AND v.version = a.version "
            "JOIN registered_model_tags target ON target.name = a.name AND target.key = 'target' "
            "JOIN registered_model_tags metric ON metric.name = a.name AND metric.key = 'metric' "
            "WHERE a.alias = ?",
            (alias,),
        ).fetchall()
    return {name: Champion(target, metric, str(version), str(run_id)) for name, target, metric, version, run_id in rows}


def _rest_versions(base_url: str, alias: str) -> dict[str, Champion]:
    found = {}
    token = None
    while True:
        query = {"max_results": 1000} | ({"page_token": token} if token else {})
        page = _get_json(f"{base_url}/api/2.0/mlflow/registered-models/search?{urllib.parse.urlencode(query)}")
        for model in page.get("registered_models", []):
            tags = {tag["key"]: tag["value"] for tag in model.get("tags", [])}
            for entry in model.get("aliases", []):
                if entry["alias"] == alias and "target" in tags and "metric" in tags:
                    found[model["name"]] = (tags["target"], tags["metric"], str(entry["version"]))
        token = page.get("next_page_token")
        if not token:
            break
    result = {}
    for name, (target, metric, version) in found.items():
        query = urllib.parse.urlencode({"name": name, "version": version})
        details = _get_json(f"{base_url}/api/2.0/mlflow/model-versions/get?{query}")["model_version"]
        result[name] = Champion(target, metric, version, details["run_id"])
    return result


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=_REST_TIMEOUT_S) as response:
        return json.load(response)


def cache_dir() -> Path:
    """Where loaded predictors are kept: $PERFPRED_PREDICTOR_CACHE, else paths.predictor_cache of conf/."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    from perfpred import config

    return config.path("predictor_cache")


def cache_file(tracking_uri: str, name: str, champion: Champion) -> Path:
    """The file of one registered model version loaded from one store."""
    key = hashlib.sha256(f"{tracking_uri}|{name}|{champion.version}|{champion.run_id}".encode()).hexdigest()[:16]
    return cache_dir() / f"{name}-v{champion.version}-{key}.pickle"


def load(name: str, tracking_uri: str, loader: Callable[[], object], champions: dict[str, Champion] | None) -> object:
    """The predictor `name`@champion: from the disk cache when its exact version is there, else `loader()`, then cached."""
    if not champions or name not in champions:
        return loader()
    path = cache_file(tracking_uri, name, champions[name])
    if path.exists():
        with contextlib.suppress(Exception):  # a cache from another package version: load it afresh
            return pickle.loads(path.read_bytes())
    predictor = loader()
    with contextlib.suppress(Exception):  # an unpicklable predictor is simply not cached
        payload = pickle.dumps(predictor)
        replace_file(path, lambda temporary: Path(temporary).write_bytes(payload))
    return predictor
