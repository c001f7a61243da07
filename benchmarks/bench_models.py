"""The models the measure benchmarks time: keras.applications (weights=None) at a few sizes + small CNNs."""

from __future__ import annotations

import os
from pathlib import Path

#: name -> (keras.applications architecture or "cnn:<conv layers>:<filters>", input width, alpha)
MODELS: dict[str, tuple[str, int, float | None]] = {
    "MobileNet0.25-128": ("MobileNet", 128, 0.25),
    "MobileNetV2-0.35-96": ("MobileNetV2", 96, 0.35),
    "MobileNetV2-1.0-160": ("MobileNetV2", 160, 1.0),
    "MobileNetV3Small-224": ("MobileNetV3Small", 224, 1.0),
    "EfficientNetB0-128": ("EfficientNetB0", 128, None),
    "ResNet50-128": ("ResNet50", 128, None),
    "DenseNet121-64": ("DenseNet121", 64, None),
    "VGG16-64": ("VGG16", 64, None),
    "basic_cnn_3x16-32": ("cnn:3:16", 32, None),
    "basic_cnn_6x32-64": ("cnn:6:32", 64, None),
    "basic_cnn_10x48-128": ("cnn:10:48", 128, None),
}


def build_descriptors(folder: Path) -> dict[str, Path]:
    """Write each model's Keras JSON descriptor into `folder` (once) and return name -> path."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / f"{name}.json" for name in MODELS}
    missing = [name for name, path in paths.items() if not path.exists()]
    if missing:
        import keras

        for name in missing:
            kind, width, alpha = MODELS[name]
            if kind.startswith("cnn:"):
                _, depth, filters = kind.split(":")
                layers = [keras.Input((width, width, 3))]
                for index in range(int(depth)):
                    layers += [keras.layers.Conv2D(int(filters), 3, padding="same", strides=2 if index % 3 == 2 else 1),
                               keras.layers.BatchNormalization(), keras.layers.ReLU()]
                model = keras.Sequential(layers + [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)])
            else:
                extra = {"alpha": alpha} if alpha is not None else {}
                model = getattr(keras.applications, kind)(weights=None, input_shape=(width, width, 3), **extra)
            paths[name].write_text(model.to_json())
    return paths
