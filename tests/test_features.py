"""The features stage: zoo manifest -> data/features/features.parquet."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from perfpred import cli
from perfpred.data import schema
from perfpred.features import stage as features
from perfpred.features.description import EXTRA_COLUMNS, describe

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "tests/data/zoo"


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder with the test zoo (3 describable models, 1 missing) and a params.yaml."""
    shutil.copytree(ZOO, tmp_path / "tests/data/zoo")
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["paths"] |= {"zoo": "tests/data/zoo", "features": "out/features"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setenv("PERFPRED_ROOT", str(tmp_path))
    return tmp_path


def test_the_stage_command_writes_every_describable_model(project, capsys):
    assert cli.main(["features", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "described 3 of 4 models" in printed
    assert "skipped broken: no model descriptor at" in printed
    table = pd.read_parquet(project / "out/features/features.parquet")
    assert list(table.columns[:17]) == list(schema.IDENTITY_COLUMNS + schema.FEATURE_COLUMNS)
    assert set(EXTRA_COLUMNS) - {"input_width"} <= set(table.columns)
    assert table["model"].tolist() == ["tiny_32", "tiny_64", "MobileNet-1.0"]
    assert table["synthetic"].tolist() == [True, True, False]
    mobilenet = table.set_index("model").loc["MobileNet-1.0"]
    assert mobilenet["params"] == 4_253_864  # keras.applications.MobileNet().count_params()
    assert mobilenet["flops"] == describe(ZOO / "models/mobilenet_224.json")["flops"]
    assert table["input_size"].tolist() == [32 * 32 * 3, 64 * 64 * 3, 224 * 224 * 3]
    assert schema.conform(table.assign(latency_ms=1.0)).shape[0] == 3  # rows join the canonical schema


def test_a_manifest_without_its_columns_is_an_error(project):
    (project / "tests/data/zoo/manifest.csv").write_text("name,descriptor\nx,y.json\n")
    with pytest.raises(ValueError, match="manifest lacks column.*family.*input_width"):
        features.build(progress=False)


def test_a_bad_descriptor_is_skipped_with_its_reason(project):
    (project / "tests/data/zoo/models/tiny_64.json").write_text("{not json")
    summary = features.build(progress=False)
    assert summary["described"] == 2
    assert [entry["name"] for entry in summary["skipped"]] == ["tiny_64", "broken"]
    assert "malformed JSON at line 1" in summary["skipped"][0]["reason"]


def test_dvc_declares_the_stage():
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["features"]
    assert stage["cmd"].startswith("perfpred features")
    assert "${paths.zoo}/manifest.csv" in stage["deps"] and "${paths.features}/features.parquet" in stage["outs"]
