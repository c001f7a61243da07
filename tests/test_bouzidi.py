"""The importer of the Jetson dataset, on the real files and on broken copies of them."""

import csv
import shutil
import warnings
from pathlib import Path

import pytest

import perfpred
from perfpred.data import bouzidi, schema

from conftest import JETSON_DATASET

BOARDS = {"nano": (1333, 117, 1293), "tx2": (1530, 154, 1450), "agx-xavier": (1611, 158, 1524)}


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_real_boards_import_into_the_canonical_schema(board):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table, report = bouzidi.read_board(JETSON_DATASET, board, ["latency", "memory", "power"])
    assert list(table.columns[: len(schema.CANONICAL_COLUMNS)]) == list(schema.CANONICAL_COLUMNS)
    assert not table.duplicated(["model", "input_width"]).any()
    latency, memory, power = BOARDS[board]
    assert table["latency_ms"].notna().sum() == latency
    assert table["memory_mb"].notna().sum() == memory
    assert table["power_mw"].notna().sum() == power
    for column in ("latency_ms", "memory_mb", "power_mw"):
        assert (table[column].dropna() > 0).all()
    assert table.loc[table["synthetic"], "family"].eq("basic_model").all()
    resnet50 = table[(table["model"] == "ResNet-50") & (table["input_width"] == 224)].iloc[0]
    assert resnet50["flops"] == 7_785_104_411
    assert resnet50["neurons"] == 4_320_395_264
    assert resnet50["params"] == resnet50["conv_params"] + resnet50["bn_params"] + resnet50["fc_params"]
    # Rows read = rows kept + rejected + merged repeats (all three metrics of one network share a row).
    assert report.rows_read == latency + memory + power + len(report.rejected) + len(report.duplicates_merged)


def test_the_known_defect_is_rejected_with_file_and_line():
    with pytest.warns(UserWarning, match=r"power/agx-xavier.csv:914: missing value in column VALUE"):
        table = perfpred.read_measurements(JETSON_DATASET / "power" / "agx-xavier.csv", metric="power")
    report = table.attrs["import_report"]
    assert report["rejected"] == 1
    assert len(table) == 1524


def test_memory_rows_get_features_from_the_same_network_elsewhere():
    table = perfpred.read_measurements(JETSON_DATASET / "memory" / "tx2.csv", metric="memory")
    assert len(table) == 154
    assert table[list(schema.FEATURE_COLUMNS)].notna().all().all()
    nano = perfpred.read_measurements(JETSON_DATASET / "memory" / "nano.csv", metric="memory")
    # 16 synthetic Nano networks were never measured for latency or power: their extra features stay NaN.
    assert nano["flops"].isna().sum() == 16
    assert nano.loc[nano["flops"].isna(), "synthetic"].all()
    assert nano[["layers", "activations", "params", "input_size"]].notna().all().all()


def test_different_networks_sharing_a_name_are_told_apart():
    table = perfpred.read_measurements(JETSON_DATASET / "latency" / "tx2.csv", metric="latency")
    renamed = table[table["model"].str.startswith("basic_model_224_24#")]
    assert len(renamed) == 2
    assert renamed["layers"].nunique() == 2


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def _write_rows(path: Path, rows: list[list[str]]) -> Path:
    path.parent.mkdir(exist_ok=True)
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def test_repeated_measurements_are_merged_into_their_median(tmp_path):
    rows = _rows(JETSON_DATASET / "latency" / "nano.csv")
    # The same network measured twice more, at 2x and 4x the original latency: the median is 2x.
    value = float(rows[0][2])
    doubled = rows[0][:2] + [str(2 * value)] + rows[0][3:]
    quadrupled = rows[0][:2] + [str(4 * value)] + rows[0][3:]
    broken = _write_rows(tmp_path / "latency" / "nano.csv", [rows[0], doubled, quadrupled] + rows[1:])
    table = perfpred.read_measurements(broken, metric="latency")
    report = table.attrs["import_report"]
    assert report["duplicates_merged"] == 1
    row = table[(table["model"] == "MobileNet0.25-v1") & (table["input_width"] == 32)].iloc[0]
    assert row["latency_ms"] == pytest.approx(2 * value)


def _broken_copy(tmp_path: Path, line_number: int, column: int, value: str) -> Path:
    """A copy of the Nano latency file with one field of one line replaced."""
    rows = _rows(JETSON_DATASET / "latency" / "nano.csv")
    rows[line_number - 1][column] = value
    return _write_rows(tmp_path / "latency" / "nano.csv", rows)


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        (2, "", "missing value in column VALUE"),
        (2, "fast", "non-numeric value 'fast' in column VALUE"),
        (2, "0", "measurement VALUE=0 is not positive"),
        (2, "-4.5", "measurement VALUE=-4.5 is not positive"),
        (5, "-1", "negative feature nb_params_conv=-1"),
        (8, "1e", "non-numeric value '1e' in column flops"),
    ],
)
def test_bad_rows_are_rejected_with_file_line_and_reason(tmp_path, column, value, reason):
    path = _broken_copy(tmp_path, 5, column, value)
    with pytest.warns(UserWarning, match=rf"latency/nano.csv:5: {reason}"):
        table = perfpred.read_measurements(path, metric="latency")
    assert len(table) == 1332
    assert table.attrs["import_report"]["rejected_rows"][0].endswith(f":5: {reason}")


def test_zero_is_a_valid_feature(tmp_path):
    # MobileNets have no dense layer: fc_params 0 must be kept.
    table = perfpred.read_measurements(JETSON_DATASET / "latency" / "nano.csv", metric="latency")
    assert (table["fc_params"] == 0).sum() >= 100


def test_a_file_of_the_wrong_layout_names_the_expected_columns(tmp_path):
    wrong = tmp_path / "memory.csv"
    shutil.copy(JETSON_DATASET / "memory" / "nano.csv", wrong)
    with pytest.raises(bouzidi.LayoutError, match=r"memory.csv:1: 8 columns.*15 columns, no header: Model_name, input_shape, VALUE"):
        perfpred.read_measurements(wrong, metric="latency")


def test_unknown_metric_and_source_are_clear_errors():
    with pytest.raises(ValueError, match="unknown metric 'energy'"):
        perfpred.read_measurements(JETSON_DATASET / "latency" / "nano.csv", metric="energy")
    with pytest.raises(ValueError, match="unknown source 'csv'"):
        perfpred.read_measurements(JETSON_DATASET / "latency" / "nano.csv", source="csv")
    with pytest.raises(FileNotFoundError, match="no such measurement file"):
        perfpred.read_measurements(JETSON_DATASET / "latency" / "orin.csv")


def test_canonical_tables_round_trip(tmp_path):
    from perfpred.data.measurements import write_table

    table = perfpred.read_measurements(JETSON_DATASET / "latency" / "nano.csv", metric="latency")
    write_table(table, tmp_path / "nano.parquet")
    again = perfpred.read_measurements(tmp_path / "nano.parquet", source="canonical", metric="latency")
    assert again.drop(columns=[]).equals(table)
    power_only = perfpred.read_measurements(tmp_path / "nano.parquet", source="canonical", metric="power")
    assert power_only.empty


def test_a_table_without_the_schema_is_refused(tmp_path):
    import pandas as pd

    pd.DataFrame({"model": ["x"], "latency_ms": [1.0]}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(ValueError, match="not a canonical measurement table.*'family'"):
        perfpred.read_measurements(tmp_path / "t.parquet", source="canonical")
