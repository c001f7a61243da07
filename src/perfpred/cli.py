"""The `perfpred` command: one subcommand per verb, each implemented by its own module."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

#: subcommand -> (module with add_arguments(parser) and run(args) -> int, one-line help).
#: A module that sets HYDRA_APP = True takes Hydra overrides instead and exposes main(argv) -> int.
#: Modules are imported only when their subcommand runs, so that start-up stays fast.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "params": ("perfpred.params", "write params.yaml from conf/ (the configuration dvc repro reads)"),
    "import": ("perfpred.data.importer", "import published measurements into data/measurements/<target>.parquet"),
    "zoo": ("perfpred.zoo.build", "build the model zoo's Keras JSON descriptors and data/zoo/manifest.csv"),
    "describe": ("perfpred.features.description", "print the model-level features of a Keras descriptor (.json or .keras)"),
    "features": ("perfpred.features.stage", "describe every model of the zoo manifest into data/features/features.parquet"),
    "measure": ("perfpred.measure.stage", "measure latency and peak memory of a model (or the zoo) on a local or ssh target"),
    "train": ("perfpred.model.train", "seed-sweep, track and register predictors (Hydra overrides: target=... metric=... algorithm=...)"),
    "tune": ("perfpred.model.tune", "tune an algorithm's hyperparameters with Optuna (Hydra overrides as for train)"),
    "adapt": ("perfpred.model.adapt", "a predictor for a new target from k measured rows and the other targets' tables"),
    "select": ("perfpred.model.select", "the K zoo models to measure on a new target so that `adapt` learns most"),
    "predict": ("perfpred.serve.predict", "predicted latency, memory and power of a CNN on every target, with intervals"),
    "recommend": ("perfpred.serve.recommend", "rank the targets and toolchains that meet latency and memory limits"),
}

DESCRIPTION = "Predict the latency, memory and power of a CNN on hardware targets before running it there."


def top_parser() -> argparse.ArgumentParser:
    """The parser of `perfpred` itself, which lists the subcommands."""
    parser = argparse.ArgumentParser(prog="perfpred", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in SUBCOMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def command_parser(name: str, module) -> argparse.ArgumentParser:
    """The parser of one subcommand."""
    help_text = SUBCOMMANDS[name][1]
    parser = argparse.ArgumentParser(prog=f"perfpred {name}", description=help_text)
    module.add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in SUBCOMMANDS:
        top_parser().parse_args(argv)  # prints help or a usage error and exits
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(SUBCOMMANDS[name][0])
    if getattr(module, "HYDRA_APP", False):
        return module.main(rest)
    args = command_parser(name, module).parse_args(rest)
    try:
        return module.run(args)
    except (ValueError, FileNotFoundError, KeyError) as error:
        # Bad input: one clear line, no traceback (PERFPRED_DEBUG=1 shows it).
        if os.environ.get("PERFPRED_DEBUG"):
            raise
        print(f"perfpred {name}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
