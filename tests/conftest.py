"""Shared fixtures: the repository's root, and a throw-away copy of it for pipeline runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
JETSON_DATASET = REPO_ROOT / "data" / "raw" / "jetson-bouzidi"


def copy_repository(destination: Path) -> Path:
    """Copy the files git tracks (as they are in the working tree) into a fresh git repository."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    for relative in filter(None, listed):
        source = REPO_ROOT / relative
        if source.is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    subprocess.run(["git", "init", "-q"], cwd=destination, check=True)
    return destination


@pytest.fixture
def repo_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the repository in tmp_path, used as the project root (PERFPRED_ROOT)."""
    root = copy_repository(tmp_path / "repo")
    monkeypatch.setenv("PERFPRED_ROOT", str(root))
    return root
