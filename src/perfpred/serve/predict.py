"""`perfpred predict`: predicted latency, memory and power of one CNN on every target, with calibrated intervals."""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Sequence
from functools import cache

import pandas as pd

from perfpred import config
from perfpred.data import schema
from perfpred.serve.predictor import AUTO, RANDOM
from perfpred.zoo import applications

#: Columns of a prediction table that describe the target rather than the prediction.
TARGET_COLUMNS: tuple[str, ...] = ("target", "toolchain", "hardware")
#: Level of the prediction intervals unless one is asked for (the level the train stage checks coverage at).
DEFAULT_LEVEL = 0.9


def describe_model(model, input_width: int | None = None) -> dict:
    """Canonical features of MODEL: a Keras JSON or .keras path, `app:NAME`, or a keras.Model."""
    from perfpred.features.description import describe

    if applications.is_application(model):
        return describe(applications.build_application(model, input_width))
    return describe(model, input_size=input_width)


def model_graph(model):
    """MODEL's kernel source, from which a kernel-level predictor detects its kernels (Predictor.kernel_terms): its
    parsed Keras descriptor, or for an ONNX file its path (perfpred.kernels.onnx_kernels reads the ONNX graph).
    `app:NAME` is built without weights, a keras.Model serialised."""
    from pathlib import Path

    from perfpred.features import descriptors, onnx_loading

    if applications.is_application(model):
        model = applications.build_application(model)
    if hasattr(model, "to_json") and not isinstance(model, str | os.PathLike):
        return descriptors.parse(json.loads(model.to_json()), getattr(model, "name", "<keras.Model>"))
    if onnx_loading.is_onnx_file(model):
        return Path(model)
    return descriptors.load(model)


def champion_targets(tracking_uri: str | None = None, champions=None) -> dict[str, list[str]]:
    """target -> the metrics that have a champion predictor in the registry."""
    from perfpred.serve import loader

    champions = loader.champions(tracking_uri) if champions is None else champions
    targets: dict[str, list[str]] = {}
    for champion in champions.values():
        targets.setdefault(champion.target, []).append(champion.metric)
    return {target: sorted(metrics, key=_metric_order) for target, metrics in sorted(targets.items())}


def select_targets(requested: Sequence[str] | None, tracking_uri: str | None = None, champions=None) -> dict[str, list[str]]:
    """The targets to predict (all with a champion if none are requested) -> their metrics; clear errors otherwise."""
    available = champion_targets(tracking_uri, champions)
    configured = config.group_options("target")
    if not requested:
        if not available:
            raise ValueError(
                f"no predictor has a champion yet in {_store(tracking_uri)}: train and register them with `dvc repro` "
                "(or `perfpred train target=jetson-nano metric=latency` for one)"
            )
        return available
    selected = {}
    for target in requested:
        if target not in configured and target not in available:
            raise ValueError(f"unknown target {target!r}: known targets are {', '.join(sorted(set(configured) | set(available)))}")
        if target not in available:
            raise ValueError(f"target {target!r} has no champion predictor yet in {_store(tracking_uri)}: {train_hint(target)}")
        selected[target] = available[target]
    return selected


def train_hint(target: str) -> str:
    """The command that makes champions for a target."""
    metrics = ",".join(_target_config(target).get("metrics", [])) or ",".join(schema.METRIC_COLUMNS)
    return f"train and register them with `perfpred train -m target={target} metric={metrics}` (or `dvc repro`)"


