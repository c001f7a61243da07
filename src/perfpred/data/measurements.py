"""Reading and writing per-target measurement tables in the canonical schema."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from perfpred.atomic import replace_file
from perfpred.data import bouzidi, schema

SOURCES = ("bouzidi", "canonical")


def read_measurements(path: str | os.PathLike, source: str = "bouzidi", metric: str = "latency") -> pd.DataFrame:
    """Read a measurement file into the canonical schema, keeping the rows that have `metric`.

    `source="bouzidi"` reads a raw file of the Jetson dataset (rows that fail validation are skipped
    with a warning naming file and line; `table.attrs["import_report"]` says what was skipped, merged
    and renamed). `source="canonical"` reads a table written by perfpred (parquet or csv).
    """
    path = Path(path)
    column = schema.metric_column(metric)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such measurement file")
    if source == "bouzidi":
        report = bouzidi.ImportReport()
        table = bouzidi.read_file(path, metric, report)
        table.attrs["import_report"] = report.as_dict()
    elif source == "canonical":
        table = read_canonical(path)
    else:
        raise ValueError(f"unknown source {source!r}: use one of {', '.join(SOURCES)}")
    return table[table[column].notna()].reset_index(drop=True)


def read_canonical(path: Path) -> pd.DataFrame:
    """Read a canonical table (parquet or csv) and check that it has the schema's columns."""
    table = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    required = schema.IDENTITY_COLUMNS + schema.FEATURE_COLUMNS
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ValueError(
            f"{path}: not a canonical measurement table, columns {missing} are missing; "
            f"expected at least {', '.join(required)}"
        )
    return schema.conform(table)


def write_table(table: pd.DataFrame, path: Path) -> None:
    """Write a table as parquet atomically: a reader never sees a half-written file."""
    replace_file(path, lambda temporary: table.to_parquet(temporary, index=False))
