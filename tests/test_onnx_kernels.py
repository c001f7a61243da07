"""Kernel detection from ONNX files (perfpred.kernels.onnx_kernels): exports of Keras models give the Keras
kernels under each host target's fusion rules; hand-written graphs check the op mapping, the fusion patterns
and the errors without TensorFlow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perfpred.features.descriptors import DescriptorError
from perfpred.kernels import detector
from perfpred.kernels.onnx_kernels import detect_onnx

TARGETS = ("host-cpu-tf", "host-cpu-tflite")


# --- exports of Keras models ------------------------------------------------------------------------------------
def _residual_net():
    """conv+BN+ReLU, depthwise+BN+ReLU, a residual add (+ReLU), swish, global pooling and a dense head."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    image = keras.Input((32, 32, 3))
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(image)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    y = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    y = layers.ReLU(6.0)(layers.BatchNormalization()(y))
    y = layers.Conv2D(16, 1, use_bias=False)(y)
    y = layers.BatchNormalization()(y)
    x = layers.ReLU()(layers.Add()([x, y]))
    x = layers.Conv2D(24, 3, strides=2, padding="same")(x)
    x = layers.Activation("swish")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(image, layers.Dense(10, activation="softmax")(x), name="residual_net")


def _unet_net():
    """max pooling, upsampling, a concatenation of the skip connection, a 1x1 convolution of stride 2 (it reads a
    quarter of its input)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    image = keras.Input((32, 32, 3))
    skip = layers.Conv2D(8, 3, padding="same", activation="relu")(image)
    x = layers.MaxPooling2D(2)(skip)
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = layers.UpSampling2D(2)(x)
    x = layers.Concatenate()([x, skip])
    x = layers.Conv2D(8, 3, padding="same")(x)
    x = layers.Activation("sigmoid")(x)
    x = layers.AveragePooling2D(2)(x)
    return keras.Model(image, layers.Conv2D(4, 1, strides=2)(x), name="unet_net")


def _synthetic_net():
    """The synthetic networks' order: convolutions with their own ReLU, each followed by a batch norm."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    image = keras.Input((16, 16, 3))
    x = layers.BatchNormalization()(layers.Conv2D(8, 3, padding="same", activation="relu")(image))
    x = layers.BatchNormalization()(layers.Conv2D(8, 3, padding="same", activation="relu")(x))
    x = layers.Conv2D(8, 1, activation="relu")(x)
    return keras.Model(image, layers.Dense(4)(layers.GlobalAveragePooling2D()(x)), name="synthetic_net")


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Each net's Keras JSON and its ONNX export (checked against Keras by ONNX Runtime), exported once."""
    from perfpred.measure.onnx_runtime import check_output, export_keras

    folder = tmp_path_factory.mktemp("onnx_kernels")
    made = {}
    for build in (_residual_net, _unet_net, _synthetic_net):
        model = build()
        onnx_path = folder / f"{model.name}.onnx"
        built = export_keras(model, onnx_path)
        check_output(str(onnx_path), built["inputs"], built["expected_output"])
        descriptor = folder / f"{model.name}.json"
        descriptor.write_text(model.to_json())
        made[model.name] = (descriptor, onnx_path)
    return made


