"""The pipeline under a real `dvc repro`, in a temporary copy of the repository."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

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


@pytest.mark.slow
def test_dvc_exp_run_set_param_changes_what_the_train_stage_trains(repo_copy):
    """One configuration root: `dvc exp run -S train.seeds=2` (ci profile) trains with 2 seeds, as metrics/ says."""
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    subprocess.run([*git, "add", "-A"], cwd=repo_copy, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=repo_copy, check=True)
    # The Nano's import (seconds) and the train stage; the other targets have no table here and are skipped, and
    # so are the kernel algorithms: no kernel predictors (kernel_train's output, a dependency, is an empty folder).
    (repo_copy / "data/kernels/predictors").mkdir(parents=True, exist_ok=True)
    result = dvc(repo_copy, "exp", "run", "-s", "import@jetson-nano", "train", "-S", "zoo=ci", "-S", "train.seeds=2", "-S", "train.n_jobs=1",
                 "-S", "train.algorithms=[poly]", "-S", "train.metrics=[latency,power]")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    assert params["zoo"]["name"] == "ci" and params["train"]["seeds"] == 2
    for metric in ("latency", "power"):
        champion = json.loads((repo_copy / f"metrics/champions/jetson-nano-{metric}.json").read_text())
        assert champion["champion"] == "poly" and champion["seeds"] == 2
        detail = json.loads((repo_copy / f"metrics/algorithms/jetson-nano-{metric}.json").read_text())
        assert list(detail["algorithms"]) == ["poly"] and detail["algorithms"]["poly"]["seeds"] == 2
        assert (repo_copy / f"plots/images/jetson-nano-{metric}.png").stat().st_size > 1000
    assert not (repo_copy / "metrics/champions/jetson-nano-memory.json").exists()  # not in train.metrics
    assert "jetson-nano" in (repo_copy / "reports/summary.md").read_text()
    shown = dvc(repo_copy, "metrics", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    assert '"seeds": 2' in shown.stdout and "mape_mean" in shown.stdout and "algorithms" not in shown.stdout
    page = dvc(repo_copy, "plots", "show", "-o", str(repo_copy / "page"))
    assert page.returncode == 0, page.stderr
    html = (repo_copy / "page/index.html").read_text()
    assert html.count('<img src="static/workspace_plots_images_jetson-nano-latency.png"') == 1  # an image plot, offline
