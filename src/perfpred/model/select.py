"""`perfpred select`: the K zoo models whose measurement on a new target teaches `perfpred adapt` the most.

Rule (k-medoids, written once here and used by the benchmark): in the space of standardized log1p features and of
what the source targets measure (perfpred.model.transfer's pooled model asked for each candidate: the mean source log
and each source's departure from it, standardized, the two blocks weighted equally; features alone when no other
target has a table of the metric), cluster the candidates into K groups (k-means, one seed) and take from each group
the network nearest its centre, the groups with the most networks first. The K chosen are typical of the networks the new target will be asked about, spread
over the whole range of sizes and shapes: the map from the source targets to the new one is then fitted where the
networks are, instead of where random draws happen to cluster or, as k-center greedy did, on the outliers at the
edges of the space (on the Jetson boards k-center's picks taught adapt less than random ones; k-medoids' more).
The source block was chosen on draws 100-119 of the Jetson boards (k = 10 and 20, apart from the benchmark's 0-19):
summed over boards and metrics its picks' MAPE was about 3 % lower than with the features alone.

    perfpred select --target jetson-orin-nano -k 20
    perfpred measure ... (those 20 models) ; perfpred adapt --target jetson-orin-nano --measurements FILE
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

from perfpred import config
from perfpred.data import schema


def selection_space(features: pd.DataFrame, source_logs: np.ndarray | None = None) -> np.ndarray:
    """Standardized log1p of the canonical features that every candidate has (constant columns left out), and with
    `source_logs` (candidates x sources, log of what each source measures) their mean and departures, standardized
    and scaled so that the block weighs as much as the features."""
    columns = [c for c in schema.FEATURE_COLUMNS if c in features.columns and features[c].notna().all()]
    if not columns:
        raise ValueError(f"no canonical feature is complete among the {len(features)} candidates: "
                         f"expected some of {', '.join(schema.FEATURE_COLUMNS)}")
    logged = np.log1p(features[columns].to_numpy("float64"))
    spread = logged.std(axis=0)
    keep = spread > 0
    space = (logged[:, keep] - logged[:, keep].mean(axis=0)) / spread[keep]
    if source_logs is None:
        return space
    source_logs = np.asarray(source_logs, dtype="float64").reshape(len(features), -1)
    mean = source_logs.mean(axis=1, keepdims=True)
    departures = np.hstack([mean, source_logs - mean])
    spread = departures.std(axis=0)
    departures = (departures[:, spread > 0] - departures[:, spread > 0].mean(axis=0)) / spread[spread > 0]
    if departures.shape[1] == 0:
        return space
    return np.hstack([space, departures * np.sqrt(space.shape[1] / departures.shape[1])])


def k_medoids(features: pd.DataFrame, k: int, seed: int = 0, source_logs: np.ndarray | None = None) -> list[int]:
    """Positions of k distinct rows: the row nearest each k-means centre in selection_space, biggest cluster first."""
    from sklearn.cluster import KMeans

    if k < 1:
        raise ValueError(f"-k must be at least 1, got {k}")
    if k > len(features):
        raise ValueError(f"-k {k} is more than the {len(features)} candidate models")
    space = selection_space(features, source_logs)
    clusters = KMeans(k, n_init=1, random_state=seed).fit(space)
    sizes = np.bincount(clusters.labels_, minlength=k)
    chosen: list[int] = []
    for centre in np.argsort(-sizes, kind="stable"):
        distance = np.linalg.norm(space - clusters.cluster_centers_[centre], axis=1)
        members = np.flatnonzero(clusters.labels_ == centre)
        free = [int(i) for i in members[np.argsort(distance[members], kind="stable")] if int(i) not in chosen]
        if not free:  # its members taken already (rows with the same features): the nearest free row anywhere
            free = [int(i) for i in np.argsort(distance, kind="stable") if int(i) not in chosen]
        chosen.append(free[0])
    return chosen


def candidates(path: str | None) -> pd.DataFrame:
    """The candidate models: a features table (parquet or csv), by default the zoo's data/features/features.parquet."""
    from pathlib import Path

    source = Path(path) if path else config.path("features") / "features.parquet"
    if not source.exists():
        raise FileNotFoundError(f"{source}: no candidate features; run `dvc repro features` (or give --candidates FILE)")
    table = pd.read_csv(source) if source.suffix == ".csv" else pd.read_parquet(source)
    if "model" not in table.columns:
        raise ValueError(f"{source}: a candidates table needs a `model` column and the canonical features")
    return table.reset_index(drop=True)


def source_logs_of(target: str, metric: str, table: pd.DataFrame) -> np.ndarray | None:
    """log of what each default source target of `adapt` would measure for the candidates (None: no source table)."""
    from perfpred.model import hardware, transfer
    from perfpred.model.pooled import targets_with_table

    if not targets_with_table(metric, exclude=(target,)):
        return None
    columns = [c for c in schema.FEATURE_COLUMNS if c in table.columns and table[c].notna().all()]
    sources = transfer.default_sources(target, metric, hardware.descriptor(target))
    return transfer.source_predictions(transfer.fit_sources(sources, metric, columns), table[columns])


def select(target: str, k: int, path: str | None = None, metric: str = "latency") -> pd.DataFrame:
    """The k candidate models to measure on `target` (those already in its table are not proposed again)."""
    from perfpred.model import estimators

    config.target_config(target)  # unknown target -> error listing the known ones
    table = candidates(path)
    measured_path = estimators.measurement_table_path(target)
    if measured_path.exists():
        measured = pd.read_parquet(measured_path, columns=["model", "input_width"])
        done = set(zip(measured["model"], measured["input_width"], strict=True))
        table = table[[(m, w) not in done for m, w in zip(table["model"], table.get("input_width", 0), strict=True)]]
        table = table.reset_index(drop=True)
    schema.metric_column(metric)  # unknown metric -> error listing the known ones
    if k > len(table):  # before the sources are fitted: the error comes at once
        raise ValueError(f"-k {k} is more than the {len(table)} candidate models")
    chosen = k_medoids(table, k, source_logs=source_logs_of(target, metric, table))
    identity = [c for c in ("model", "family", "input_width") if c in table.columns]
    picked = table.iloc[chosen][identity].copy()
    picked.insert(0, "order", range(1, len(chosen) + 1))
    return picked.reset_index(drop=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `perfpred select`."""
    parser.add_argument("--target", required=True, help="the target the models will be measured on")
    parser.add_argument("-k", type=int, required=True, help="how many models to pick")
    parser.add_argument("--metric", default="latency",
                        help="the metric adapt will learn: the source targets' tables of it place the candidates")
    parser.add_argument("--candidates", help="features table of the candidate models (default: data/features/features.parquet)")
    parser.add_argument("--json", action="store_true", help="print JSON records instead of a table")


def run(args: argparse.Namespace) -> int:
    """Print the selected models, most informative first."""
    picked = select(args.target, args.k, args.candidates, args.metric)
    if args.json:
        print(json.dumps(picked.to_dict(orient="records"), default=str))
    else:
        print(picked.to_string(index=False))
    return 0
