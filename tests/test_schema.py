import pandas as pd
import pytest

from perfpred.data import schema


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("ResNet-50", "ResNet"),
        ("ResNet-101", "ResNet"),
        ("ResNet-50V2", "ResNetV2"),
        ("SEResNext-50", "SEResNext"),
        ("MobileNet0.25-v1", "MobileNetV1"),
        ("MobileNet1.4-v2", "MobileNetV2"),
        ("MobileNet-small0.75-v3", "MobileNetV3"),
        ("ShuffleNet2.0-v2", "ShuffleNetV2"),
        ("InceptionResNetV2", "InceptionResNetV2"),
        ("Inception-v3", "InceptionV3"),
        ("EfficientNet-B4", "EfficientNet"),
        ("DPN-92", "DPN"),
        ("MNASNet0.35", "MNASNet"),
        ("Xception", "Xception"),
        ("basic_model_224_38", "basic_model"),
    ],
)
def test_family_groups_depths_and_widths(model, family):
    assert schema.family_of(model) == family


def test_family_of_a_name_without_letters_is_an_error():
    with pytest.raises(ValueError, match="'123'"):
        schema.family_of("123")


def test_metric_columns_come_from_conf_with_units():
    assert schema.METRIC_COLUMNS == {"latency": "latency_ms", "memory": "memory_mb", "power": "power_mw"}
    with pytest.raises(ValueError, match="known metrics are latency, memory, power"):
        schema.metric_column("energy")


def test_conform_orders_columns_and_keeps_extras():
    table = pd.DataFrame({"extra": [1], "model": ["m"], "family": ["f"], "input_width": [32.0],
                          "source": ["s"], "synthetic": [False], "flops": [10], "latency_ms": [1.5]})
    conformed = schema.conform(table)
    assert list(conformed.columns) == list(schema.CANONICAL_COLUMNS) + ["extra"]
    assert conformed["input_width"].dtype == "int64"
    assert conformed["flops"].dtype == "float64"
    assert conformed["memory_mb"].isna().all()
    assert schema.empty_table().empty
