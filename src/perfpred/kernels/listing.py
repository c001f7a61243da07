"""`perfpred kernels MODEL`: the kernels a target runs for a model, with each one's predicted latency."""

from __future__ import annotations

import argparse
import json
import warnings

from perfpred.kernels import detector


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `perfpred kernels`."""
    parser.add_argument("model", help="Keras model descriptor (a .json, Keras 2 or 3, or a .keras file) or an ONNX file")
    parser.add_argument("--target", help="apply this target's fusion rules (conf/kernels/) and its kernel predictors")
    parser.add_argument("--input-size", type=int, default=None, metavar="N", help="re-target the input to N x N")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def listing(model: str, target: str | None, input_size: int | None) -> dict:
    """The kernels of a model (with predicted latencies when the target has kernel predictors) and the totals."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kernels = detector.detect(model, target, input_size)
    result = {"model": model, "target": target, "kernels": kernels, "totals": detector.totals(kernels)}
    if target is not None:
        from perfpred.kernels.store import load_model, predictor_path

        if predictor_path(target).exists():
            fitted = load_model(target)
            for kernel, latency_ms in zip(kernels, fitted.kernel_latencies(kernels), strict=True):
                kernel.predicted_ms = float(latency_ms)
            latency_ms = fitted.model_latency(kernels)
            low, high = fitted.interval(latency_ms)
            result |= {"kernel_sum_ms": float(sum(k.predicted_ms for k in kernels)), "latency_ms": latency_ms,
                       "latency_ms_90": [low, high]}
    return result


def run(args: argparse.Namespace) -> int:
    """Print the kernel list."""
    result = listing(args.model, args.target, args.input_size)
    kernels = result.pop("kernels")
    if args.json:
        print(json.dumps(result | {"kernels": [k.as_dict() for k in kernels]}))
        return 0
    print(f"{'kind':<11} {'input':>16} {'output':>16} {'k':>2} {'s':>2} {'g':>4} {'MFLOPs':>9} {'MB':>7} "
          f"{'pred ms':>8}  layers")
    for k in kernels:
        shape_in, shape_out = "x".join(map(str, k.input_shape)), "x".join(map(str, k.output_shape))
        predicted = f"{k.predicted_ms:8.3f}" if k.predicted_ms is not None else f"{'-':>8}"
        names = "+".join(k.layers) if len(k.layers) < 4 else f"{k.layers[0]}+{len(k.layers) - 1} fused"
        print(f"{k.kind:<11} {shape_in:>16} {shape_out:>16} {k.kernel_size:>2} {k.strides:>2} {k.groups:>4} "
              f"{k.flops / 1e6:9.2f} {(k.bytes_read + k.bytes_written) / 1e6:7.2f} {predicted}  {names}")
    totals = result["totals"]
    counts = ", ".join(f"{kind} {totals[kind]}" for kind in detector.KINDS if totals[kind])
    print(f"{totals['kernels']} kernels ({counts}); {totals['flops'] / 1e6:.1f} MFLOPs")
    if "latency_ms" in result:
        low, high = result["latency_ms_90"]
        print(f"kernel sum {result['kernel_sum_ms']:.2f} ms; model {result['latency_ms']:.2f} ms "
              f"(90% interval {low:.2f} - {high:.2f}) on {result['target']}")
    return 0
