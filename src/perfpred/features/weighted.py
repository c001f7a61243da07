"""Rules of layers with weights (convolutions, Dense, normalisation) and the FLOPs conventions of the data.

FLOPs follow the TensorFlow 1.x profiler the Jetson data used (`float_operation()` over the whole
graph Keras built): 2 per multiply-accumulate, 1 per bias add, per element-wise add/multiply and per
pooled input; nothing for ReLU, sigmoid or concatenation (ops it does not count); 2 per kernel weight,
because the profiled graphs kept the weight initialisers (random * scale + offset); and 2 per weight
and penalty of a weight regularizer when the Keras that wrote the descriptor put the penalty in the
graph as it built the model (`builds_regularizers`). The constants were fitted on the Jetson data
(benchmarks/fidelity.py).
"""

from __future__ import annotations

import math

from perfpred.features.shapes import LayerStats, Shape, elements, image, pair, spatial

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
#: an l1 or l2 penalty built into the graph (sum(l2 * square(w))): 2 per weight in the data (fitted intercept
#: 2.00-2.02 per regularised weight over DPN, DenseNet-161/264, ResNet-20/110/200, ResNet-56V2)
REGULARIZER_FLOPS_PER_WEIGHT = 2


def builds_regularizers(keras_version: str | None) -> bool:
    """Whether the Keras that wrote a descriptor put weight-regularizer penalties in the graph it built.

    Multi-backend Keras (up to 2.3.x) computed each penalty as the layer was built, so the profiled
    graph holds it; tf.keras (versions '...-tf', and 2.4 on) and Keras 3 only compute penalties for a
    training loss. The data agrees: Keras 2.3.1 descriptors with l2 penalties carry 2 FLOPs per
    penalised weight, the tf.keras 2.2.4-tf MNASNets none.
    """
    if not keras_version or keras_version.endswith("-tf"):
        return False
    try:
        major, minor = (int(part) for part in keras_version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) < (2, 4)


def regularizer_flops(config: dict, weights: dict[str, int]) -> int:
    """FLOPs of the l1/l2 penalties a layer config puts on its weights (`weights`: count per regularizer key)."""
    total = 0
    for key, count in weights.items():
        value = config.get(key)
        if isinstance(value, str):  # "l1", "l2", "l1_l2" with Keras' default factors
            terms = 2 if value.lower() == "l1_l2" else int(value.lower() in {"l1", "l2"})
        elif isinstance(value, dict):
            terms = sum(1 for factor in ("l1", "l2") if (value.get("config") or {}).get(factor))
        else:
            terms = 0
        total += REGULARIZER_FLOPS_PER_WEIGHT * terms * count
    return total


def activation_flops(config: dict, count: int) -> int:
    """FLOPs of the activation function a layer config names, over `count` output elements."""
    name = config.get("activation")
    if isinstance(name, dict):
        name = name.get("config", {}).get("name") or name.get("class_name")
    if isinstance(name, str):
        name = name.strip("_").lower()  # Keras 2 MobileNetV3 names its own '_hard_swish', '_relu6'
    return ACTIVATION_FLOPS.get(name, 0) * count


def _bias(config: dict, units: int) -> int:
    return units if config.get("use_bias", True) else 0


def _kernel_layer(config: dict, out: Shape, macs: int, weights: int, bias: int, kernel, weight_key: str) -> LayerStats:
    """A layer with one kernel: 2 FLOPs per MAC, 1 per bias add, its activation, the kernel's initialiser."""
    flops = 2 * macs + (elements(out) if bias else 0) + activation_flops(config, elements(out))
    return LayerStats(out, weights + bias, flops + INIT_FLOPS_PER_WEIGHT * weights, kernel,
                      {weight_key: weights, "bias_regularizer": bias})


