"""The Hydra edge of `perfpred train` and `perfpred tune`: their help, the pipeline's sweep, one job per combination.

A job's config is conf/train.yaml: params.yaml (the pipeline's one configuration), then the selected
target, metric and algorithm, then conf/tuned/<target>-<metric>-<algorithm>.yaml when it exists.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator, Sequence

from perfpred import config
from perfpred.cli import one_line
from perfpred.model import fitcache, store

log = logging.getLogger("perfpred")

#: The config groups a job selects, with what they are, for the help and the one-line errors.
GROUPS = {"target": "the hardware target (conf/target/)", "metric": "what is predicted (conf/metric/)",
          "algorithm": "the regression algorithm (conf/algorithm/)"}
WIDTH = 30
HYDRA_FLAGS = ("--hydra-help", "--info", "-c", "--cfg", "--resolve", "-p", "--package", "--shell-completion")

TRAIN_SUMMARY = "Seed-sweep, track in MLflow and register a predictor of one (target, metric, algorithm) per job."
TRAIN_EXAMPLES = """examples:
  perfpred train target=jetson-nano metric=latency algorithm=xgb
  perfpred train -m target=jetson-nano,jetson-tx2 metric=latency,memory algorithm=poly,svr train.seeds=5
  MLFLOW_TRACKING_URI=sqlite:///tmp/x.db perfpred train algorithm=svr train.seeds=3   (an experiment elsewhere)
  perfpred train --pipeline        (what `dvc repro train` runs)"""
TUNE_SUMMARY = "Tune an algorithm's hyperparameters with Optuna for one (target, metric); the best go to conf/tuned/."
TUNE_EXAMPLES = """examples:
  perfpred tune target=jetson-tx2 metric=memory algorithm=svr tune.trials=60
  perfpred tune target=jetson-nano metric=latency algorithm=xgb tune.objective=families"""


def key_comments(path) -> dict[str, str]:
    """The comment at the end of each top-level `key: value` line of a YAML file (what the key means)."""
    comments = {}
    for line in path.read_text().splitlines():
        key, colon, rest = line.partition(":")
        if colon and key.isidentifier() and "#" in rest:
            comments[key] = rest.split("#", 1)[1].strip()
    return comments


def help_text(name: str) -> str:
    """The help of `perfpred train` / `perfpred tune`: their own options, with the values params.yaml holds now."""
    params = config.load_params()
    section = "train" if name == "train" else "tune"
    lines = [f"usage: perfpred {name} [-m] [target=NAME] [metric=NAME] [algorithm=NAME] [{section}.KEY=VALUE ...]"
             + (" [--pipeline]" if name == "train" else ""), "",
             TRAIN_SUMMARY if name == "train" else TUNE_SUMMARY,
             "Settings come from params.yaml (`perfpred params KEY=VALUE` or `dvc exp run -S KEY=VALUE` change them for",
             "every later run); an override on this command line changes this run only.", "", "options:"]
    defaults = config.compose(config.JOB_CONFIG, ["~tuned"])
    for group, what in GROUPS.items():
        lines.append(f"  {group}=NAME".ljust(WIDTH) + f"{what}: {', '.join(config.group_options(group))} "
                     f"(default {defaults[group].name})")
    comments = key_comments(config.conf_dir() / section / "default.yaml")
    for key, value in params.get(section, {}).items():
        lines.append(f"  {section}.{key}=...".ljust(WIDTH) + f"{comments.get(key, '')} (now {value})".lstrip())
    lines += ["  ~tuned".ljust(WIDTH) + "leave out conf/tuned/<target>-<metric>-<algorithm>.yaml (as train.use_tuned=false)",
              "  -m, --multirun".ljust(WIDTH) + "one job per combination of comma-separated values (algorithm=poly,svr)"]
    if name == "train":
        lines.append("  --pipeline".ljust(WIDTH) + "the DVC train stage: every target (imported, local) x train.metrics x "
                     "train.algorithms; writes metrics/, plots/, reports/summary.md")
    lines += ["  -h, --help".ljust(WIDTH) + "this help; --hydra-help for Hydra's own options (--cfg job prints the config)",
              "", TRAIN_EXAMPLES if name == "train" else TUNE_EXAMPLES]
    return "\n".join(lines)


def pipeline_overrides(params: dict, argv: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The multirun of the train stage: every target params.yaml selects x train.metrics x train.algorithms."""
    targets = [*params.get("imported", {}), *params.get("local", {})]
    settings = params["train"]
    if not targets:
        raise config.ConfigError("params.yaml selects no target (imported: and local: are empty)")
    # algorithm first: Hydra's sweep varies the first override slowest, so every target's member jobs (svr, xgb)
    # are done long before the ensembles that read their fits back (ens) start beside them (train.pipeline_jobs)
    overrides = ["-m", f"algorithm={','.join(members_first(settings['algorithms']))}", f"target={','.join(targets)}",
                 f"metric={','.join(settings['metrics'])}", "train.skip_missing=true", "train.outputs=true"]
    return overrides + parallel_overrides(settings, tuple(argv))


def members_first(algorithms: list[str]) -> list[str]:
    """The algorithms in their order, except that an ensemble comes after every member of it (conf/algorithm/
    `members:`, nested): the member jobs run, and keep their fits for it, before the ensemble's start."""
    def depth(name: str, seen: tuple[str, ...] = ()) -> int:
        inner = [m for m in fitcache.members(name) if m not in seen]
        return 1 + max((depth(m, (*seen, name)) for m in inner), default=-1)

    return sorted(algorithms, key=depth)  # stable: the given order within a depth


