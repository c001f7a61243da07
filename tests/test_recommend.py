"""Ranking targets against requirements: verdicts, margins and uncertain marking (pure, no registry)."""

import argparse

import pandas as pd
import pytest

from perfpred.serve import recommend


def predictions() -> pd.DataFrame:
    """Three targets: fast and small, slow, and one whose latency interval straddles the limit."""
    return pd.DataFrame(
        {
            "target": ["jetson-nano", "jetson-tx2", "jetson-agx-xavier"],
            "toolchain": ["tensorflow-1.x"] * 3,
            "latency_ms": [80.0, 28.0, 12.0],
            "latency_ms_low": [70.0, 24.0, 10.0],
            "latency_ms_high": [90.0, 33.0, 14.0],
            "memory_mb": [400.0, 300.0, 900.0],
            "memory_mb_low": [350.0, 250.0, 800.0],
            "memory_mb_high": [450.0, 350.0, 1000.0],
        }
    )


def test_targets_that_meet_come_first_ranked_by_latency():
    table = recommend.recommend(predictions(), {"latency_ms": 30.0, "memory_mb": 1000.0})
    assert list(table["target"]) == ["jetson-agx-xavier", "jetson-tx2", "jetson-nano"]
    assert list(table["rank"][:2]) == [1, 2] and pd.isna(table["rank"][2])
    assert list(table["verdict"]) == ["meets", "meets?", "fails"]
    assert table["uncertain"].tolist() == [False, True, False]


def test_failing_requirement_is_named_with_its_margin():
    table = recommend.recommend(predictions(), {"latency_ms": 30.0, "memory_mb": 500.0}).set_index("target")
    xavier = table.loc["jetson-agx-xavier"]
    assert not xavier["meets"] and xavier["verdict"] == "fails"
    assert "memory_mb 900 > 500 (+400, +80%)" in xavier["reasons"]
    assert "latency_ms" not in xavier["reasons"]
    nano = table.loc["jetson-nano"]
    assert "latency_ms 80 > 30 (+50, +167%)" in nano["reasons"]


def test_failure_whose_interval_reaches_below_the_limit_is_uncertain():
    table = recommend.recommend(predictions(), {"latency_ms": 26.0}).set_index("target")
    assert table.loc["jetson-tx2", "verdict"] == "fails?"
    assert "uncertain: interval [24, 33]" in table.loc["jetson-tx2", "reasons"]
    assert table.loc["jetson-nano", "verdict"] == "fails"


def test_failing_targets_are_listed_closest_first():
    table = recommend.recommend(predictions(), {"latency_ms": 5.0})
    assert list(table["target"]) == ["jetson-agx-xavier", "jetson-tx2", "jetson-nano"]
    assert not table["meets"].any()


def test_missing_prediction_fails_the_requirement():
    table = predictions()
    table["power_mw"] = [5000.0, float("nan"), 9000.0]
    ranked = recommend.recommend(table, {"power_mw": 10000.0}).set_index("target")
    assert ranked.loc["jetson-tx2", "verdict"] == "fails"
    assert "no predictor" in ranked.loc["jetson-tx2", "reasons"]


def test_rank_by_memory():
    table = recommend.recommend(predictions(), {"latency_ms": 100.0}, rank_by="memory_mb")
    assert list(table["target"]) == ["jetson-tx2", "jetson-nano", "jetson-agx-xavier"]


def test_requirements_from_arguments():
    args = argparse.Namespace(max_latency_ms=30.0, max_memory_mb=None, max_power_mw=None)
    assert recommend.requirements_from_args(args) == {"latency_ms": 30.0}
    with pytest.raises(ValueError, match="--max-memory-mb must be a positive"):
        recommend.requirements_from_args(argparse.Namespace(max_latency_ms=None, max_memory_mb=-1.0))
    with pytest.raises(ValueError, match="no requirement given"):
        recommend.recommend(predictions(), {})


def test_text_output_names_ranked_and_failing_targets():
    text = recommend.format_recommendations(recommend.recommend(predictions(), {"latency_ms": 30.0}))
    assert text.index("jetson-agx-xavier") < text.index("jetson-tx2") < text.index("jetson-nano")
    assert "jetson-nano (tensorflow-1.x): fails: latency_ms 80 > 30" in text
    assert "jetson-tx2: meets?: latency_ms 28 <= 30" in text