@pytest.mark.tensorflow
@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", ["residual_net", "unet_net"])
def test_an_onnx_export_has_the_kernels_of_its_keras_original(exports, name, target):
    descriptor, onnx_path = exports[name]
    keras_kernels, onnx_kernels = detector.detect(descriptor, target), detector.detect(onnx_path, target)
    assert [k.kind for k in onnx_kernels] == [k.kind for k in keras_kernels]
    keras_totals, onnx_totals = detector.totals(keras_kernels), detector.totals(onnx_kernels)
    assert {kind: onnx_totals[kind] for kind in detector.KINDS} == {kind: keras_totals[kind] for kind in detector.KINDS}
    assert onnx_totals["flops"] == pytest.approx(keras_totals["flops"], rel=0.03)
    assert onnx_totals["bytes"] == pytest.approx(keras_totals["bytes"], rel=0.03)
    for mine, theirs in zip(onnx_kernels, keras_kernels, strict=True):  # configurations, in Keras' layout
        assert (mine.input_shape, mine.output_shape, mine.cin, mine.cout) == (
            theirs.input_shape, theirs.output_shape, theirs.cin, theirs.cout), (mine, theirs)
        assert (mine.kernel_size, mine.strides, mine.groups, mine.inputs) == (
            theirs.kernel_size, theirs.strides, theirs.groups, theirs.inputs), (mine, theirs)
        assert mine.bytes_read == pytest.approx(theirs.bytes_read, rel=0.03), (mine, theirs)
    if name == "unet_net":  # the last 1x1 convolution, of stride 2, reads a quarter of its 16x16x8 input
        assert onnx_kernels[-1].bytes_read == (16 * 16 * 8 // 4 + 8 * 4 + 4) * detector.BYTES_PER_ELEMENT


@pytest.mark.tensorflow
@pytest.mark.slow
@pytest.mark.parametrize("target", (*TARGETS, "host-cpu-onnxruntime"))
def test_a_batch_norm_after_an_activation_is_detected_alike_in_an_export(exports, target):
    """An exporter writes that batch norm as a Mul and an Add after the Relu: the same `BatchNormalization:activated`
    rule applies (a unary kernel on ONNX Runtime, with the convolution on TF and TFLite)."""
    descriptor, onnx_path = exports["synthetic_net"]
    keras_kernels, onnx_kernels = detector.detect(descriptor, target), detector.detect(onnx_path, target)
    assert [k.kind for k in onnx_kernels] == [k.kind for k in keras_kernels]
    batch_norm = ["unary"] if target == "host-cpu-onnxruntime" else []  # or inside the convolution's kernel
    assert [k.kind for k in keras_kernels] == ["conv", *batch_norm, "conv", *batch_norm, "conv", "globalpool", "dense"]


@pytest.mark.tensorflow
@pytest.mark.slow
def test_the_targets_fuse_an_exported_graph_differently(exports):
    descriptor, onnx_path = exports["residual_net"]
    tf, tflite = detector.detect(onnx_path, "host-cpu-tf"), detector.detect(onnx_path, "host-cpu-tflite")
    # ReLU after the residual add fuses in TF's graph, not in TFLite's interpreter; swish and softmax run on their own
    # in both (Sigmoid + Mul(x, sigmoid(x)) is one activation)
    assert [k.classes for k in tf if k.kind == "unary"] == [["Activation:swish"], ["Activation:softmax"]]
    assert [k.classes for k in tflite if k.kind == "unary"] == [["ReLU"], ["Activation:swish"], ["Activation:softmax"]]
    assert [k for k in tf if k.kind == "conv" and k.strides == 2][0].classes == ["Conv"]
    unfused = detector.detect(onnx_path, None)
    assert len(unfused) > len(tf) and {"unary"} <= {k.kind for k in unfused}


# --- hand-written ONNX graphs (no TensorFlow) -------------------------------------------------------------------
def _save(tmp_path: Path, nodes, inputs, outputs, initializers, name="graph") -> Path:
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, name, inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def _weight(name: str, *dims: int):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.random.default_rng(0).standard_normal(dims).astype("float32"), name)


