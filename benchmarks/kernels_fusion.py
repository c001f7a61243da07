"""The fusion-rule tester: does operator B after A cost A + B on a target, or A alone (fused)?

    python benchmarks/kernels_fusion.py --target host-cpu-tf [--target host-cpu-tflite]

For each pair, measures A alone, B alone and A followed by B with the harness (the configured settings),
plus a near-empty model (the per-call floor every measurement includes). B's marginal cost in the pair,
(t(A+B) - t(A)) / (t(B) - floor), is about 1 when nothing fuses and about 0 when B runs inside A. A pair
with a share below 0.5 is a fusion rule; the script prints the conf/kernels/<target>.yaml `fuse:` block
the measurements support.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

#: (A kind, B layer class, builder name); tensors large enough that B's own cost shows above the noise
PAIRS = (("conv", "BatchNormalization"), ("conv", "ReLU"), ("conv", "Activation"), ("depthwise", "BatchNormalization"),
         ("depthwise", "ReLU"), ("dense", "Activation"), ("add", "ReLU"), ("add", "Activation"),
         ("grouped", "BatchNormalization"), ("transposed", "ReLU"), ("conv", "Activation:swish"),
         ("depthwise", "Activation:swish"), ("conv", "Activation:gelu"), ("conv", "Activation:sigmoid"),
         ("dense", "Activation:softmax"))
SIZE, CHANNELS = 56, 64


def _a(kind: str, x, other=None):
    from keras import layers

    if kind == "conv":
        return layers.Conv2D(CHANNELS, 3, padding="same", use_bias=False)(x)
    if kind == "grouped":
        return layers.Conv2D(CHANNELS, 3, padding="same", use_bias=False, groups=8)(x)
    if kind == "transposed":
        return layers.Conv2DTranspose(CHANNELS, 2, strides=2, padding="same", use_bias=False)(x)
    if kind == "depthwise":
        return layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    if kind == "dense":
        return layers.Dense(2048)(x)
    return layers.Add()([x, other])


def _b(cls: str, x):
    from keras import layers

    if cls == "BatchNormalization":
        return layers.BatchNormalization()(x)
    if cls == "ReLU":
        return layers.ReLU()(x)
    _, _, function = cls.partition(":")  # `Activation:swish`: a rule key of its own (perfpred.kernels.detector.rule_key)
    return layers.Activation(function or "relu")(x)


def models(kind: str, cls: str) -> dict:
    """A alone, B alone (on A's output shape) and A followed by B, as keras Models."""
    import keras

    vector = kind == "dense"
    shape = (2048,) if vector else ((SIZE // 2, SIZE // 2, CHANNELS) if kind == "transposed" else (SIZE, SIZE, CHANNELS))
    image = keras.Input(shape)
    other = keras.Input(shape) if kind == "add" else None
    inputs = [image, other] if other is not None else [image]
    a = keras.Model(inputs, _a(kind, image, other))
    b_input = keras.Input(tuple(a.outputs[0].shape[1:]))
    b = keras.Model(b_input, _b(cls, b_input))
    ab = keras.Model(inputs, _b(cls, _a(kind, image, other)))
    return {"A": a, "B": b, "AB": ab}


def _stem(kind: str, cls: str) -> str:
    return f"{kind}+{cls.replace(':', '-')}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", action="append", required=True)
    parser.add_argument("--folder", type=Path, default=Path("data/kernels/fusion"))
    parser.add_argument("--only", help="measure only the pairs whose 'A+B' contains this text (e.g. Activation:)")
    args = parser.parse_args()
    pairs = [(kind, cls) for kind, cls in PAIRS if not args.only or args.only in f"{kind}+{cls}"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from perfpred import config
    from perfpred.measure import runners
    from perfpred.measure import stage as harness

    args.folder.mkdir(parents=True, exist_ok=True)
    entries = []
    floor_input = keras.Input((1, 1, 8))
    floor = keras.Model(floor_input, keras.layers.ReLU()(floor_input))
    (args.folder / "floor.json").write_text(floor.to_json())
    entries.append(("floor", args.folder / "floor.json", None))
    for kind, cls in pairs:
        for part, model in models(kind, cls).items():
            path = args.folder / f"{_stem(kind, cls)}-{part}.json"
            path.write_text(model.to_json())
            entries.append((path.stem, path, None))
    params = config.load_params()
    for target in args.target:
        target_cfg, settings = harness.target_settings(target, params)
        with runners.ForkServer(harness.parallel_workers(settings)) as server:
            rows = {name: row for (name, _, _), row in harness.measure_many(entries, target_cfg, settings, server)}
        latency = {name: row["latency_ms"] for name, row in rows.items()}
        base = latency["floor"]
        print(f"\n{target}: per-call floor {base:.3f} ms")
        print(f"{'A':<11} {'B':<19} {'t(A) ms':>8} {'t(B) ms':>8} {'t(A+B) ms':>9} {'B share':>8}  fused")
        rules: dict[str, list[str]] = {}
        for kind, cls in pairs:
            t_a, t_b, t_ab = (latency[f"{_stem(kind, cls)}-{part}"] for part in ("A", "B", "AB"))
            if None in (t_a, t_b, t_ab):  # a part the target could not run (e.g. an exporter without the op)
                reasons = {rows[f"{_stem(kind, cls)}-{part}"].get("reason") for part in ("A", "B", "AB")} - {None}
                print(f"{kind:<11} {cls:<19} not measured: {'; '.join(str(r)[:120] for r in reasons)}")
                continue
            share = (t_ab - t_a) / max(t_b - base, 1e-6)
            fused = share < 0.5
            if fused:
                rules.setdefault(cls, []).append(kind)
            print(f"{kind:<11} {cls:<19} {t_a:8.3f} {t_b:8.3f} {t_ab:9.3f} {share:8.2f}  {'yes' if fused else 'no'}")
        print("fuse:")
        for cls, kinds in rules.items():
            print(f"  {cls}: [{', '.join(kinds)}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
