"""`perfpred params`: write params.yaml, the composition of conf/ that `dvc repro` reads."""

from __future__ import annotations

import argparse

from perfpred import config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `perfpred params`."""
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. zoo=ci")


def run(args: argparse.Namespace) -> int:
    """Compose conf/ with the overrides and write params.yaml."""
    path = config.write_params(overrides=args.overrides)
    print(f"wrote {path}")
    return 0
