"""Reader of the Jetson measurement files of Bouzidi et al. (ACM TECS 2022) into the canonical schema."""

from __future__ import annotations

import csv
import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from perfpred.data import schema

SOURCE = "bouzidi-2022"

#: raw column -> canonical column, per layout (the dataset README names both layouts).
LAYOUT_A = {
    "Model_name": "model",
    "input_shape": "input_shape",
    "VALUE": "value",
    "input_width": "input_width",
    "input_size": "input_size",
    "nb_params_conv": "conv_params",
    "nb_params_bn": "bn_params",
    "nb_params_fc": "fc_params",
    "flops": "flops",
    "nb_layers": "layers",
    "nb_conv_layers": "conv_layers",
    "nb_bn_layers": "bn_layers",
    "nb_fc_layers": "fc_layers",
    "sum_activations": "activations",
    "weighted_sum_neurons": "neurons",
}
LAYOUT_B = {
    "Model_name": "model",
    "input_shape": "input_shape",
    "VALUE": "value",
    "input_width": "input_width",
    "input_size": "input_size",
    "nb_layers": "layers",
    "sum_activations": "activations",
    "params": "params",
}
#: metric -> (folder of the dataset, layout of its files)
METRIC_FILES = {"latency": ("latency", LAYOUT_A), "power": ("power", LAYOUT_A), "memory": ("memory", LAYOUT_B)}

#: Features that both layouts have: with the name and input width they identify one network.
#: (Not `params`: power/agx-xavier.csv adds 1 to conv and FC parameters, see merge_duplicates.)
IDENTITY_FEATURES = ("layers", "activations")


class LayoutError(ValueError):
    """A file does not have the layout its metric needs."""


@dataclass
class Rejection:
    """One raw row that was not imported, and why."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class ImportReport:
    """What an import read, rejected, merged and renamed."""

    rows_read: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    duplicates_merged: list[str] = field(default_factory=list)
    renamed: list[str] = field(default_factory=list)
    features_completed: int = 0
    feature_conflicts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """A JSON-ready summary."""
        return {
            "rows_read": self.rows_read,
            "rejected": len(self.rejected),
            "rejected_rows": [str(r) for r in self.rejected],
            "duplicates_merged": len(self.duplicates_merged),
            "duplicate_keys": self.duplicates_merged,
            "renamed": self.renamed,
            "features_completed": self.features_completed,
            "feature_conflicts": self.feature_conflicts,
        }


def read_raw(path: Path, metric: str, report: ImportReport | None = None) -> pd.DataFrame:
    """Read one raw file of the dataset, validating every row; bad rows are warned about and skipped."""
    report = report if report is not None else ImportReport()
    layout = _layout(metric)
    names = list(layout)
    rows = []
    with open(path, newline="") as handle:
        for line_number, fields in enumerate(csv.reader(handle), start=1):
            if not fields:
                continue
            if len(fields) != len(names):
                raise LayoutError(
                    f"{path}:{line_number}: {len(fields)} columns, but a {metric} file of the Jetson "
                    f"dataset has {len(names)} columns, no header: {', '.join(names)}"
                )
            report.rows_read += 1
            row, reason = _parse_row(dict(zip(names, fields, strict=True)), metric)
            if reason:
                rejection = Rejection(_display(path), line_number, reason)
                warnings.warn(f"row skipped: {rejection}", stacklevel=2)
                report.rejected.append(rejection)
                continue
            row["_line"] = line_number
            rows.append(row)
    table = pd.DataFrame(rows, columns=[layout[n] for n in names if n != "input_shape"] + ["_line"])
    if "params" not in table.columns:
        # Layout A has no total: in these CNNs only conv, BN and dense layers hold parameters.
        table["params"] = table["conv_params"] + table["bn_params"] + table["fc_params"]
    return table.rename(columns={"value": schema.metric_column(metric)})


def _display(path: Path) -> str:
    """A path as a message shows it: relative to the working directory when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _layout(metric: str) -> dict[str, str]:
    schema.metric_column(metric)  # raises a clear error for an unknown metric
    return METRIC_FILES[metric][1]


def _parse_row(raw: dict[str, str], metric: str) -> tuple[dict, str]:
    """Turn one raw row into canonical values, or return the reason it is rejected."""
    layout = _layout(metric)
    model = raw["Model_name"].strip()
    if not model:
        return {}, "empty Model_name"
    row: dict = {"model": model}
    for raw_name, name in layout.items():
        if raw_name in ("Model_name", "input_shape"):
            continue
        text = raw[raw_name].strip()
        if not text:
            return {}, f"missing value in column {raw_name}"
        try:
            value = float(text)
        except ValueError:
            return {}, f"non-numeric value {text!r} in column {raw_name}"
        if raw_name == "VALUE" and not value > 0:
            return {}, f"measurement {raw_name}={text} is not positive"
        if raw_name != "VALUE" and value < 0:
            return {}, f"negative feature {raw_name}={text}"
        row[name] = value
    return row, ""


