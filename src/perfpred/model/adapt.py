"""`perfpred adapt`: a predictor for a new target (a board, a toolchain) from k measured rows and the other targets' tables.

    perfpred adapt --target jetson-orin-nano --metric latency --measurements orin-nano.csv [--sources T1,T2] [--json]

The rows correct what the source targets' own models predict (perfpred.model.transfer); the result is
registered as `<target>-<metric>` with the `@champion` alias by the registry code that `perfpred train` uses, so
`perfpred predict --target`, `recommend` and `perfpred.load_predictor` answer for the new target. Its intervals are
calibrated on out-of-fold predictions of the k rows (transfer.calibration) and their coverage is checked on rows
that did not calibrate them.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from perfpred import config
from perfpred.data import schema
from perfpred.model import hardware, sweep, transfer
from perfpred.model.pooled import _table, targets_with_table

#: Fewer measured rows leave nothing to check a fit on.
MIN_ROWS = 3
LEVEL = 0.9


def read_rows(path: str | Path, metric: str) -> tuple[pd.DataFrame, list[str]]:
    """The measured rows of FILE (canonical schema) and the features every row has; errors name the file and the fault."""
    from perfpred.data.measurements import read_measurements

    path = Path(path)
    column = schema.metric_column(metric)
    try:
        table = read_measurements(path, source="canonical", metric=metric)
    except (OSError, ValueError) as error:
        message = str(error)
        raise ValueError(message if str(path) in message else f"{path}: {message}") from None
    if len(table) < MIN_ROWS:
        raise ValueError(f"{path}: {len(table)} rows have a {column} value; adapt needs at least {MIN_ROWS} measured rows")
    bad = table.index[~(table[column] > 0)].tolist()
    if bad:
        raise ValueError(f"{path}: {column} must be > 0, rows {bad[:5]} have {table.loc[bad[:5], column].tolist()}")
    features = [c for c in schema.FEATURE_COLUMNS if table[c].notna().all()]
    if not features:
        raise ValueError(f"{path}: no feature column is filled in every row; compute them with `perfpred describe`")
    negative = [c for c in features if (table[c] < 0).any()]
    if negative:
        raise ValueError(f"{path}: feature columns {negative} have negative values; features are counts (>= 0)")
    return table, features


def check_sources(target: str, metric: str, sources: list[str] | None, descriptor: dict[str, float]) -> list[str]:
    """The source targets: the ones named (each must have a table of the metric), else transfer.default_sources."""
    available = targets_with_table(metric, exclude=(target,))
    if not available:
        raise ValueError(f"no target other than {target!r} has a {metric} table: run `perfpred import` first")
    if sources is None:
        return transfer.default_sources(target, metric, descriptor)
    unknown = [s for s in sources if s not in available]
    if unknown:
        raise ValueError(f"--sources {','.join(unknown)}: no {metric} table for them (targets with one: "
                         f"{', '.join(available)})")
    return list(sources)


def target_descriptor(target: str, hardware_file: str | None) -> dict[str, float]:
    """The target's numeric descriptor: from conf/target/<target>.yaml, or from `--hardware` for an unconfigured target."""
    if target not in config.group_options("target") and hardware_file is None:
        raise ValueError(f"unknown target {target!r}: give its specifications with --hardware FILE.yaml "
                         f"({', '.join(hardware.HARDWARE_FIELDS)}) or add conf/target/{target}.yaml; "
                         f"known targets are {', '.join(config.group_options('target'))}")
    return hardware.descriptor(target, hardware_file)


def write_target_file(target: str, descriptor: dict[str, float], hardware_file: str) -> Path | None:
    """conf/target/<target>.yaml (kind: spec) for a target known only from `--hardware`: predict and recommend read it."""
    import yaml

    path = config.conf_dir() / "target" / f"{target}.yaml"
    if path.exists():
        return None
    body = {"name": target, "kind": "spec", "hardware": {"name": target, **descriptor}, "runtime": "unknown",
            "toolchain": "unknown", "toolchain_version": "unknown", "metrics": list(schema.METRIC_COLUMNS)}
    path.write_text(f"# Written by `perfpred adapt --hardware {hardware_file}`.\n" + yaml.safe_dump(body, sort_keys=False))
    return path


