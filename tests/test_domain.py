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
from perfpred.serve.predictor import Predictor

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
