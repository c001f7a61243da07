"""The `features` stage: the zoo manifest -> one row of model-level features per (network, input size)."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import pandas as pd

from perfpred import config
from perfpred.data import schema
from perfpred.features.description import EXTRA_COLUMNS, describe
from perfpred.zoo.build import MANIFEST, read_manifest

FEATURES_FILE = "features.parquet"


def feature_table(manifest: pd.DataFrame, root: Path, progress: bool = True) -> tuple[pd.DataFrame, list[dict]]:
    """Describe every manifest row; return the feature table and the rows skipped (name + reason)."""
    from tqdm import tqdm

    rows, skipped = [], []
    try:
        for entry in tqdm(manifest.itertuples(index=False), total=len(manifest), desc="features", disable=not progress):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    features = describe(root / entry.descriptor, input_size=int(entry.input_width))
            except (ValueError, FileNotFoundError, KeyError) as error:
                skipped.append({"name": entry.name, "reason": str(error)})
                continue
            identity = {"model": entry.name, "family": entry.family, "input_width": int(entry.input_width),
                        "source": entry.source, "synthetic": bool(entry.synthetic)}
            rows.append(identity | {column: features[column] for column in schema.FEATURE_COLUMNS}
                        | {column: features[column] for column in EXTRA_COLUMNS if column != "input_width"})
    except KeyboardInterrupt:  # keep the rows described so far; the caller writes them, then stops
        skipped.append({"name": "*", "reason": "interrupted"})
    columns = list(schema.IDENTITY_COLUMNS + schema.FEATURE_COLUMNS) + [c for c in EXTRA_COLUMNS if c != "input_width"]
    table = pd.DataFrame(rows, columns=columns)
    table = table.astype({"model": "string", "family": "string", "source": "string", "synthetic": "bool",
                          "input_width": "int64", "approximate": "bool"})
    for column in schema.FEATURE_COLUMNS:
        table[column] = table[column].astype("float64")
    return table, skipped


def build(params: dict | None = None, progress: bool = True) -> dict:
    """Run the stage: read ${paths.zoo}/manifest.csv, write ${paths.features}/features.parquet, return a summary."""
    params = params if params is not None else config.load_params()
    manifest = read_manifest(config.path("zoo", params) / MANIFEST)
    table, skipped = feature_table(manifest, config.project_root(), progress)
    out_dir = config.path("features", params)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out_dir / FEATURES_FILE, index=False)
    summary = {"models": len(manifest), "described": len(table), "skipped": skipped,
               "approximate": int(table["approximate"].sum())}
    (out_dir / "features.summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if any(entry["name"] == "*" for entry in skipped):
        raise KeyboardInterrupt(f"interrupted: {len(table)} finished rows kept in {out_dir / FEATURES_FILE}")
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `perfpred features` (none: paths come from params.yaml)."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Write the feature table of the zoo and print what was skipped."""
    summary = build(progress=not args.no_progress)
    print(f"features: described {summary['described']} of {summary['models']} models "
          f"({summary['approximate']} approximate, {len(summary['skipped'])} skipped)")
    for entry in summary["skipped"]:
        print(f"  skipped {entry['name']}: {entry['reason']}")
    return 0
