"""Do two measurement runs of one zoo agree better once the models timed in slow spells are timed again?

    python benchmarks/retime_agreement.py data/measurements/runs/host-cpu-tf/journal.jsonl /tmp/other/journal.jsonl

Each journal is one run of the measure stage (a fresh clone's, or `measure --zoo` into another folder) with the
machine probe (agent.machine_probe_us) and `measure.retime_slow`. For every model both runs measured, the latency of
each run's first timing (`timings` 1) and of the row the run kept (its last journal row) are compared: the mean
absolute log ratio between the runs, less its median (the two runs' machines may differ in speed overall, which no
row-level choice can undo and a within-table fit never sees). Smaller: the runs agree better, the labels carry less
of the machine's noise. Printed per group: the models timed again in either run, and the others.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd


def runs(path: Path) -> pd.DataFrame:
    """Per model: the first timing's latency and probe, and the kept row's (the journal's last of the model)."""
    rows = pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
    rows = rows[rows["status"] == "ok"]
    key = rows["model"] + "@" + rows["requested_width"].astype(str)
    first = rows[rows.get("timings", 1) == 1].assign(key=key).groupby("key").first()
    kept = rows.assign(key=key).groupby("key").last()
    return pd.DataFrame({"first_ms": first["latency_ms"], "kept_ms": kept["latency_ms"],
                         "timed_again": kept["timings"].fillna(1) >= 2})


def spread(a: pd.Series, b: pd.Series) -> float:
    """Mean absolute log ratio less its median, as a percentage."""
    ratio = np.log(a / b)
    return float(100 * np.mean(np.abs(ratio - ratio.median())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("journals", nargs=2, type=Path)
    args = parser.parse_args()
    a, b = (runs(path) for path in args.journals)
    both = a.add_suffix("_a").join(b.add_suffix("_b"), how="inner")
    again = both["timed_again_a"] | both["timed_again_b"]
    print(f"{len(both)} models in both runs; timed again: {int(both['timed_again_a'].sum())} in the first run, "
          f"{int(both['timed_again_b'].sum())} in the second")
    print(f"overall speed, second run / first: {np.exp(np.median(np.log(both['kept_ms_b'] / both['kept_ms_a']))):.3f}")
    print("| models | n | first timings: spread % | kept rows: spread % |")
    print("|---|---|---|---|")
    for label, chosen in (("all", both.index == both.index), ("timed again in either run", again),
                          ("timed once in both", ~again)):
        part = both[chosen]
        if len(part):
            print(f"| {label} | {len(part)} | {spread(part['first_ms_b'], part['first_ms_a']):.1f} | "
                  f"{spread(part['kept_ms_b'], part['kept_ms_a']):.1f} |")


if __name__ == "__main__":
    main()