def conv2d(config: dict, shapes: list[Shape]) -> LayerStats:
    height, width, channels = image(shapes, "Conv2D")
    kernel = pair(config["kernel_size"], "kernel_size")
    groups = int(config.get("groups", 1) or 1)
    filters = int(config["filters"])
    out = (*spatial(config, (height, width), kernel), filters)
    macs = elements(out) * kernel[0] * kernel[1] * (channels // groups)
    bias = _bias(config, filters)
    weights = kernel[0] * kernel[1] * (channels // groups) * filters
    return _kernel_layer(config, out, macs, weights, bias, kernel, "kernel_regularizer")


def conv2d_transpose(config: dict, shapes: list[Shape]) -> LayerStats:
    height, width, channels = image(shapes, "Conv2DTranspose")
    kernel = pair(config["kernel_size"], "kernel_size")
    strides = pair(config.get("strides", 1), "strides")
    dilation = pair(config.get("dilation_rate", 1), "dilation_rate")
    padding = config.get("padding", "valid")
    extra = config.get("output_padding")
    sizes = []
    for i, size in enumerate((height, width)):
        span = (kernel[i] - 1) * dilation[i] + 1
        if extra is None:
            sizes.append(size * strides[i] if padding == "same" else size * strides[i] + max(span - strides[i], 0))
        else:
            pad = span // 2 if padding == "same" else 0
            sizes.append((size - 1) * strides[i] + span - 2 * pad + pair(extra, "output_padding")[i])
    filters = int(config["filters"])
    out = (*sizes, filters)
    macs = height * width * channels * kernel[0] * kernel[1] * filters
    bias = _bias(config, filters)
    weights = kernel[0] * kernel[1] * channels * filters
    return _kernel_layer(config, out, macs, weights, bias, kernel, "kernel_regularizer")


def depthwise_conv2d(config: dict, shapes: list[Shape]) -> LayerStats:
    height, width, channels = image(shapes, "DepthwiseConv2D")
    kernel = pair(config["kernel_size"], "kernel_size")
    multiplier = int(config.get("depth_multiplier", 1))
    out = (*spatial(config, (height, width), kernel), channels * multiplier)
    macs = elements(out) * kernel[0] * kernel[1]
    bias = _bias(config, channels * multiplier)
    weights = kernel[0] * kernel[1] * channels * multiplier
    return _kernel_layer(config, out, macs, weights, bias, kernel, "depthwise_regularizer")


def separable_conv2d(config: dict, shapes: list[Shape]) -> LayerStats:
    height, width, channels = image(shapes, "SeparableConv2D")
    kernel = pair(config["kernel_size"], "kernel_size")
    multiplier = int(config.get("depth_multiplier", 1))
    filters = int(config["filters"])
    size = spatial(config, (height, width), kernel)
    out = (*size, filters)
    depthwise = elements(size) * channels * multiplier * kernel[0] * kernel[1]
    pointwise = elements(out) * channels * multiplier
    bias = _bias(config, filters)
    weights = {"depthwise_regularizer": kernel[0] * kernel[1] * channels * multiplier,
               "pointwise_regularizer": channels * multiplier * filters, "bias_regularizer": bias}
    params = sum(weights.values())
    flops = 2 * (depthwise + pointwise) + (elements(out) if bias else 0) + activation_flops(config, elements(out))
    flops += INIT_FLOPS_PER_WEIGHT * (params - bias)
    return LayerStats(out, params, flops, kernel, weights)


def dense(config: dict, shapes: list[Shape]) -> LayerStats:
    shape = shapes[0]
    units = int(config["units"])
    out = (*shape[:-1], units)
    bias = _bias(config, units)
    macs = elements(shape) * units
    return _kernel_layer(config, out, macs, shape[-1] * units, bias, None, "kernel_regularizer")


def _channels(config: dict, shape: Shape) -> int:
    axis = config.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    if isinstance(axis, list):
        return math.prod(shape[a - 1 if a > 0 else a] for a in axis)
    return shape[axis - 1 if axis > 0 else axis]  # axes count the batch


def batch_norm(config: dict, shapes: list[Shape]) -> LayerStats:
    shape = shapes[0]
    channels = _channels(config, shape)
    center, scale = bool(config.get("center", True)), bool(config.get("scale", True))
    flops = BN_FLOPS_PER_ELEMENT * elements(shape) + BN_FLOPS_PER_CHANNEL * channels
    return LayerStats(shape, channels * (2 + center + scale), flops, None,
                      {"beta_regularizer": channels * center, "gamma_regularizer": channels * scale})


def layer_norm(config: dict, shapes: list[Shape]) -> LayerStats:
    shape = shapes[0]
    channels = _channels(config, shape)
    center, scale = bool(config.get("center", True)), bool(config.get("scale", True))
    return LayerStats(shape, channels * (center + scale), 7 * elements(shape), None,
                      {"beta_regularizer": channels * center, "gamma_regularizer": channels * scale})


def normalization(config: dict, shapes: list[Shape]) -> LayerStats:
    shape = shapes[0]
    channels = _channels(config, shape)
    # mean, variance and count are weights only when adapted; given in the config they are constants
    params = 0 if config.get("mean") is not None else 2 * channels + 1
    return LayerStats(shape, params, 2 * elements(shape))


def activation(config: dict, shapes: list[Shape]) -> LayerStats:
    return LayerStats(shapes[0], 0, activation_flops(config, elements(shapes[0])))


def per_channel_params(config: dict, shapes: list[Shape]) -> LayerStats:
    """A layer with one weight per channel (ConvNeXt's LayerScale, PReLU over channels)."""
    return LayerStats(shapes[0], shapes[0][-1], elements(shapes[0]))
