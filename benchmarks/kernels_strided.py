"""Do a target's strided windows skip the input between them? The `strided_windows_skip` rule of conf/kernels/.

    python benchmarks/kernels_strided.py --target host-cpu-tflite [--target host-cpu-tf ...]

A window whose stride exceeds its size (a 1x1 convolution of stride 2, a 2x2 max pool of stride 4) needs only its
windows' rows and columns of the input. For each kind, measures with the harness (the configured settings) the layer
of stride 2 on an 80x80x64 input, the same layer of stride 1 on 40x40x64 (the same output) and of stride 1 on
80x80x64 (the whole input read). skip = (full - strided) / (full - stride 1) is about 1 when the runtime skips the
input between windows (detector._window_share prices a quarter of it) and 0 or less when it reads it all: a kind
with skip >= 0.5 belongs in the target's `strided_windows_skip:`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

SIZE, CHANNELS = 40, 64
KINDS = ("conv", "avgpool", "maxpool", "maxpool_2x2_stride_4")


def _layer(kind: str, stride: int):
    from keras import layers

    if kind == "avgpool":
        return layers.AveragePooling2D(1, strides=stride)
    if kind == "maxpool":
        return layers.MaxPooling2D(1, strides=stride)
    if kind == "maxpool_2x2_stride_4":
        return layers.MaxPooling2D(2, strides=2 * stride)
    return layers.Conv2D(CHANNELS, 1, strides=stride, use_bias=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", action="append", required=True)
    parser.add_argument("--folder", type=Path, default=Path("data/kernels/strided"))
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from perfpred import config
    from perfpred.measure import runners
    from perfpred.measure import stage as harness

    args.folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for kind in KINDS:
        for part, (stride, size) in {"stride1": (1, SIZE), "strided": (2, 2 * SIZE), "full": (1, 2 * SIZE)}.items():
            image = keras.Input((size, size, CHANNELS))
            path = args.folder / f"{kind}-{part}.json"
            path.write_text(keras.Model(image, _layer(kind, stride)(image)).to_json())
            entries.append((path.stem, path, None))
    params = config.load_params()
    for target in args.target:
        target_cfg, settings = harness.target_settings(target, params)
        with runners.ForkServer(harness.parallel_workers(settings)) as server:
            latency = {name: row["latency_ms"] for (name, _, _), row in harness.measure_many(entries, target_cfg, settings, server)}
        print(f"\n{target}")
        print(f"{'kind':<22} {'stride 1 ms':>11} {'strided ms':>10} {'full ms':>8} {'skip':>6}")
        skipping = []
        for kind in KINDS:
            first, strided, full = (latency[f"{kind}-{part}"] for part in ("stride1", "strided", "full"))
            skip = (full - strided) / max(full - first, 1e-6)
            print(f"{kind:<22} {first:11.4f} {strided:10.4f} {full:8.4f} {skip:6.2f}")
            if skip >= 0.5 and kind in ("conv", "avgpool", "maxpool"):
                skipping.append(kind)
        print(f"strided windows skip (size-1 windows, skip >= 0.5): {skipping}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
