"""Every Hydra configuration composes, and params.yaml is the composition of conf/."""

import pytest
import yaml

from perfpred import config

from conftest import REPO_ROOT


def test_params_yaml_is_the_composition_of_conf():
    committed = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    assert committed == config.composed_params(), "params.yaml is stale: run `perfpred params` and commit it"


def _group_options() -> list[tuple[str, str]]:
    groups = sorted(p.name for p in (REPO_ROOT / "conf").iterdir() if p.is_dir())
    return [(group, option) for group in groups for option in config.group_options(group)]


def _contains(node, expected) -> bool:
    """Every key of `expected` is in `node` with the same value (nested mappings compared key by key)."""
    if isinstance(expected, dict):
        return all(key in node and _contains(node[key], value) for key, value in expected.items())
    return node == expected


def test_the_pipeline_config_holds_every_stage_s_settings():
    params = config.composed_params()
    assert list(params) == ["paths", "zoo", "imported", "local", "measure", "kernel_zoo", "train", "tune", "published"]
    assert sorted(params["imported"]) == ["jetson-agx-xavier", "jetson-nano", "jetson-tx2"]
    assert sorted(params["local"]) == ["host-cpu-onnxruntime", "host-cpu-tf", "host-cpu-tflite"]
    assert params["train"]["seeds"] == 20 and params["train"]["outputs"] is False
    assert params["tune"]["first_seed"] >= params["train"]["seeds"]


def test_a_job_composes_params_yaml_then_its_selection(tmp_path, monkeypatch):
    """conf/train.yaml reads params.yaml (not conf/train/): what `perfpred params` or `dvc exp run -S` wrote wins."""
    import shutil

    shutil.copytree(REPO_ROOT / "conf", tmp_path / "conf")
    monkeypatch.setenv("PERFPRED_ROOT", str(tmp_path))
    config.write_params(overrides=["train.seeds=2", "train.algorithms=[poly]"])
    job = config.compose("train", ["target=jetson-tx2", "metric=memory", "algorithm=svr", "train.n_jobs=1"])
    assert (job.train.seeds, list(job.train.algorithms), job.train.n_jobs) == (2, ["poly"], 1)
    assert (job.target.name, job.metric.column, job.algorithm.name) == ("jetson-tx2", "memory_mb", "svr")


@pytest.mark.parametrize(("group", "option"), _group_options())
def test_every_group_option_composes_with_its_values(group, option):
    expected = {k: v for k, v in yaml.safe_load((REPO_ROOT / "conf" / group / f"{option}.yaml").read_text()).items()
                if k != "defaults"}
    if group in ("target", "kernels"):
        # Targets are packaged under a key in config.yaml (imported./local.), fusion rules are read per target:
        # select one explicitly.
        node = config.compose("config", [f"+{group}@selected={option}"]).selected
    elif group == "tuned":
        # A tuned file (<target>-<metric>-<algorithm>) goes into its job's algorithm.estimator.
        target, metric, algorithm = next((t, m, option[len(t) + len(m) + 2:]) for t in config.group_options("target")
                                         for m in config.group_options("metric") if option.startswith(f"{t}-{m}-"))
        node = config.compose("train", [f"target={target}", f"metric={metric}", f"algorithm={algorithm}"]).algorithm.estimator
    elif group == "algorithm":  # as written: without the default target's conf/tuned/ file for it
        node = config.compose("train", [f"{group}={option}", "~tuned"])[group]
    elif group in ("metric", "store"):  # groups of the job config (conf/train.yaml)
        node = config.compose("train", [f"{group}={option}"])[group]
    else:
        node = config.compose("config", [f"{group}={option}"])[group]
    from omegaconf import OmegaConf

    # as written: a store's URI is an environment interpolation, the pooled algorithm reads ${target.name}
    assert _contains(OmegaConf.to_container(node, resolve=False), expected), (group, option)


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


def test_a_yaml_file_is_parsed_again_once_its_text_changed_and_callers_get_their_own_copy(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("paths: {zoo: data/zoo}\nseeds: [1, 2]\n")
    first = config.load_params(path)
    first["seeds"].append(3)  # a caller that edits what it read edits its own copy
    assert config.load_params(path) == {"paths": {"zoo": "data/zoo"}, "seeds": [1, 2]}
    path.write_text("paths: {zoo: data/new}\nseeds: [1, 2]\n")  # as long, and within the same clock tick
    assert config.load_params(path)["paths"]["zoo"] == "data/new"
