"""Every DVC stage depends on the perfpred modules its entry point can import (statically, lazy imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from perfpred import cli

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def module_file(name: str) -> Path | None:
    """The source file of a perfpred module or package, None for anything else."""
    if name != "perfpred" and not name.startswith("perfpred."):
        return None
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """The perfpred modules a file imports anywhere in its body (function-level imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if module_file(name) is not None}


def closure(module: str) -> set[Path]:
    """Files of a module, its parent packages and everything they import, transitively."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            path = module_file(".".join(parts[:i]))
            if path is not None and path not in seen:
                seen.add(path)
                todo.extend(imported_modules(path))
    return seen


def stage_commands() -> list[tuple[str, str, list[str]]]:
    """(stage, perfpred subcommand, deps) of every stage of dvc.yaml."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    rows = []
    for name, stage in stages.items():
        body = stage.get("do", stage)
        words = body["cmd"].split()
        assert words[0] == "perfpred", f"stage {name} does not run perfpred: {body['cmd']}"
        rows.append((name, words[1], [d if isinstance(d, str) else next(iter(d)) for d in body["deps"]]))
    return rows


def covered(path: Path, deps: list[str]) -> bool:
    relative = path.relative_to(ROOT).as_posix()
    return any(relative == dep or relative.startswith(dep.rstrip("/") + "/") for dep in deps)


@pytest.mark.parametrize(("stage", "command", "deps"), stage_commands(), ids=[row[0] for row in stage_commands()])
def test_stage_deps_cover_every_module_its_entry_point_imports(stage, command, deps):
    entry = cli.SUBCOMMANDS[command][0]
    missing = sorted(p.relative_to(ROOT).as_posix() for p in closure("perfpred.cli") | closure(entry) if not covered(p, deps))
    assert not missing, f"stage {stage!r} runs `perfpred {command}` ({entry}) but its deps miss {missing}"


def test_the_import_walk_sees_lazy_imports():
    # measure.stage imports the runners inside functions only: the walk must still reach them
    files = {p.relative_to(SRC).as_posix() for p in closure("perfpred.measure.stage")}
    assert "perfpred/measure/runners.py" in files
    assert "perfpred/measure/agent.py" in files