def predict_features(
    features: pd.DataFrame,
    targets: Sequence[str] | None = None,
    level: float = DEFAULT_LEVEL,
    tracking_uri: str | None = None,
    model=None,
    input_width: int | None = None,
    calibration: str | None = AUTO,
) -> pd.DataFrame:
    """Predict every row of a feature table on every selected target: one row per (input row, target).
    `calibration`: which held-out rows calibrate the intervals (AUTO, the default: random splits for an architecture
    the predictor's training rows hold at some input size, families never seen for any other; None or RANDOM: random
    splits;
    'families'; 'sizes', 'architectures', 'synthetic': the test domains). `<metric>_intervals` says which per row.

    A kernel-level predictor (it reads kernel terms, perfpred.kernels) computes them from `model` (a single-row
    table's descriptor or ONNX file, as for predict_model) where the table lacks them; without a model graph (a
    features table) the best version that reads descriptor-level features only (registry.MODEL_LEVEL) answers for
    that metric, and the predictor column says so."""
    if not 0 < level < 1:
        raise ValueError(f"interval level must be between 0 and 1 (e.g. 0.9 for 90%), got {level}")
    from perfpred.serve import loader, registry

    uri = registry.tracking_uri(tracking_uri)
    champions = loader.champions(uri)
    selected = select_targets(targets, uri, champions)
    parts, graphs = [], []
    for target, metrics in selected.items():
        part = pd.DataFrame(index=features.index)
        part["target"] = target
        target_conf = _target_config(target)
        part["toolchain"] = target_conf.get("toolchain", "")
        hardware = target_conf.get("hardware", "")  # a mapping of specifications with its `name`
        part["hardware"] = hardware.get("name", "") if isinstance(hardware, dict) else hardware
        domains = []
        for metric in metrics:
            predictor = loader.load_champion(champions[registry.model_name(target, metric)], uri)
            column = schema.metric_column(metric)
            if not set(predictor.kernel_columns) <= set(features.columns) and not graphs:  # parsed once, on need
                graphs.append(None if model is None or len(features) != 1 else model_graph(model))
            answer = answer_rows(predictor, features, level, graphs[0] if graphs else None, input_width, calibration)
            note = ""
            if answer is None:  # a kernel-level champion, no model graph: the best model-level version answers
                predictor = loader.load_predictor(target, metric, registry.MODEL_LEVEL, uri)
                answer = predictor.answer(features, level, calibration)
                note = " (model-level: no model graph for the kernels)"
            for name in (column, f"{column}_low", f"{column}_high"):
                part[name] = answer[name]
            part[f"{metric}_intervals"] = answer["calibration"]
            part[f"{metric}_predictor"] = f"{predictor.algorithm} v{predictor.version}{note}"
            domains.append(answer[["in_domain", "outside"]])
        part["in_domain"], part["outside"] = _combined_domain(domains, features.index)
        parts.append(part)
    identity = [column for column in ("model", "input_width") if column in features.columns]
    table = features[identity].join(pd.concat(parts), how="right")
    return table[identity + [c for c in table.columns if c not in identity]].reset_index(drop=True)


def answer_rows(predictor, features: pd.DataFrame, level: float, graph=None, input_width: int | None = None,
                calibration: str | None = None):
    """predictor.answer on the feature rows, with the kernel terms computed from `graph` (model_graph of the single
    row's model: a parsed Keras descriptor or an ONNX file's path) when the predictor reads them and the rows lack
    them; None when it reads them and no graph gives them (a features table)."""
    if set(predictor.kernel_columns) <= set(features.columns):
        return predictor.answer(features, level, calibration)
    if graph is None:
        return None
    return predictor.answer(features.assign(**predictor.kernel_terms(graph, input_width)), level, calibration)


def predict_model(
    model,
    input_width: int | None = None,
    targets: Sequence[str] | None = None,
    level: float = DEFAULT_LEVEL,
    tracking_uri: str | None = None,
    calibration: str | None = AUTO,
) -> pd.DataFrame:
    """Predicted latency_ms, memory_mb (and power_mw) of one CNN on each target with a champion, with intervals
    (`calibration`: as predict_features)."""
    name = model if isinstance(model, str | os.PathLike) else getattr(model, "name", "keras.Model")
    if applications.is_application(model):  # built once: described, and its kernels detected if a predictor reads them
        model, input_width = applications.build_application(model, input_width), None
    features = describe_model(model, input_width)
    return predict_features(pd.DataFrame([{"model": str(name)} | features]), targets, level, tracking_uri,
                            model=model, input_width=input_width, calibration=calibration)


def _combined_domain(domains: list[pd.DataFrame], index: pd.Index) -> tuple[list, list[list[str]]]:
    """A target's domain verdict over its metrics' predictors: in only if in for every one; the union of what is out."""
    in_domain, outside = [], []
    for position in range(len(index)):
        verdicts = [domain["in_domain"].iloc[position] for domain in domains]
        names = sorted({name for domain in domains for name in domain["outside"].iloc[position]})
        known = [v for v in verdicts if v is not None and not pd.isna(v)]
        in_domain.append(None if not known else bool(all(known)) and not names)
        outside.append(names)
    return in_domain, outside


def domain_text(row: pd.Series) -> str:
    """The domain mark of a prediction row: 'yes', 'NO (outside: flops, layers)', or '?' for a predictor without one."""
    verdict = row.get("in_domain")
    if verdict is None or (not isinstance(verdict, list) and pd.isna(verdict)):
        return "?"
    return "yes" if verdict else f"NO (outside: {', '.join(row.get('outside') or [])})"


