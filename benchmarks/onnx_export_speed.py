"""Time of exporting zoo descriptors to ONNX: perfpred's path (`export_keras`) against Keras' own `model.export`
(or, `--baseline per-pass-sync`, against perfpred's path as it was before `_one_proto_sync`).

Each export runs in a forked child (as the measure stage's), the two ways interleaved model by model and in
alternating order, so that the machine's drift falls on both; every export is checked to compute the Keras
model (ONNX Runtime on the same input) and the two graphs to have the same computing operators (as multisets: tf2onnx's
topological order of independent nodes, and whether it folds the dynamic batch's shape arithmetic, vary between
runs of either way). tf2onnx's output is not fully deterministic either way: MobileNetV3Large's graph has 274 or
275 nodes (one Reshape) from run to run, whichever exporter (4 exports each under PYTHONHASHSEED 0-3), so a model or
two per run are reported as differing.

2026-11-30, every 4th model of the small zoo: 24 models, perfpred 101 s against Keras 148 s (ratio 0.69, per model
0.45-1.25, median 0.70); ConvNeXtTiny_96 only by perfpred (Keras' export leaves a call ONNX Runtime cannot load).

    python benchmarks/onnx_export_speed.py --manifest data/zoo/manifest.csv --every 4
    python benchmarks/onnx_export_speed.py --every 4 --baseline per-pass-sync
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import pandas as pd
from speed_report import model_line, totals

from perfpred.measure import onnx_runtime
from perfpred.measure.agent import in_child
from perfpred.measure.onnx_runtime import _freeze_normalization_inputs, check_output, export_keras

#: Nodes of the dynamic batch's shape arithmetic, which tf2onnx folds in some runs and not in others (either way).
SHAPE_OPS = {"Shape", "Gather", "Slice", "Concat", "Cast", "Unsqueeze", "Squeeze", "ReduceProd"}


def _export(descriptor_text: str, path: str, way: str) -> dict:
    import keras
    import onnx

    keras.utils.set_random_seed(0)
    model = keras.models.model_from_json(descriptor_text)
    if way in ("perfpred", "per-pass-sync"):
        if way == "per-pass-sync":  # tf2onnx writing every node to its protobuf after each optimizer pass (this child only)
            onnx_runtime._one_proto_sync = contextlib.nullcontext
        built = export_keras(model, Path(path))
        seconds = built["export_s"]
    else:  # Keras' exporter on the same weights (export_keras randomises them and calls the model first)
        built = export_keras(model, Path(path + ".warm.onnx"))
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            model.export(path, format="onnx")
        _freeze_normalization_inputs(model, Path(path))  # as export_keras does (keras.layers.Normalization)
        seconds = time.perf_counter() - started
    check_output(path, built["inputs"], built["expected_output"])
    return {"seconds": seconds, "ops": sorted(node.op_type for node in onnx.load(path).graph.node
                                              if node.op_type not in SHAPE_OPS)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default="data/zoo/manifest.csv")
    parser.add_argument("--every", type=int, default=4, help="every n-th model of the manifest (paths relative to the working folder)")
    parser.add_argument("--baseline", choices=("keras", "per-pass-sync"), default="keras",
                        help="what perfpred's path is compared with (default: Keras' own export)")
    args = parser.parse_args()
    base = args.baseline
    manifest = pd.read_csv(args.manifest)
    rows, failed = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for position, model in enumerate(manifest.itertuples()):
            if position % args.every:
                continue
            text = json.dumps(json.loads(Path(model.descriptor).read_text()))
            ways = ("perfpred", base) if len(rows) % 2 == 0 else (base, "perfpred")
            try:
                done = {way: in_child(_export, text, f"{scratch}/{way}.onnx", way) for way in ways}
            except RuntimeError as error:  # e.g. ConvNeXt: tf2onnx leaves a StatefulPartitionedCall either way
                failed.append(model.name)
                print(f"{model.name:40s} not exported: {str(error)[:150]}", flush=True)
                continue
            same = done["perfpred"]["ops"] == done[base]["ops"]
            rows.append({"model": model.name, "perfpred_s": done["perfpred"]["seconds"],
                         "base_s": done[base]["seconds"], "same_ops": same})
            print(model_line(model.name, {"perfpred": rows[-1]["perfpred_s"], base: rows[-1]["base_s"]}, same,
                             "same operators", "OPERATORS DIFFER"), flush=True)
    table = pd.DataFrame(rows).rename(columns={"base_s": f"{base}_s"})
    print(f"\n{totals(table, 'perfpred', base)}; same operators: {int(table.same_ops.sum())}/{len(table)}; "
          f"not exported: {', '.join(failed) or 'none'}")


if __name__ == "__main__":
    main()
