"""The agent's statistics, pattern classifier and stopping rule on synthetic series (no TensorFlow)."""

from __future__ import annotations

import copy
import math
import random
import statistics

import pytest

from perfpred.measure import agent

ADAPTIVE = {"kind": "adaptive", "min_iterations": 30, "min_seconds": 0.0, "max_iterations": 500, "max_seconds": 10.0,
            "target_rel_ci": 0.01, "check_every": 10}


def noise(n: int, mean: float = 10.0, sd: float = 0.1, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mean, sd) for _ in range(n)]


def test_summary_matches_definitions():
    values = [float(v) for v in range(1, 101)]
    stats = agent.summarize(values, trim=0.1)
    assert stats["mean_ms"] == pytest.approx(50.5)
    assert stats["median_ms"] == pytest.approx(50.5)
    assert (stats["min_ms"], stats["max_ms"], stats["iterations"]) == (1.0, 100.0, 100)
    assert stats["p90_ms"] == pytest.approx(90.1)
    assert stats["p99_ms"] == pytest.approx(99.01)
    assert stats["trimmed_mean_ms"] == pytest.approx(statistics.fmean(values[10:90]))
    assert stats["std_ms"] == pytest.approx(statistics.stdev(values))
    assert stats["cv"] == pytest.approx(statistics.stdev(values) / 50.5)


def test_median_interval_shrinks_with_more_values_and_covers_the_median():
    short, long = noise(50), noise(2000)
    assert agent.median_ci_half_width(long) < agent.median_ci_half_width(short)
    assert agent.median_ci_half_width(noise(5)) == math.inf
    # coverage: the true median (10.0) falls in the interval in about 95% of repeated samples
    covered = 0
    for seed in range(200):
        sample = noise(101, seed=seed)
        half = agent.median_ci_half_width(sample)
        covered += abs(statistics.median(sample) - 10.0) <= half * 1.05
    assert covered >= 180


@pytest.mark.parametrize(
    ("series", "pattern"),
    [
        (noise(300), "white_noise"),
        ([v + 0.01 * i for i, v in enumerate(noise(300))], "drift"),
        ([v + (5.0 if i % 40 == 7 else 0.0) for i, v in enumerate(noise(300))], "high_spikes"),
        ([v - (5.0 if i % 40 == 7 else 0.0) for i, v in enumerate(noise(300))], "low_spikes"),
        (noise(5), "unclassified"),
    ],
)
def test_pattern_classifier_tells_the_four_kinds_apart(series, pattern):
    result = agent.classify_pattern(series)
    assert result["pattern"] == pattern
    if pattern == "high_spikes":
        assert result["high_spikes"] == 8 and result["low_spikes"] == 0


def test_a_constant_series_is_white_noise():
    assert agent.classify_pattern([2.0] * 50)["pattern"] == "white_noise"


def test_adaptive_schedule_stops_when_the_median_is_known_to_one_percent():
    quiet, loud = noise(200, sd=0.05), noise(200, sd=2.0)
    stops = [n for n in range(1, 201) if agent.stop_reason(quiet[:n], 0.1, ADAPTIVE)]
    assert stops[0] == 30  # converged at the first check after min_iterations
    assert agent.stop_reason(quiet[:30], 0.1, ADAPTIVE) == "converged"
    assert agent.stop_reason(quiet[:31], 0.1, ADAPTIVE) is None  # only every check_every iterations
    assert agent.stop_reason(loud[:200], 0.1, ADAPTIVE) is None  # 20% noise: +-1% needs more
    assert agent.stop_reason(loud[:150], 10.0, ADAPTIVE) == "time_cap"
    assert agent.stop_reason(noise(500, sd=2.0), 0.1, ADAPTIVE) == "max_iterations"
    assert agent.stop_reason(quiet[:30], 0.1, ADAPTIVE | {"min_seconds": 1.0}) is None


def test_fixed_schedule_counts_iterations():
    fixed = {"kind": "fixed", "iterations": 200}
    assert agent.stop_reason([1.0] * 199, 100.0, fixed) is None
    assert agent.stop_reason([1.0] * 200, 0.0, fixed) == "fixed"


def test_swap_detection():
    assert not agent.swap_activity({"pswpin": 5, "pswpout": 7}, {"pswpin": 5, "pswpout": 7}, 0)
    assert agent.swap_activity({"pswpin": 5, "pswpout": 7}, {"pswpin": 5, "pswpout": 9}, 0)
    assert agent.swap_activity({}, {}, 128)


def test_descriptor_with_lambda_is_refused_and_input_width_is_set():
    descriptor = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "InputLayer", "config": {"name": "in", "batch_shape": [None, 32, 32, 3]}},
        {"class_name": "Conv2D", "config": {"name": "c"}}]}}
    descriptor["config"]["layers"][1]["build_config"] = {"input_shape": [None, 32, 32, 3]}
    same = agent.prepare_descriptor(copy.deepcopy(descriptor), 32)
    assert same == descriptor  # already at that width: built exactly as written
    agent.prepare_descriptor(descriptor, 64)
    assert descriptor["config"]["layers"][0]["config"]["batch_shape"] == [None, 64, 64, 3]
    assert "build_config" not in descriptor["config"]["layers"][1]  # inner shapes are inferred again
    descriptor["config"]["layers"].append({"class_name": "Lambda", "config": {"name": "code", "function": "..."}})
    with pytest.raises(ValueError, match="'code' is a Lambda layer"):
        agent.prepare_descriptor(descriptor, None)
