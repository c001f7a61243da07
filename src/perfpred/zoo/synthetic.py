"""The seed methodology's synthetic CNNs (`basic_model`): plain conv stacks drawn at random, reproducibly.

A basic_model is named by four parameters and its input width, `basic_model_c{conv_layers}_k{kernel_size}
_f{filters}_s{strides}_{input_width}`. What follows each convolution and the classifier head are drawn from
a random generator seeded by (seed, name), with the frequencies read off the seed's 16 descriptors
(data/raw/jetson-bouzidi/architectures/basic_model_*.json, Keras 2.3):
- every convolution is Conv2D(padding="same", activation="relu", use_bias=True), named b_conv{i};
- it is followed by a BatchNormalization (bn_conv{i}, 205 of 409 convolutions in the seed), or by a
  MaxPooling2D(padding="valid", pool 2 or 3, strides 1 to 5; b_max_pool{i}, 63 of 409), or by nothing;
  never by both;
- the head is a global pooling (GlobalAveragePooling2D 11 of 16, GlobalMaxPooling2D 4, Flatten 1), then
  Dense(classes, linear) named fc, then Activation("softmax") named softmax; classes in {10, 100, 200,
  500, 1000}.
Where the seed differs: its kernel size and filters vary from layer to layer and its strides are all 1;
here the four parameters hold for every layer of a model (the methodology's parameterisation).

A combination is impossible, and never emitted, when a convolution would see a feature map smaller than
its kernel (strided "same" convolutions halve the map until it collapses); a pooling is drawn only where
the map stays large enough for every later convolution. A combination over the profile's `max_gmacs`
(multiply-accumulates of the convolutions, pooling ignored: an upper bound) is left out too.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

#: Head and per-layer choices with the seed's frequencies (counts over its 16 descriptors).
HEADS: dict[str, int] = {"GlobalAveragePooling2D": 11, "GlobalMaxPooling2D": 4, "Flatten": 1}
AFTER_CONV: dict[str, int] = {"BatchNormalization": 205, "MaxPooling2D": 63, "none": 141}
POOL_SIZES: tuple[int, ...] = (2, 3)
POOL_STRIDES: tuple[int, ...] = (1, 2, 3, 4, 5)
CLASSES: tuple[int, ...] = (10, 100, 200, 500, 1000)


@dataclass(frozen=True, order=True)
class BasicModel:
    """One synthetic CNN: its four parameters and its input width."""

    conv_layers: int
    kernel_size: int
    filters: int
    strides: int
    input_width: int

    @property
    def name(self) -> str:
        """Unique name, e.g. basic_model_c12_k3_f64_s1_224."""
        return f"basic_model_c{self.conv_layers}_k{self.kernel_size}_f{self.filters}_s{self.strides}_{self.input_width}"


@dataclass(frozen=True)
class Layer:
    """One layer of a basic_model's plan: Keras class, name and arguments."""

    class_name: str
    name: str
    arguments: tuple[tuple[str, object], ...] = ()


def conv_output_width(width: int, strides: int) -> int:
    """Spatial width after a "same"-padded convolution."""
    return math.ceil(width / strides)


def pool_output_width(width: int, pool_size: int, strides: int) -> int:
    """Spatial width after a "valid" pooling (below 1 means the map collapsed)."""
    return (width - pool_size) // strides + 1


def _minimum_widths(model: BasicModel) -> list[int]:
    """For each convolution i, the smallest input width that keeps it and every later one feasible."""
    needed = [model.kernel_size] * model.conv_layers
    for i in range(model.conv_layers - 2, -1, -1):
        needed[i] = max(model.kernel_size, model.strides * (needed[i + 1] - 1) + 1)
    return needed


def is_feasible(model: BasicModel) -> bool:
    """True when no convolution sees a feature map smaller than its kernel."""
    return model.input_width >= _minimum_widths(model)[0]


def conv_macs(model: BasicModel) -> int:
    """Multiply-accumulates of the convolutions without pooling (an upper bound for the drawn model)."""
    width, channels, macs = model.input_width, 3, 0
    for _ in range(model.conv_layers):
        width = conv_output_width(width, model.strides)
        macs += width * width * model.kernel_size**2 * channels * model.filters
        channels = model.filters
    return macs


