"""Re-measure zoo models on a target and compare with its table: the noise floor a predictor's MAPE cannot beat.

    python benchmarks/remeasure_zoo.py --target host-cpu-onnxruntime --family basic_model
    python benchmarks/remeasure_zoo.py --target host-cpu-tf --every 3
    python benchmarks/remeasure_zoo.py --target host-cpu-tf --against /tmp/fresh/data/measurements/host-cpu-tf.parquet

`--against TABLE` measures nothing: it compares the target's table with another run's (a fresh clone's `make run`).

The models run exactly as the measure stage runs them (perfpred.measure.stage.measure_many: the configured
schedule, fork server, `measure.parallel` workers, pinned timing CPU), minutes or days after the table was made.
Prints each model's table and new latency and their relative difference, then, per family, the mean absolute
difference: a MAPE that a perfect predictor of the table would score against the new run. Comparing it with a
predictor's MAPE on the same family says how much of that MAPE is the measurement's own scatter.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from perfpred import config
from perfpred.measure import runners
from perfpred.measure import stage as measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="a local target with a measured table, e.g. host-cpu-onnxruntime")
    parser.add_argument("--family", action="append", help="only these families (repeatable; default: all)")
    parser.add_argument("--every", type=int, default=1, help="every n-th model of the selection")
    parser.add_argument("--against", help="another run's table of the target (parquet): compare, measure nothing")
    args = parser.parse_args()
    params = config.load_params()
    table = pd.read_parquet(config.path("measurements", params) / f"{args.target}.parquet")
    table = table[table["status"] == "ok"]
    if args.family:
        table = table[table["family"].isin(args.family)]
    table = table.sort_values(["family", "model"]).iloc[::args.every]
    manifest = pd.read_csv(config.path("zoo", params) / "manifest.csv").set_index("name")
    entries = [(row.model, config.project_root() / manifest.loc[row.model, "descriptor"], int(row.input_width))
               for row in table.itertuples()]
    before = table.set_index("model")
    rows = []
    for model, latency_ms in _other_run(args, entries, params):
        table_ms = before.loc[model, "latency_ms"]
        difference = latency_ms / table_ms - 1.0
        rows.append({"model": model, "family": before.loc[model, "family"], "table_ms": table_ms, "now_ms": latency_ms,
                     "difference": difference})
        print(f"{model:40s} table {table_ms:9.4f} ms  now {latency_ms:9.4f} ms  {difference:+7.1%}", flush=True)
    result = pd.DataFrame(rows)
    result["abs_pct"] = result["difference"].abs() * 100
    print()
    for family, group in result.groupby("family"):
        print(f"{family:20s} {len(group):3d} models: mean |difference| {group.abs_pct.mean():5.1f} %, median "
              f"{group.abs_pct.median():5.1f} %, worst {group.abs_pct.max():5.1f} %; median signed "
              f"{np.median(group.difference):+.1%}")
    shift = float(np.median(1.0 + result["difference"]))
    print(f"{'all':20s} {len(result):3d} models: mean |difference| {result.abs_pct.mean():5.1f} %, median "
          f"{result.abs_pct.median():5.1f} %; around the common shift ({shift - 1:+.1%}): mean "
          f"{(np.abs((1.0 + result['difference']) / shift - 1.0) * 100).mean():.1f} %")


def _other_run(args, entries, params):
    """(model, latency_ms) of the other run: measured now, or read from --against."""
    if args.against:
        other = pd.read_parquet(args.against)
        other = other[other["status"] == "ok"].set_index("model")["latency_ms"]
        yield from ((model, float(other[model])) for model, _, _ in entries if model in other.index)
        return
    target, settings = measure.target_settings(args.target, params)
    with runners.ForkServer(measure.parallel_workers(settings)) as server:
        for (model, _, _), row in measure.measure_many(entries, target, settings, server):
            if row["status"] != "ok":
                print(f"{model:40s} failed: {row['reason'][:100]}", flush=True)
                continue
            yield model, row["latency_ms"]


if __name__ == "__main__":
    main()
