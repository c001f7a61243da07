"""The three test domains (perfpred.model.domains), the champion score on them, and the memory features of describe."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import train_helpers
from perfpred.features import memory
from perfpred.features.description import describe
from perfpred.model import domains

REPO = train_helpers.REPO
ARCHITECTURES = REPO / "data/raw/jetson-bouzidi/architectures"
FRACTIONS = {"sizes": 0.2, "architectures": 0.2, "synthetic": 0.2}
nano_subset = train_helpers.nano_subset


def _table() -> pd.DataFrame:
    """Ten architectures of two families at four widths each, and eight synthetic configurations at one width."""
    rows = [{"model": f"Net{family}-{depth}", "family": f"Net{family}", "input_width": width, "synthetic": False}
            for family in "AB" for depth in range(5) for width in (32, 64, 128, 224)]
    rows += [{"model": f"basic_model_{width}_{layers}", "family": "basic_model", "input_width": width, "synthetic": True}
             for width, layers in [(32, 4), (64, 7), (128, 9), (224, 3), (75, 5), (90, 6), (100, 8), (112, 10)]]
    return pd.DataFrame(rows)


def test_architecture_drops_only_a_trailing_input_width():
    assert domains.architecture("ResNet50_224", 224) == "ResNet50"
    assert domains.architecture("ResNet-50", 224) == "ResNet-50"
    assert domains.architecture("basic_model_600_56", 600) == "basic_model_600_56"  # 56 is its layer count
    assert domains.architecture("basic_model_c4_k3_f32_s1_96", 96) == "basic_model_c4_k3_f32_s1"


@pytest.mark.parametrize("seed", range(6))
def test_each_domain_holds_out_what_it_names(seed):
    table = _table()
    roles = domains.split(table, seed, FRACTIONS)
    names = domains.architectures(table)
    train = roles == domains.TRAIN
    trained_names = set(names[train])
    assert set(names[roles == "architectures"]).isdisjoint(trained_names)  # every size of it held out
    assert set(table.loc[roles == "architectures", "family"]) <= set(table.loc[train, "family"])  # its family kept
    assert set(names[roles == "synthetic"]).isdisjoint(trained_names)
    assert table.loc[roles == "synthetic", "synthetic"].all() and not table.loc[roles == "architectures", "synthetic"].any()
    sized = roles == "sizes"
    assert sized.any() and set(names[sized]) <= trained_names  # seen architectures at widths never seen
    for name, width in zip(names[sized], table.loc[sized, "input_width"], strict=True):
        assert width not in set(table.loc[train & (names == name), "input_width"])
    assert all((roles == domain).any() for domain in domains.DOMAINS)


def test_the_split_depends_on_the_seed_only():
    table = _table()
    assert (domains.split(table, 3, FRACTIONS) == domains.split(table, 3, FRACTIONS)).all()
    assert any((domains.split(table, 3, FRACTIONS) != domains.split(table, s, FRACTIONS)).any() for s in range(4, 8))


def test_a_predictor_that_memorises_architectures_fails_the_architecture_domain_only():
    """A 1-nearest-neighbour on (architecture code, width) is right on seen architectures, wrong on unseen ones."""
    from sklearn.neighbors import KNeighborsRegressor

    table = _table()
    code = {name: index * 1000.0 for index, name in enumerate(sorted(set(domains.architectures(table))))}
    table["code"] = [code[n] for n in domains.architectures(table)]
    table["width"] = table["input_width"].astype(float)
    measured = table["code"] + 10.0 + 0.0 * table["width"]  # a constant per architecture: sizes do not matter
    result = domains.evaluate(KNeighborsRegressor(n_neighbors=1), table, ["code", "width"], measured.to_numpy(), range(3), FRACTIONS)
    summary = domains.summary(result)
    assert summary["mape_sizes"] == pytest.approx(0.0)
    assert summary["mape_architectures"] > 1.0 and summary["mape_synthetic"] > 1.0
    assert summary["rows_sizes"] + summary["rows_architectures"] + summary["rows_synthetic"] == len(result.rows)


def test_champion_score_weighs_the_splits_and_drops_the_missing_ones():
    metrics = {"mape_mean": 2.0, "mape_sizes": 4.0, "mape_architectures": 8.0, "mape_synthetic": float("nan")}
    weights = {"random": 0.2, "sizes": 0.3, "architectures": 0.3, "synthetic": 0.2}
    assert domains.champion_score(metrics, weights) == pytest.approx((0.2 * 2 + 0.3 * 4 + 0.3 * 8) / 0.8)
    with pytest.raises(ValueError, match="champion weights name \\['unseen'\\]"):
        domains.champion_score(metrics, {"unseen": 1.0})


def test_the_registry_elects_on_the_champion_score():
    from perfpred.serve import registry

    assert registry.champion_score({"champion_score": "3.5", "mape_mean": "1.0"}, 0.5) == 3.5
    assert registry.champion_score({"mape_mean": "2.0", "mape_unseen_family": "4.0"}, 0.5) == 3.0  # older versions


def test_evaluate_logs_every_domain_with_coverage(nano_subset):
    from perfpred import config
    from perfpred.model import train

    table = pd.concat([nano_subset, nano_subset.assign(model="basic_model_64_3", synthetic=True, family="basic_model").head(12)
                       .assign(model=lambda t: [f"basic_model_{w}_{i}" for i, w in enumerate(t["input_width"])])],
                      ignore_index=True)
    cfg = config.compose("train", ["algorithm=poly", "train.seeds=3", "train.domain_seeds=2", "train.n_jobs=1"])
    metrics = train.evaluate(table, "jetson-nano", "latency", cfg.algorithm, cfg.train).metrics
    for domain in domains.DOMAINS:
        assert np.isfinite(metrics[f"mape_{domain}"]) and metrics[f"rows_{domain}"] > 0
        assert f"coverage_90_{domain}" in metrics
    assert metrics["champion_score"] == pytest.approx(domains.champion_score(metrics, dict(cfg.train.champion_weights)))


def test_summary_shows_the_published_figures_beside_the_champion(tmp_path):
    """The champion's domain figures with their spread over the domain seeds where logged, the published beside."""
    from perfpred.model import summary

    entry = {"accuracy_mean": 95.0, "accuracy_best": 96.0, "mape_std": 0.5, "mape_mean": 5.0, "mape_median": 5.0,
             "mape_p5": 4.0, "mape_p95": 6.0, "mape_worst": 7.0, "best_seed": 1, "mape_unseen_family": 9.0,
             "mape_sizes": 3.25, "mape_architectures": 6.5, "mape_synthetic": 7.75, "mape_synthetic_std": 2.5,
             "champion_score": 5.1}
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/jetson-tx2-latency.json").write_text(json.dumps(
        {"target": "jetson-tx2", "metric": "latency", "rows": 10, "champion": "svr", "algorithms": {"svr": entry}}))
    summary.write_report(tmp_path / "metrics", tmp_path / "summary.md")
    text = (tmp_path / "summary.md").read_text()
    assert "| jetson-tx2 | svr | 3.2 / 6.5 / 7.8 ± 2.5 (9.6 / 8.9 / 13.1) |" in text
    assert "Bouzidi" in text


