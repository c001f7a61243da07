"""A small perfpred project in a temporary folder, with real predictors trained into its MLflow store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from perfpred.data import bouzidi, measurements

REPO = Path(__file__).resolve().parents[1]
DESCRIPTOR = REPO / "data/raw/jetson-bouzidi/architectures/ResNet-50_224.json"
#: few seeds and folds: the tests check the answers' plumbing, the train tests check the statistics
TRAIN_SETTINGS = ("train.seeds=2", "train.family_folds=2", "train.coverage_folds=2", "train.use_tuned=false")


def make_project(folder: Path, targets: dict[str, str], train_fraction: float, seed: int = 0) -> dict[str, pd.DataFrame]:
    """conf/ of the repo plus a random `train_fraction` of each target's Jetson rows; returns the held-out rows."""
    shutil.copytree(REPO / "conf", folder / "conf")
    shutil.copy(REPO / "params.yaml", folder / "params.yaml")
    held_out = {}
    for target, board in targets.items():
        table, _ = bouzidi.read_board(REPO / "data/raw/jetson-bouzidi", board, ["latency", "memory"])
        chosen = np.random.default_rng(seed).random(len(table)) < train_fraction
        measurements.write_table(table[chosen], folder / "data/measurements" / f"{target}.parquet")
        held_out[target] = table[~chosen].reset_index(drop=True)
    return held_out


def environment(project: Path, tracking_uri: str | None = None) -> dict[str, str]:
    """The environment of a perfpred command run in `project` (its own store unless `tracking_uri`)."""
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    env |= {"PERFPRED_ROOT": str(project), "PERFPRED_PREDICTOR_CACHE": str(project / ".cache"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


def perfpred(
    project: Path, *args: str, tracking_uri: str | None = None, check: bool = True, python_options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """Run `perfpred ARGS` in a fresh interpreter inside `project`."""
    command = [sys.executable, *python_options, "-m", "perfpred.cli", *args]
    completed = subprocess.run(command, cwd=project, env=environment(project, tracking_uri), capture_output=True, text=True, timeout=600)
    if check and completed.returncode != 0:
        raise AssertionError(f"perfpred {' '.join(args)} exited {completed.returncode}:\n{completed.stderr[-4000:]}")
    return completed


def train(project: Path, targets: list[str], metrics: list[str], algorithm: str = "poly", tracking_uri: str | None = None) -> None:
    """Train and register one predictor per (target, metric) with the train command, champions included."""
    perfpred(
        project, "train", "-m", f"target={','.join(targets)}", f"metric={','.join(metrics)}", f"algorithm={algorithm}",
        *TRAIN_SETTINGS, tracking_uri=tracking_uri,
    )  # fmt: skip
