"""perfpred.features.weighted: FLOPs conventions of layers with weights (regularizer penalties, initialisers)."""

from __future__ import annotations

import pytest

from perfpred.features import weighted

L2_KERAS2 = {"class_name": "L1L2", "config": {"l1": 0.0, "l2": 0.0005}}
L2_KERAS3 = {"module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.0005}, "registered_name": None}


@pytest.mark.parametrize(("version", "builds"), [
    ("2.3.1", True), ("2.2.4", True), ("2.2.4-tf", False), ("2.4.0", False), ("3.15.0", False), (None, False),
    ("unknown", False),
])
def test_only_multi_backend_keras_builds_regularizers_into_the_graph(version, builds):
    assert weighted.builds_regularizers(version) is builds


def test_regularizer_flops_count_each_penalty_per_weight():
    conv = {"filters": 8, "kernel_size": [3, 3], "use_bias": True, "kernel_regularizer": L2_KERAS2}
    stats = weighted.conv2d(conv, [(16, 16, 4)])
    assert stats.weights == {"kernel_regularizer": 3 * 3 * 4 * 8, "bias_regularizer": 8}
    assert weighted.regularizer_flops(conv, stats.weights) == 2 * 3 * 3 * 4 * 8  # the bias has no penalty
    assert weighted.regularizer_flops(conv | {"kernel_regularizer": L2_KERAS3}, stats.weights) == 2 * 288
    both = {"class_name": "L1L2", "config": {"l1": 0.01, "l2": 0.01}}
    assert weighted.regularizer_flops(conv | {"kernel_regularizer": both, "bias_regularizer": "l2"},
                                      stats.weights) == 2 * 2 * 288 + 2 * 8
    zero = {"class_name": "L1L2", "config": {"l1": 0.0, "l2": 0.0}}  # Keras 2 builds no op for a zero factor
    assert weighted.regularizer_flops(conv | {"kernel_regularizer": zero}, stats.weights) == 0


def test_separable_and_batch_norm_name_their_regularized_weights():
    separable = weighted.separable_conv2d({"filters": 16, "kernel_size": 3, "padding": "same", "use_bias": False},
                                          [(8, 8, 4)])
    assert separable.weights == {"depthwise_regularizer": 36, "pointwise_regularizer": 64, "bias_regularizer": 0}
    assert separable.params == 100
    norm = weighted.batch_norm({"axis": -1, "center": True, "scale": False}, [(8, 8, 4)])
    assert norm.weights == {"beta_regularizer": 4, "gamma_regularizer": 0} and norm.params == 12
