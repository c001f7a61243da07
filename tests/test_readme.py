"""The README's examples run, and every `perfpred` command written in README.md and docs/ is accepted as written."""

from __future__ import annotations

import importlib
import json
import re
import shlex

import pytest

import trained_store
from perfpred import cli, config
from perfpred.model import jobs

REPO = trained_store.REPO
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def code_lines(markdown: str, section: str | None = None) -> list[str]:
    """The lines starting with `perfpred ` in the fenced code blocks of a markdown text (of one `## section`)."""
    if section is not None:
        markdown = markdown.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", markdown, flags=re.S)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines() if line.startswith("perfpred ")]


def documented_commands() -> list[tuple[str, str]]:
    """(document, command line) of every perfpred command in README.md and docs/*.md."""
    return [(path.relative_to(REPO).as_posix(), line) for path in DOCUMENTS for line in code_lines(path.read_text())]


def test_the_readme_shows_how_to_predict_on_its_first_screen():
    lines = (REPO / "README.md").read_text().splitlines()
    first_screen = "\n".join(lines[:45])
    assert "make run" in first_screen and "make test" in first_screen
    assert "## Predict your model" in first_screen and "perfpred predict" in first_screen


def test_every_documented_command_is_found():
    commands = documented_commands()
    assert len(commands) >= 20, commands  # the docs are full of examples: a broken extraction finds few
    assert {line.split()[1] for _, line in commands} >= {"predict", "recommend", "describe", "measure", "train", "tune"}


@pytest.mark.parametrize(("document", "line"), documented_commands(), ids=[f"{d}:{line[:60]}" for d, line in documented_commands()])
def test_a_documented_command_is_accepted_as_written(document, line):
    """Its subcommand exists and its options parse (argparse), or its overrides name known settings (train/tune)."""
    words = shlex.split(line)[1:]
    name, rest = words[0], words[1:]
    assert name in cli.SUBCOMMANDS, f"{document}: `{line}` names no perfpred command"
    module = importlib.import_module(cli.SUBCOMMANDS[name][0])
    if getattr(module, "HYDRA_APP", False):
        overrides = [word for word in rest if word not in ("-m", "--multirun", "--pipeline") and not word.startswith("-")]
        jobs.check_overrides(overrides, config.load_params())
        return
    try:
        cli.command_parser(name, module).parse_args(rest)
    except SystemExit as exit_:
        raise AssertionError(f"{document}: `{line}` does not parse (exit {exit_.code})") from None


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The two Jetson boards the README's examples name, trained (latency and memory) into a fresh store."""
    folder = tmp_path_factory.mktemp("readme")
    trained_store.make_project(folder, {"jetson-nano": "nano", "jetson-tx2": "tx2"}, train_fraction=0.5)
    trained_store.train(folder, ["jetson-nano", "jetson-tx2"], ["latency", "memory"])
    return folder


@pytest.mark.slow
@pytest.mark.tensorflow
@pytest.mark.parametrize("line", code_lines((REPO / "README.md").read_text(), "Predict your model"))
def test_the_readme_predict_examples_run(project, line):
    words = [str(REPO / word) if (REPO / word).is_file() else word for word in shlex.split(line)[1:]]
    completed = trained_store.perfpred(project, *words)
    output = completed.stdout
    if "--json" in words:
        records = json.loads(output)
        assert records and all(record["latency_ms"] > 0 for record in records)
    elif words[0] == "describe":
        assert "flops" in output and "params" in output
    else:
        assert "jetson-nano" in output and "jetson-tx2" in output, output