def identity_key(table: pd.DataFrame) -> pd.Series:
    """A short, deterministic hash of the features that identify a network at one input width."""
    parts = table[list(IDENTITY_FEATURES)].astype("float64").round().astype("int64").astype(str)
    joined = parts.agg("-".join, axis=1)
    return joined.map(lambda text: hashlib.sha1(text.encode()).hexdigest()[:6])


def disambiguate(table: pd.DataFrame, report: ImportReport) -> pd.DataFrame:
    """Rename networks that share a name and input width but differ in structure (model -> model#hash)."""
    table = table.copy()
    key = identity_key(table)
    distinct = key.groupby([table["model"], table["input_width"]]).transform("nunique")
    clash = distinct > 1
    if clash.any():
        table.loc[clash, "model"] = table.loc[clash, "model"] + "#" + key[clash]
        report.renamed += sorted(set(table.loc[clash, "model"]))
    return table


def complete_features(table: pd.DataFrame, feature_rows: pd.DataFrame, report: ImportReport) -> pd.DataFrame:
    """Fill the features a layout-B row lacks from layout-A rows of the same network (same identity)."""
    on = ["model", "input_width", *IDENTITY_FEATURES]
    missing = [c for c in schema.FEATURE_COLUMNS if c not in table.columns or table[c].isna().all()]
    if not missing or feature_rows.empty:
        return table
    donors = feature_rows[on + [c for c in missing if c not in on]].drop_duplicates(subset=on)
    merged = table.drop(columns=[c for c in missing if c in table.columns]).merge(donors, on=on, how="left")
    report.features_completed += int(merged[missing[0]].notna().sum())
    return merged


def merge_duplicates(table: pd.DataFrame, report: ImportReport) -> pd.DataFrame:
    """Merge repeated measurements of one network: the median of each measurement column is kept."""
    keys = ["model", "input_width"]
    for column in schema.MEASUREMENT_COLUMNS:
        if column in table.columns:
            counts = table.groupby(keys)[column].count()
            report.duplicates_merged += [f"{column}:{m}@{int(w)}" for m, w in counts[counts > 1].index]
    # Files of one board can disagree on a feature of the same network (power/agx-xavier.csv has
    # conv_params, fc_params, bn_layers and fc_layers one higher than latency/agx-xavier.csv): the
    # first file read wins and the disagreement is counted per feature.
    features = [c for c in schema.FEATURE_COLUMNS if c in table.columns]
    distinct = table.groupby(keys)[features].nunique()
    for column in features:
        conflicts = int((distinct[column] > 1).sum())
        if conflicts:
            report.feature_conflicts[column] = report.feature_conflicts.get(column, 0) + conflicts
    aggregations = {c: "median" if c in schema.MEASUREMENT_COLUMNS else "first" for c in table.columns if c not in keys}
    return table.groupby(keys, as_index=False, sort=False).agg(aggregations)


def to_canonical(table: pd.DataFrame) -> pd.DataFrame:
    """Add the identity columns of the schema and put the table in canonical form."""
    table = table.drop(columns=[c for c in ("_line",) if c in table.columns])
    base_names = table["model"].str.split("#").str[0]
    table["family"] = base_names.map(schema.family_of)
    table["synthetic"] = table["family"] == "basic_model"
    table["source"] = SOURCE
    return schema.conform(table)


def feature_donors(dataset_dir: Path, report: ImportReport) -> pd.DataFrame:
    """All layout-A rows of a dataset folder (any board): features do not depend on the board."""
    frames = []
    for metric, (folder, layout) in METRIC_FILES.items():
        if layout is LAYOUT_A:
            for path in sorted((dataset_dir / folder).glob("*.csv")):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # rejections are reported where those files are imported
                    frames.append(read_raw(path, metric, ImportReport()))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_file(path: Path, metric: str, report: ImportReport | None = None) -> pd.DataFrame:
    """Read one raw Jetson file of `metric` into the canonical schema (features completed from siblings)."""
    report = report if report is not None else ImportReport()
    table = read_raw(Path(path), metric, report)
    if _layout(metric) is LAYOUT_B:
        table = complete_features(table, feature_donors(Path(path).parent.parent, report), report)
    table = disambiguate(table, report)
    table = merge_duplicates(table, report)
    return to_canonical(table)


def read_board(dataset_dir: Path, board: str, metrics: list[str]) -> tuple[pd.DataFrame, ImportReport]:
    """Read every metric file of one board and join them into one canonical table."""
    report = ImportReport()
    donors = None
    frames = []
    for metric in metrics:
        path = dataset_dir / METRIC_FILES[metric][0] / f"{board}.csv"
        if not path.exists():
            raise FileNotFoundError(f"{path}: no {metric} file for board {board!r} in {dataset_dir}")
        table = read_raw(path, metric, report)
        if _layout(metric) is LAYOUT_B:
            donors = feature_donors(dataset_dir, report) if donors is None else donors
            table = complete_features(table, donors, report)
        frames.append(table)
    table = disambiguate(pd.concat(frames, ignore_index=True), report)
    table = merge_duplicates(table, report)
    return to_canonical(table), report
