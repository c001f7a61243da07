"""Every Hydra configuration composes, and params.yaml is the composition of conf/."""

import pytest
import yaml

from perfpred import config

from conftest import REPO_ROOT


def test_params_yaml_is_the_composition_of_conf():
    committed = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    assert committed == config.composed_params(), "params.yaml is stale: run `perfpred params` and commit it"


def _primary_configs() -> list[str]:
    return sorted(p.stem for p in (REPO_ROOT / "conf").glob("*.yaml"))


def _group_options() -> list[tuple[str, str]]:
    groups = sorted(p.name for p in (REPO_ROOT / "conf").iterdir() if p.is_dir())
    return [(group, option) for group in groups for option in config.group_options(group)]


@pytest.mark.parametrize("name", _primary_configs())
def test_every_primary_config_composes(name):
    assert config.compose(name) is not None


@pytest.mark.parametrize(("group", "option"), _group_options())
def test_every_group_option_composes(group, option):
    if group == "target":
        # Targets are packaged under a key in config.yaml (imported./local.); select one explicitly.
        cfg = config.compose("config", [f"+target@selected={option}"])
        assert cfg.selected.name == option
    else:
        cfg = config.compose("config", [f"+{group}={option}"] if group not in config.compose("config") else [f"{group}={option}"])
        assert cfg[group] is not None


@pytest.mark.parametrize("name", config.group_options("target"))
def test_targets_say_what_they_are(name):
    target = config.target_config(name)
    assert target["name"] == name
    assert target["kind"] in {"imported", "local", "ssh", "spec"}
    assert {"hardware", "runtime", "toolchain", "metrics"} <= set(target)
    assert set(target["metrics"]) <= {"latency", "memory", "power"}


@pytest.mark.parametrize("name", config.group_options("metric"))
def test_metrics_name_their_column_with_its_unit(name):
    metric = config.group_option("metric", name)
    assert metric["column"] == f"{name}_{metric['unit'].lower()}"


def test_unknown_options_list_the_known_ones():
    with pytest.raises(config.ConfigError, match=r"unknown target 'jetson-nanoo': known targets are .*jetson-nano"):
        config.target_config("jetson-nanoo")
    with pytest.raises(config.ConfigError, match="no path named 'nowhere'"):
        config.path("nowhere")
