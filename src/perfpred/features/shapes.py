"""Shape inference of Keras layers from their config, and the rules of layers that hold no weights.

Shapes leave out the batch axis and are channels-last. Layers with weights (convolutions, Dense,
normalisation) and the FLOPs conventions of the Jetson data are in `perfpred.features.weighted`; class names
map to rules in `perfpred.features.rules`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

Shape = tuple[int, ...]


class LayerError(ValueError):
    """A layer whose config or input shapes cannot be turned into an output shape."""


@dataclass
class LayerStats:
    """What one layer call produces and costs."""

    shape: Shape
    params: int = 0
    flops: int = 0
    kernel: tuple[int, int] | None = None
    #: weights per config key of the regularizer that applies to them ('kernel_regularizer': n, ...)
    weights: dict[str, int] = field(default_factory=dict)


def elements(shape: Shape) -> int:
    """Number of elements of a shape (batch excluded)."""
    return math.prod(shape)


def pair(value, name: str) -> tuple[int, int]:
    """An int or a pair of ints from a layer config (kernel_size, strides, ...) as a pair."""
    if isinstance(value, int):
        return value, value
    if isinstance(value, list | tuple) and len(value) == 2:
        return int(value[0]), int(value[1])
    raise LayerError(f"{name} must be an int or a pair, got {value!r}")


def image(shapes: list[Shape], cls: str) -> Shape:
    """The first input shape, which must be H x W x C."""
    shape = shapes[0]
    if len(shape) != 3:
        raise LayerError(f"{cls} needs a H x W x C input, got shape {shape}")
    return shape


def _window(size: int, kernel: int, stride: int, dilation: int, padding: str) -> int:
    span = (kernel - 1) * dilation + 1
    if padding == "same":
        return -(-size // stride)
    if padding == "valid":
        return (size - span) // stride + 1 if size >= span else 0
    raise LayerError(f"unknown padding {padding!r} (expected 'same' or 'valid')")


def spatial(config: dict, shape: Shape, kernel: tuple[int, int], stride_key: str = "strides") -> tuple[int, int]:
    """Output height and width of a sliding window (convolution, pooling) over `shape`."""
    strides = pair(config.get(stride_key) or kernel, stride_key)
    dilation = pair(config.get("dilation_rate", 1), "dilation_rate")
    padding = str(config.get("padding", "valid")).lower()
    return tuple(_window(shape[i], kernel[i], strides[i], dilation[i], padding) for i in (0, 1))


def pooling(config: dict, shapes: list[Shape]) -> LayerStats:
    height, width, channels = image(shapes, "Pooling2D")
    pool = pair(config.get("pool_size", 2), "pool_size")
    out = (*spatial(config, (height, width), pool), channels)
    return LayerStats(out, 0, elements(out) * pool[0] * pool[1], pool)


def global_pooling(config: dict, shapes: list[Shape]) -> LayerStats:
    shape = shapes[0]
    out = (1,) * (len(shape) - 1) + shape[-1:] if config.get("keepdims") else shape[-1:]
    return LayerStats(out, 0, elements(shape))


def merge(flops_per_input: int) -> Callable[[dict, list[Shape]], LayerStats]:
    """Element-wise merge of tensors (with broadcasting): (inputs - 1) ops per output element."""

    def rule(config: dict, shapes: list[Shape]) -> LayerStats:
        out = broadcast(shapes)
        return LayerStats(out, 0, flops_per_input * max(len(shapes) - 1, 1) * elements(out))

    return rule


def broadcast(shapes: list[Shape]) -> Shape:
    """NumPy broadcasting of shapes."""
    rank = max(len(s) for s in shapes)
    out = []
    for dims in zip(*[(1,) * (rank - len(s)) + tuple(s) for s in shapes], strict=True):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            raise LayerError(f"shapes {shapes} cannot be broadcast together")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def concatenate(config: dict, shapes: list[Shape]) -> LayerStats:
    axis = int(config.get("axis", -1))
    axis = axis - 1 if axis > 0 else len(shapes[0]) + axis
    others = {s[:axis] + s[axis + 1 :] for s in shapes}
    if len(others) != 1:
        raise LayerError(f"Concatenate inputs differ outside axis {axis + 1}: {shapes}")
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return LayerStats(tuple(out))


def zero_padding(config: dict, shapes: list[Shape]) -> LayerStats:
    height, width, channels = image(shapes, "ZeroPadding2D")
    (top, bottom), (left, right) = _padding_pairs(config.get("padding", 1))
    return LayerStats((height + top + bottom, width + left + right, channels))


def cropping(config: dict, shapes: list[Shape]) -> LayerStats:
    height, width, channels = image(shapes, "Cropping2D")
    (top, bottom), (left, right) = _padding_pairs(config.get("cropping", 0))
    return LayerStats((height - top - bottom, width - left - right, channels))


def _padding_pairs(value) -> tuple[tuple[int, int], tuple[int, int]]:
    if isinstance(value, int):
        return (value, value), (value, value)
    first, second = value
    return pair(first, "padding"), pair(second, "padding")


def upsampling(config: dict, shapes: list[Shape]) -> LayerStats:
    height, width, channels = image(shapes, "UpSampling2D")
    size = pair(config.get("size", 2), "size")
    return LayerStats((height * size[0], width * size[1], channels))


def reshape(config: dict, shapes: list[Shape]) -> LayerStats:
    target = [int(d) if d is not None else -1 for d in config["target_shape"]]
    total = elements(shapes[0])
    if -1 in target:
        known = math.prod(d for d in target if d != -1)
        target[target.index(-1)] = total // known if known else 0
    if math.prod(target) != total:
        raise LayerError(f"cannot reshape {shapes[0]} ({total} elements) to {tuple(config['target_shape'])}")
    return LayerStats(tuple(target))


def flatten(config: dict, shapes: list[Shape]) -> LayerStats:
    return LayerStats((elements(shapes[0]),))


def permute(config: dict, shapes: list[Shape]) -> LayerStats:
    return LayerStats(tuple(shapes[0][d - 1] for d in config["dims"]))


def identity(flops_per_element: int = 0) -> Callable[[dict, list[Shape]], LayerStats]:
    """A layer that keeps its input shape."""

    def rule(config: dict, shapes: list[Shape]) -> LayerStats:
        return LayerStats(shapes[0], 0, flops_per_element * elements(shapes[0]))

    return rule


def same_padding(config: dict, shape: tuple) -> dict:
    """Re-target keras.applications' `correct_pad` padding to another input size.

    MobileNetV2 and EfficientNet pad ((k//2 - 1, k//2), ...) before a stride-2 'valid' convolution
    when the size is even and (k//2, k//2) when it is odd (TensorFlow's 'same' for stride 2). A
    descriptor holds the padding of its own size; an asymmetric (p, p + 1) pair is recomputed for
    the size the layer now sees. Symmetric padding is kept (it cannot be told from plain padding).
    """
    padding = config.get("padding")
    if not (isinstance(padding, list | tuple) and len(padding) == 2 and all(
            isinstance(entry, list | tuple) and len(entry) == 2 for entry in padding)):
        return config
    adjusted = []
    for (before, after), size in zip(padding, shape[:2], strict=True):
        if after == before + 1 and size % 2 == 1:
            before = after
        adjusted.append([before, after])
    return config | {"padding": adjusted}
