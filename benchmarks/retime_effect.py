"""What timing again in slow spells does to the kernel model: the same measuring session, with and without it.

    python benchmarks/retime_effect.py [--target host-cpu-tf ...]

The measure and kernel_measure stages journal every timing (stage.retime_slow: a model found slow by the machine
probe is timed again once, the row with the lower probe kept). This rebuilds each target's zoo and kernel tables from
the journals' FIRST timings (what the stages wrote before `retime_slow` existed), in a scratch folder, and fits the
kernel model on both versions as `kernel-train` does (kernels.training.fit_target, seed 0): out-of-fold kernel MAPE,
and whole zoo models predicted with their family left out (MAPE, share within 10 %). Nothing under data/ is written.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import warnings
from pathlib import Path

import pandas as pd

from perfpred import config
from perfpred.kernels import training
from perfpred.kernels.measurement import kernels_dir


def first_timings(journal: Path) -> dict[str, float]:
    """Latency of each model's first ok timing under the journal's latest settings."""
    rows = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    sid = rows[-1]["settings_id"]
    first: dict[str, float] = {}
    for row in rows:
        if row["settings_id"] == sid and row.get("status") == "ok" and int(row.get("timings") or 1) == 1:
            first.setdefault(row["model"], row["latency_ms"])
    return first


def first_timing_table(table: Path, journal: Path, key: str, out: Path) -> int:
    """`table` with each row's latency replaced by its first timing, written to `out`; rows changed."""
    frame = pd.read_parquet(table)
    first = first_timings(journal)
    before = frame["latency_ms"].copy()
    frame["latency_ms"] = [first.get(name, value) for name, value in zip(frame[key], frame["latency_ms"], strict=True)]
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out, index=False)
    return int((frame["latency_ms"] != before).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", action="append", help="default: every target with kernel measurements")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    params = config.load_params()
    targets = args.target or training.measured_targets(params)
    print("| target | tables | zoo rows timed again | kernels timed again | kernel MAPE % | families left out: MAPE % "
          "| within 10 % |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        first = copy.deepcopy(params)
        first["paths"]["measurements"] = str(Path(scratch) / "measurements")
        first["paths"]["kernels"] = str(Path(scratch) / "kernels")
        for target in targets:
            zoo_rows = first_timing_table(config.path("measurements", params) / f"{target}.parquet",
                                          config.path("measure_runs", params) / target / "journal.jsonl", "model",
                                          config.path("measurements", first) / f"{target}.parquet")
            kernel_rows = first_timing_table(kernels_dir(params) / "measurements" / f"{target}.parquet",
                                             kernels_dir(params) / "runs" / target / "journal.jsonl", "name",
                                             kernels_dir(first) / "measurements" / f"{target}.parquet")
            for label, chosen in (("first timings", first), ("as kept (timed again)", params)):
                _, metrics = training.fit_target(target, chosen)
                print(f"| {target} | {label} | {zoo_rows} | {kernel_rows} | {metrics['kernel_mape']:.1f} | "
                      f"{metrics['model_mape_unseen_family']:.1f} | {metrics['model_within_10pct_unseen_family']:.0f} |",
                      flush=True)


if __name__ == "__main__":
    main()
