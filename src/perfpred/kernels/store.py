"""Where a target's fitted kernel predictors and its zoo models' kernel terms are kept, and loading them.

Kept apart from perfpred.kernels.training (which fits them and reads the zoo and the kernel measurements), so
that the model-level train stage, which only reads them, does not depend on the measuring code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from perfpred import config
from perfpred.kernels import predictor


def predictor_path(target: str, params: dict | None = None) -> Path:
    """Where a target's fitted KernelModel is kept."""
    return config.path("kernels", params if params is not None else config.load_params()) / "predictors" / f"{target}.pkl"


def features_path(target: str, params: dict | None = None) -> Path:
    """Where a target's zoo models' kernel terms are kept (kernel_features), beside its KernelModel."""
    return predictor_path(target, params).with_suffix(".features.parquet")


def load_model(target: str, params: dict | None = None) -> predictor.KernelModel:
    """A target's fitted KernelModel (written by `perfpred kernel-train`, never a file from elsewhere)."""
    path = predictor_path(target, params)
    if not path.exists():
        raise FileNotFoundError(f"no kernel predictor for {target} at {path}: run `perfpred kernel-train` "
                                f"(after `perfpred kernel-measure --target {target}`)")
    with open(path, "rb") as handle:
        return pickle.load(handle)
