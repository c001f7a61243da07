"""Shared by the training and registry tests: a small project (conf/ + a Jetson Nano subset) in tmp_path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def small_nano_table(rows_per_family: int = 8):
    """A subset of the Nano table: a few rows of every family, latency and power measured."""
    from perfpred.data import bouzidi

    table, _ = bouzidi.read_board(REPO / "data/raw/jetson-bouzidi", "nano", ["latency", "power"])
    table = table[table["latency_ms"].notna()]
    return table.groupby("family", group_keys=False).head(rows_per_family).reset_index(drop=True)


@pytest.fixture(scope="session")
def nano_subset():
    """The small Nano table, read once per session."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return small_nano_table()


@pytest.fixture
def project(tmp_path, monkeypatch, nano_subset):
    """A project root in tmp_path (its own conf/, a measurement table, an empty MLflow store) made current."""
    from perfpred.data import measurements

    shutil.copytree(REPO / "conf", tmp_path / "conf", ignore=shutil.ignore_patterns("*.yaml.tmp"))
    for tuned in (tmp_path / "conf/tuned").glob("*.yaml"):
        tuned.unlink()
    measurements.write_table(nano_subset, tmp_path / "data/measurements/jetson-nano.parquet")
    monkeypatch.setenv("PERFPRED_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns/mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _features() -> tuple[str, ...]:
    from perfpred.data import schema

    return schema.FEATURE_COLUMNS


FEATURES = _features()
