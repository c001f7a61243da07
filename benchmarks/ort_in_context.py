"""Kernels timed inside the models: ONNX Runtime's profiler on the zoo, and what training on it would give.

    python benchmarks/ort_in_context.py [--runs 30] [--out /tmp/ort-in-context]

The kernel predictors of `perfpred kernel-train` learn from kernels measured alone, one kernel per model; a kernel
costs something else inside a model (#13's open limit). ONNX Runtime can say what each node of a model cost inside
it: `SessionOptions.enable_profiling` writes every node's time with its input and output shapes. This benchmark
profiles every zoo model of the host-cpu-onnxruntime table (the measure stage's cached exports, one intra-op thread)
and asks:
1. coverage: the share of a model's time the profiled nodes account for;
2. alone vs inside: per kind, the in-model node time over what the alone-trained kernel predictor says of the same
   configuration (KernelRegressor.predict_in_model, the model `perfpred kernels` uses);
3. leave-one-family-out: the same KernelRegressor per kind trained on the in-model nodes of the other families'
   models; a model = the linear map (fitted on the other families' models, `relative_map`) of the sum of its nodes'
   predictions and its node count.
   Against it: the committed kernel model's family-out figure (data/kernels/predictors/summary.json), and the
   ceiling of the method (each held-out model's own profiled node sum through the same map).
The node lists of held-out models come from their profiles (shapes ORT saw), which a user's model would get from
kernel detection instead: figure 3 isolates what in-model training data changes, not the detection.

Found on 2026-11-30 (95 zoo models, 14,605 nodes, 30 profiled runs each, 1 min):
- the nodes cover 88 % of a model's profiled time (median); convolutions are 83 % of the node time;
- the profiler adds about 2 us to every node it times: a model's node sum mapped by node sum alone misses the
  measured latency by 26.5 % (MobileNetV3, many small nodes, profiles at 1.5x); with the node count in the map the
  ceiling is 4.0 % MAPE, 94 % of models within 10 %, every family left out in turn;
- summed per kind, what the alone-trained predictors say of the same configurations inside a model is off by 0.85x
  (conv) to 28x (add, whose alone cost is nearly all call overhead);
- kernels trained inside models, each family left out: 21.0 % MAPE, 52 % within 10 %, against the committed
  alone-trained kernel model's 30.1 % and 27 %. What is left is small elementwise nodes (MobileNetV3's hard-swish:
  77 %) and the tiny synthetic networks (27 %);
- on 17 networks in no zoo (`--novel`: onnx_novel.py's five and kernels_novel.py's unet, vgg_odd, separable and
  dense_head at three sizes, measured in the same run; node lists from their own profiles), kernels trained inside
  every zoo model give 20.0 % MAPE against 17.0 % for the registered champion (pooled_ens_kernels, which reads the
  alone-trained kernel terms beside the model-level features). In context is better on the large ones (unet 2-9 %,
  AlexNet-like 7 %, vgg_odd 20-25 % against 30-38 %) and too slow on the small ones (GhostNet-like 0.48 ms predicted
  0.68, separable and dense_head at 96 px 37 %): the per-node costs the map takes off are fitted on zoo models of
  another size range. It is evidence for in-model training data, not a predictor to ship as it is.

    python benchmarks/ort_in_context.py --nodes DIR/nodes.parquet --novel /tmp/onnx-novel/*.onnx \
        .cache/onnx/host-cpu-onnxruntime/{unet,vgg_odd,separable,dense_head}_*.onnx
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from perfpred import config
from perfpred.kernels.detector import CONFIG_FIELDS
from perfpred.kernels.predictor import KernelRegressor

TARGET = "host-cpu-onnxruntime"
POOLS = {"MaxPool": "maxpool", "AveragePool": "avgpool", "GlobalAveragePool": "globalpool", "GlobalMaxPool": "globalpool"}
ELEMENTWISE = {"Add": "add", "Sum": "add", "Mul": "unary", "Relu": "unary", "Sigmoid": "unary", "Clip": "unary",
               "HardSigmoid": "unary", "HardSwish": "unary", "Tanh": "unary", "Div": "unary", "Sub": "unary",
               "Concat": "concat", "Resize": "resize", "Upsample": "resize"}
LAYOUT = ("Transpose", "ReorderInput", "ReorderOutput", "Reshape", "Squeeze", "Unsqueeze", "Flatten")


def profile(path: str, runs: int) -> tuple[dict[str, dict], float]:
    """Median time (ms) and shapes of every node of an ONNX model over `runs` profiled runs; the model's median (ms)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.gettempdir()) / "perfpred-ort-profile")
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {value.name: rng.standard_normal([d if isinstance(d, int) and d > 0 else 1 for d in value.shape]).astype("float32")
             for value in session.get_inputs()}
    for _ in range(5):
        session.run(None, feeds)
    wall = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, feeds)
        wall.append((time.perf_counter() - started) * 1e3)
    trace = Path(session.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    durations, shapes = collections.defaultdict(list), {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            durations[event["name"]].append(event["dur"] / 1e3)
            shapes[event["name"]] = event["args"]
    nodes = {name: {"ms": float(np.median(times[-runs:])), **shapes[name]} for name, times in durations.items()}
    return nodes, float(np.median(wall))


def _dims(args: dict, key: str) -> list[list[int]]:
    return [next(iter(entry.values())) for entry in args.get(key, [])]


def node_row(args: dict) -> dict:
    """A profiled node as a kernel: kind and detector.CONFIG_FIELDS from the shapes ORT saw."""
    op = args["op_name"]
    inputs, outputs = _dims(args, "input_type_shape"), _dims(args, "output_type_shape")
    out = outputs[0] if outputs else [1]
    elements_in = [int(np.prod(shape)) for shape in inputs]
    row = dict.fromkeys(CONFIG_FIELDS, 0.0) | {"op": op, "inputs": len(inputs), "output_elements": float(np.prod(out)),
                                             "bytes_written": 4.0 * float(np.prod(out)),
                                             "bytes_read": 4.0 * float(sum(elements_in))}
    if op in ("Conv", "FusedConv") and len(inputs) >= 2 and len(inputs[0]) == 4:
        (_, cin, height, width), weights = inputs[0], inputs[1]
        groups = max(cin // max(weights[1], 1), 1)
        kind = "depthwise" if groups == cin and groups > 1 else "grouped" if groups > 1 else "conv"
        flops = 2.0 * np.prod(out) * weights[1] * weights[2] * weights[3]
        row |= {"kind": kind, "input_height": height, "input_width": width, "cin": cin, "cout": weights[0],
                "kernel_size": weights[2], "strides": max(height // max(out[2], 1), 1), "groups": groups,
                "flops": flops, "fused": float(len(inputs) > 3)}
    elif op in ("Gemm", "MatMul", "FusedGemm", "FusedMatMul"):
        cin, cout = inputs[0][-1], out[-1]
        row |= {"kind": "dense", "cin": cin, "cout": cout, "flops": 2.0 * np.prod(out) * cin}
    elif op in POOLS:
        shape = inputs[0]
        row |= {"kind": POOLS[op], "cin": shape[1], "cout": out[1], "input_height": shape[2], "input_width": shape[-1],
                "flops": float(elements_in[0])}
    elif op in ELEMENTWISE:
        row |= {"kind": ELEMENTWISE[op], "flops": float(np.prod(out))}
    elif op in LAYOUT:
        row |= {"kind": "layout", "flops": 0.0}
    else:
        row |= {"kind": "other", "flops": float(np.prod(out))}
    return row


def profiled_zoo(runs: int) -> pd.DataFrame:
    """Every node of every measured zoo model: model, family, measured latency, node time and configuration."""
    from tqdm import tqdm

    table = pd.read_parquet(config.path("measurements") / f"{TARGET}.parquet")
    table = table[table["status"] == "ok"]
    cache = config.path("onnx_cache") / TARGET
    rows = []
    for model in tqdm(table.itertuples(), total=len(table), desc="profiling", file=sys.stderr):
        found = sorted(glob.glob(str(cache / f"{glob.escape(model.model)}-*.onnx")), key=lambda p: Path(p).stat().st_mtime)
        if not found:
            continue
        nodes, wall_ms = profile(found[-1], runs)
        for name, node in nodes.items():
            rows.append({"model": model.model, "family": model.family, "latency_ms": model.latency_ms,
                         "profiled_wall_ms": wall_ms, "node": name, "ms": node["ms"], **node_row(node)})
    return pd.DataFrame(rows)


def alone_vs_inside(nodes: pd.DataFrame, target: str = TARGET) -> pd.DataFrame:
    """Per kind: the summed in-model time over the summed in-model prediction of the alone-trained predictor (a sum:
    per kernel, a small kernel's prediction less the one-kernel model's call cost is near 0 and its ratio meaningless)."""
    from perfpred.kernels import store

    model = store.load_model(target)
    out = []
    for kind, rows in nodes.groupby("kind"):
        regressor = model.regressors.get(kind)
        if regressor is None or kind == "layout":
            continue
        predicted = regressor.predict_in_model(rows[list(CONFIG_FIELDS)], model.io_ms_per_mb)
        out.append({"kind": kind, "nodes": len(rows), "share_of_time_pct": 100 * rows["ms"].sum() / nodes["ms"].sum(),
                    "inside_ms": float(rows["ms"].sum()), "alone_predicted_ms": float(predicted.sum()),
                    "inside_over_alone": float(rows["ms"].sum() / max(predicted.sum(), 1e-9))})
    return pd.DataFrame(out)


def relative_map(sums: np.ndarray, counts: np.ndarray, latency_ms: np.ndarray) -> np.ndarray:
    """latency = a * node sum + b * node count + c, least squares on relative error. The count takes off what the
    profiler adds to every node it times (about 2 us here): without it, a model of many small nodes (MobileNetV3)
    profiles at 1.5x its measured latency."""
    design = np.column_stack([sums, counts, np.ones(len(sums))])
    weights = 1.0 / np.asarray(latency_ms, dtype="float64")
    return np.linalg.lstsq(design * weights[:, None], latency_ms * weights, rcond=None)[0]


def per_model(nodes: pd.DataFrame) -> pd.DataFrame:
    """One row per model: family, measured latency, the sum of its nodes' profiled times and its node count."""
    return nodes.groupby("model").agg(family=("family", "first"), latency_ms=("latency_ms", "first"),
                                      node_sum_ms=("ms", "sum"), nodes=("ms", "size"))


def model_map(models: pd.DataFrame) -> np.ndarray:
    """relative_map fitted on per_model rows."""
    return relative_map(models["node_sum_ms"].to_numpy(), models["nodes"].to_numpy(), models["latency_ms"].to_numpy())


def kind_regressors(nodes: pd.DataFrame) -> dict[str, KernelRegressor]:
    """A KernelRegressor per kind with 3 nodes or more, on the nodes that took time (a no-op teaches no time per FLOP)."""
    timed = nodes[nodes["ms"] > 0]
    return {kind: KernelRegressor(0).fit(rows, rows["ms"].to_numpy()) for kind, rows in timed.groupby("kind") if len(rows) >= 3}


def predict_nodes(regressors: dict[str, KernelRegressor], nodes: pd.DataFrame) -> pd.Series:
    """Each node's predicted in-model time (ms): its kind's regressor, else `other`'s, else 0 (a kind no training
    node has, and no `other` kind)."""
    predicted = pd.Series(0.0, index=nodes.index)
    for kind, rows in nodes.groupby("kind"):
        regressor = regressors.get(kind) or regressors.get("other")
        if regressor is not None:
            predicted[rows.index] = regressor.predict(rows[list(CONFIG_FIELDS)])
    return predicted


def family_out(nodes: pd.DataFrame) -> pd.DataFrame:
    """Each family left out: per-kind KernelRegressor on the other families' nodes, node sums mapped to latency."""
    models = per_model(nodes)
    results = []
    for family in models["family"].unique():
        test_nodes = nodes[nodes["family"] == family]
        sums = predict_nodes(kind_regressors(nodes[nodes["family"] != family]), test_nodes).groupby(test_nodes["model"]).sum()
        coefficients = model_map(models[models["family"] != family])
        for name, predicted_sum in sums.items():
            own = models.loc[name]
            results.append({"model": name, "family": family, "latency_ms": own["latency_ms"],
                            "predicted_ms": max(float(coefficients @ [predicted_sum, own["nodes"], 1.0]), 1e-3),
                            "ceiling_ms": max(float(coefficients @ [own["node_sum_ms"], own["nodes"], 1.0]), 1e-3)})
    return pd.DataFrame(results)


def novel(nodes: pd.DataFrame, paths: list[Path], runs: int, level: float = 0.9) -> pd.DataFrame:
    """Networks in no zoo: each measured as `perfpred measure model.onnx` measures a user's file, predicted by kernels
    trained inside every zoo model (node list from its own profile) and by the registered champion
    (`perfpred predict model.onnx`), on the same measurement."""
    from perfpred.measure import runners
    from perfpred.measure import stage as measure
    from perfpred.serve import predict

    regressors = kind_regressors(nodes)
    coefficients = model_map(per_model(nodes))
    target, settings = measure.target_settings(TARGET, config.load_params())
    rows = []
    with runners.ForkServer() as server:
        for path in paths:
            own, _ = profile(str(path), runs)
            table = pd.DataFrame([node_row(node) for node in own.values()])
            predicted_sum = float(predict_nodes(regressors, table).sum())
            champion = predict.predict_model(str(path), targets=[TARGET], level=level).iloc[0]
            measured = measure.measure_model(path.stem, path, None, target, settings, server)["latency_ms"]
            rows.append({"model": path.stem, "measured_ms": measured,
                         "in_context_ms": max(float(coefficients @ [predicted_sum, len(table), 1.0]), 1e-3),
                         "champion_ms": float(champion["latency_ms"]), "champion": champion["latency_predictor"]})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def arguments(doc: str, runs: int, table: str) -> argparse.Namespace:
    """The options of both in-context benchmarks."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=runs, help="profiled runs per model (after 5 unprofiled)")
    parser.add_argument("--out", type=Path, help=f"also write the {table} table (parquet) and the figures (json) here")
    parser.add_argument("--nodes", type=Path, help=f"read this {table} table (an earlier --out's) instead of profiling")
    parser.add_argument("--novel", type=Path, nargs="*", default=[],
                        help="ONNX files of networks in no zoo: measured, then predicted in context and by the champion")
    return parser.parse_args()


def report(table: pd.DataFrame, target: str, out: Path | None, figures: dict) -> None:
    """Print alone vs inside per kind and the leave-one-family-out figures; with `out`, write them to figures.json."""
    kinds = alone_vs_inside(table, target)
    print("\nin-model time / alone-trained prediction of the same configurations, summed per kind:")
    print(kinds.round(2).to_string(index=False))
    held = family_out(table)
    ape = 100 * np.abs(held["predicted_ms"] / held["latency_ms"] - 1)
    ceiling = 100 * np.abs(held["ceiling_ms"] / held["latency_ms"] - 1)
    summary = json.loads((config.path("kernels") / "predictors" / "summary.json").read_text())[target]
    print(f"\nleave-one-family-out, {len(held)} models: kernels trained inside models {ape.mean():.1f} % MAPE, "
          f"{100 * (ape <= 10).mean():.0f} % within 10 %; ceiling (own profiled sum) {ceiling.mean():.1f} %, "
          f"{100 * (ceiling <= 10).mean():.0f} % within 10 %; committed kernel model (alone-trained) "
          f"{summary['model_mape_unseen_family']:.1f} %, {summary['model_within_10pct_unseen_family']:.0f} % within 10 %")
    per_family = held.assign(ape=ape).groupby("family")["ape"].agg(["count", "mean"]).sort_values("mean", ascending=False)
    print(per_family.round(1).to_string())
    if out:
        (out / "figures.json").write_text(json.dumps(figures | {
            "models": int(table["model"].nunique()), "rows": len(table), "kinds": kinds.to_dict(orient="records"),
            "family_out_mape": float(ape.mean()), "family_out_within_10": float((ape <= 10).mean()),
            "ceiling_mape": float(ceiling.mean()), "committed_family_out_mape": summary["model_mape_unseen_family"]},
            indent=1))


def profiled_table(args: argparse.Namespace, profile_zoo, name: str) -> pd.DataFrame:
    """The table of --nodes, or the zoo profiled now; written to --out/<name> first (profiling is the slow part)."""
    table = pd.read_parquet(args.nodes) if args.nodes else profile_zoo(args.runs)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        table.to_parquet(args.out / name)
    return table


def main() -> int:
    args = arguments(__doc__, 30, "node")
    nodes = profiled_table(args, profiled_zoo, "nodes.parquet")
    coverage = nodes.groupby("model").agg(node_sum=("ms", "sum"), wall=("profiled_wall_ms", "first"))
    share = coverage["node_sum"] / coverage["wall"]
    print(f"{nodes['model'].nunique()} models, {len(nodes)} nodes; nodes cover {100 * share.median():.0f} % of a "
          f"model's profiled time (p10 {100 * share.quantile(0.1):.0f} %, p90 {100 * share.quantile(0.9):.0f} %)")
    report(nodes, TARGET, args.out, {"coverage_median": float(share.median())})
    if args.novel:
        found = novel(nodes, args.novel, args.runs)
        for column in ("in_context_ms", "champion_ms"):
            found[column.replace("_ms", "_ape")] = 100 * np.abs(found[column] / found["measured_ms"] - 1)
        print(f"\n{len(found)} networks in no zoo (measured now): kernels trained inside models "
              f"{found['in_context_ape'].mean():.1f} % MAPE, the registered champion ({found['champion'].iloc[0]}) "
              f"{found['champion_ape'].mean():.1f} %")
        print(found.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