def test_summary_shows_errors_beyond_100_percent_as_mape_never_as_negative_accuracy(tmp_path):
    from perfpred.model import summary

    entry = {"accuracy_mean": 88.0, "accuracy_best": 93.0, "mape_std": 3.0, "mape_mean": 12.0, "mape_median": 11.0,
             "mape_p5": 8.0, "mape_p95": 16.0, "mape_worst": 17.0, "best_seed": 3, "mape_unseen_family": 309.0,
             "mape_synthetic_from_real": 807.4}
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/host-cpu-tf-latency.json").write_text(json.dumps(
        {"target": "host-cpu-tf", "metric": "latency", "rows": 98, "champion": "svr", "algorithms": {"svr": entry}}))
    summary.write_report(tmp_path / "metrics", tmp_path / "summary.md")
    text = (tmp_path / "summary.md").read_text()
    assert "| 309.0 " in text and "| 309.00 | 807.4 |" in text
    assert not re.search(r"\| -\d", text), "a negative figure in the report"


def test_liveness_frees_a_chain_and_keeps_a_residual_branch():
    chain, residual = memory.Schedule(), memory.Schedule()
    for schedule in (chain, residual):
        schedule.step("in", (10,), [])
        schedule.step("a", (10,), ["in"])
        schedule.step("b", (10,), ["a"])
    chain.step("c", (10,), ["b"])
    residual.step("c", (10,), ["b", "in"])  # x + f(x): the input stays alive across the branch
    chain.outputs = residual.outputs = {"c"}
    assert memory.peak_live_bytes(chain) == 2 * 10 * memory.BYTES_PER_ELEMENT
    assert memory.peak_live_bytes(residual) == 3 * 10 * memory.BYTES_PER_ELEMENT


