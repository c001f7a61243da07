"""Time of converting zoo descriptors to TFLite: the measure stage's conversion (agent.convert_tflite, freezing
without rebuilding a ConcreteFunction: agent._freezing_without_rebuild) against the same conversion with
TensorFlow's stock freezing, interleaved model by model in alternating order, each conversion in a forked child
as the measure stage's; the two flatbuffers are compared byte for byte.

    python benchmarks/tflite_convert_speed.py --manifest data/zoo/manifest.csv --every 4
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import statistics
from pathlib import Path

import pandas as pd

from perfpred.measure import agent


def _convert(descriptor: dict, way: str) -> dict:
    if way == "stock":
        agent._freezing_without_rebuild = contextlib.nullcontext  # this child only
    flatbuffer, built = agent.convert_tflite(descriptor, {"seed": 0})
    return {"seconds": built["convert_s"], "sha1": hashlib.sha1(flatbuffer).hexdigest()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default="data/zoo/manifest.csv")
    parser.add_argument("--every", type=int, default=4, help="every n-th model of the manifest")
    args = parser.parse_args()
    manifest = pd.read_csv(args.manifest)
    rows = []
    for position, model in enumerate(manifest.itertuples()):
        if position % args.every:
            continue
        descriptor = agent.prepare_descriptor(json.loads(Path(model.descriptor).read_text()), None)
        ways = ("perfpred", "stock") if len(rows) % 2 == 0 else ("stock", "perfpred")
        done = {way: agent.in_child(_convert, descriptor, way) for way in ways}
        rows.append({"model": model.name, "perfpred_s": done["perfpred"]["seconds"], "stock_s": done["stock"]["seconds"],
                     "same_bytes": done["perfpred"]["sha1"] == done["stock"]["sha1"]})
        print(f"{model.name:40s} perfpred {rows[-1]['perfpred_s']:5.2f} s  stock {rows[-1]['stock_s']:5.2f} s  "
              f"{'same flatbuffer' if rows[-1]['same_bytes'] else 'FLATBUFFERS DIFFER'}", flush=True)
    table = pd.DataFrame(rows)
    ratios = table.perfpred_s / table.stock_s
    print(f"\n{len(table)} models: perfpred {table.perfpred_s.sum():.0f} s, stock {table.stock_s.sum():.0f} s (total ratio "
          f"{table.perfpred_s.sum() / table.stock_s.sum():.2f}; per model median {statistics.median(ratios):.2f}, range "
          f"{ratios.min():.2f}-{ratios.max():.2f}); byte-identical flatbuffers: {int(table.same_bytes.sum())}/{len(table)}")


if __name__ == "__main__":
    main()
