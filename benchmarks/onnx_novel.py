"""host-cpu-onnxruntime on five architectures in no zoo: export to ONNX, measure, predict from the ONNX file.

The five networks below are written here, not drawn from the zoo (no keras.applications family, no
basic_model): SqueezeNet 1.1, a Wide ResNet 16-4, an AlexNet-like stack of large kernels, a GhostNet-like
network of cheap depthwise features, and a MixNet-like network of mixed depthwise kernels. Each is exported
to ONNX (perfpred.measure.onnx_runtime.export_keras), measured as a user's file is
(`perfpred measure model.onnx --target host-cpu-onnxruntime`), described from the ONNX file and predicted by
the champion of host-cpu-onnxruntime latency in the given MLflow store.

    MLFLOW_TRACKING_URI=sqlite:////tmp/onnx-exp/mlflow.db python benchmarks/onnx_novel.py --out /tmp/onnx-novel
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
from pathlib import Path

TARGET = "host-cpu-onnxruntime"


def squeezenet(keras, width: int = 128):
    """SqueezeNet 1.1: fire modules (1x1 squeeze, concatenated 1x1 and 3x3 expands), a 1x1 conv head."""
    layers = keras.layers
    inputs = keras.Input((width, width, 3))
    x = layers.Conv2D(64, 3, strides=2, activation="relu")(inputs)
    x = layers.MaxPooling2D(3, 2)(x)
    for index, (squeeze, expand) in enumerate([(16, 64), (16, 64), (32, 128), (32, 128), (48, 192), (48, 192),
                                               (64, 256), (64, 256)]):
        if index in (2, 4):
            x = layers.MaxPooling2D(3, 2)(x)
        s = layers.Conv2D(squeeze, 1, activation="relu")(x)
        x = layers.Concatenate()([layers.Conv2D(expand, 1, activation="relu")(s),
                                  layers.Conv2D(expand, 3, padding="same", activation="relu")(s)])
    x = layers.Conv2D(1000, 1, activation="relu")(x)
    outputs = layers.Softmax()(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs, name="squeezenet_1_1")


def wide_resnet(keras, width: int = 64, depth: int = 16, widen: int = 4):
    """Wide ResNet (pre-activation basic blocks, BN-ReLU-conv), 10 classes."""
    layers = keras.layers
    inputs = keras.Input((width, width, 3))
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    blocks = (depth - 4) // 6
    for stage, channels in enumerate([16 * widen, 32 * widen, 64 * widen]):
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            y = layers.ReLU()(layers.BatchNormalization()(x))
            shortcut = x if x.shape[-1] == channels and strides == 1 else layers.Conv2D(
                channels, 1, strides=strides, use_bias=False)(y)
            y = layers.Conv2D(channels, 3, strides=strides, padding="same", use_bias=False)(y)
            y = layers.ReLU()(layers.BatchNormalization()(y))
            y = layers.Conv2D(channels, 3, padding="same", use_bias=False)(y)
            x = layers.Add()([shortcut, y])
    x = layers.GlobalAveragePooling2D()(layers.ReLU()(layers.BatchNormalization()(x)))
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(x), name="wide_resnet_16_4")


def alexnet_like(keras, width: int = 128):
    """AlexNet's large kernels (11x11 stride 4, 5x5) and dense head, at a small input."""
    layers = keras.layers
    inputs = keras.Input((width, width, 3))
    x = layers.Conv2D(64, 11, strides=4, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling2D(3, 2)(x)
    x = layers.Conv2D(192, 5, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(3, 2)(x)
    for filters in (384, 256, 256):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
    x = layers.Flatten()(layers.MaxPooling2D(3, 2)(x))
    x = layers.Dense(1024, activation="relu")(x)
    return keras.Model(inputs, layers.Dense(100, activation="softmax")(x), name="alexnet_like")


def ghostnet_like(keras, width: int = 112):
    """GhostNet's ghost modules (half the channels by a 1x1 conv, half by a cheap depthwise 3x3, concatenated)."""
    layers = keras.layers

    def ghost(x, channels, relu=True):
        primary = layers.BatchNormalization()(layers.Conv2D(channels // 2, 1, use_bias=False)(x))
        primary = layers.ReLU()(primary) if relu else primary
        cheap = layers.BatchNormalization()(layers.DepthwiseConv2D(3, padding="same", use_bias=False)(primary))
        cheap = layers.ReLU()(cheap) if relu else cheap
        return layers.Concatenate()([primary, cheap])

    inputs = keras.Input((width, width, 3))
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inputs)))
    for expand, channels, strides in [(16, 16, 1), (48, 24, 2), (72, 24, 1), (72, 40, 2), (120, 40, 1), (240, 80, 2),
                                      (200, 80, 1), (480, 112, 1), (672, 160, 2)]:
        y = ghost(x, expand)
        if strides == 2:
            y = layers.BatchNormalization()(layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False)(y))
        y = ghost(y, channels, relu=False)
        x = layers.Add()([x, y]) if strides == 1 and x.shape[-1] == channels else y
    x = layers.GlobalAveragePooling2D()(layers.Conv2D(960, 1, activation="relu")(x))
    return keras.Model(inputs, layers.Dense(1000, activation="softmax")(x), name="ghostnet_like")


