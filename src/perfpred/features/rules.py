"""Keras layer class name -> the rule that gives its output shape, parameters and FLOPs from its config."""

from __future__ import annotations

from collections.abc import Callable

from perfpred.features import shapes, weighted
from perfpred.features.shapes import LayerStats, Shape

Rule = Callable[[dict, list[Shape]], LayerStats]

_keep = shapes.identity()  # shape kept, no FLOPs
_add = shapes.merge(1)

#: class name -> rule(config, input shapes) -> LayerStats
RULES: dict[str, Rule] = {
    "InputLayer": _keep,
    "Conv2D": weighted.conv2d, "Convolution2D": weighted.conv2d,
    "Conv2DTranspose": weighted.conv2d_transpose, "Deconvolution2D": weighted.conv2d_transpose,
    "DepthwiseConv2D": weighted.depthwise_conv2d,
    "SeparableConv2D": weighted.separable_conv2d, "SeparableConvolution2D": weighted.separable_conv2d,
    "Dense": weighted.dense,
    "BatchNormalization": weighted.batch_norm, "LayerNormalization": weighted.layer_norm,
    "Normalization": weighted.normalization,
    "MaxPooling2D": shapes.pooling, "AveragePooling2D": shapes.pooling, "MaxPool2D": shapes.pooling,
    "AvgPool2D": shapes.pooling,
    "GlobalAveragePooling2D": shapes.global_pooling, "GlobalMaxPooling2D": shapes.global_pooling,
    "GlobalAvgPool2D": shapes.global_pooling, "GlobalMaxPool2D": shapes.global_pooling,
    "Add": _add, "Subtract": _add, "Multiply": _add, "Maximum": _add, "Minimum": _add, "Average": _add,
    "Concatenate": shapes.concatenate,
    "Activation": weighted.activation, "ReLU": _keep, "LeakyReLU": _keep, "ELU": _keep, "Softmax": _keep,
    "PReLU": weighted.per_channel_params,
    "Dropout": _keep, "SpatialDropout2D": _keep, "GaussianNoise": _keep, "GaussianDropout": _keep,
    "AlphaDropout": _keep, "FixedDropout": _keep, "StochasticDepth": _keep, "ActivityRegularization": _keep,
    "Flatten": shapes.flatten, "Reshape": shapes.reshape, "Permute": shapes.permute,
    "ZeroPadding2D": shapes.zero_padding, "Cropping2D": shapes.cropping, "UpSampling2D": shapes.upsampling,
    "Rescaling": shapes.identity(2), "LayerScale": weighted.per_channel_params, "CustomScaleLayer": shapes.merge(2),
}