def test_describe_adds_memory_features():
    resnet = describe(ARCHITECTURES / "ResNet-50_224.json")
    assert resnet["weight_bytes"] == resnet["params"] * 4
    # the largest tensor alive with the one it is computed from, at most every activation at once
    assert 2 * resnet["max_activation"] * 4 <= resnet["peak_activation_bytes"] < resnet["activations"] * 4
    # ResNet-50's largest im2col: the 7x7 stem, 112 x 112 outputs x 49 x 3 inputs, or a 3x3 stage-1 conv on 64 channels
    assert resnet["conv_workspace_bytes"] == max(112 * 112 * 49 * 3, 56 * 56 * 9 * 64) * 4
    bigger = describe(ARCHITECTURES / "ResNet-50_224.json", input_size=448)
    assert bigger["peak_activation_bytes"] == 4 * resnet["peak_activation_bytes"]
    assert bigger["weight_bytes"] == resnet["weight_bytes"]


def test_descriptor_features_cover_rows_whose_descriptor_matches():
    table = pd.DataFrame({"model": ["ResNet-50", "ResNet-50", "NoSuchNet", "ResNet-18"], "input_width": [224, 448, 224, 224],
                          "params": [describe(ARCHITECTURES / "ResNet-50_224.json")["params"]] * 3 + [1.0]})
    features = memory.descriptor_features(table, ARCHITECTURES)
    assert features.loc[:1, "peak_activation_bytes"].notna().all()
    assert features.loc[1, "peak_activation_bytes"] == 4 * features.loc[0, "peak_activation_bytes"]
    assert features.loc[2:].isna().all().all()  # no descriptor; a descriptor of another network (params differ)
    assert memory.descriptor_path(ARCHITECTURES, "ResNet-50") == Path(ARCHITECTURES / "ResNet-50_224.json")


def test_intervals_are_calibrated_per_domain(nano_subset):
    from perfpred import config
    from perfpred.model import train

    cfg = config.compose("train", ["algorithm=poly", "train.seeds=3", "train.domain_seeds=3", "train.n_jobs=1"])
    evaluation = train.evaluate(nano_subset, "jetson-nano", "latency", cfg.algorithm, cfg.train)
    predictor = evaluation.predictor
    assert set(predictor.domain_calibrations) == {*domains.DOMAINS, domains.FAMILIES}
    low, high = predictor.predict_interval(nano_subset.head(3), 0.9)
    wide_low, wide_high = predictor.predict_interval(nano_subset.head(3), 0.9, domain="architectures")
    assert (wide_high / wide_low > high / low).all()  # a new architecture is less certain than a random row
    family_low, family_high = predictor.predict_interval(nano_subset.head(3), 0.9, domain=domains.FAMILIES)
    assert (family_high / family_low > high / low).all()  # and a family never seen less still than a random row
    answer = predictor.answer(nano_subset.head(3), 0.9, domains.FAMILIES)
    assert np.allclose(answer["latency_ms_low"], family_low) and np.allclose(answer["latency_ms_high"], family_high)
    assert 0.0 < evaluation.metrics["coverage_90_families"] <= 1.0
    with pytest.raises(ValueError, match="no interval calibration for domain 'planets'"):
        predictor.predict_interval(nano_subset.head(3), 0.9, domain="planets")


