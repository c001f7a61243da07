"""The MLflow store of perfpred: experiments per target, registered models `<target>-<metric>`, the champion rule.

Everything goes through MLflow's public client API (MlflowClient). `champions()` lists the registered
models whose alias `CHAMPION` points at a version; perfpred.serve.loader loads them.
"""

from __future__ import annotations

import fcntl
import math
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from perfpred import config

#: the alias of the version that `perfpred predict` serves (the only place this name is written)
CHAMPION = "champion"
#: the alias of the best version that reads descriptor-level features only (no kernel terms): what `perfpred
#: predict` serves where a kernel-level champion cannot see the model's kernels (an ONNX file)
MODEL_LEVEL = "model-level"
DB_FILE = "mlflow.db"
#: seconds to wait for a tracking server before saying it cannot be reached
REACH_TIMEOUT_S = 5


class StoreError(ValueError):
    """The tracking store cannot be reached or read: one line naming the URI and what to check."""


def tracking_uri(uri: str | None = None) -> str:
    """The tracking URI: `uri`, else $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db of the project."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{config.path('mlruns') / DB_FILE}"


def check_reachable(uri: str) -> None:
    """Fail fast (StoreError) when a tracking server URI does not answer; other URIs are left to MLflow."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=REACH_TIMEOUT_S):
            return
    except urllib.error.HTTPError:
        return  # something answers HTTP there (a server without /health): MLflow's errors say the rest
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise StoreError(
            f"cannot reach the MLflow tracking server at {uri} ({reason}): check that the server runs and the URI "
            "(--tracking-uri or $MLFLOW_TRACKING_URI)"
        ) from None


def store_error(uri: str, error: Exception) -> StoreError:
    """A one-line StoreError for an MLflow failure on the store `uri`."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return StoreError(f"the MLflow store {uri} failed: {first[:300]} (check --tracking-uri or $MLFLOW_TRACKING_URI)")


def artifact_root(uri: str) -> Path | None:
    """Where artifacts go for a SQLite store: an `artifacts/` folder beside the database (None for a server)."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).resolve().parent / "artifacts"
    return None


def client(uri: str | None = None):
    """An MlflowClient on the store, which also becomes mlflow's current tracking and registry URI."""
    uri = tracking_uri(uri)
    # A server that does not answer fails here, in seconds; one that answers keeps MLflow's own timeouts and
    # retries (short ones made training against a busy server fail).
    check_reachable(uri)
    import mlflow
    from mlflow import MlflowClient

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


#: what a tracking server's SQL store answers when two writers insert the same tag or alias at once
_WRITE_RACE = ("UniqueViolation", "duplicate key", "UNIQUE constraint failed", "IntegrityError")


def write_retrying(call, *args, attempts: int = 6):
    """Run an idempotent registry write (a tag, an alias), again when a concurrent writer inserted the same key first.

    MLflow's SQL store upserts a tag or an alias by looking for the row, then inserting it: two jobs on a team store
    (PostgreSQL) can both find none, and the second insert fails with a unique violation. Tried again, the row is
    there and the write becomes an update.
    """
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            return call(*args)
        except MlflowException as error:
            if attempt == attempts - 1 or not any(text in str(error) for text in _WRITE_RACE):
                raise
            time.sleep(0.05 * (attempt + 1) * (1.0 + random.random()))


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


def best_candidate(candidates: dict, unseen_weight: float):
    """The champion rule: the key of the candidate (key -> metrics or tags) with the lowest champion_score.

    Candidates without a score are never chosen; on a tie the later key wins (the newer version). None if none scores.
    """
    scored = [(champion_score(tags, unseen_weight), order, key) for order, (key, tags) in enumerate(candidates.items())]
    scored = [entry for entry in scored if not math.isnan(entry[0])]
    return min(scored, key=lambda entry: (entry[0], -entry[1]))[2] if scored else None


def choose_champion(target: str, metric: str, unseen_weight: float = 0.5, uri: str | None = None) -> str | None:
    """Point the alias CHAMPION at the best of the latest version of each algorithm; return its version."""
    mlflow_client = client(uri)
    name = model_name(target, metric)
    # On a team store, jobs on other machines register and elect at the same time (no shared lock):
    # re-read after writing and elect again until the versions read did not change, so the last
    # alias written was chosen from every version tagged before it (see docs/team.md, "A team store").
    versions = _latest_versions(mlflow_client, name)
    while True:
        best = best_candidate(versions, unseen_weight)
        if best is None:
            return None
        write_retrying(mlflow_client.set_registered_model_alias, name, CHAMPION, str(best))
        model_level = best_candidate({v: tags for v, tags in versions.items() if tags.get("kernel_terms") != "true"},
                                     unseen_weight)
        if model_level is not None:
            write_retrying(mlflow_client.set_registered_model_alias, name, MODEL_LEVEL, str(model_level))
        again = _latest_versions(mlflow_client, name)
        if again == versions:
            return str(best)
        versions = again


def _latest_versions(mlflow_client, name: str) -> dict[str, dict]:
    """Version -> tags of the latest version of each algorithm, oldest first (best_candidate prefers the newer on a tie)."""
    latest: dict[str, object] = {}
    for version in mlflow_client.search_model_versions(f"name='{name}'"):
        algorithm = version.tags.get("algorithm")
        if algorithm and (algorithm not in latest or int(version.version) > int(latest[algorithm].version)):
            latest[algorithm] = version
    ordered = sorted(latest.values(), key=lambda v: int(v.version))
    return {v.version: dict(v.tags) for v in ordered}


@dataclass(frozen=True)
class Champion:
    """The champion version of one registered model: what it predicts and exactly which version it is."""

    target: str
    metric: str
    version: str
    run_id: str


def champions(tracking_uri: str | None = None) -> dict[str, Champion]:
    """Registered model name -> its CHAMPION version, for the models tagged with a target and a metric.

    A SQLite store that does not exist yet has no champion (and is not created by asking).
    """
    from mlflow.exceptions import MlflowException

    uri = globals()["tracking_uri"](tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):].split("?")[0]).exists():
        return {}
    found = {}
    try:
        mlflow_client = client(uri)
        token = None
        while True:
            page = mlflow_client.search_registered_models(max_results=1000, page_token=token)
            for model in page:
                version = (model.aliases or {}).get(CHAMPION)
                if version is None or "target" not in model.tags or "metric" not in model.tags:
                    continue
                run_id = mlflow_client.get_model_version(model.name, str(version)).run_id
                found[model.name] = Champion(model.tags["target"], model.tags["metric"], str(version), str(run_id))
            token = page.token
            if not token:
                break
    except MlflowException as error:
        raise store_error(uri, error) from None
    return dict(sorted(found.items()))