def fit(target: str, metric: str, rows: pd.DataFrame, features: list[str], sources: list[str],
        descriptor: dict[str, float], level: float = LEVEL):
    """The adapted Predictor and its checked figures (out-of-fold MAPE, interval coverage on held-out rows)."""
    from perfpred.serve.predictor import Predictor

    column = schema.metric_column(metric)
    measured = rows[column].to_numpy("float64")
    source_model = transfer.fit_sources(sources, metric, features)
    estimator = transfer.AdaptedRegressor(source_model, descriptor).fit(rows[features], measured)
    held_rows, held_predicted = transfer.out_of_fold(estimator, rows[features], measured)
    folds = min(5, len(measured))
    metrics = {
        "mape_mean": sweep.mape_pct(measured[held_rows], held_predicted),
        "mape_unseen_family": float("nan"),
        "rows": len(measured),
        f"coverage_{round(level * 100)}": sweep.coverage(measured, held_rows, held_predicted, [level], folds,
                                                         calibrate=transfer.calibration)[level],
    }
    predictor = Predictor(estimator=estimator, target=target, metric=metric, column=column, algorithm="adapt",
                          features=features, calibration=transfer.calibration(measured, held_rows, held_predicted))
    return predictor, metrics


def register(predictor, metrics: dict, measurements: Path, sources: list[str], domain_rows: pd.DataFrame,
             tracking_uri: str | None = None) -> str:
    """Log a run and register the predictor as a version of <target>-<metric>; the champion rule is re-run.

    `domain_rows` define its training domain: the k rows and the source targets' rows it learnt from.
    """
    import mlflow

    from perfpred.model import tracking
    from perfpred.serve import registry

    registry.ensure_store(tracking_uri)
    with registry.locked("registry"):
        experiment = registry.experiment_id(predictor.target, tracking_uri)
    tags = {"target": predictor.target, "metric": predictor.metric, "algorithm": "adapt",
            "data_version": hashlib.md5(measurements.read_bytes()).hexdigest(), "git_commit": tracking.git_commit(),
            "sources": ",".join(sources)}
    with mlflow.start_run(experiment_id=experiment, run_name=f"{predictor.metric}-adapt", tags=tags) as run:
        mlflow.log_params({"measurements": str(measurements), "sources": ",".join(sources),
                           "features": ",".join(predictor.features)})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        with contextlib.redirect_stdout(sys.stderr):  # register prints a line: keep stdout for --json
            return tracking.register(predictor, metrics, tags, 0.5, run.info.run_id, domain_rows)


def adapt(target: str, metric: str, measurements: str | Path, sources: list[str] | None = None,
          hardware_file: str | None = None, tracking_uri: str | None = None) -> dict:
    """Fit, check and register a predictor of `target`'s `metric` from FILE's rows; returns what was done."""
    started = time.monotonic()
    schema.metric_column(metric)
    descriptor = target_descriptor(target, hardware_file)
    rows, features = read_rows(measurements, metric)
    sources = check_sources(target, metric, sources, descriptor)
    predictor, metrics = fit(target, metric, rows, features, sources, descriptor)
    if hardware_file is not None:
        write_target_file(target, descriptor, hardware_file)
    # the sources' tables as the fit read them (pooled's cache): no second read of each parquet file
    domain_rows = pd.concat([rows, *(_table(source, metric) for source in sources)], ignore_index=True)
    version = register(predictor, metrics, Path(measurements), sources, domain_rows, tracking_uri)
    return {"target": target, "metric": metric, "version": version, "sources": sources, "features": features,
            **metrics, "seconds": round(time.monotonic() - started, 1)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `perfpred adapt`."""
    parser.add_argument("--target", required=True, help="the new target (conf/target/NAME.yaml, or give --hardware)")
    parser.add_argument("--metric", required=True, help=f"one of {', '.join(schema.METRIC_COLUMNS)}")
    parser.add_argument("--measurements", required=True, help="CSV or parquet in the canonical schema: k measured rows")
    parser.add_argument("--sources", help="comma-separated targets to learn from (default: every other one with a table)")
    parser.add_argument("--hardware", help="YAML with the target's specifications when it has no conf/target file")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    """Adapt, register, and say how well the k rows were predicted out of fold."""
    sources = [s.strip() for s in args.sources.split(",") if s.strip()] if args.sources else None
    result = adapt(args.target, args.metric, args.measurements, sources, args.hardware)
    if args.json:
        print(json.dumps(result, default=str))
        return 0
    coverage = next(v for k, v in result.items() if k.startswith("coverage_"))
    print(f"{result['target']}-{result['metric']}: adapted from {', '.join(result['sources'])} on {result['rows']} rows; "
          f"out-of-fold MAPE {result['mape_mean']:.2f} %, {round(LEVEL * 100)} % interval coverage {coverage:.2f}; "
          f"registered version {result['version']} ({result['seconds']} s)")
    return 0