def format_table(table: pd.DataFrame, leading: Sequence[str] = ()) -> str:
    """A prediction table as aligned text: one line per target, each metric as 'value [low, high]', the domain mark."""
    columns: list[tuple[str, list[str]]] = [(name, [str(v) for v in table[name]]) for name in leading]
    columns += [(name, [str(v) for v in table[name]]) for name in ("target", "toolchain")]
    for column in schema.MEASUREMENT_COLUMNS:
        if column in table.columns and table[column].notna().any():
            cells = [_interval_text(row, column) for _, row in table.iterrows()]
            columns.append((column, cells))
    predictor_columns = [c for c in table.columns if c.endswith("_predictor")]
    cells = [_predictors_text(row, predictor_columns) for _, row in table.iterrows()]
    columns.append(("predictors", cells))
    if "in_domain" in table.columns:
        columns.append(("in training domain", [domain_text(row) for _, row in table.iterrows()]))
    widths = [max(len(name), *(len(cell) for cell in cells)) for name, cells in columns]
    lines = ["  ".join(name.ljust(width) for (name, _), width in zip(columns, widths, strict=True))]
    for index in range(len(table)):
        lines.append("  ".join(cells[index].ljust(width) for (_, cells), width in zip(columns, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def _predictors_text(row: pd.Series, predictor_columns: list[str]) -> str:
    """'latency: poly v1  memory: svr v2', and where intervals are not calibrated on random splits 'intervals: families'
    as an item of its own when every metric's are, '(intervals: families)' after each such metric otherwise."""
    metrics = [c[: -len("_predictor")] for c in predictor_columns if isinstance(row[c], str)]
    items = [f"{metric}: {row[f'{metric}_predictor']}" for metric in metrics]
    marks = [mark if isinstance(mark := row.get(f"{metric}_intervals"), str) and mark != RANDOM else None
             for metric in metrics]
    if marks and None not in marks and len(set(marks)) == 1:
        return "  ".join(items) + f"  intervals: {marks[0]}"
    return "  ".join(item + (f" (intervals: {mark})" if mark else "") for item, mark in zip(items, marks, strict=True))


def json_records(table: pd.DataFrame) -> list[dict]:
    """A prediction table as JSON-ready records: NaN becomes null, numpy numbers plain numbers."""
    records = json.loads(table.to_json(orient="records"))
    for record in records:
        for key, value in list(record.items()):
            if isinstance(value, float) and math.isnan(value):
                record[key] = None
    return records


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `perfpred predict`."""
    parser.add_argument("model", metavar="MODEL", help="Keras JSON descriptor (Keras 3 or 2), .keras file, ONNX file, or app:NAME (keras.applications)")
    parser.add_argument("--input-size", type=int, metavar="N", help="input width N of an N x N x 3 image (default: the descriptor's; 224 for app:)")
    parser.add_argument("--target", action="append", metavar="T", help="a target to predict (repeatable; default: every target with a champion)")
    parser.add_argument("--level", type=float, default=DEFAULT_LEVEL, help=f"level of the prediction intervals (default {DEFAULT_LEVEL})")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI of the registry (default: $MLFLOW_TRACKING_URI, else the local store)")
    parser.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    parser.add_argument("--calibration", choices=(AUTO, RANDOM, "families", "sizes", "architectures", "synthetic"),
                        default=AUTO, help="held-out rows that calibrate the intervals: auto (default: random splits "
                        "for an architecture the predictor was trained on at some input size, families never seen for "
                        "an architecture of your own), random splits, families, or a test domain")


def predict_from_args(args: argparse.Namespace) -> pd.DataFrame:
    """The prediction table that the command-line arguments ask for."""
    if args.input_size is not None and args.input_size <= 0:
        raise ValueError(f"--input-size must be a positive width in pixels, got {args.input_size}")
    return predict_model(args.model, args.input_size, args.target, args.level, args.tracking_uri, args.calibration)


def run(args: argparse.Namespace) -> int:
    """Print the predictions of MODEL on the selected targets."""
    table = predict_from_args(args)
    if args.json:
        print(json.dumps(json_records(table), indent=2))
        return 0
    print(format_table(table))
    if "in_domain" in table.columns and (table["in_domain"] == False).any():  # noqa: E712 (None is unknown, not out)
        print(OUTSIDE_NOTE)
    return 0


#: printed under a table with a row outside its training domain
OUTSIDE_NOTE = (
    "NO: the model lies outside that target's training domain (a feature beyond the measured range, or far from "
    "every measured network): the prediction is an extrapolation and its interval is widened."
)


def _interval_text(row: pd.Series, column: str) -> str:
    value = row[column]
    if pd.isna(value):
        return "-"
    low, high = row.get(f"{column}_low"), row.get(f"{column}_high")
    if low is None or pd.isna(low):
        return f"{value:.4g}"
    return f"{value:.4g} [{low:.4g}, {high:.4g}]"


def _metric_order(metric: str) -> int:
    order = list(schema.METRIC_COLUMNS)
    return order.index(metric) if metric in order else len(order)


@cache
def _target_config(target: str) -> dict:
    try:
        return config.target_config(target)
    except config.ConfigError:
        return {}  # a target registered in a shared store but not configured in this checkout


def _store(tracking_uri: str | None) -> str:
    from perfpred.serve import registry

    return f"the MLflow store {registry.tracking_uri(tracking_uri)}"
