"""perfpred.describe: fidelity to the Jetson data, Keras 3 descriptors, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from perfpred.features import description as describe_module
from perfpred.features.description import describe, layer_shapes
from perfpred.features.descriptors import DescriptorError, layer_table

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURES = ROOT / "data/raw/jetson-bouzidi/architectures"
sys.path.insert(0, str(ROOT / "benchmarks"))
import fidelity  # noqa: E402  (the benchmark script holds the comparison with the data)

DESCRIPTORS = sorted(ARCHITECTURES.glob("*.json"))
ROWS = fidelity.dataset_rows(ROOT / "data/raw/jetson-bouzidi")
EXACT = ("conv_params", "bn_params", "fc_params", "layers", "conv_layers", "bn_layers", "fc_layers")
#: data defects, proven by the fidelity table (benchmarks/fidelity.py): rows whose parameter columns are
#: another network's (their size-dependent features match the descriptor), and rows whose activations
#: contradict the descriptor's own per-layer table
PARAMETERS_OF = {"EfficientNet-B4_224": ["EfficientNet-B2"], "SEResNext-50_224": ["SEResNet-50"]}
ACTIVATIONS_CONTRADICT_TABLE = {"DenseNet-264_224"}


def test_there_are_85_descriptors():
    assert len(DESCRIPTORS) == 85


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=lambda p: p.stem)
def test_every_layer_shape_equals_the_layer_table(descriptor):
    table = layer_table(descriptor)
    inferred = layer_shapes(descriptor)
    assert set(table) == set(inferred)
    assert {name: row["output_shape"] for name, row in table.items()} == {n: tuple(s) for n, s in inferred.items()}
    features = describe(descriptor)
    assert features["params"] == sum(row["params"] for row in table.values())
    assert features["layers"] == len(table)
    assert features["approximate"] is False


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=lambda p: p.stem)
def test_features_equal_the_dataset_at_three_input_sizes(descriptor):
    result = fidelity.fidelity(descriptor, ROWS, other_sizes=2)
    assert result["rows"] > 0
    if not descriptor.stem.startswith("basic_model"):  # synthetic networks were measured at one size
        assert len(result["sizes"]) == 3
    assert result["donors"] == PARAMETERS_OF.get(descriptor.stem, [])
    for feature in EXACT:
        if descriptor.stem not in PARAMETERS_OF or feature not in fidelity.PARAMETER_COLUMNS:
            assert result[feature] == 0, feature
    if descriptor.stem in ACTIVATIONS_CONTRADICT_TABLE:
        assert "contradict the layer table's sum" in result["note"]
    else:
        assert result["activations"] <= 0.01
    assert result["neurons"] <= 0.01
    assert result["flops"] <= 0.03


def test_resnet50_matches_the_readme_figures():
    features = describe(ARCHITECTURES / "ResNet-50_224.json")
    assert features["neurons"] == 4_320_395_264
    assert abs(features["flops"] / 7_785_104_411 - 1) < 0.01
    assert features["input_size"] == 224 * 224 * 3 and features["input_width"] == 224


def test_regularizer_penalties_count_only_for_keras_that_built_them(tmp_path):
    # ResNet-20's convolutions carry l2 penalties; Keras 2.3.1 built them into the graph the data profiled
    descriptor = json.loads((ARCHITECTURES / "ResNet-20_224.json").read_text())
    table = layer_table(ARCHITECTURES / "ResNet-20_224.json")
    penalised = sum(table[layer["name"]]["params"] - layer["config"]["filters"] * layer["config"]["use_bias"]
                    for layer in descriptor["config"]["layers"]
                    if (layer["config"].get("kernel_regularizer") or {}).get("config", {}).get("l2"))
    assert penalised == 270_256
    lazy = tmp_path / "lazy.json"
    lazy.write_text(json.dumps(descriptor | {"keras_version": "2.2.4-tf"}))
    assert describe(ARCHITECTURES / "ResNet-20_224.json")["flops"] - describe(lazy)["flops"] == 2 * penalised


def test_retargeting_changes_sizes_not_parameters():
    at_224 = describe(ARCHITECTURES / "ResNet-50_224.json")
    at_112 = describe(ARCHITECTURES / "ResNet-50_224.json", input_size=112)
    assert at_112["params"] == at_224["params"] and at_112["layers"] == at_224["layers"]
    assert at_112["input_width"] == 112 and at_112["activations"] < at_224["activations"] / 3
    assert layer_shapes(ARCHITECTURES / "ResNet-50_224.json", 112)["conv1"] == (56, 56, 64)


def test_lambda_shapes_follow_the_table_and_scale_with_the_input(tmp_path):
    descriptor = ARCHITECTURES / "ShuffleNet1.0-v2_224.json"
    at_448 = describe(descriptor, input_size=448)
    assert at_448["approximate"] is False and at_448["lambda_layers"] > 0
    # without its layer table the Lambda layers keep their input shape: approximate, with a warning
    copy = tmp_path / descriptor.name
    copy.write_text(descriptor.read_text())
    with pytest.warns(UserWarning, match="Lambda layer"):
        alone = describe(copy)
    assert alone["approximate"] is True


def test_describe_never_imports_tensorflow_for_json_or_keras_files():
    code = (
        "import sys; from perfpred import describe; "
        f"describe({str(ARCHITECTURES / 'Xception_224.json')!r}); "
        "assert not any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules), 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ | {"PYTHONPATH": str(ROOT / "src")})


def test_malformed_json_names_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"class_name": "Model",\n "config": {oops}}')
    with pytest.raises(DescriptorError, match=r"bad\.json: malformed JSON at line 2, column 13"):
        describe(bad)


def test_a_descriptor_that_is_not_a_model(tmp_path):
    layer = tmp_path / "layer.json"
    layer.write_text(json.dumps({"class_name": "Conv2D", "config": {}}))
    with pytest.raises(DescriptorError, match=r"layer\.json: not a Keras model descriptor \(class_name 'Conv2D'"):
        describe(layer)


def test_input_too_small_names_the_layer():
    with pytest.raises(DescriptorError, match=r"Inception-v3_224\.json: layer 'conv2d_27' \(Conv2D\).*too small"):
        describe(ARCHITECTURES / "Inception-v3_224.json", input_size=32)


def test_unknown_layer_names_layer_and_class(tmp_path):
    model = json.loads((ROOT / "tests/data/zoo/models/tiny_32.json").read_text())
    model["config"]["layers"][2]["class_name"] = "FancyNorm"
    path = tmp_path / "fancy.json"
    path.write_text(json.dumps(model))
    with pytest.raises(DescriptorError, match=r"fancy\.json: layer 'batch_normalization' \(FancyNorm\): unknown layer class"):
        describe(path)


def test_missing_file_and_unknown_input_size(tmp_path):
    with pytest.raises(FileNotFoundError):
        describe(tmp_path / "none.json")
    model = json.loads((ROOT / "tests/data/zoo/models/tiny_32.json").read_text())
    model["config"]["layers"][0]["config"]["batch_shape"] = [None, None, None, 3]
    path = tmp_path / "open.json"
    path.write_text(json.dumps(model))
    with pytest.raises(DescriptorError, match=r"unknown dimensions.*give the input width with --input-size \(input_size= in Python\)"):
        describe(path)
    assert describe(path, input_size=64) == describe(ROOT / "tests/data/zoo/models/tiny_64.json")


def test_cli_prints_a_table_and_json(capsys):
    from perfpred import cli

    assert cli.main(["describe", str(ARCHITECTURES / "ResNet-50_224.json"), "--input-size", "112", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input_width"] == 112
    assert cli.main(["describe", str(ARCHITECTURES / "MobileNet1.0-v1_224.json")]) == 0
    assert "depthwise_layers" in capsys.readouterr().out
    assert cli.main(["describe", str(ARCHITECTURES / "Inception-v3_224.json"), "--input-size", "32"]) == 2
    assert "too small" in capsys.readouterr().err


def test_public_api():
    import perfpred

    assert perfpred.describe is describe_module.describe
    assert callable(perfpred.describe)


@pytest.mark.slow
@pytest.mark.tensorflow
@pytest.mark.parametrize("name", ["ResNet50", "MobileNetV3Small", "ConvNeXtTiny", "EfficientNetV2B0", "NASNetMobile"])
def test_keras3_applications_match_keras(name, tmp_path):
    import keras

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = getattr(keras.applications, name)(weights=None, input_shape=(160, 160, 3) if name != "NASNetMobile"
                                                  else (224, 224, 3))
    path = tmp_path / f"{name}.json"
    path.write_text(model.to_json())
    features = describe(path)
    assert features["params"] == model.count_params()
    inferred = layer_shapes(path)
    for layer in model.layers:
        if layer.name in inferred and not isinstance(layer, keras.Model):
            assert tuple(layer.output.shape[1:]) == tuple(inferred[layer.name]), layer.name
    assert describe(model) == features  # a keras.Model is described through its to_json()


@pytest.mark.slow
@pytest.mark.tensorflow
def test_keras_file_input(tmp_path):
    import keras

    inputs = keras.Input((48, 48, 3))
    x = keras.layers.SeparableConv2D(4, 3, padding="same")(inputs)
    x = keras.layers.Conv2D(6, 3, groups=2, strides=2)(keras.layers.Conv2D(4, 1)(x))
    x = keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same")(x)
    x = keras.layers.UpSampling2D()(keras.layers.Cropping2D(((1, 1), (2, 0)))(x))
    x = keras.layers.Dense(5)(keras.layers.Flatten()(x))
    model = keras.Model(inputs, x)
    path = tmp_path / "small.keras"
    model.save(path)
    features = describe(path)
    assert features["params"] == model.count_params()
    assert features["conv_layers"] == 4 and features["separable_layers"] == 1
    assert layer_shapes(path)[model.layers[-1].name] == (5,)
    assert describe(path, input_size=64)["input_width"] == 64


@pytest.mark.parametrize("width", [56, 75, 150, 299])
def test_retargeted_mobilenet_v2_pads_like_keras_at_odd_sizes(width):
    # keras.applications' correct_pad depends on the size: the data's activations show the padding Keras
    # chose when it built the model at each size (its FLOPs do not: see the report)
    descriptor = ARCHITECTURES / "MobileNet0.35-v2_224.json"
    native = describe(descriptor)
    row = next(r for r in fidelity.matching_rows(ROWS["MobileNet0.35-v2"], native) if r["input_width"] == width)
    assert describe(descriptor, input_size=width)["activations"] == row["activations"]


def test_channels_first_is_refused(tmp_path):
    model = json.loads((ROOT / "tests/data/zoo/models/tiny_32.json").read_text())
    model["config"]["layers"][1]["config"]["data_format"] = "channels_first"
    path = tmp_path / "cf.json"
    path.write_text(json.dumps(model))
    with pytest.raises(DescriptorError, match=r"cf\.json: layer 'conv2d' \(Conv2D\): data_format 'channels_first'"):
        describe(path)


@pytest.mark.slow
@pytest.mark.tensorflow
def test_keras3_sequential_and_shared_layers(tmp_path):
    import keras

    sequential = keras.Sequential([keras.Input((40, 40, 3)), keras.layers.Conv2D(4, 3), keras.layers.MaxPooling2D(),
                                   keras.layers.Flatten(), keras.layers.Dense(3)])
    path = tmp_path / "sequential.json"
    path.write_text(sequential.to_json())
    assert describe(path)["params"] == sequential.count_params()
    assert layer_shapes(path)[sequential.layers[-1].name] == (3,)
    inputs = keras.Input((16, 16, 3))
    shared = keras.layers.Conv2D(3, 3, padding="same")
    outputs = keras.layers.Add()([shared(inputs), shared(shared(inputs))])
    model = keras.Model(inputs, outputs)
    path = tmp_path / "shared.json"
    path.write_text(model.to_json())
    features = describe(path)
    assert features["params"] == model.count_params() and features["conv_layers"] == 1
    assert features["activations"] == 16 * 16 * 3 * 5  # input, three conv calls, add
