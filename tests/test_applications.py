"""`app:NAME`: keras.applications networks built without weights (imports TensorFlow)."""

import pytest

from perfpred.zoo import applications

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]


def test_application_is_built_at_the_requested_width():
    model = applications.build_application("app:MobileNetV2", 96)
    assert tuple(model.input_shape) == (None, 96, 96, 3)


def test_input_too_small_names_the_minimum():
    with pytest.raises(ValueError, match=r"input size 16 is too small for MobileNetV2: it needs at least 32x32"):
        applications.build_application("app:MobileNetV2", 16)


def test_unknown_application_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown keras application 'MobileNetV9': known are .*MobileNetV2"):
        applications.build_application("app:MobileNetV9", 224)
    with pytest.raises(ValueError, match="unknown keras application 'preprocess_input'"):
        applications.build_application("app:preprocess_input", 224)


def test_only_the_app_prefix_names_an_application():
    assert applications.is_application("app:ResNet50")
    assert not applications.is_application("models/resnet50.json")


def test_every_model_form_gives_the_same_features(tmp_path):
    from perfpred.serve import predict

    model = applications.build_application("app:MobileNetV2", 96)
    model.save(tmp_path / "mobilenet.keras")
    (tmp_path / "mobilenet.json").write_text(model.to_json())
    by_name = predict.describe_model("app:MobileNetV2", 96)
    assert by_name["input_width"] == 96 and by_name["params"] == model.count_params()
    assert predict.describe_model(str(tmp_path / "mobilenet.keras")) == by_name
    assert predict.describe_model(str(tmp_path / "mobilenet.json")) == by_name
