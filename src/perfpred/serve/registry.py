"""The MLflow store of perfpred: experiments per target, registered models `<target>-<metric>`, champions.

`load_predictor(target, metric)` returns the champion Predictor of a (target, metric);
`champions()` lists the pairs that have one.
"""

from __future__ import annotations

import fcntl
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from perfpred import config
from perfpred.data import schema

CHAMPION = "champion"
DB_FILE = "mlflow.db"


def tracking_uri(uri: str | None = None) -> str:
    """The tracking URI: `uri`, else $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db of the project."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{config.path('mlruns') / DB_FILE}"


def artifact_root(uri: str) -> Path | None:
    """Where artifacts go for a SQLite store: an `artifacts/` folder beside the database (None for a server)."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).resolve().parent / "artifacts"
    return None


def client(uri: str | None = None):
    """An MlflowClient on the store, which also becomes mlflow's current tracking and registry URI."""
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri(uri)
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_store(uri: str | None = None) -> str:
    """Create the store's database once, before parallel writers start (concurrent creation races)."""
    client(uri).search_experiments(max_results=1)
    return tracking_uri(uri)


def experiment_id(target: str, uri: str | None = None) -> str:
    """The experiment of a target, created with its artifacts under this store (recreated if the store moved)."""
    mlflow_client = client(uri)
    root = artifact_root(tracking_uri(uri))
    location = (root / target).as_uri() if root else None
    existing = mlflow_client.get_experiment_by_name(target)
    if existing is not None and (location is None or existing.artifact_location == location):
        return existing.experiment_id
    if existing is not None:  # a moved checkout: the old artifact path is gone; keep the old runs under a new name
        mlflow_client.rename_experiment(existing.experiment_id, f"{target} (moved {existing.experiment_id})")
    try:
        return mlflow_client.create_experiment(target, artifact_location=location)
    except Exception:  # another parallel job created it first
        found = mlflow_client.get_experiment_by_name(target)
        if found is None:
            raise
        return found.experiment_id


@contextmanager
def locked(name: str) -> Iterator[None]:
    """An exclusive lock (mlruns/<name>.lock) that serialises parallel jobs' registrations and output merges."""
    lock = config.path("mlruns") / f"{name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def model_name(target: str, metric: str) -> str:
    """The registered model of a (target, metric), e.g. 'jetson-nano-latency'."""
    return f"{target}-{metric}"


def champion_score(tags: dict, unseen_weight: float) -> float:
    """Champion rule: the version's `champion_score` (perfpred.model.domains: weighted MAPE over the random split and
    the three test domains) where it has one, else (1 - w) * mean seed-sweep MAPE + w * unseen-family MAPE (lower is better)."""
    score = float(tags.get("champion_score", "nan"))
    if not math.isnan(score):
        return score
    seed_mape = float(tags.get("mape_mean", "nan"))
    unseen = float(tags.get("mape_unseen_family", "nan"))
    if math.isnan(unseen):
        return seed_mape
    return (1.0 - unseen_weight) * seed_mape + unseen_weight * unseen


def choose_champion(target: str, metric: str, unseen_weight: float = 0.5, uri: str | None = None) -> str | None:
    """Point the alias `champion` at the best of the latest version of each algorithm; return its version."""
    mlflow_client = client(uri)
    name = model_name(target, metric)
    # On a team store, jobs on other machines register and elect at the same time (no shared lock):
    # re-read after writing and elect again until the versions read did not change, so the last
    # alias written was chosen from every version tagged before it (see README "A team store").
    scored = _scored_versions(mlflow_client, name, unseen_weight)
    while True:
        if not scored:
            return None
        best = min(scored, key=lambda s: (s[0], -s[1]))
        mlflow_client.set_registered_model_alias(name, CHAMPION, str(best[1]))
        again = _scored_versions(mlflow_client, name, unseen_weight)
        if again == scored:
            return str(best[1])
        scored = again


def _scored_versions(mlflow_client, name: str, unseen_weight: float) -> list[tuple[float, int]]:
    """(champion score, version) of the latest version of each algorithm, those with a score only."""
    latest: dict[str, object] = {}
    for version in mlflow_client.search_model_versions(f"name='{name}'"):
        algorithm = version.tags.get("algorithm")
        if algorithm and (algorithm not in latest or int(version.version) > int(latest[algorithm].version)):
            latest[algorithm] = version
    scored = [(champion_score(v.tags, unseen_weight), int(v.version)) for v in latest.values()]
    return sorted(s for s in scored if not math.isnan(s[0]))


def _missing_model_error(target: str, metric: str, what: str) -> LookupError:
    return LookupError(
        f"{what}: train one with `perfpred train target={target} metric={metric}` "
        f"(all algorithms: `perfpred train -m target={target} metric={metric} algorithm=glob(*)`) or `dvc repro`"
    )


class NoPredictorError(LookupError, ValueError):
    """No registered model, or no version under the alias asked for."""


def load_predictor(target: str, metric: str, alias: str = CHAMPION, tracking_uri: str | None = None):
    """Load the registered predictor `<target>-<metric>@<alias>`: `.predict(df)` and `.predict_interval(df, level)`."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    config.target_config(target)  # unknown target -> error listing the known ones
    schema.metric_column(metric)  # unknown metric -> error listing the known ones
    mlflow_client = client(tracking_uri)
    name = model_name(target, metric)
    store = globals()["tracking_uri"](tracking_uri)
    try:
        mlflow_client.get_registered_model(name)
    except MlflowException:
        raise NoPredictorError(str(_missing_model_error(target, metric, f"no registered model {name!r} in {store}"))) from None
    try:
        version = mlflow_client.get_model_version_by_alias(name, alias)
    except MlflowException:
        raise NoPredictorError(str(_missing_model_error(target, metric, f"model {name!r} has no version '@{alias}' in {store}"))) from None
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
    predictor = model.unwrap_python_model().predictor
    predictor.version = int(version.version)
    return predictor


def champions(tracking_uri: str | None = None) -> list[tuple[str, str]]:
    """The (target, metric) pairs whose registered model has a champion."""
    found = []
    for model in client(tracking_uri).search_registered_models():
        if CHAMPION in (model.aliases or {}) and "target" in model.tags and "metric" in model.tags:
            found.append((model.tags["target"], model.tags["metric"]))
    return sorted(found)
