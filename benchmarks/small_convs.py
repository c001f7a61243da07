"""Convolutions of few channels, as the synthetic networks run them: alone, per layer in a stack, and as the kernel
model prices them (the question a `conv_by_window` kernel-zoo stream raised on TF, docs/kernels.md).

    python benchmarks/small_convs.py --target host-cpu-tf [--folder /tmp/perfpred-small-convs]

For each (size, channels, window): a model of one Conv2D(activation="relu") then BatchNormalization (the synthetic
networks' layer), a stack of four, and a stack of four without the batch norms, measured with the harness `perfpred
measure` uses (a journal per target under --folder, so a rerun resumes). Prints the conv alone, the marginal cost per
layer in the stack ((four - one) / 3), the kernel model's in-model price of each conv kernel, its whole-model
prediction of the stack against the measurement, and what a batch norm after the ReLU costs per layer (the stacks
with and without, over four) against the kernel model's price of it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kernels_novel import measure, written

#: (spatial size, channels, window): the synthetic networks' 2x2 and 5x5 convolutions of 8-32 channels, and two of
#: many channels for comparison
CONFIGS = ((64, 32, 5), (64, 16, 2), (160, 16, 2), (96, 16, 5), (160, 8, 2), (64, 128, 1), (40, 96, 1), (28, 256, 3))
STACK = 4


def stack(size: int, channels: int, window: int, layers_: int, batch_norm: bool = True):
    """`layers_` convolutions (ReLU inside, batch norm after it, as basic_model's layers) at size x size x channels."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    image = keras.Input((size, size, channels))
    x = image
    for _ in range(layers_):
        x = layers.Conv2D(channels, window, padding="same", activation="relu")(x)
        if batch_norm:
            x = layers.BatchNormalization()(x)
    return keras.Model(image, x, name=f"s{layers_}_{size}_{channels}_{window}" + ("" if batch_norm else "_nobn"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", action="append", required=True)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/perfpred-small-convs"))
    args = parser.parse_args()
    from perfpred.kernels import detector, store

    builders = {f"s{n}_{h}_{c}_{k}": (lambda h=h, c=c, k=k, n=n: stack(h, c, k, n))
                for h, c, k in CONFIGS for n in (1, STACK)}
    builders |= {f"s{STACK}_{h}_{c}_{k}_nobn": (lambda h=h, c=c, k=k: stack(h, c, k, STACK, False)) for h, c, k in CONFIGS}
    paths = written(builders, args.folder)
    for target in args.target:
        latency = measure(paths, target, args.folder)
        model = store.load_model(target)
        print(f"{target} (ms): conv alone | per layer in a stack of {STACK} | kernel model per conv | "
              f"stack of {STACK} predicted / measured | batch norm after the ReLU, measured / priced")
        for h, c, k in CONFIGS:
            one, many = latency[f"s1_{h}_{c}_{k}"], latency[f"s{STACK}_{h}_{c}_{k}"]
            kernels = detector.detect(paths[f"s{STACK}_{h}_{c}_{k}"], target)
            inside = model.kernel_latencies(kernels)
            priced = [ms for kernel, ms in zip(kernels, inside, strict=True) if kernel.kind == "conv"]
            norms = [ms for kernel, ms in zip(kernels, inside, strict=True) if kernel.classes[0].startswith("BatchNormalization")]
            norm_ms = (many - latency[f"s{STACK}_{h}_{c}_{k}_nobn"]) / STACK
            print(f"  {h}x{h}x{c} {k}x{k}: {one:.3f} | {(many - one) / (STACK - 1):.3f} | {sum(priced) / len(priced):.3f} | "
                  f"{model.model_latency(kernels):.3f} / {many:.3f} | {norm_ms:.3f} / {sum(norms) / max(len(norms), 1):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
