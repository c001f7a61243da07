"""Where a batch norm after a ReLU runs, per host toolchain: the basis of the `BatchNormalization:activated` rules.

    python benchmarks/bn_after_activation.py --target host-cpu-tf --target host-cpu-tflite --target host-cpu-onnxruntime

Three stacks of four 3x3 convolutions (96x96x32), measured with the harness `perfpred measure` uses (a journal per
target under --folder, so a rerun resumes): each convolution with its ReLU and nothing else (`plain`), a batch norm
before the ReLU (`bn_relu`, which every runtime folds into the convolution or keeps in its kernel) and a batch norm
after the ReLU (`relu_bn`, the synthetic networks' order, which no runtime can fold into the convolution before it).
Prints each stack's latency and what a batch norm adds in each order. A batch norm after the ReLU that costs as
much as one before it belongs with the convolution's kernel (the rule names it); one that costs a pass of its own
is a unary kernel (the rule leaves it out). conf/kernels/<target>.yaml hold the rules and the figures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kernels_novel import measure, written

ORDERS = ("plain", "bn_relu", "relu_bn")
LAYERS = 4


def build(order: str):
    """Four 3x3 convolutions at 96x96x32, each followed as `order` says."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    image = keras.Input((96, 96, 32))
    x = image
    for _ in range(LAYERS):
        if order == "relu_bn":
            x = layers.BatchNormalization()(layers.Conv2D(32, 3, padding="same", activation="relu")(x))
        elif order == "bn_relu":
            x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(32, 3, padding="same")(x)))
        else:
            x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    return keras.Model(image, x, name=f"stack_{order}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", action="append", required=True)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/perfpred-bn-after-activation"))
    args = parser.parse_args()
    paths = written({f"stack_{order}": lambda order=order: build(order) for order in ORDERS}, args.folder)
    results = {}
    for target in args.target:
        latency = measure(paths, target, args.folder)
        plain = latency["stack_plain"]
        added = {order: (latency[f"stack_{order}"] - plain) / LAYERS for order in ORDERS[1:]}
        results[target] = {"latency_ms": latency, "added_ms_per_batch_norm": added}
        print(f"{target}: plain {plain:.3f} ms; a batch norm adds {added['bn_relu']:+.3f} ms before the ReLU, "
              f"{added['relu_bn']:+.3f} ms after it")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
