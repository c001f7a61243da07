"""Five architectures in no zoo, at 96, 160 and 224 px: measured with the harness, predicted from kernels.

    python benchmarks/kernels_novel.py --target host-cpu-tf --target host-cpu-tflite

Writes the descriptors to data/kernels/novel/, measures each with the harness `perfpred measure` uses
(perfpred.measure.stage.measure_many, the configured settings, a journal per target so that a rerun
resumes) and compares with the target's kernel model (`perfpred kernel-train`): MAPE, share within
+-10%, and how many measurements fall inside the 90% intervals. With --champion it also prints the
registered latency champion's figures as `perfpred predict` gives them (needs the MLflow store of a trained
pipeline: MLFLOW_TRACKING_URI or the local store).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

SIZES = (96, 160, 224)
ARCHITECTURES = ("unet", "vgg_odd", "resnext", "separable", "dense_head")


def _bn_relu(x):
    from keras import layers

    return layers.ReLU()(layers.BatchNormalization()(x))


def build(architecture: str, width: int):
    """One benchmark architecture at an input width (random weights)."""
    import keras
    from keras import layers

    image = keras.Input((width, width, 3))
    if architecture == "unet":  # encoder-decoder, transposed convolutions, skip concatenations
        x, skips = image, []
        for filters in (16, 32, 64):
            x = _bn_relu(layers.Conv2D(filters, 3, padding="same", use_bias=False)(x))
            x = _bn_relu(layers.Conv2D(filters, 3, padding="same", use_bias=False)(x))
            skips.append(x)
            x = layers.MaxPooling2D(2)(x)
        x = _bn_relu(layers.Conv2D(128, 3, padding="same", use_bias=False)(x))
        for filters, skip in zip((64, 32, 16), reversed(skips), strict=True):
            x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same")(x)
            x = layers.Concatenate()([x, skip])
            x = _bn_relu(layers.Conv2D(filters, 3, padding="same", use_bias=False)(x))
        out = layers.Conv2D(2, 1, activation="sigmoid")(x)
    elif architecture == "vgg_odd":  # plain 3x3 stacks with odd channel counts
        x = image
        for filters, repeats in ((19, 2), (37, 2), (75, 3), (141, 3), (201, 2)):
            for _ in range(repeats):
                x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
            x = layers.MaxPooling2D(2)(x)
        out = layers.Dense(1000, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    elif architecture == "resnext":  # bottlenecks with 32-group 3x3 convolutions
        x = _bn_relu(layers.Conv2D(32, 7, strides=2, padding="same", use_bias=False)(image))
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        for stage, (width_g, out_c) in enumerate(((64, 128), (128, 256), (256, 512))):
            for block in range(2):
                stride = 2 if block == 0 and stage > 0 else 1
                shortcut = x
                if block == 0:
                    shortcut = layers.BatchNormalization()(
                        layers.Conv2D(out_c, 1, strides=stride, use_bias=False)(x))
                y = _bn_relu(layers.Conv2D(width_g, 1, use_bias=False)(x))
                y = _bn_relu(layers.Conv2D(width_g, 3, strides=stride, padding="same", groups=32, use_bias=False)(y))
                y = layers.BatchNormalization()(layers.Conv2D(out_c, 1, use_bias=False)(y))
                x = layers.ReLU()(layers.Add()([y, shortcut]))
        out = layers.Dense(1000, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    elif architecture == "separable":  # a stack of separable convolutions
        x = _bn_relu(layers.Conv2D(24, 3, strides=2, padding="same", use_bias=False)(image))
        for filters, stride in ((48, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (384, 2)):
            x = _bn_relu(layers.SeparableConv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x))
        out = layers.Dense(1000, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    elif architecture == "dense_head":  # a small backbone under a wide fully connected head
        x = image
        for filters in (16, 32, 48, 64, 64):
            x = layers.MaxPooling2D(2)(_bn_relu(layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)))
        x = layers.Flatten()(x)
        x = layers.Dense(2048, activation="relu")(x)
        x = layers.Dropout(0.5)(x)
        x = layers.Dense(2048, activation="relu")(x)
        out = layers.Dense(1000, activation="softmax")(x)
    else:
        raise ValueError(f"unknown architecture {architecture!r}: one of {', '.join(ARCHITECTURES)}")
    return keras.Model(image, out, name=f"{architecture}_{width}")


def written(builders: dict, folder: Path) -> dict[str, Path]:
    """name -> <folder>/<name>.json, each Keras descriptor written from its builder (a function returning the
    keras.Model) only where the file is missing: a rerun builds nothing and measures from the journal."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / f"{name}.json" for name in builders}
    for name, path in paths.items():
        if not path.exists():
            path.write_text(builders[name]().to_json())
    return paths


