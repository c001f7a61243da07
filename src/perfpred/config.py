"""Where configuration lives and how it is read: conf/ (Hydra) and params.yaml, its composition."""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path

import yaml

from perfpred import atomic

#: The repository this package was installed from (src layout: src/perfpred/config.py).
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
PARAMS_FILE = "params.yaml"
#: The Hydra config of one train/tune job: params.yaml plus a (target, metric, algorithm) and its tuned file.
JOB_CONFIG = "train"
#: where a registered MLflow model keeps perfpred's code and a copy of conf/ side by side (code/perfpred, code/conf)
BUNDLED_ROOT = Path(__file__).resolve().parents[1]


class ConfigError(ValueError):
    """A configuration value or selection that does not exist."""


def project_root() -> Path:
    """The project folder: $PERFPRED_ROOT, else the working directory if it has conf/, else the package's repo
    (or, for the code inside a registered model, the folder that holds it and its copy of conf/)."""
    if "PERFPRED_ROOT" in os.environ:
        return Path(os.environ["PERFPRED_ROOT"]).resolve()
    if (Path.cwd() / "conf").is_dir():
        return Path.cwd()
    if not (PACKAGE_ROOT / "conf").is_dir() and (BUNDLED_ROOT / "conf").is_dir():
        return BUNDLED_ROOT
    return PACKAGE_ROOT


def conf_dir() -> Path:
    """The Hydra configuration folder."""
    path = project_root() / "conf"
    if not path.is_dir():
        raise ConfigError(f"no configuration folder at {path}: run perfpred from the repository or set PERFPRED_ROOT")
    return path


def compose(config_name: str = "config", overrides: Sequence[str] = ()):
    """Compose conf/<config_name>.yaml with Hydra overrides and return it as a DictConfig."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if config_name == JOB_CONFIG:
        overrides = [params_search_path(), *overrides]
    if GlobalHydra.instance().is_initialized():  # inside a running Hydra app
        return hydra_compose(config_name=config_name, overrides=list(overrides))
    with initialize_config_dir(version_base=None, config_dir=str(conf_dir())):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def composed_params(overrides: Sequence[str] = ()) -> dict:
    """The plain dict that params.yaml holds: conf/config.yaml composed and resolved."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(compose("config", overrides), resolve=True)


def write_params(path: Path | None = None, overrides: Sequence[str] = ()) -> Path:
    """Write the composition of conf/ to params.yaml (what DVC's Hydra integration does for `dvc exp run`)."""
    path = path or project_root() / PARAMS_FILE
    header = "# Generated from conf/ by `perfpred params`: edit conf/, not this file.\n"
    text = header + yaml.safe_dump(composed_params(overrides), sort_keys=False)
    # atomically: a job composing params.yaml meanwhile (a running sweep, `dvc exp run`) never reads half of it
    atomic.replace_file(path, lambda temporary: Path(temporary).write_text(text))
    return path


def params_search_path() -> str:
    """The Hydra override that lets conf/train.yaml's `params` default find params.yaml at the project root.

    params.yaml is written from conf/ when missing (as `perfpred params` would), so that a job always runs
    with the same composition as the pipeline.
    """
    import sys

    path = project_root() / PARAMS_FILE
    if not path.exists():
        write_params(path)
        print(f"wrote {path} from conf/ (there was none)", file=sys.stderr)
    return f"hydra.searchpath=[file://{project_root()}]"


#: YAML files parsed in this process, by path: (text, parsed). A training job reads params.yaml and the targets'
#: files for every fit (the pooled algorithms' sources): parsing them was a quarter of a pooled SVR fit.
_PARSED: dict[str, tuple[str, object]] = {}


def read_yaml(path: Path):
    """A YAML file parsed, parsed again only when its text changed (it is read each time: no modification time to
    trust); a copy, so callers may edit it."""
    text = path.read_text()
    cached = _PARSED.get(str(path))
    if cached is None or cached[0] != text:
        cached = (text, yaml.safe_load(text))
        _PARSED[str(path)] = cached
    return copy.deepcopy(cached[1])


def load_params(path: Path | None = None) -> dict:
    """The pipeline's parameters: params.yaml if present, else conf/ composed."""
    path = path or project_root() / PARAMS_FILE
    if path.exists():
        return read_yaml(path)
    return composed_params()


def group_options(group: str) -> list[str]:
    """The option names of a config group, e.g. group_options('target') -> ['jetson-nano', ...]."""
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def group_option(group: str, name: str) -> dict:
    """One option of a config group as a plain dict; an unknown name is an error listing the known ones."""
    path = conf_dir() / group / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(group_options(group)) or "none"
        raise ConfigError(f"unknown {group} {name!r}: known {group}s are {known} (conf/{group}/)")
    return read_yaml(path)


def target_config(name: str) -> dict:
    """The configuration of one target (conf/target/<name>.yaml)."""
    return group_option("target", name)


def path(key: str, params: dict | None = None) -> Path:
    """A pipeline path from conf/paths, resolved against the project root."""
    params = params if params is not None else load_params()
    try:
        return project_root() / params["paths"][key]
    except KeyError:
        raise ConfigError(f"no path named {key!r} in conf/paths: known are {', '.join(params['paths'])}") from None
