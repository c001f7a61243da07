"""The training domain: real Jetson Nano rows in, models beyond them marked, intervals widened by how far out."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge

import train_helpers
from perfpred.model import estimators, sweep
from perfpred.serve import predict, recommend
from perfpred.serve.domain import FAR_FROM_ROWS, MAX_WIDENING, RANGE_MARGIN, Domain
from perfpred.serve.predictor import AUTO, Predictor, architecture_keys

nano_subset = train_helpers.nano_subset


@pytest.fixture(scope="module")
def fitted(nano_subset):
    features = estimators.feature_columns(nano_subset)
    return Domain.fit(nano_subset, features), features


def test_training_rows_lie_inside_and_are_not_widened(fitted, nano_subset):
    domain, _ = fitted
    verdict = domain.check(nano_subset)
    assert verdict["in_domain"].all() and not any(verdict["outside"])
    # A training row is its own nearest neighbour: no widening at all.
    assert np.allclose(verdict["widening"], 1.0)


def test_a_feature_beyond_the_widened_range_is_named(fitted, nano_subset):
    domain, features = fitted
    largest = nano_subset.loc[[nano_subset["flops"].idxmax()]].copy()
    just_beyond = largest.assign(flops=largest["flops"] * 1.2)  # within the margin (1.5x)
    far_beyond = largest.assign(flops=largest["flops"] * 20.0)
    near, far = domain.check(pd.concat([just_beyond, far_beyond], ignore_index=True)).itertuples(index=False)
    assert "flops" not in near.outside and near.widening > 1.0
    assert not far.in_domain and "flops" in far.outside
    assert far.widening >= 1.0 + math.log(20.0) - 0.01 > 1.0 + RANGE_MARGIN


def test_a_model_far_beyond_everything_gets_a_wide_interval_not_an_infinite_one(fitted, nano_subset):
    """A value a million times beyond the training range, where a feature barely varied: widened to the cap, no more."""
    domain, features = fitted
    absurd = nano_subset.head(1).assign(flops=nano_subset["flops"].max() * 1e6, params=nano_subset["params"].max() * 1e6)
    (row,) = domain.check(absurd).itertuples(index=False)
    assert not row.in_domain and {"flops", "params"} <= set(row.outside)
    assert row.widening == MAX_WIDENING


def test_inside_every_range_but_far_from_every_row(fitted, nano_subset):
    domain, features = fitted
    # The smallest network's parameters with the largest one's FLOPs: each value seen, the combination never.
    odd = nano_subset.loc[[nano_subset["flops"].idxmin()]].copy()
    odd["flops"] = nano_subset["flops"].max()
    (row,) = domain.check(odd).itertuples(index=False)
    assert not row.in_domain and row.outside == [FAR_FROM_ROWS] and row.widening > 1.0


def test_intervals_widen_outside_the_domain(fitted, nano_subset):
    domain, features = fitted
    estimator = estimators.regression_pipeline(Ridge()).fit(nano_subset[features], nano_subset["latency_ms"])
    calibration = np.log(np.linspace(0.8, 1.25, len(sweep.CALIBRATION_PROBABILITIES)))
    predictor = Predictor(estimator, "jetson-nano", "latency", "latency_ms", "ridge", features, calibration, domain=domain)
    rows = nano_subset.head(1).copy()
    rows = pd.concat([rows, rows.assign(flops=rows["flops"] * 1000)], ignore_index=True)
    low, high = predictor.predict_interval(rows, level=0.9)
    plain_low, plain_high = predictor.predict_interval(rows, level=0.9, widen=False)
    assert low[0] == pytest.approx(plain_low[0]) and high[0] == pytest.approx(plain_high[0])
    assert high[1] / low[1] > plain_high[1] / plain_low[1]
    # A predictor stored before domains existed says nothing and widens nothing.
    unknown = Predictor(estimator, "jetson-nano", "latency", "latency_ms", "ridge", features, calibration)
    assert unknown.check_domain(rows)["in_domain"].isna().all()
    assert unknown.predict_interval(rows)[1] == pytest.approx(plain_high)


def test_auto_intervals_are_calibrated_on_unseen_families_for_an_architecture_the_training_rows_lack(fitted, nano_subset):
    """AUTO: an architecture the training rows hold (at any input size) gets the random splits' intervals, any other
    the wider ones of families never seen; a predictor stored without its architectures keeps the random ones."""
    domain, features = fitted
    estimator = estimators.regression_pipeline(Ridge()).fit(nano_subset[features], nano_subset["latency_ms"])
    random_splits = np.log(np.linspace(0.9, 1.1, len(sweep.CALIBRATION_PROBABILITIES)))
    families = np.log(np.linspace(0.6, 1.6, len(sweep.CALIBRATION_PROBABILITIES)))
    known = nano_subset.iloc[1:]
    predictor = Predictor(estimator, "jetson-nano", "latency", "latency_ms", "ridge", features, random_splits,
                          domain_calibrations={"families": families},
                          architectures=frozenset(k for k in architecture_keys(known) if k is not None))
    seen = known.iloc[[0]].assign(flops=known["flops"].iloc[0] * 1.3)  # the same architecture at another size
    other = known.iloc[[0]].assign(conv_params=known["conv_params"].iloc[0] + 64)  # a layer wider: not trained on
    rows = pd.concat([seen, other], ignore_index=True)
    assert architecture_keys(seen.assign(bn_params=np.nan)) == architecture_keys(seen.drop(columns="layers")) == [None]
    answer = predictor.answer(rows, 0.9, AUTO)
    assert answer["calibration"].tolist() == ["random", "families"]
    width = answer["latency_ms_high"] / answer["latency_ms_low"]
    assert np.log(width[1]) > 3 * np.log(width[0])  # the families' quantiles, not the random splits'
    random_answer = predictor.answer(rows, 0.9, None)
    assert random_answer["calibration"].tolist() == ["random"] * 2
    assert random_answer["latency_ms_high"][1] == pytest.approx(answer["latency_ms_high"][0] / answer["latency_ms"][0]
                                                                * answer["latency_ms"][1])
    older = Predictor(estimator, "jetson-nano", "latency", "latency_ms", "ridge", features, random_splits,
                      domain_calibrations={"families": families})
    assert older.answer(rows, 0.9, AUTO)["calibration"].tolist() == ["random"] * 2
    no_families = Predictor(estimator, "jetson-nano", "latency", "latency_ms", "ridge", features, random_splits,
                            architectures=frozenset())
    assert no_families.answer(rows, 0.9, AUTO)["calibration"].tolist() == ["random"] * 2
    lines = predict.format_table(pd.DataFrame({
        "target": ["jetson-nano"], "toolchain": ["tf"], "latency_ms": [10.0], "latency_ms_low": [6.0],
        "latency_ms_high": [16.0], "latency_predictor": ["ridge v1"], "latency_intervals": ["families"]})).splitlines()
    assert "latency: ridge v1  intervals: families" in lines[1]
    both = pd.DataFrame({"target": ["jetson-nano"] * 2, "toolchain": ["tf"] * 2, "latency_ms": [10.0] * 2,
                         "latency_predictor": ["ridge v1"] * 2, "memory_mb": [9.0] * 2, "memory_predictor": ["svr v2"] * 2,
                         "latency_intervals": ["families", "random"], "memory_intervals": ["families", "families"]})
    lines = predict.format_table(both).splitlines()
    assert "latency: ridge v1  memory: svr v2  intervals: families" in lines[1]  # said once when it holds for all
    assert "latency: ridge v1  memory: svr v2 (intervals: families)" in lines[2]  # the memory alone: after it
    assert lines[2].count("intervals") == 1 and lines[1].count("intervals") == 1


def test_predict_and_recommend_mark_rows_outside():
    table = pd.DataFrame({
        "target": ["jetson-nano", "jetson-tx2"], "toolchain": ["tf", "tf"],
        "latency_ms": [10.0, 50.0], "latency_ms_low": [8.0, 20.0], "latency_ms_high": [12.0, 120.0],
        "latency_predictor": ["poly v1", "poly v1"], "in_domain": [True, False], "outside": [[], ["flops", "layers"]],
    })  # fmt: skip
    lines = predict.format_table(table).splitlines()
    assert lines[0].endswith("in training domain")
    assert lines[1].endswith("yes") and lines[2].endswith("NO (outside: flops, layers)")
    records = predict.json_records(table)
    assert records[1]["in_domain"] is False and records[1]["outside"] == ["flops", "layers"]
    text = recommend.format_recommendations(recommend.recommend(table, {"latency_ms": 20.0}))
    assert "jetson-tx2 (tf): fails" in text and "[in training domain: NO (outside: flops, layers)]" in text
    assert predict.OUTSIDE_NOTE in text