def parallel_overrides(settings: dict, argv: tuple[str, ...] = ()) -> list[str]:
    """train.pipeline_jobs > 1 (and seeds fitted here, executor local): that many jobs at once on Hydra's joblib
    launcher, each fitting its seeds in one process. A launcher on the command line (hydra/launcher=ray) wins."""
    given = dict(a.split("=", 1) for a in argv if a.startswith(("train.pipeline_jobs=", "train.executor=")))
    jobs = int(given.get("train.pipeline_jobs", settings.get("pipeline_jobs", 1)) or 1)
    executor = given.get("train.executor", settings.get("executor", "local"))
    if jobs <= 1 or executor != "local" or any(a.startswith("hydra/launcher=") for a in argv):
        return []
    return ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}", "train.n_jobs=1"]


def check_overrides(argv: list[str], params: dict) -> None:
    """An unknown target, metric, algorithm or setting on the command line is a one-line error naming the known ones
    (Hydra's own message spans several lines)."""
    for argument in argv:
        key, equals, value = argument.partition("=")
        if not equals or key.startswith(("hydra", "+", "~")) or "/" in key:  # Hydra checks its own
            continue
        if key in GROUPS:
            if "(" in value:  # glob(...), range(...): Hydra expands them
                continue
            for name in value.split(","):
                if name not in config.group_options(key):
                    raise config.ConfigError(f"unknown {key} {name!r}: known {key}s are "
                                             f"{', '.join(config.group_options(key))} (conf/{key}/)")
            continue
        section, _, setting = key.partition(".")
        if section in GROUPS or section == "store":  # a value inside the selected option (algorithm.estimator.x): Hydra checks it
            continue
        if section not in params:
            raise config.ConfigError(f"unknown setting {key!r}: a job takes target=, metric=, algorithm= and the keys "
                                     f"of params.yaml ({', '.join(params)}), e.g. train.seeds=5")
        if section in ("train", "tune") and setting.split(".")[0] not in params[section]:
            raise config.ConfigError(f"unknown setting {key!r}: known {section} settings are {', '.join(params[section])}")


def use_tuned(argv: list[str], params: dict) -> bool:
    """train.use_tuned of this run: the command line's value, else params.yaml's."""
    for argument in argv:
        if argument.startswith("train.use_tuned="):
            return argument.split("=", 1)[1].strip().lower() in ("true", "1", "yes")
    return bool(params.get("train", {}).get("use_tuned", True))


def hydra_arguments(argv: list[str], name: str) -> list[str]:
    """The Hydra command line of a job: --pipeline expanded, ~tuned and train.use_tuned=false together,
    params.yaml found, the log file named <name>.log."""
    argv = list(argv)
    params = config.load_params()
    if "--pipeline" in argv:
        argv.remove("--pipeline")
        argv = pipeline_overrides(params, argv) + argv
    check_overrides(argv, params)
    if "~tuned" in argv:
        argv.append("train.use_tuned=false")
    elif not use_tuned(argv, params):
        argv.append("~tuned")
    return [*argv, config.params_search_path(), f"hydra.job.name={name}"]


def run_hydra(argv: list[str], job: Callable, name: str) -> int:
    """Run `job(cfg)` as a Hydra app on conf/train.yaml; bad input is one line on stderr and exit status 2."""
    import hydra

    from perfpred.serve import registry

    if any(a in ("-h", "--help") for a in argv):
        print(help_text(name))
        return 0
    try:
        arguments = hydra_arguments(argv, name)
    except config.ConfigError as error:
        print(f"perfpred {name}: error: {one_line(error)}", file=sys.stderr)
        return 2
    if store.is_local(argv) and not any(a in HYDRA_FLAGS for a in argv):
        registry.ensure_store()  # before parallel jobs: concurrent creation of the database races

    def task(cfg) -> None:
        try:
            store.use(cfg)  # conf/store/: local mlruns/ or the team's server
            job(cfg)
        except (ValueError, OSError, LookupError) as error:
            print(f"perfpred {name}: error: {one_line(error)}", file=sys.stderr)
            raise SystemExit(2) from None

    app = hydra.main(config_path=str(config.conf_dir()), config_name=config.JOB_CONFIG, version_base=None)(task)
    saved = sys.argv
    sys.argv = [f"perfpred-{name}", *arguments]
    try:
        with covering_validation():
            if name == "train":  # the run's jobs share slow fits (an ensemble's member refits its own job's rows)
                with fitcache.scoped():
                    app()
            else:
                app()
    finally:
        sys.argv = saved
    return 0


def covering(batch: Sequence[Sequence[str]]) -> list[Sequence[str]]:
    """The jobs of a sweep, in order, that each bring an override value none before them had: every value of every
    swept key (each target, metric and algorithm file) is in at least one of them."""
    seen: set[str] = set()
    chosen = []
    for overrides in batch:
        if not seen.issuperset(overrides):
            chosen.append(overrides)
            seen.update(overrides)
    return chosen


@contextlib.contextmanager
def covering_validation() -> Iterator[None]:
    """Hydra's sweeper composes the config of every job of a multirun in the launching process before it starts any
    (to fail early on a config that cannot be composed), and each job composes its own again. For the train stage
    that was 20 s of one core, the other idle, before the first of its ~200 jobs. Here it composes the jobs that
    `covering` picks (one per target, metric and algorithm file: ~20): a broken file still fails before any job
    starts; a combination that fails to compose fails in its own job."""
    from hydra.plugins.sweeper import Sweeper

    original = Sweeper.validate_batch_is_legal

    def validate(self, batch: Sequence[Sequence[str]]) -> None:
        original(self, covering(batch))

    Sweeper.validate_batch_is_legal = validate
    try:
        yield
    finally:
        Sweeper.validate_batch_is_legal = original