def _board(networks: range, widths: tuple, scale: float) -> pd.DataFrame:
    rows = [{"params": 1000.0 * n, "layers": 10.0 + n, "input_size": 3.0 * w * w, "memory_mb": scale * (100 + n + w)}
            for n in networks for w in widths]
    return pd.DataFrame(rows)


def test_crossboard_borrows_only_what_no_evaluation_holds_out():
    from sklearn.linear_model import LinearRegression

    from perfpred.model.crossboard import CrossBoardRegressor

    own = _board(range(30), (32, 64), 1.0)
    sibling = _board(range(40), (32, 64, 128), 2.0)  # ten more networks, one more width, twice the memory
    features = ["params", "layers", "input_size"]
    held = own.index[(own["params"] == 0) | (own["input_size"] == 3.0 * 64 * 64) & (own["params"] == 1000.0)]
    train = own.drop(index=held)
    estimator = CrossBoardRegressor(LinearRegression(), [sibling[features].assign(target=sibling["memory_mb"])], own[features])
    estimator.fit(train[features], train["memory_mb"].to_numpy())
    slope, intercept, pairs = estimator.mappings_[0]
    assert pairs == len(train) and slope == pytest.approx(1.0) and intercept == pytest.approx(-np.log(2.0))
    # borrowed: width 128 of the 29 networks with training rows, every width of the 10 networks the board lacks;
    # not network 0 (held out whole), not network 1 at 64 (a held-out row), not the pairs the board trains on
    assert estimator.borrowed_rows_ == 29 + 10 * 3


def test_crossboard_keeps_a_board_without_siblings_as_it_is(nano_subset):
    from perfpred.model import crossboard

    estimator = object()
    assert crossboard.wrap(estimator, "host-cpu-tf", "memory", nano_subset, ["jetson-nano", "jetson-tx2"]) is estimator


@pytest.mark.parametrize(("target", "metric"), [("jetson-nano", "latency"), ("jetson-tx2", "latency"), ("jetson-agx-xavier", "latency"),
                                             ("jetson-tx2", "memory"), ("jetson-agx-xavier", "memory"), ("jetson-tx2", "power")])
def test_jetson_svr_leaves_out_the_layer_counts_of_conv_and_fc(target, metric):
    # conf/tuned (README.md): e.g. the domain-2 figure of latency svr 7.25/5.65/5.65 -> 5.99/5.09/5.16 % (seeds 1000-1019)
    from perfpred import config
    from perfpred.data import bouzidi, schema
    from perfpred.model import estimators, train

    cfg, tuned = train.tuned_config(target, metric, "svr")
    assert tuned and set(cfg.algorithm.estimator.drop) == {"fc_params", "fc_layers", "conv_layers"}
    pipeline = estimators.build(cfg.algorithm).regressor  # LogTargetRegressor -> pipeline
    # the board's rows from the raw data in the repository (a fresh clone has no data/measurements yet)
    board = config.target_config(target)["dataset"]["board"]
    table, _ = bouzidi.read_board(config.project_root() / "data/raw/jetson-bouzidi", board, [metric])
    table = table[table[schema.metric_column(metric)].notna()].head(50)
    columns = pipeline.steps[0][1].fit(table[estimators.feature_columns(table)]).get_feature_names_out()
    assert not {"fc_params", "fc_layers", "conv_layers"} & set(columns) and "flops/layers" in columns


def test_agx_xavier_memory_xgb_is_monotone_in_params_input_size_and_activations():
    from perfpred.model import train

    cfg, tuned = train.tuned_config("jetson-agx-xavier", "memory", "xgb")
    assert tuned and dict(cfg.algorithm.estimator.regressor.monotone_constraints) == {"activations": 1, "input_size": 1, "params": 1}
    assert list(cfg.algorithm.estimator.ratios) == ["params/layers", "activations/input_size"]
