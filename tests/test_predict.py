"""`perfpred predict`: output formats (pure) and MODEL resolution without TensorFlow."""

import math
import subprocess
import sys

import pandas as pd

from perfpred import predict

DESCRIPTOR = "data/raw/jetson-bouzidi/architectures/ResNet-50_224.json"


def prediction_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "target": ["jetson-nano", "jetson-tx2"],
            "toolchain": ["tensorflow-1.x", "tensorflow-1.x"],
            "latency_ms": [81.234, 40.0],
            "latency_ms_low": [70.0, 35.0],
            "latency_ms_high": [95.5, 46.0],
            "memory_mb": [410.0, math.nan],
            "memory_mb_low": [380.0, math.nan],
            "memory_mb_high": [450.0, math.nan],
            "latency_predictor": ["xgboost v3", "random_forest v1"],
            "memory_predictor": ["ridge v2", math.nan],
        }
    )


def test_table_shows_values_with_intervals_and_predictors():
    lines = predict.format_table(prediction_table()).splitlines()
    assert lines[0].split() == ["target", "toolchain", "latency_ms", "memory_mb", "predictors"]
    assert "81.23 [70, 95.5]" in lines[1] and "410 [380, 450]" in lines[1]
    assert "latency: xgboost v3  memory: ridge v2" in lines[1]
    assert "-" in lines[2].split() and "memory:" not in lines[2]


def test_json_records_use_null_for_missing_values():
    records = predict.json_records(prediction_table())
    assert records[0]["latency_ms_high"] == 95.5
    assert records[1]["memory_mb"] is None and records[1]["memory_predictor"] is None


def test_json_descriptor_is_described():
    features = predict.describe_model(DESCRIPTOR)
    assert features["input_width"] == 224 and features["params"] == 25_636_712
    assert predict.describe_model(DESCRIPTOR, 160)["input_size"] == 160 * 160 * 3


def test_describing_a_json_descriptor_imports_no_tensorflow():
    # A fresh interpreter: another test of this session may have imported TensorFlow already.
    probe = (
        "import sys; from perfpred import predict; predict.describe_model(sys.argv[1]); "
        "print(sorted(m for m in ('tensorflow', 'keras', 'mlflow') if m in sys.modules))"
    )
    completed = subprocess.run([sys.executable, "-c", probe, DESCRIPTOR], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]"