def _values(bounds: object) -> list[int]:
    """A configured list of values (a mapping or an empty list is a configuration error)."""
    values = list(bounds)  # type: ignore[call-overload]
    if isinstance(bounds, Mapping) or len(values) == 0:
        raise ValueError(f"expected a non-empty list of values, got {bounds!r}")
    return values


def candidates(spec: Mapping) -> list[BasicModel]:
    """Every feasible combination within the ranges of a `synthetic` profile section, sorted."""
    low, high = spec["conv_layers"]
    if not 1 <= low <= high:
        raise ValueError(f"synthetic.conv_layers must be [low, high] with 1 <= low <= high, got {spec['conv_layers']!r}")
    grid = itertools.product(
        range(low, high + 1),
        _values(spec["kernel_sizes"]),
        _values(spec["filters"]),
        _values(spec["strides"]),
        _values(spec["input_widths"]),
    )
    max_macs = float(spec.get("max_gmacs", math.inf)) * 1e9
    models = (BasicModel(*combination) for combination in grid)
    return sorted(m for m in models if is_feasible(m) and conv_macs(m) <= max_macs)


def sample(spec: Mapping, seed: int) -> list[BasicModel]:
    """`spec["count"]` distinct feasible combinations drawn with `seed` (all of them if fewer exist)."""
    pool = candidates(spec)
    count = min(int(spec["count"]), len(pool))
    return sorted(random.Random(seed).sample(pool, count))


def _weighted(rng: random.Random, weights: Mapping[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def layer_plan(model: BasicModel, seed: int) -> list[Layer]:
    """The layers of a basic_model after its input, drawn reproducibly from (seed, name)."""
    if not is_feasible(model):
        raise ValueError(f"{model.name}: a convolution would see a map smaller than its {model.kernel_size}x{model.kernel_size} kernel")
    rng = random.Random(f"{seed}:{model.name}")
    needed = _minimum_widths(model) + [1]
    width, plan = model.input_width, []
    for i in range(1, model.conv_layers + 1):
        conv = (("filters", model.filters), ("kernel_size", model.kernel_size), ("strides", model.strides))
        plan.append(Layer("Conv2D", f"b_conv{i}", conv))
        width = conv_output_width(width, model.strides)
        after = _weighted(rng, AFTER_CONV)
        pool_size, pool_strides = rng.choice(POOL_SIZES), rng.choice(POOL_STRIDES)
        if after == "BatchNormalization":
            plan.append(Layer("BatchNormalization", f"bn_conv{i}"))
        elif after == "MaxPooling2D" and pool_output_width(width, pool_size, pool_strides) >= needed[i]:
            plan.append(Layer("MaxPooling2D", f"b_max_pool{i}", (("pool_size", pool_size), ("strides", pool_strides))))
            width = pool_output_width(width, pool_size, pool_strides)
    head = _weighted(rng, HEADS)
    plan.append(Layer(head, "global_pool" if head != "Flatten" else "flatten"))
    plan.append(Layer("Dense", "fc", (("units", rng.choice(CLASSES)),)))
    plan.append(Layer("Activation", "softmax", (("activation", "softmax"),)))
    return plan


def build(model: BasicModel, seed: int):
    """The Keras model of a basic_model (random weights)."""
    import keras

    inputs = keras.Input(shape=(model.input_width, model.input_width, 3), name="input_1")
    x = inputs
    for layer in layer_plan(model, seed):
        arguments = dict(layer.arguments)
        if layer.class_name == "Conv2D":
            x = keras.layers.Conv2D(padding="same", activation="relu", name=layer.name, **arguments)(x)
        elif layer.class_name == "MaxPooling2D":
            x = keras.layers.MaxPooling2D(padding="valid", name=layer.name, **arguments)(x)
        else:
            x = getattr(keras.layers, layer.class_name)(name=layer.name, **arguments)(x)
    return keras.Model(inputs, x, name=model.name)
