"""The canonical measurement schema: one row per (model, input size) on one target."""

from __future__ import annotations

import re

import pandas as pd

IDENTITY_COLUMNS: tuple[str, ...] = ("model", "family", "input_width", "source", "synthetic")

FEATURE_COLUMNS: tuple[str, ...] = (
    "input_size",
    "conv_params",
    "bn_params",
    "fc_params",
    "params",
    "flops",
    "layers",
    "conv_layers",
    "bn_layers",
    "fc_layers",
    "activations",
    "neurons",
)


def _metric_columns() -> dict[str, str]:
    """metric name -> measurement column, read from conf/metric/*.yaml (where they are written)."""
    from perfpred import config

    return {name: config.group_option("metric", name)["column"] for name in config.group_options("metric")}


#: metric name -> measurement column with its unit, e.g. 'latency' -> 'latency_ms'.
METRIC_COLUMNS: dict[str, str] = _metric_columns()

MEASUREMENT_COLUMNS: tuple[str, ...] = tuple(METRIC_COLUMNS.values())

CANONICAL_COLUMNS: tuple[str, ...] = IDENTITY_COLUMNS + FEATURE_COLUMNS + MEASUREMENT_COLUMNS


def metric_column(metric: str) -> str:
    """Return the measurement column of a metric name, e.g. 'latency' -> 'latency_ms'."""
    try:
        return METRIC_COLUMNS[metric]
    except KeyError:
        known = ", ".join(sorted(METRIC_COLUMNS))
        raise ValueError(f"unknown metric {metric!r}: known metrics are {known}") from None


_VERSION_SUFFIX = re.compile(r"^(?P<stem>.*?)(?:-v(?P<v1>\d+)|V(?P<v2>\d+))$")
_LEADING_NAME = re.compile(r"^[A-Za-z]+")


def family_of(model: str) -> str:
    """Architecture family of a network name: 'ResNet-50' -> 'ResNet', 'MobileNet0.5-v2' -> 'MobileNetV2'.

    Synthetic networks (`basic_model_S_N`) form the family 'basic_model'. Versions stay part of the
    family (ResNet and ResNetV2 differ in structure); depth and width multipliers do not.
    """
    if model.startswith("basic_model"):
        return "basic_model"
    version = ""
    stem = model
    match = _VERSION_SUFFIX.match(model)
    if match:
        stem = match.group("stem")
        version = "V" + (match.group("v1") or match.group("v2"))
    leading = _LEADING_NAME.match(stem)
    if leading is None:
        raise ValueError(f"cannot derive an architecture family from model name {model!r}")
    return leading.group(0) + version


def empty_table() -> pd.DataFrame:
    """An empty DataFrame with the canonical columns and dtypes."""
    return conform(pd.DataFrame({column: [] for column in CANONICAL_COLUMNS}))


def conform(table: pd.DataFrame) -> pd.DataFrame:
    """Return `table` with every canonical column, in canonical order and dtypes, extras kept at the end."""
    table = table.copy()
    for column in CANONICAL_COLUMNS:
        if column not in table.columns:
            table[column] = pd.NA if column in IDENTITY_COLUMNS else float("nan")
    table["model"] = table["model"].astype("string")
    table["family"] = table["family"].astype("string")
    table["source"] = table["source"].astype("string")
    table["synthetic"] = table["synthetic"].astype("bool")
    table["input_width"] = table["input_width"].astype("int64")
    # float64 for features too: exact for integers below 2**53, and NaN marks a feature that a
    # source layout lacks (the Jetson memory files have no FLOPs) without nullable-dtype pitfalls.
    for column in FEATURE_COLUMNS + MEASUREMENT_COLUMNS:
        table[column] = pd.to_numeric(table[column]).astype("float64")
    extras = [c for c in table.columns if c not in CANONICAL_COLUMNS]
    return table[list(CANONICAL_COLUMNS) + extras].reset_index(drop=True)