def _nhwc_net(tmp_path: Path, second_reader: bool = False) -> Path:
    """NHWC input -> Transpose -> Conv 3x3 -> BN as Mul+Add -> swish -> depthwise -> Relu -> GAP -> Flatten -> Gemm."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2], name="to_nchw"),
             helper.make_node("Conv", ["nchw", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Mul", ["c1", "scale"], ["s1"], name="bn_mul"),
             helper.make_node("Add", ["s1", "shift"], ["b1"], name="bn_add"),
             helper.make_node("Sigmoid", ["b1"], ["g1"], name="sigmoid"),
             helper.make_node("Mul", ["b1", "g1"], ["a1"], name="swish"),
             helper.make_node("Conv", ["a1", "w2", "b2"], ["c2"], group=8, strides=[2, 2], pads=[1, 1, 1, 1],
                              name="depthwise"),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["out"], transB=1, name="dense")]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)]
    if second_reader:  # the convolution's output also leaves the graph through an Identity: BN cannot fuse
        nodes.append(helper.make_node("Identity", ["c1"], ["side"], name="side"))
        outputs.append(helper.make_tensor_value_info("side", TensorProto.FLOAT, None))
    initializers = [_weight("w1", 8, 3, 3, 3), _weight("scale", 1, 8, 1, 1), _weight("shift", 1, 8, 1, 1),
                    _weight("w2", 8, 1, 3, 3), _weight("b2", 8), _weight("w3", 5, 8), _weight("b3", 5)]
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 16, 16, 3])
    return _save(tmp_path, nodes, [image], outputs, initializers, "nhwc_net" + "_side" * second_reader)


RULES = {"BatchNormalization": ["conv", "depthwise"], "Activation:swish": ["conv", "depthwise"], "ReLU": ["depthwise"]}


def test_ops_map_to_kinds_and_fuse_under_the_rules(tmp_path):
    kernels = detect_onnx(_nhwc_net(tmp_path), RULES)
    assert [k.kind for k in kernels] == ["conv", "depthwise", "globalpool", "dense"]  # Transpose, Flatten: views
    conv, depthwise, pool, dense = kernels
    assert conv.layers == ["conv1", "bn_mul", "bn_add", "sigmoid", "swish"]
    assert conv.classes == ["Conv", "BatchNormalization", "Activation:swish"]
    assert (conv.input_shape, conv.output_shape, conv.cin, conv.cout, conv.kernel_size) == ((16, 16, 3), (16, 16, 8), 3, 8, 3)
    # 2 per MAC, no bias; the written-out BN 1 per element + 2 per channel; swish 1 per element
    elements = 16 * 16 * 8
    assert conv.flops == 2 * elements * 27 + elements + 2 * 8 + elements
    assert conv.bytes_read == (16 * 16 * 3 + 8 * 27 + 8 + 8) * 4 and conv.bytes_written == elements * 4
    assert (depthwise.groups, depthwise.strides, depthwise.output_shape, depthwise.classes) == (8, 2, (8, 8, 8), ["Conv", "ReLU"])
    assert depthwise.flops == 2 * 8 * 8 * 8 * 9 + 8 * 8 * 8  # with its bias
    assert (pool.input_shape, pool.output_shape, pool.flops) == ((8, 8, 8), (8,), 8 * 8 * 8)
    assert (dense.cin, dense.cout, dense.flops, dense.bytes_read) == (8, 5, 2 * 40 + 5, (8 + 40 + 5) * 4)
    unfused = detect_onnx(_nhwc_net(tmp_path), {})
    assert [k.kind for k in unfused] == ["conv", "unary", "unary", "depthwise", "unary", "globalpool", "dense"]
    assert [k.classes for k in unfused if k.kind == "unary"] == [["BatchNormalization"], ["Activation:swish"], ["ReLU"]]
    # a plain `Activation` rule is relu's (what the fusion tester measured): a swish does not fuse under it
    plain = detect_onnx(_nhwc_net(tmp_path), RULES | {"Activation": ["conv", "depthwise"], "Activation:swish": []})
    assert [k.kind for k in plain] == ["conv", "unary", "depthwise", "globalpool", "dense"]
    # as detect_graph counts them: a ReLU alone costs one FLOP per element, fused nothing
    assert sum(k.flops for k in unfused) == sum(k.flops for k in kernels) + 8 * 8 * 8


def test_an_operator_fuses_only_into_a_tensor_it_alone_reads(tmp_path):
    kernels = detect_onnx(_nhwc_net(tmp_path, second_reader=True), RULES)
    # the BN's input has two readers: it stays a kernel, and the swish after it (rules: only after conv or depthwise)
    assert [k.kind for k in kernels] == ["conv", "unary", "unary", "depthwise", "globalpool", "dense"]
    assert [k.classes for k in kernels[:3]] == [["Conv"], ["BatchNormalization"], ["Activation:swish"]]


def test_merges_concat_resize_pools_and_unknown_ops(tmp_path):
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("MaxPool", ["a"], ["m"], kernel_shape=[2, 2], strides=[2, 2], name="maxpool"),
             helper.make_node("Resize", ["m", "", "", "sizes"], ["u"], mode="nearest", name="resize"),
             helper.make_node("Concat", ["u", "a"], ["c"], axis=1, name="concat"),
             helper.make_node("Add", ["c", "c"], ["s"], name="add"),
             helper.make_node("Pad", ["s", "pads"], ["p"], name="pad"),
             helper.make_node("ReduceMean", ["p"], ["r"], axes=[2, 3], keepdims=0, name="mean"),
             helper.make_node("TopK", ["r", "k"], ["v", "i"], axis=1, name="topk")]
    from onnx import numpy_helper

    initializers = [_weight("w", 4, 3, 3, 3), numpy_helper.from_array(np.array([1, 4, 8, 8], "int64"), "sizes"),
                    numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], "int64"), "pads"),
                    numpy_helper.from_array(np.array([2], "int64"), "k")]
    path = _save(tmp_path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                 [helper.make_tensor_value_info("v", TensorProto.FLOAT, None)], initializers, "merges")
    kernels = detect_onnx(path, {"ReLU": ["add"]})
    assert [k.kind for k in kernels] == ["conv", "maxpool", "resize", "concat", "add", "other", "globalpool", "other"]
    _, pool, resize, concat, add, pad, mean, _ = kernels
    assert (pool.kernel_size, pool.strides, pool.output_shape) == (2, 2, (4, 4, 4))
    assert (resize.kernel_size, resize.output_shape) == (2, (8, 8, 4))
    assert (concat.inputs, concat.output_shape, concat.flops) == (2, (8, 8, 8), 8 * 8 * 8)
    assert (add.inputs, add.flops) == (2, 8 * 8 * 8)
    assert pad.output_shape == (10, 10, 8) and mean.output_shape == (8,)


def test_a_shape_that_cannot_be_inferred_is_an_error_naming_the_node(tmp_path):
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    target_shape = helper.make_tensor_value_info("shape", TensorProto.INT64, [2])  # known only when run
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], name="conv"),
             helper.make_node("Reshape", ["a", "shape"], ["r"], name="reshape_by_input"),
             helper.make_node("Relu", ["r"], ["out"], name="relu_after")]
    path = _save(tmp_path, nodes, [image, target_shape], [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
                 [_weight("w", 4, 3, 1, 1)], "dynamic")
    with pytest.raises(DescriptorError, match=r"dynamic\.onnx: node '(reshape_by_input|relu_after)'.*cannot be inferred"):
        detect_onnx(path, {})
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], name="conv"),
             helper.make_node("MyOp", ["a"], ["out"], domain="custom", name="custom_op")]
    model_path = tmp_path / "custom.onnx"
    import onnx

    model = helper.make_model(helper.make_graph(nodes, "custom", [image], [helper.make_tensor_value_info(
        "out", TensorProto.FLOAT, None)], [_weight("w", 4, 3, 1, 1)]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom", 1)])
    onnx.save(model, str(model_path))
    with pytest.raises(DescriptorError, match="node 'custom_op': 'MyOp'.*not an ONNX operator"):
        detect_onnx(model_path, {})


def test_detect_and_the_kernels_command_read_onnx_files(tmp_path, capsys):
    import json

    from perfpred.kernels import listing

    path = _nhwc_net(tmp_path)
    # the swish runs on its own on both toolchains (conf/kernels: no `Activation:swish` rule)
    assert [k.kind for k in detector.detect(str(path), "host-cpu-tf")] == ["conv", "unary", "depthwise", "globalpool", "dense"]
    result = listing.listing(str(path), "host-cpu-tflite", None)
    assert result["totals"]["kernels"] == 5 and result["totals"]["flops"] == sum(k.flops for k in result["kernels"])
    resized = detector.detect(path, None, input_size=32)  # --input-size re-targets the input, as describe does
    assert resized[0].input_shape == (32, 32, 3)
    args = type("Args", (), {"model": str(path), "target": None, "input_size": None, "json": True})()
    listing.run(args)
    assert len(json.loads(capsys.readouterr().out)["kernels"]) == 7


def test_a_matmul_on_a_feature_map_is_a_pointwise_convolution(tmp_path):
    """A Dense on (H, W, C) as tf2onnx writes it (MatMul over the channels of the NHWC tensor, then its bias)."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("MatMul", ["image", "w"], ["m"], name="mlp"),
             helper.make_node("Add", ["m", "b"], ["out"], name="mlp_bias")]
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 6, 6, 16])
    path = _save(tmp_path, nodes, [image], [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
                 [_weight("w", 16, 32), _weight("b", 32)], "matmul_map")
    [kernel] = detect_onnx(path, {})
    assert (kernel.kind, kernel.kernel_size, kernel.cin, kernel.cout, kernel.layers) == ("conv", 1, 16, 32, ["mlp", "mlp_bias"])
    assert kernel.output_shape == (6, 6, 32) and kernel.flops == 2 * 6 * 6 * 16 * 32 + 6 * 6 * 32
