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
    "describe": ("perfpred.features.description", "print the model-level features of a Keras descriptor (.json, .keras) or an ONNX model (.onnx)"),
    "features": ("perfpred.features.stage", "describe every model of the zoo manifest into data/features/features.parquet"),
    "measure": ("perfpred.measure.stage", "measure latency and peak memory of a model (or the zoo) on a local or ssh target"),
    "train": ("perfpred.model.train", "seed-sweep, track and register predictors (Hydra overrides: target=... metric=... algorithm=...)"),
    "tune": ("perfpred.model.tune", "tune an algorithm's hyperparameters with Optuna (Hydra overrides as for train)"),
    "adapt": ("perfpred.model.adapt", "a predictor for a new target from k measured rows and the other targets' tables"),
    "select": ("perfpred.model.select", "the K zoo models to measure on a new target so that `adapt` learns most"),
    "predict": ("perfpred.serve.predict", "predicted latency, memory and power of a CNN on every target, with intervals"),
    "kernels": ("perfpred.kernels.listing", "list the kernels a target runs for a model, with their predicted latency"),
    "kernel-zoo": ("perfpred.kernels.measurement", "sample the kernel zoo: single-kernel descriptors per kind into data/kernels/zoo"),
    "kernel-measure": ("perfpred.kernels.measurement", "measure the kernel zoo on a target (two rounds: sampled, then adaptive)"),
    "kernel-train": ("perfpred.kernels.training", "fit the kernel predictors and the model overhead of every measured target"),
    "recommend": ("perfpred.serve.recommend", "rank the targets and toolchains that meet latency, memory and power limits"),
}

#: Subcommands that are steps of the DVC pipeline (dvc.yaml runs them); `perfpred --help` lists them apart.
PIPELINE_STAGES = ("params", "import", "zoo", "features", "kernel-zoo", "kernel-measure", "kernel-train")

#: One example per subcommand, shown by `perfpred --help`.
EXAMPLES: dict[str, str] = {
    "describe": "perfpred describe data/zoo/models/MobileNetV2-a1.0_224.json",
    "predict": "perfpred predict app:MobileNetV2 --input-size 160",
    "recommend": "perfpred recommend app:ResNet50 --max-latency-ms 50 --max-memory-mb 2000 --max-power-mw 5000",
    "measure": "perfpred measure MobileNetV2-a1.0_160 --target host-cpu-tflite --json",
    "train": "perfpred train target=jetson-nano metric=latency algorithm=xgb train.seeds=5",
    "tune": "perfpred tune target=jetson-tx2 metric=memory algorithm=svr tune.trials=60",
    "params": "perfpred params zoo=ci   (or: dvc exp run -S zoo=ci)",
    "import": "perfpred import jetson-nano",
    "zoo": "perfpred zoo",
    "features": "perfpred features",
    "kernels": "perfpred kernels data/zoo/models/MobileNetV2-a1.0_224.json --target host-cpu-tflite",
    "kernel-measure": "perfpred kernel-measure --target host-cpu-tf",
}

DESCRIPTION = "Predict the latency, memory and power of a CNN on hardware targets before running it there."


def command_list() -> str:
    """The subcommands, users' first and the pipeline's stages apart, each with its help line and an example."""

    def entries(names) -> list[str]:
        lines = []
        for name in names:
            lines.append(f"  {name:<10} {SUBCOMMANDS[name][1]}")
            if name in EXAMPLES:
                lines.append(f"  {'':<10}   e.g. {EXAMPLES[name]}")
        return lines

    first = ("describe", "predict", "recommend", "measure", "train", "tune")  # the order a new user needs them in
    users = sorted((name for name in SUBCOMMANDS if name not in PIPELINE_STAGES),
                   key=lambda name: first.index(name) if name in first else len(first))
    stages = [name for name in SUBCOMMANDS if name in PIPELINE_STAGES]
    return "\n".join(["commands:", *entries(users), "",
                      "pipeline stages (`dvc repro` runs them, see dvc.yaml; train --pipeline is the train stage):",
                      *entries(stages), "", "`perfpred COMMAND --help` explains a command's options."])


def version() -> str:
    """perfpred's version."""
    from perfpred import __version__

    return __version__


def top_parser() -> argparse.ArgumentParser:
    """The parser of `perfpred` itself, which lists the subcommands."""
    parser = argparse.ArgumentParser(prog="perfpred", usage="perfpred [-h] [--version] COMMAND [ARGUMENTS ...]",
                                     description=DESCRIPTION, epilog=command_list(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"perfpred {version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, help=argparse.SUPPRESS)
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
    except (ValueError, OSError, LookupError) as error:
        # Bad input, a missing file, an unreachable host: one clear line, no traceback (PERFPRED_DEBUG=1 shows it).
        if os.environ.get("PERFPRED_DEBUG"):
            raise
        print(f"perfpred {name}: error: {one_line(error)}", file=sys.stderr)
        return 2


def one_line(error: BaseException) -> str:
    """An exception's message on one line; a KeyError's without the quotes that str() adds around it."""
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(text.split()) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
