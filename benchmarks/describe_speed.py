"""How fast perfpred.describe is: all dataset descriptors, and against building + profiling in TensorFlow.

    python benchmarks/describe_speed.py [--models ResNet50,MobileNetV2,...]

Part 1 describes the 85 descriptors of data/raw/jetson-bouzidi/architectures at their own size (pure
Python). Part 2, in the same run, builds 5 keras.applications models (weights=None), counts their FLOPs
with tf.compat.v1.profiler on a traced graph, and describes their to_json(): the ratio of the two times.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

from perfpred import config
from perfpred.features.description import describe

DEFAULT_MODELS = "ResNet50,MobileNetV2,DenseNet121,EfficientNetB0,Xception"


def describe_dataset() -> tuple[int, float]:
    """Seconds to describe every descriptor of the Jetson dataset once."""
    root = config.path("jetson_dataset", config.load_params()) / "architectures"
    paths = sorted(root.glob("*.json"))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in paths:
            describe(path)
    return len(paths), time.perf_counter() - start


def tensorflow_flops(name: str) -> tuple[int, float, str, int]:
    """FLOPs of a keras.applications model by the TF profiler, the seconds it took (build + trace + profile), its JSON."""
    import keras
    import tensorflow as tf

    start = time.perf_counter()
    model = getattr(keras.applications, name)(weights=None)
    width = model.input_shape[1] or 224
    function = tf.function(lambda x: model(x, training=False))
    graph = function.get_concrete_function(tf.TensorSpec([1, width, width, 3], tf.float32)).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    flops = tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops
    seconds = time.perf_counter() - start
    return flops, seconds, model.to_json(), width


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS, help="keras.applications models for the TF comparison")
    args = parser.parse_args()
    count, seconds = describe_dataset()
    print(f"describe: {count} dataset descriptors in {seconds:.2f} s ({1000 * seconds / count:.1f} ms each)")
    import keras  # noqa: F401  imported (with TensorFlow) before timing: its ~5 s start-up is not charged to the TF side

    tf_total = ours_total = 0.0
    print("| model | TF build+profile s | describe s | TF profiler FLOPs | describe FLOPs | ratio |")
    print("|---|---|---|---|---|---|")
    for name in args.models.split(","):
        tf_flops, tf_seconds, descriptor, width = tensorflow_flops(name)
        path = Path(tempfile.gettempdir()) / f"perfpred-speed-{name}.json"
        path.write_text(descriptor)
        start = time.perf_counter()
        ours = describe(path, input_size=width)
        our_seconds = time.perf_counter() - start
        tf_total += tf_seconds
        ours_total += our_seconds
        print(f"| {name} | {tf_seconds:.2f} | {our_seconds:.4f} | {tf_flops:,} | {ours['flops']:,} | "
              f"{ours['flops'] / tf_flops:.3f} |")
    print(f"total: TensorFlow {tf_total:.2f} s, describe {ours_total:.3f} s: describe is {tf_total / ours_total:.0f}x faster")


if __name__ == "__main__":
    main()
