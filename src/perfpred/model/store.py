"""Which MLflow store a train or tune job writes to: conf/store/ (local mlruns/ or the team's server)."""

from __future__ import annotations

import os


def use(cfg) -> str | None:
    """Make the composed `store.tracking_uri` the job's MLflow store; None keeps $MLFLOW_TRACKING_URI or mlruns/."""
    store = cfg.get("store") or {}
    uri = store.get("tracking_uri")
    if not uri:
        return None
    # perfpred.serve.registry reads the environment: every client the job opens (runs, registry, champion) follows it.
    os.environ["MLFLOW_TRACKING_URI"] = str(uri)
    return str(uri)


def is_local(overrides: list[str]) -> bool:
    """Whether command-line overrides keep the local store (no `store=` other than local)."""
    return not any(o.startswith("store=") and o != "store=local" for o in overrides)
