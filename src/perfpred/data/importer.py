"""The `import` stage: published measurements of a target -> data/measurements/<target>.parquet."""

from __future__ import annotations

import argparse
import json
import warnings

from perfpred import config
from perfpred.data import bouzidi, measurements

READERS = {"bouzidi": bouzidi.read_board}


def import_target(name: str, params: dict) -> dict:
    """Import one target's dataset into its canonical table and return the import summary."""
    target = params["imported"].get(name)
    if target is None:
        known = ", ".join(params["imported"]) or "none"
        raise config.ConfigError(f"target {name!r} is not an imported target: imported targets are {known}")
    reader = READERS.get(target["dataset"]["source"])
    if reader is None:
        raise config.ConfigError(
            f"target {name!r}: unknown dataset source {target['dataset']['source']!r}; known: {', '.join(READERS)}"
        )
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")  # each rejection is in the report, printed once below
        table, report = reader(config.path("jetson_dataset", params), target["dataset"]["board"], list(target["metrics"]))
    out_dir = config.path("measurements", params)
    measurements.write_table(table, out_dir / f"{name}.parquet")
    summary = {"target": name, "rows": len(table)}
    summary |= {f"rows_with_{column}": int(table[column].notna().sum()) for column in measurements.schema.MEASUREMENT_COLUMNS}
    summary |= report.as_dict()
    (out_dir / f"{name}.import.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `perfpred import`."""
    parser.add_argument("targets", nargs="*", help="imported targets to import (default: all of conf/config.yaml)")


def run(args: argparse.Namespace) -> int:
    """Import the named targets (all imported targets by default) and print a summary of each."""
    params = config.load_params()
    for name in args.targets or list(params["imported"]):
        summary = import_target(name, params)
        counts = ", ".join(f"{summary[k]} with {k.removeprefix('rows_with_')}" for k in summary if k.startswith("rows_with_"))
        print(f"{name}: {summary['rows']} networks x input sizes ({counts})")
        print(
            f"  read {summary['rows_read']} raw rows; rejected {summary['rejected']}; "
            f"repeated measurements merged (median) {summary['duplicates_merged']}; "
            f"same-name networks told apart {len(summary['renamed'])}; "
            f"features completed from other files {summary['features_completed']}"
        )
        for rejection in summary["rejected_rows"]:
            print(f"  rejected {rejection}")
        for column, count in summary["feature_conflicts"].items():
            print(f"  {count} networks have a different {column} in another file of this board (first file kept)")
    return 0