def mixconv_like(keras, width: int = 96):
    """MixNet-like blocks: a 1x1 expansion, depthwise 3x3, 5x5 and 7x7 side by side, concatenated, a 1x1 projection.

    (Not ResNeXt: Keras runs a grouped Conv2D as an XLA-compiled function, which tf2onnx leaves unconverted.)
    """
    layers = keras.layers
    inputs = keras.Input((width, width, 3))
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(24, 3, strides=2, padding="same", use_bias=False)(inputs)))
    for channels, strides in [(24, 1), (40, 2), (40, 1), (80, 2), (80, 1), (120, 1), (192, 2)]:
        y = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(channels * 3, 1, use_bias=False)(x)))
        y = layers.Concatenate()([layers.DepthwiseConv2D(k, strides=strides, padding="same", use_bias=False)(y)
                                  for k in (3, 5, 7)])
        y = layers.BatchNormalization()(layers.Conv2D(channels, 1, use_bias=False)(layers.ReLU()(y)))
        x = layers.Add()([x, y]) if strides == 1 and x.shape[-1] == channels else y
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(100, activation="softmax")(x), name="mixconv_like")


ARCHITECTURES = {"squeezenet_1_1": squeezenet, "wide_resnet_16_4": wide_resnet, "alexnet_like": alexnet_like,
                 "ghostnet_like": ghostnet_like, "mixconv_like": mixconv_like}


def _export(name: str, path: str) -> str:
    import keras

    from perfpred.measure.onnx_runtime import export_keras

    keras.utils.set_random_seed(0)
    export_keras(ARCHITECTURES[name](keras), Path(path))
    return path


def main() -> None:
    """Export, measure and predict the five networks; print the table, MAPE and interval coverage."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/onnx-novel"))
    parser.add_argument("--level", type=float, default=0.9)
    args = parser.parse_args()
    from perfpred import config
    from perfpred.measure import runners
    from perfpred.measure import stage as measure
    from perfpred.measure.agent import in_child
    from perfpred.serve import loader, predict

    args.out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in ARCHITECTURES:
        paths[name] = args.out / f"{name}.onnx"
        if not paths[name].exists():
            in_child(_export, name, str(paths[name]))  # a forked child: Keras' memory goes with it
    predictor = loader.load_predictor(TARGET, "latency")
    params = config.load_params()
    target, settings = measure.target_settings(TARGET, params)
    rows = []
    with runners.ForkServer() as server:
        for name, path in paths.items():
            features = predict.describe_model(str(path))
            # what `perfpred predict model.onnx --target host-cpu-onnxruntime` answers (a kernel-level champion
            # detects the file's kernels)
            answer = predict.predict_model(str(path), targets=[TARGET], level=args.level).iloc[0]
            predicted, low, high = (float(answer[c]) for c in ("latency_ms", "latency_ms_low", "latency_ms_high"))
            row = measure.measure_model(name, path, None, target, settings, server)
            if measure.machine_slower(row, TARGET, params, settings):  # timed in a slow spell: once more, as the stage
                again = measure.measure_model(name, path, None, target, settings, server)
                row = again if (measure.probe_of(again) or math.inf) < measure.probe_of(row) else row
            measured = row["latency_ms"]
            rows.append({"model": name, "input_width": features["input_width"], "mflops": features["flops"] / 1e6,
                         "measured_ms": measured, "predicted_ms": predicted, "low_ms": low, "high_ms": high,
                         "ape_pct": 100 * abs(predicted - measured) / measured, "covered": low <= measured <= high,
                         "cv": row["cv"], "status": row["status"]})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| model | width | MFLOPs | measured ms | predicted ms | 90% interval | APE % |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['input_width']} | {r['mflops']:.0f} | {r['measured_ms']:.3f} | {r['predicted_ms']:.3f} "
              f"| [{r['low_ms']:.3f}, {r['high_ms']:.3f}] | {r['ape_pct']:.1f} |")
    print(f"\nMAPE {statistics.fmean(r['ape_pct'] for r in rows):.1f} % over {len(rows)} models; "
          f"{sum(r['covered'] for r in rows)}/{len(rows)} inside their {args.level:.0%} interval "
          f"(champion: {predictor!r}; served as {answer['latency_predictor']})")


if __name__ == "__main__":
    main()
