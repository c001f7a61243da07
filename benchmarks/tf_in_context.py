"""Kernels timed inside the models on TensorFlow: the TF profiler on the zoo, attributed to the detector's kernels.

    python benchmarks/tf_in_context.py [--runs 20] [--out /tmp/tf-in-context] [--nodes FILE]

The TensorFlow counterpart of benchmarks/ort_in_context.py (read its docstring for the three questions). Each zoo
model of the host-cpu-tf table is built from its descriptor and called through tf.function on one intra-op thread;
`tf.profiler.experimental` traces `--runs` calls; every op event of the trace is named `<model>/<layer>_1/<op>`, so its
time goes to its Keras layer, and a kernel of `perfpred kernels` (perfpred.kernels.detector under the target's
fusion rules, the kernels `predict` sums) gets the time of its layers. Those in-model kernel times are what a kernel
predictor would learn from instead of kernels measured alone; the leave-one-family-out figure uses the same
KernelRegressor and the same map as the ONNX Runtime benchmark (kernel sum and kernel count to latency, least
squares on relative error).

Found on 2026-11-30 (98 zoo models, 9,080 kernels, 20 profiled calls each on one intra-op thread, 3 min): on
TensorFlow the trace does not yet account for a model's time. A model's traced op time is 0.82 of its measured
latency (median; p10 0.57, p90 1.00), the method's ceiling through the map is 46.5 % MAPE (against 4.0 % on ONNX
Runtime), and the family-out figure (50.8 %) says nothing yet about in-model training data:
- ConvNeXt's op events sum to 0.15 of its latency: its 7x7 depthwise convolutions run as an XLA executable
  (`CpuExecutable::ExecuteAsyncOnStream`, `convolution.1` events without a layer scope), which this attribution skips;
- the synthetic networks (basic_model, 99.7 % family-out) and NASNet (93.6 %) are many small ops, where the time
  between op events (the executor's own work) is most of the model and the trace does not show it.
Attributing XLA clusters to their layers and the executor's time between ops come before this can teach a kernel
predictor. (Unpinned, the first run of this benchmark gave a ceiling of 38.7 %: two threads hid part of the gap.)
"""

from __future__ import annotations

import collections
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from ort_in_context import arguments, profiled_table, report

from perfpred import config

TARGET = "host-cpu-tf"


def layer_times(descriptor: dict, input_width: int, runs: int) -> tuple[dict[str, float], float, int]:
    """Median in-model time (ms) of every Keras layer over `runs` profiled calls; ms no layer claims; op events per call."""
    import keras
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    keras.backend.clear_session()
    model = keras.models.model_from_json(json.dumps(descriptor))
    names = {layer.name for layer in model.layers}
    shape = [1 if d is None else int(d) for d in model.inputs[0].shape]
    image = np.random.default_rng(0).standard_normal(shape).astype("float32")
    call = tf.function(lambda x: model(x, training=False))
    for _ in range(5):
        call(image)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(runs):
            call(image)
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(next(Path(logdir).rglob("*.xplane.pb")).read_bytes())
    per_layer, unclaimed, events = collections.defaultdict(float), 0.0, 0
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" not in name or "/" not in name:
                    continue  # executor and thread-pool bookkeeping, not an op
                events += 1
                part = name.split("/")[1]
                layer = part if part in names else re.sub(r"_\d+$", "", part)
                if layer in names:
                    per_layer[layer] += event.duration_ps / 1e9 / runs
                else:
                    unclaimed += event.duration_ps / 1e9 / runs
    return dict(per_layer), unclaimed, events // runs


def profiled_zoo(runs: int) -> pd.DataFrame:
    """Every detected kernel of every measured zoo model, with its in-model time from the profile."""
    import warnings

    import tensorflow as tf
    from tqdm import tqdm

    from perfpred.features import descriptors
    from perfpred.kernels import detector

    tf.config.threading.set_intra_op_parallelism_threads(1)  # as the harness runs the target (before any op runs)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    rules = detector.fusion_rules(TARGET)
    table = pd.read_parquet(config.path("measurements") / f"{TARGET}.parquet")
    table = table[table["status"] == "ok"]
    manifest = pd.read_csv(config.path("zoo") / "manifest.csv").set_index("name")
    rows = []
    for model in tqdm(table.itertuples(), total=len(table), desc="profiling", file=sys.stderr):
        if model.model not in manifest.index:
            continue
        path = config.project_root() / manifest.loc[model.model, "descriptor"]
        descriptor = json.loads(path.read_text())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            times, unclaimed, ops = layer_times(descriptor, int(model.input_width), runs)
        kernels = detector.detect_graph(descriptors.load(path), rules)
        for kernel in kernels:
            rows.append({"model": model.model, "family": model.family, "latency_ms": model.latency_ms,
                         "unclaimed_ms": unclaimed, "ops_per_call": ops, "kind": kernel.kind,
                         "ms": sum(times.get(layer, 0.0) for layer in kernel.layers), **kernel.features()})
    return pd.DataFrame(rows)


def main() -> int:
    args = arguments(__doc__, 20, "kernel")
    kernels = profiled_table(args, profiled_zoo, "kernels.parquet")
    models = kernels.groupby("model").agg(claimed=("ms", "sum"), unclaimed=("unclaimed_ms", "first"),
                                          latency=("latency_ms", "first"))
    share = models["claimed"] / (models["claimed"] + models["unclaimed"])
    traced = (models["claimed"] + models["unclaimed"]).div(models["latency"])
    print(f"{kernels['model'].nunique()} models, {len(kernels)} kernels; the kernels' layers claim {100 * share.median():.0f} % "
          f"of the profiled op time (p10 {100 * share.quantile(0.1):.0f} %); op time / measured latency, median "
          f"{traced.median():.2f} (p10 {traced.quantile(0.1):.2f}, p90 {traced.quantile(0.9):.2f})")
    report(kernels, TARGET, args.out, {"claimed_median": float(share.median()), "traced_over_measured": float(traced.median())})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
