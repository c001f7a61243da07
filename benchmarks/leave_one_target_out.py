"""Leave one target out: how well `perfpred adapt` predicts a target from k of its rows and the other targets' tables.

    python benchmarks/leave_one_target_out.py [--targets jetson-nano,...] [--metrics latency,...] [--draws 20]

For each left-out target (every Jetson board and host toolchain with a table) and metric, the pooled model of the
other targets is fitted once; then for k in {0, 5, 10, 20, 50, 100} (k < rows - 10) and each draw it scores, on the
left-out target's rows that were not given:
  adapt_random    adapt on k random rows (draw d: numpy seed d)
  adapt_selected  adapt on k rows chosen by k-medoids (perfpred.model.select: features and source predictions),
                  k-means seeded with the draw so that the draws differ (the `select` command uses seed 0)
  per_target      the target's tuned svr (as `perfpred train` builds it) fitted on the same k random rows alone
  champion        the full per-target champion's mean MAPE on 80/20 splits (metrics/<target>-<metric>.json)
  coverage_90     share of those rows inside the 90 % interval calibrated on the k rows' out-of-fold predictions
                  as `adapt` calibrates it (transfer.calibration)
                  (first 5 draws, k >= 10)
k = 0 is zero-shot: the hardware descriptor only. One MLflow parent run per left-out target (experiment
`leave-one-target-out`, store from MLFLOW_TRACKING_URI), nested runs per (metric, k). Writes
reports/leave_one_target_out.md and .json, and reports/leave_one_target_out.png (learning curves).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import numpy as np

from perfpred import config
from perfpred.data import schema
from perfpred.model import estimators, hardware, select, sweep, train, transfer
from perfpred.model.pooled import targets_with_table

KS = (0, 5, 10, 20, 50, 100)
COVERAGE_DRAWS = 5
LEVEL = 0.9


def mape(measured, predicted) -> float:
    return sweep.mape_pct(measured, predicted)


def champion_mape(target: str, metric: str) -> float:
    """The committed per-target champion's mean MAPE over train's seed splits (NaN without a metrics file).

    metrics/champions/<target>-<metric>.json since the train stage's MAPE-only summary; metrics/<target>-<metric>.json
    (with every algorithm's figures) before it.
    """
    champions = config.path("metrics") / "champions" / f"{target}-{metric}.json"
    if champions.exists():
        return float(json.loads(champions.read_text())["mape_mean"])
    path = config.path("metrics") / f"{target}-{metric}.json"
    if not path.exists():
        return float("nan")
    summary = json.loads(path.read_text())
    return float(summary["algorithms"][summary["champion"]]["mape_mean"])


class CachedSources:
    """The fitted source model with its per-source predictions of the left-out table computed once (rows by index)."""

    def __init__(self, source_model, features):
        self.model = source_model
        self.cache = {name: source_model.predict_as(features, name) for name in source_model.targets_}
        self.index = features.index
        self.reference = {name: source_model.predict_as(source_model.reference_features_, name)
                          for name in source_model.targets_}

    def __getattr__(self, name):
        return getattr(self.model, name)

    def predict_as(self, features, name):
        if features is self.model.reference_features_:
            return self.reference[name]
        if features.index.isin(self.index).all() and len(features.index) == len(set(features.index)):
            return self.cache[name][self.index.get_indexer(features.index)]
        return self.model.predict_as(features, name)


def one_draw(source_model, descriptor, table, features, measured, k, draw, svr, coverage: bool,
             source_logs=None) -> dict:
    """Scores of one draw of k rows."""
    from sklearn.base import clone

    rng = np.random.default_rng(draw)
    everything = np.arange(len(table))
    result = {}
    random_rows = rng.choice(len(table), k, replace=False)
    selected_rows = np.asarray(select.k_medoids(table[features], k, seed=draw, source_logs=source_logs))
    for name, rows in (("adapt_random", random_rows), ("adapt_selected", selected_rows)):
        rest = np.setdiff1d(everything, rows)
        adapted = transfer.AdaptedRegressor(source_model, descriptor).fit(table.iloc[rows][features], measured[rows])
        predicted = adapted.predict(table.iloc[rest][features])
        result[name] = mape(measured[rest], predicted)
        if name == "adapt_random" and coverage:
            held, held_predicted = transfer.out_of_fold(adapted, table.iloc[rows][features], measured[rows])
            low, high = sweep.interval_factors(transfer.calibration(measured[rows], held, held_predicted), LEVEL)
            result["coverage_90"] = float(np.mean((measured[rest] >= predicted * low) & (measured[rest] <= predicted * high)))
    rest = np.setdiff1d(everything, random_rows)
    try:
        alone = clone(svr).fit(table.iloc[random_rows][features], measured[random_rows])
        result["per_target"] = mape(measured[rest], alone.predict(table.iloc[rest][features]))
    except ValueError:  # too few rows for the svr's pipeline
        result["per_target"] = float("nan")
    return result


def leave_out(target: str, metric: str, draws: int, first_draw: int = 0, ks=KS) -> list[dict]:
    """Every (k, draw) score of one left-out (target, metric)."""
    table = estimators.training_table(target, metric)
    features = estimators.feature_columns(table)
    measured = table[schema.metric_column(metric)].to_numpy("float64")
    descriptor = hardware.descriptor(target)
    sources = transfer.default_sources(target, metric, descriptor)  # what `perfpred adapt` learns from by default
    started = time.monotonic()
    source_model = CachedSources(transfer.fit_sources(sources, metric, features), table[features])
    svr = train.build_estimator(train.tuned_config(target, metric, "svr")[0].algorithm, target, metric)
    champion = champion_mape(target, metric)
    zero_shot = transfer.AdaptedRegressor(source_model, descriptor).fit(None)
    source_logs = transfer.source_predictions(source_model, table[features])  # what select places the rows by
    records = [{"target": target, "metric": metric, "k": 0, "draw": 0, "sources": ",".join(sources), "champion": champion,
                "adapt_random": mape(measured, zero_shot.predict(table[features]))}]
    for k in (k for k in ks if k > 0):
        if k > len(table) - 10:
            continue
        for draw in range(first_draw, first_draw + draws):
            scores = one_draw(source_model, descriptor, table, features, measured, k, draw, svr,
                              coverage=k >= 10 and draw < first_draw + COVERAGE_DRAWS, source_logs=source_logs)
            records.append({"target": target, "metric": metric, "k": k, "draw": draw, "sources": ",".join(sources),
                            "champion": champion, **scores})
        done = [r for r in records if r["k"] == k]
        print(f"{target} {metric} k={k}: adapt random {np.mean([r['adapt_random'] for r in done]):.2f} %, selected "
              f"{np.mean([r['adapt_selected'] for r in done]):.2f} %, per-target svr "
              f"{np.nanmean([r['per_target'] for r in done]):.1f} % ({time.monotonic() - started:.0f} s)",
              file=sys.stderr, flush=True)
    return records


def summarise(records: list[dict]) -> list[dict]:
    """Mean, p5 and p95 over draws per (target, metric, k)."""
    import pandas as pd

    frame = pd.DataFrame(records)
    rows = []
    for (target, metric, k), group in frame.groupby(["target", "metric", "k"], sort=False):
        row = {"target": target, "metric": metric, "k": int(k), "draws": len(group), "champion": group["champion"].iloc[0]}
        for column in ("adapt_random", "adapt_selected", "per_target", "coverage_90"):
            values = group[column].dropna().to_numpy() if column in group else np.empty(0)
            row[column] = float(values.mean()) if values.size else float("nan")
            if column.startswith("adapt") and values.size > 1:
                row[f"{column}_p5"], row[f"{column}_p95"] = (float(v) for v in np.percentile(values, [5, 95]))
        rows.append(row)
    return rows


def log_mlflow(summary: list[dict]) -> None:
    """One parent run per left-out target, a nested run per (metric, k)."""
    import mlflow

    from perfpred.serve import registry

    registry.client()
    mlflow.set_experiment("leave-one-target-out")
    for target in dict.fromkeys(r["target"] for r in summary):
        with mlflow.start_run(run_name=f"leave-out-{target}", tags={"target": target}):
            for row in (r for r in summary if r["target"] == target):
                with mlflow.start_run(run_name=f"{row['metric']}-k{row['k']}", nested=True):
                    mlflow.log_params({"metric": row["metric"], "k": row["k"], "draws": row["draws"]})
                    mlflow.log_metrics({k: float(v) for k, v in row.items()
                                        if isinstance(v, float) and np.isfinite(v)})


def write_outputs(summary: list[dict], records: list[dict], conditions: str) -> None:
    """reports/leave_one_target_out.{md,json} and reports/leave_one_target_out.png (plots/ belongs to the train stage: DVC clears it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reports = config.path("reports")
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "leave_one_target_out.json").write_text(json.dumps({"summary": summary, "records": records}, default=float))
    lines = ["# Leave one target out: MAPE (%) on the left-out target's other rows", "",
             f"`python benchmarks/leave_one_target_out.py`; {conditions}. Mean over draws [p5, p95]; k = 0 is "
             "zero-shot (hardware descriptor only). champion: the full per-target champion (80/20 splits).", "",
             "| target | metric | k | adapt random | adapt selected | per-target svr (same k) | champion | coverage 90 |",
             "|---|---|---|---|---|---|---|---|"]

    def cell(row, name):
        if not np.isfinite(row.get(name, float("nan"))):
            return "-"
        spread = f" [{row[name + '_p5']:.1f}, {row[name + '_p95']:.1f}]" if f"{name}_p5" in row else ""
        return f"{row[name]:.2f}{spread}"

    for row in summary:
        lines.append(f"| {row['target']} | {row['metric']} | {row['k']} | {cell(row, 'adapt_random')} | "
                     f"{cell(row, 'adapt_selected')} | {cell(row, 'per_target')} | {cell(row, 'champion')} | "
                     f"{cell(row, 'coverage_90')} |")
    (reports / "leave_one_target_out.md").write_text("\n".join(lines) + "\n")
    metrics = list(dict.fromkeys(r["metric"] for r in summary))
    figure, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    for axis, metric in zip(axes[0], metrics, strict=True):
        for target in dict.fromkeys(r["target"] for r in summary if r["metric"] == metric):
            rows = [r for r in summary if r["metric"] == metric and r["target"] == target and r["k"] > 0]
            line, = axis.plot([r["k"] for r in rows], [r["adapt_random"] for r in rows], marker="o", label=f"{target} random")
            axis.plot([r["k"] for r in rows], [r["adapt_selected"] for r in rows], marker="s", linestyle="--",
                      color=line.get_color(), label=f"{target} selected")
        axis.set(xscale="log", yscale="log", xlabel="k measured rows of the left-out target", ylabel="MAPE (%)",
                 title=f"{metric}: adapt from the other targets")
        axis.legend(fontsize=6)
    figure.savefig(reports / "leave_one_target_out.png", dpi=110, bbox_inches="tight")
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", help="comma-separated left-out targets (default: every target with a table)")
    parser.add_argument("--metrics", default=",".join(schema.METRIC_COLUMNS), help="comma-separated metrics")
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--first-draw", type=int, default=0,
                        help="numpy seed of the first draw (the report's figures: 0; choose settings on others, e.g. 100)")
    parser.add_argument("--ks", default=",".join(map(str, KS)), help="comma-separated k values (default: all)")
    parser.add_argument("--no-write", action="store_true", help="print the table only (tuning runs: leave reports/ as it is)")
    parser.add_argument("--conditions", default="2-core VM shared with other jobs", help="load conditions for the report")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    records = []
    for metric in args.metrics.split(","):
        targets = args.targets.split(",") if args.targets else targets_with_table(metric)
        for target in targets:
            if metric in config.target_config(target).get("metrics", []):
                records += leave_out(target, metric, args.draws, args.first_draw, tuple(int(k) for k in args.ks.split(",")))
                if not args.no_write:
                    write_outputs(summarise(records), records, args.conditions)  # after each: a long run keeps what it did
    summary = summarise(records)
    if args.no_write:
        for row in summary:
            print(row["target"], row["metric"], row["k"], *(f"{row.get(c, float('nan')):.2f}" for c in
                  ("adapt_random", "adapt_selected", "per_target", "coverage_90")))
        return 0
    log_mlflow(summary)
    print((config.path("reports") / "leave_one_target_out.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
