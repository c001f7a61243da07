"""The pipeline under a real `dvc repro`, in a temporary copy of the repository."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from perfpred.data import schema

BIN = Path(sys.executable).parent


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PERFPRED_ROOT": str(root)}
    return subprocess.run([str(BIN / "dvc"), *args], cwd=root, env=env, capture_output=True, text=True, check=False)


@pytest.mark.slow
def test_import_stage_runs_under_dvc_repro(repo_copy):
    result = dvc(repo_copy, "repro", "import")
    assert result.returncode == 0, result.stdout + result.stderr
    for target, rows in {"jetson-nano": 1429, "jetson-tx2": 1587, "jetson-agx-xavier": 1686}.items():
        table = pd.read_parquet(repo_copy / "data" / "measurements" / f"{target}.parquet")
        assert len(table) == rows
        assert list(table.columns[: len(schema.CANONICAL_COLUMNS)]) == list(schema.CANONICAL_COLUMNS)
        summary = json.loads((repo_copy / "data" / "measurements" / f"{target}.import.json").read_text())
        assert summary["rows"] == rows
    summary = json.loads((repo_copy / "data" / "measurements" / "jetson-agx-xavier.import.json").read_text())
    assert summary["rejected_rows"] == ["data/raw/jetson-bouzidi/power/agx-xavier.csv:914: missing value in column VALUE"]
    status = dvc(repo_copy, "status", "import")
    assert "up to date" in status.stdout, status.stdout
    # A changed raw file makes the stage stale again.
    with open(repo_copy / "data" / "raw" / "jetson-bouzidi" / "latency" / "nano.csv", "a") as handle:
        handle.write('ResNet-50,"(250, 250, 3)",30.5,250,187500,23481472,106240,2049000,9000000000,177,53,53,1,40000000,5000000000\n')
    assert "changed deps" in dvc(repo_copy, "status", "import").stdout
