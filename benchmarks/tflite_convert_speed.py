"""Time of converting zoo descriptors to TFLite: the measure stage's conversion (agent.convert_tflite, freezing
without rebuilding a ConcreteFunction: agent._freezing_without_rebuild) against the same conversion with
TensorFlow's stock freezing, interleaved model by model in alternating order, each conversion in a forked child
as the measure stage's; the two flatbuffers are compared byte for byte.

2026-12-02, every 4th model of the small zoo: 25 models, perfpred 45 s against stock 72 s (total ratio 0.63; per
model median 0.70, range 0.50-1.19); byte-identical flatbuffers 25/25.

    python benchmarks/tflite_convert_speed.py --manifest data/zoo/manifest.csv --every 4
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
from pathlib import Path

import pandas as pd
from speed_report import model_line, totals

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
        print(model_line(model.name, {"perfpred": rows[-1]["perfpred_s"], "stock": rows[-1]["stock_s"]},
                         rows[-1]["same_bytes"], "same flatbuffer", "FLATBUFFERS DIFFER"), flush=True)
    table = pd.DataFrame(rows)
    print(f"\n{totals(table, 'perfpred', 'stock')}; byte-identical flatbuffers: {int(table.same_bytes.sum())}/{len(table)}")


if __name__ == "__main__":
    main()
