"""Per-layer rules: output shape, parameters, FLOPs and weighted neurons of a Keras layer from its config.

Shapes leave out the batch axis and are channels-last. FLOPs follow the TensorFlow 1.x profiler the
Jetson data used (`float_operation()` over the whole graph): 2 per multiply-accumulate, 1 per bias
add, per element-wise add/multiply and per pooled input; nothing for ReLU, sigmoid or concatenation
(ops it does not count); and 2 per kernel weight, because the graphs profiled for the data kept the
weight initialisers (random * scale + offset). The batch-norm constants were chosen on the data
(benchmarks/fidelity.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

Shape = tuple[int, ...]

#: FLOPs per output element of an activation function (TF1 profiler counts Add/Mul/RealDiv, not Relu/Sigmoid).
ACTIVATION_FLOPS = {
    None: 0, "linear": 0, "relu": 0, "relu6": 0, "sigmoid": 0, "tanh": 0, "softmax": 0, "elu": 0, "selu": 0,
    "softplus": 0, "softsign": 0, "exponential": 0, "leaky_relu": 0, "gelu": 4,
    "swish": 1, "silu": 1, "hard_sigmoid": 2, "hard_swish": 3, "hard_silu": 3, "mish": 1,
}
#: batch normalisation at inference: FLOPs per output element and per channel (chosen on the Jetson data).
BN_FLOPS_PER_ELEMENT = 1
BN_FLOPS_PER_CHANNEL = 2
#: the TF1 graphs the data profiled kept their weight initialisers (random * scale + offset): 2 per kernel weight
INIT_FLOPS_PER_WEIGHT = 2


class LayerError(ValueError):
    """A layer whose config or input shapes cannot be turned into an output shape."""


@dataclass
class LayerStats:
    """What one layer call produces and costs."""

    shape: Shape
    params: int = 0
    flops: int = 0
    neurons: int = 0
    kernel: tuple[int, int] | None = None


def elements(shape: Shape) -> int:
    """Number of elements of a shape (batch excluded)."""
    return math.prod(shape)


def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, list | tuple) and len(value) == 2:
        return int(value[0]), int(value[1])
    raise LayerError(f"{name} must be an int or a pair, got {value!r}")


def _image(shapes: list[Shape], cls: str) -> Shape:
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


def _spatial(config: dict, shape: Shape, kernel: tuple[int, int], stride_key: str = "strides") -> tuple[int, int]:
    strides = _pair(config.get(stride_key) or kernel, stride_key)
    dilation = _pair(config.get("dilation_rate", 1), "dilation_rate")
    padding = str(config.get("padding", "valid")).lower()
    return tuple(_window(shape[i], kernel[i], strides[i], dilation[i], padding) for i in (0, 1))


def _activation_flops(config: dict, count: int) -> int:
    name = config.get("activation")
    if isinstance(name, dict):
        name = name.get("config", {}).get("name") or name.get("class_name")
    if isinstance(name, str):
        name = name.strip("_").lower()  # Keras 2 MobileNetV3 names its own '_hard_swish', '_relu6'
    return ACTIVATION_FLOPS.get(name, 0) * count


def conv2d(config: dict, shapes: list[Shape]) -> LayerStats:
    height, width, channels = _image(shapes, "Conv2D")
    kernel = _pair(config["kernel_size"], "kernel_size")
    groups = int(config.get("groups", 1) or 1)
    filters = int(config["filters"])
    out = (*_spatial(config, (height, width), kernel), filters)
    macs = elements(out) * kernel[0] * kernel[1] * (channels // groups)
    bias = filters if config.get("use_bias", True) else 0
    params = kernel[0] * kernel[1] * (channels // groups) * filters + bias
    flops = 2 * macs + (elements(out) if bias else 0) + _activation_flops(config, elements(out))
    return LayerStats(out, params, flops + INIT_FLOPS_PER_WEIGHT * (params - bias), macs, kernel)


def conv2d_transpose(config: dict, shapes: list[Shape]) -> LayerStats:
    height, width, channels = _image(shapes, "Conv2DTranspose")
    kernel = _pair(config["kernel_size"], "kernel_size")
    strides = _pair(config.get("strides", 1), "strides")
    dilation = _pair(config.get("dilation_rate", 1), "dilation_rate")
    padding = config.get("padding", "valid")
    extra = config.get("output_padding")
    sizes = []
    for i, size in enumerate((height, width)):
        span = (kernel[i] - 1) * dilation[i] + 1
        if extra is None:
            sizes.append(size * strides[i] if padding == "same" else size * strides[i] + max(span - strides[i], 0))
        else:
            pad = span // 2 if padding == "same" else 0
            sizes.append((size - 1) * strides[i] + span - 2 * pad + _pair(extra, "output_padding")[i])
    filters = int(config["filters"])
    out = (*sizes, filters)
    macs = height * width * channels * kernel[0] * kernel[1] * filters
    bias = filters if config.get("use_bias", True) else 0
    flops = 2 * macs + (elements(out) if bias else 0) + _activation_flops(config, elements(out))
    weights = kernel[0] * kernel[1] * channels * filters
    return LayerStats(out, weights + bias, flops + INIT_FLOPS_PER_WEIGHT * weights, macs, kernel)


def depthwise_conv2d(config: dict, shapes: list[Shape]) -> LayerStats:
    height, width, channels = _image(shapes, "DepthwiseConv2D")
    kernel = _pair(config["kernel_size"], "kernel_size")
    multiplier = int(config.get("depth_multiplier", 1))
    out = (*_spatial(config, (height, width), kernel), channels * multiplier)
    macs = elements(out) * kernel[0] * kernel[1]
    bias = channels * multiplier if config.get("use_bias", True) else 0
    flops = 2 * macs + (elements(out) if bias else 0) + _activation_flops(config, elements(out))
    # the data's weighted neurons count each depthwise output against every input channel
    weights = kernel[0] * kernel[1] * channels * multiplier
    return LayerStats(out, weights + bias, flops + INIT_FLOPS_PER_WEIGHT * weights, macs * channels, kernel)


def separable_conv2d(config: dict, shapes: list[Shape]) -> LayerStats:
    height, width, channels = _image(shapes, "SeparableConv2D")
    kernel = _pair(config["kernel_size"], "kernel_size")
    multiplier = int(config.get("depth_multiplier", 1))
    filters = int(config["filters"])
    spatial = _spatial(config, (height, width), kernel)
    out = (*spatial, filters)
    depthwise = elements(spatial) * channels * multiplier * kernel[0] * kernel[1]
    pointwise = elements(out) * channels * multiplier
    bias = filters if config.get("use_bias", True) else 0
    params = kernel[0] * kernel[1] * channels * multiplier + channels * multiplier * filters + bias
    flops = 2 * (depthwise + pointwise) + (elements(out) if bias else 0) + _activation_flops(config, elements(out))
    flops += INIT_FLOPS_PER_WEIGHT * (params - bias)
    # README: ((W_in * W_out * k * C_in) + (W_out * W_out * k * C_in)) * filters
    neurons = (width * spatial[1] * kernel[0] * channels + spatial[1] * spatial[1] * kernel[0] * channels) * filters
    return LayerStats(out, params, flops, neurons, kernel)


def dense(config: dict, shapes: list[Shape]) -> LayerStats:
    shape = shapes[0]
    units = int(config["units"])
    out = (*shape[:-1], units)
    bias = units if config.get("use_bias", True) else 0
    macs = elements(shape) * units
    flops = 2 * macs + (elements(out) if bias else 0) + _activation_flops(config, elements(out))
    flops += INIT_FLOPS_PER_WEIGHT * shape[-1] * units
    return LayerStats(out, shape[-1] * units + bias, flops, shape[-1] * units * elements(shape[:-1]))


def _channels(config: dict, shape: Shape) -> int:
    axis = config.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    if isinstance(axis, list):
        return math.prod(shape[a - 1 if a > 0 else a] for a in axis)
    return shape[axis - 1 if axis > 0 else axis]  # axes count the batch


def batch_norm(config: dict, shapes: list[Shape]) -> LayerStats:
    shape = shapes[0]
    channels = _channels(config, shape)
    params = channels * (2 + bool(config.get("center", True)) + bool(config.get("scale", True)))
    flops = BN_FLOPS_PER_ELEMENT * elements(shape) + BN_FLOPS_PER_CHANNEL * channels
    return LayerStats(shape, params, flops)


def layer_norm(config: dict, shapes: list[Shape]) -> LayerStats:
    shape = shapes[0]
    channels = _channels(config, shape)
    params = channels * (bool(config.get("center", True)) + bool(config.get("scale", True)))
    return LayerStats(shape, params, 7 * elements(shape))


def normalization(config: dict, shapes: list[Shape]) -> LayerStats:
    shape = shapes[0]
    channels = _channels(config, shape)
    # mean, variance and count are weights only when adapted; given in the config they are constants
    params = 0 if config.get("mean") is not None else 2 * channels + 1
    return LayerStats(shape, params, 2 * elements(shape))


def pooling(config: dict, shapes: list[Shape]) -> LayerStats:
    height, width, channels = _image(shapes, "Pooling2D")
    pool = _pair(config.get("pool_size", 2), "pool_size")
    out = (*_spatial(config, (height, width), pool), channels)
    return LayerStats(out, 0, elements(out) * pool[0] * pool[1], 0, pool)


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
    height, width, channels = _image(shapes, "ZeroPadding2D")
    (top, bottom), (left, right) = _padding_pairs(config.get("padding", 1))
    return LayerStats((height + top + bottom, width + left + right, channels))


def cropping(config: dict, shapes: list[Shape]) -> LayerStats:
    height, width, channels = _image(shapes, "Cropping2D")
    (top, bottom), (left, right) = _padding_pairs(config.get("cropping", 0))
    return LayerStats((height - top - bottom, width - left - right, channels))


def _padding_pairs(value) -> tuple[tuple[int, int], tuple[int, int]]:
    if isinstance(value, int):
        return (value, value), (value, value)
    first, second = value
    return _pair(first, "padding"), _pair(second, "padding")


def upsampling(config: dict, shapes: list[Shape]) -> LayerStats:
    height, width, channels = _image(shapes, "UpSampling2D")
    size = _pair(config.get("size", 2), "size")
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


def activation(config: dict, shapes: list[Shape]) -> LayerStats:
    return LayerStats(shapes[0], 0, _activation_flops(config, elements(shapes[0])))


def per_channel_params(config: dict, shapes: list[Shape]) -> LayerStats:
    """A layer with one weight per channel (ConvNeXt's LayerScale, PReLU over channels)."""
    return LayerStats(shapes[0], shapes[0][-1], elements(shapes[0]))


#: class name -> rule(config, input shapes) -> LayerStats
RULES: dict[str, Callable[[dict, list[Shape]], LayerStats]] = {
    "InputLayer": identity(),
    "Conv2D": conv2d, "Convolution2D": conv2d,
    "Conv2DTranspose": conv2d_transpose, "Deconvolution2D": conv2d_transpose,
    "DepthwiseConv2D": depthwise_conv2d,
    "SeparableConv2D": separable_conv2d, "SeparableConvolution2D": separable_conv2d,
    "Dense": dense,
    "BatchNormalization": batch_norm, "LayerNormalization": layer_norm, "Normalization": normalization,
    "MaxPooling2D": pooling, "AveragePooling2D": pooling, "MaxPool2D": pooling, "AvgPool2D": pooling,
    "GlobalAveragePooling2D": global_pooling, "GlobalMaxPooling2D": global_pooling,
    "GlobalAvgPool2D": global_pooling, "GlobalMaxPool2D": global_pooling,
    "Add": merge(1), "Subtract": merge(1), "Multiply": merge(1), "Maximum": merge(1), "Minimum": merge(1),
    "Average": merge(1), "Concatenate": concatenate,
    "Activation": activation, "ReLU": identity(), "LeakyReLU": identity(), "ELU": identity(),
    "Softmax": identity(), "PReLU": per_channel_params,
    "Dropout": identity(), "SpatialDropout2D": identity(), "GaussianNoise": identity(),
    "GaussianDropout": identity(), "AlphaDropout": identity(), "FixedDropout": identity(),
    "StochasticDepth": identity(), "ActivityRegularization": identity(),
    "Flatten": flatten, "Reshape": reshape, "Permute": permute,
    "ZeroPadding2D": zero_padding, "Cropping2D": cropping, "UpSampling2D": upsampling,
    "Rescaling": identity(2), "LayerScale": per_channel_params, "CustomScaleLayer": merge(2),
}
