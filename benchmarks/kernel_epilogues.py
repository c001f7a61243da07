"""What the ops after a convolution cost inside a model, per host toolchain: the batch norm and the activation
functions whose prices the kernel zoo's batch-norm pairs and activation draws learn (docs/kernels.md).

    python benchmarks/kernel_epilogues.py --target host-cpu-tf --target host-cpu-tflite --target host-cpu-onnxruntime

Stacks of four layers, measured with the harness `perfpred measure` uses (a journal per target under --folder, so
a rerun resumes):
- batch norm: a 3x3 depthwise or a 1x1 convolution at 80x80x24, 40x40x64 and 20x20x128, alone (`plain`), with a
  batch norm after it (`bn`), with a batch norm and a ReLU (`bn_relu`): what the batch norm adds per layer;
- activations: a 1x1 convolution at 40x40x96 followed by relu (which every toolchain fuses into it) or by sigmoid,
  swish, gelu, hard swish or tanh: what the function adds per layer, and per MB of the tensor it reads.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kernels_novel import measure, written

LAYERS = 4
NORM_SHAPES = ((80, 24), (40, 64), (20, 128))
NORM_VARIANTS = ("plain", "bn", "bn_relu")
FUNCTIONS = ("relu", "sigmoid", "swish", "gelu", "hard_swish", "tanh")
ACTIVATION_SHAPE = (40, 96)


def norm_stack(kind: str, size: int, channels: int, variant: str):
    """Four depthwise (`dw`) or pointwise (`pw`) convolutions, each followed as `variant` says."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    image = keras.Input((size, size, channels))
    x = image
    for _ in range(LAYERS):
        if kind == "dw":
            x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        else:
            x = layers.Conv2D(channels, 1, use_bias=False)(x)
        if variant in ("bn", "bn_relu"):
            x = layers.BatchNormalization()(x)
        if variant == "bn_relu":
            x = layers.ReLU()(x)
    return keras.Model(image, x, name=f"{kind}_{size}_{channels}_{variant}")


def activation_stack(function: str):
    """Four 1x1 convolutions at ACTIVATION_SHAPE, each followed by `function`."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    size, channels = ACTIVATION_SHAPE
    image = keras.Input((size, size, channels))
    x = image
    for _ in range(LAYERS):
        x = layers.Activation(function)(layers.Conv2D(channels, 1)(x))
    return keras.Model(image, x, name=f"act_{function}")


def descriptors(folder: Path) -> dict[str, Path]:
    """Every stack's Keras JSON under `folder` (written once, kernels_novel.written)."""
    builders = {f"{kind}_{size}_{channels}_{variant}": lambda k=kind, s=size, c=channels, v=variant: norm_stack(k, s, c, v)
                for kind in ("dw", "pw") for size, channels in NORM_SHAPES for variant in NORM_VARIANTS}
    builders |= {f"act_{function}": lambda f=function: activation_stack(f) for function in FUNCTIONS}
    return written(builders, folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", action="append", required=True)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/perfpred-kernel-epilogues"))
    args = parser.parse_args()
    paths = descriptors(args.folder)
    size, channels = ACTIVATION_SHAPE
    tensor_mb = size * size * channels * 4 / 1e6
    results = {}
    for target in args.target:
        latency = measure(paths, target, args.folder)
        norms = {}
        for kind in ("dw", "pw"):
            for size_, channels_ in NORM_SHAPES:
                plain = latency[f"{kind}_{size_}_{channels_}_plain"]
                norms[f"{kind}_{size_}x{size_}x{channels_}"] = {
                    "plain_ms_per_layer": plain / LAYERS,
                    **{f"{v}_adds_ms": (latency[f"{kind}_{size_}_{channels_}_{v}"] - plain) / LAYERS for v in NORM_VARIANTS[1:]}}
        relu = latency["act_relu"]
        functions = {f: (latency[f"act_{f}"] - relu) / LAYERS for f in FUNCTIONS[1:]}
        results[target] = {"batch_norm": norms, "activation_adds_ms": functions,
                           "activation_ms_per_mb": {f: ms / tensor_mb for f, ms in functions.items()}}
        print(f"{target}:")
        for name, row in norms.items():
            print(f"  {name:<14} conv {row['plain_ms_per_layer']:.3f} ms, a batch norm adds {row['bn_adds_ms']:+.3f}, "
                  f"with its ReLU {row['bn_relu_adds_ms']:+.3f} ms")
        print("  per activation layer at 40x40x96 (ms; ms per MB): " + ", ".join(
            f"{f} {ms:+.4f} ({ms / tensor_mb:.3f})" for f, ms in functions.items()))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
