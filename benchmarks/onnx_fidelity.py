"""Describe agreement of ONNX exports with their Keras originals, over a zoo; and the speed of describing ONNX files.

For every model of a zoo manifest: build the Keras model from its descriptor, export it to ONNX
(perfpred.measure.onnx_runtime.export_keras: weights randomised as a trained model's, so the exporter keeps
biases and folds batch norms as it would for a real model), then compare `describe` of both.
A model agrees when conv and dense layer counts and dense parameters are equal, the ONNX conv parameters
exceed the Keras ones by at most the biases of the batch norms the exporter folded (one per channel), and
FLOPs are within 2%. Then describes every exported file again, timed, for the speed figure.

    python benchmarks/onnx_fidelity.py --manifest /work/main/data/zoo/manifest.csv --out /tmp/onnx-zoo
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd

from perfpred.features import descriptors
from perfpred.features.description import describe, layer_shapes
from perfpred.measure.agent import in_child
from perfpred.measure.onnx_runtime import cache_key, export_keras

FLOPS_TOLERANCE = 0.02


def _export(descriptor_text: str, path: str) -> float:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.models.model_from_json(descriptor_text)
    partial = Path(path).with_suffix(".partial.onnx")
    started = time.perf_counter()
    export_keras(model, partial)
    partial.rename(path)
    return time.perf_counter() - started


def export(descriptor: Path, path: Path, cache: Path | None) -> float:
    """Export one descriptor to ONNX at `path` (reusing the measure stage's export if cached); seconds it took."""
    if path.exists():
        return 0.0
    if cache is not None:  # the measure stage exports with the same function and seed: the same file
        text = json.loads(descriptor.read_text())
        cached = cache / f"{path.stem}-{cache_key(text, 0)}.onnx"
        if cached.exists():
            shutil.copyfile(cached, path)
            return 0.0
    return in_child(_export, descriptor.read_text(), str(path))  # a forked child: Keras' memory goes with it


def bn_channels(descriptor: Path) -> int:
    """Channels of the Keras model's batch norms: the most biases folding them into convolutions can add."""
    graph = descriptors.load(descriptor)
    shapes = layer_shapes(descriptor)
    return sum(shapes[layer.name][-1] for layer in graph.layers if layer.class_name == "BatchNormalization")


def compare(keras_features: dict, onnx_features: dict, folded_max: int) -> dict:
    """The agreement figures of one model."""
    extra_conv = onnx_features["conv_params"] - keras_features["conv_params"]
    flops_error = onnx_features["flops"] / keras_features["flops"] - 1
    checks = {
        "conv_layers_equal": onnx_features["conv_layers"] == keras_features["conv_layers"],
        "fc_layers_equal": onnx_features["fc_layers"] == keras_features["fc_layers"],
        "fc_params_equal": onnx_features["fc_params"] == keras_features["fc_params"],
        "conv_params_within_folded_bn": 0 <= extra_conv <= folded_max,
        "flops_within_2pct": abs(flops_error) <= FLOPS_TOLERANCE,
    }
    return {"keras_conv_layers": keras_features["conv_layers"], "onnx_conv_layers": onnx_features["conv_layers"],
            "keras_fc_layers": keras_features["fc_layers"], "onnx_fc_layers": onnx_features["fc_layers"],
            "keras_conv_params": keras_features["conv_params"], "onnx_conv_params": onnx_features["conv_params"],
            "folded_bias_params": extra_conv, "keras_bn_layers": keras_features["bn_layers"],
            "onnx_bn_layers": onnx_features["bn_layers"], "keras_fc_params": keras_features["fc_params"],
            "onnx_fc_params": onnx_features["fc_params"], "keras_flops": keras_features["flops"],
            "onnx_flops": onnx_features["flops"], "flops_rel_error": flops_error,
            **checks, "agrees": all(checks.values())}


def main() -> None:
    """Export, describe and compare every model of the manifest; print the table and the speed figure."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=Path("data/zoo/manifest.csv"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/onnx-zoo"), help="folder of the exported .onnx files")
    parser.add_argument("--cache", type=Path, default=Path("data/measurements/runs/host-cpu-onnxruntime/onnx"),
                        help="the measure stage's exports, reused when there")
    parser.add_argument("--only", help="comma-separated substrings: models whose name contains one")
    parser.add_argument("--speed-files", type=int, default=100, help="describe this many ONNX files, timed")
    args = parser.parse_args()
    manifest = pd.read_csv(args.manifest)
    if args.only:
        manifest = manifest[manifest["name"].map(lambda n: any(part in n for part in args.only.split(",")))]
    root = args.manifest.resolve().parent.parent.parent  # manifest paths are relative to the project root
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for entry in manifest.itertuples(index=False):
        path = args.out / f"{entry.name}.onnx"
        try:
            export_s = export(root / entry.descriptor, path, args.cache if args.cache.is_dir() else None)
            row = {"model": entry.name, "family": entry.family, "export_s": round(export_s, 1)}
            row |= compare(describe(root / entry.descriptor), describe(path), bn_channels(root / entry.descriptor))
        except Exception as error:  # a model the exporter or describe cannot handle is a row, not a stop
            row = {"model": entry.name, "family": entry.family, "agrees": False, "error": f"{type(error).__name__}: {error}"[:200]}
        rows.append(row)
        print(json.dumps({k: row.get(k) for k in ("model", "agrees", "flops_rel_error", "folded_bias_params", "error")}),
              flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "fidelity.csv", index=False)
    print(f"\n{int(table['agrees'].sum())}/{len(table)} models agree")
    if "flops_rel_error" in table:
        errors = table["flops_rel_error"].abs().dropna()
        print(f"|FLOPs error|: median {errors.median():.4%}, max {errors.max():.4%}")
    disagree = table[~table["agrees"]]
    if len(disagree):
        print(disagree.to_string(max_colwidth=60))
    described = table[table["error"].isna()]["model"] if "error" in table else table["model"]
    files = [args.out / f"{model}.onnx" for model in described]  # the files describe reads (not an exporter's failures)
    files = (files * (args.speed_files // max(len(files), 1) + 1))[:args.speed_files]
    started = time.perf_counter()
    for path in files:
        describe(path)
    elapsed = time.perf_counter() - started
    megabytes = sum(p.stat().st_size for p in files) / 2**20
    print(f"described {len(files)} ONNX files ({len(set(files))} distinct, {megabytes:.0f} MB) in {elapsed:.2f} s")


if __name__ == "__main__":
    main()