def descriptors(folder: Path) -> dict[str, Path]:
    """Write every (architecture, size) descriptor once; name -> path."""
    return written({f"{a}_{w}": lambda a=a, w=w: build(a, w) for a in ARCHITECTURES for w in SIZES}, folder)


def measure(paths: dict[str, Path], target: str, folder: Path) -> dict[str, float]:
    """Latency (ms) of each descriptor on a target, with the configured harness settings; resumes from a journal."""
    from perfpred import config
    from perfpred.measure import runners
    from perfpred.measure import stage as harness

    params = config.load_params()
    target_cfg, settings = harness.target_settings(target, params)
    sid = harness.settings_id(target_cfg, settings)
    journal = folder / "runs" / target / "journal.jsonl"
    done = {harness.row_key(r["model"], None, sid): r for r in harness.read_journal(journal) if r["settings_id"] == sid}
    pending = [(name, path, None) for name, path in paths.items() if harness.row_key(name, None, sid) not in done]
    with runners.ForkServer(harness.parallel_workers(settings)) as server:
        for (name, _, _), row in harness.measure_many(pending, target_cfg, settings, server):
            row.pop("times_ms")
            row |= {"requested_width": None, "timings": 1}
            harness.append_journal(journal, row)
            done[harness.row_key(name, None, sid)] = row
        # a model timed while the machine ran slower than when the target's table was measured is timed again once
        harness.retime_slow(done, sid, [], {(name, None): path for name, path in paths.items()}, target_cfg, settings,
                            server, None, journal.parent, False, series=False,
                            reference_us=harness.table_probe_us(target, params))
    rows = {name: done[harness.row_key(name, None, sid)] for name in paths}
    return {name: float(row["latency_ms"]) for name, row in rows.items() if row.get("status") == "ok"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", action="append", required=True)
    parser.add_argument("--folder", type=Path, default=Path("data/kernels/novel"))
    parser.add_argument("--json", type=Path, help="also write the per-model figures here")
    parser.add_argument("--champion", action="store_true",
                        help="also predict with the registered latency champion, as `perfpred predict` does")
    parser.add_argument("--calibration", default="auto",
                        help="the champion's intervals calibrated on these held-out rows (`perfpred predict "
                             "--calibration`: auto, the default as there; random, families, sizes, architectures, "
                             "synthetic)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from perfpred.kernels import detector
    from perfpred.kernels.store import load_model

    paths = descriptors(args.folder)
    report = {}
    for target in args.target:
        measured = measure(paths, target, args.folder)
        model = load_model(target)
        rows = []
        for name, latency_ms in measured.items():
            kernels = detector.detect(paths[name], target)
            predicted = model.model_latency(kernels)
            low, high = model.interval(predicted)
            rows.append({"model": name, "measured_ms": latency_ms, "predicted_ms": predicted, "low_ms": low,
                         "high_ms": high})
        report[target] = summarise(f"{target}: kernel model (perfpred kernels)", rows)
        if args.champion:
            from perfpred.serve.predict import predict_model

            rows = []
            for name, latency_ms in measured.items():
                answer = predict_model(str(paths[name]), targets=[target], calibration=args.calibration).iloc[0]
                rows.append({"model": name, "measured_ms": latency_ms, "predicted_ms": float(answer["latency_ms"]),
                             "low_ms": float(answer["latency_ms_low"]), "high_ms": float(answer["latency_ms_high"]),
                             "predictor": answer["latency_predictor"], "intervals": answer["latency_intervals"]})
            used = sorted({row["intervals"] for row in rows})
            calibrated = f", intervals calibrated on {args.calibration}: {', '.join(used)}"
            report[f"{target} champion"] = summarise(
                f"{target}: champion {rows[0]['predictor']} (perfpred predict{calibrated})", rows)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def summarise(title: str, rows: list[dict]) -> dict:
    """Print the per-model table and the figures of one predictor; return them."""
    errors = np.array([abs(r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"] for r in rows])
    covered = np.array([r["low_ms"] <= r["measured_ms"] <= r["high_ms"] for r in rows])
    print(f"\n{title}: {len(rows)} models measured")
    print(f"{'model':<18} {'measured ms':>12} {'predicted ms':>12} {'error':>7}  90% interval")
    for r, e in zip(rows, errors, strict=True):
        print(f"{r['model']:<18} {r['measured_ms']:12.2f} {r['predicted_ms']:12.2f} {100 * e:6.1f}%  "
              f"{r['low_ms']:.2f} - {r['high_ms']:.2f}")
    print(f"MAPE {100 * errors.mean():.1f}%, within 10%: {100 * (errors <= 0.1).mean():.0f}%, "
          f"90% intervals cover {100 * covered.mean():.0f}%")
    return {"mape": 100 * errors.mean(), "within_10": 100 * (errors <= 0.1).mean(),
            "coverage_90": 100 * covered.mean(), "rows": rows}


if __name__ == "__main__":
    raise SystemExit(main())
