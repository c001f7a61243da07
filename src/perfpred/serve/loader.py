"""Loading registered predictors: one loader, one cache folder.

A registered model version never changes once made, so a predictor loaded once through
`mlflow.pyfunc` (several seconds: the model's environment, its code, cloudpickle) is kept as a pickle on
disk under a key that names it exactly: (tracking URI, model name, version, run id). Which version an
alias points at is asked of the store through MLflow's client, so a new champion is picked up at once.
The same folder keeps one more entry, for a SQLite store only: the champion list, keyed by the database
file's size and modification time. Starting MLflow's client on SQLite costs about 1.5 s of CPU
(importing MLflow and SQLAlchemy, checking the schema), as much as the rest of `perfpred predict`;
any write to the store (a new version, a moved alias) changes the key, so the list is never stale.
Nothing is kept in memory: reading a pickle takes milliseconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
from pathlib import Path

from perfpred.atomic import replace_file
from perfpred.data import schema
from perfpred.serve import registry

#: environment variable that moves the cache (tests point it into tmp_path)
CACHE_ENV = "PERFPRED_PREDICTOR_CACHE"


class NoPredictorError(LookupError, ValueError):
    """No registered model, or no version under the alias asked for."""


def cache_dir() -> Path:
    """Where loaded predictors are kept: $PERFPRED_PREDICTOR_CACHE, else paths.predictor_cache of conf/, else ~/.cache."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    from perfpred import config

    with contextlib.suppress(config.ConfigError):  # outside a checkout: no conf/, the user's cache
        return config.path("predictor_cache")
    return Path.home() / ".cache" / "perfpred" / "predictors"


def cache_file(uri: str, name: str, version: str, run_id: str) -> Path:
    """The file of one registered model version loaded from one store."""
    key = hashlib.sha256(f"{uri}|{name}|{version}|{run_id}".encode()).hexdigest()[:16]
    return cache_dir() / f"{name}-v{version}-{key}.pickle"


def load_version(name: str, version: str, run_id: str, tracking_uri: str | None = None):
    """The Predictor of registered model `name` version `version`: from the disk cache, else through MLflow, then cached."""
    uri = registry.tracking_uri(tracking_uri)
    path = cache_file(uri, name, str(version), str(run_id))
    if path.exists():
        with contextlib.suppress(Exception):  # a cache written by another package version: load it afresh
            return pickle.loads(path.read_bytes())
    import mlflow.pyfunc

    registry.client(uri)  # the store becomes MLflow's current one: `models:/` URIs resolve there
    predictor = mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model().predictor
    predictor.version = int(version)
    with contextlib.suppress(Exception):  # an unpicklable predictor is simply not cached
        payload = pickle.dumps(predictor)
        replace_file(path, lambda temporary: Path(temporary).write_bytes(payload))
    return predictor


def champions(tracking_uri: str | None = None) -> dict[str, registry.Champion]:
    """registry.champions() of the store, from the cache folder while a SQLite store's file is unchanged."""
    uri = registry.tracking_uri(tracking_uri)
    stamp = _sqlite_stamp(uri)
    if stamp is None:
        return registry.champions(uri)
    path = cache_dir() / f"champions-{hashlib.sha256(uri.encode()).hexdigest()[:16]}.json"
    with contextlib.suppress(Exception):  # no entry, another stamp, or an unreadable one: ask the store
        cached = json.loads(path.read_text())
        if cached["stamp"] == stamp:
            return {name: registry.Champion(**fields) for name, fields in cached["champions"].items()}
    found = registry.champions(uri)
    if _sqlite_stamp(uri) == stamp:  # nobody wrote meanwhile
        payload = json.dumps({"stamp": stamp, "champions": {name: vars(c) for name, c in found.items()}})
        with contextlib.suppress(OSError):
            replace_file(path, lambda temporary: Path(temporary).write_text(payload))
    return found


def _sqlite_stamp(uri: str) -> list[int] | None:
    """(size, mtime_ns) of a SQLite store's database and its write-ahead log; None for other stores or no file."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri[len("sqlite:///"):].split("?")[0])
    stamp = []
    for path in (database, database.with_name(database.name + "-wal")):
        with contextlib.suppress(OSError):
            status = path.stat()
            stamp += [status.st_size, status.st_mtime_ns]
    return stamp or None


def load_champion(champion: registry.Champion, tracking_uri: str | None = None):
    """The predictor of a champion listed by registry.champions()."""
    return load_version(registry.model_name(champion.target, champion.metric), champion.version, champion.run_id, tracking_uri)


def load_predictor(target: str, metric: str, alias: str = registry.CHAMPION, tracking_uri: str | None = None):
    """Load the registered predictor `<target>-<metric>@<alias>`: `.predict(df)` and `.predict_interval(df, level)`."""
    from mlflow.exceptions import MlflowException

    schema.metric_column(metric)  # unknown metric -> error listing the known ones
    uri = registry.tracking_uri(tracking_uri)
    mlflow_client = registry.client(uri)
    name = registry.model_name(target, metric)
    try:
        mlflow_client.get_registered_model(name)
    except MlflowException:
        _check_target(target)
        raise NoPredictorError(_missing(target, metric, f"no registered model {name!r} in {uri}")) from None
    try:
        version = mlflow_client.get_model_version_by_alias(name, alias)
    except MlflowException:
        raise NoPredictorError(_missing(target, metric, f"model {name!r} has no version '@{alias}' in {uri}")) from None
    return load_version(name, str(version.version), str(version.run_id), uri)


def _check_target(target: str) -> None:
    """An unknown target is an error listing the known ones, when a checkout's conf/ says which are known."""
    from perfpred import config

    try:
        config.conf_dir()
    except config.ConfigError:
        return
    config.target_config(target)


def _missing(target: str, metric: str, what: str) -> str:
    return (
        f"{what}: train one with `perfpred train target={target} metric={metric}` "
        f"(all algorithms: `perfpred train -m target={target} metric={metric} algorithm=glob(*)`) or `dvc repro`"
    )
