"""Pure helpers of the benchmark (bench/stats.py): percentiles, histogram quantiles, medians."""

from __future__ import annotations

import math

import pytest
from bench.stats import bucket_delta, histogram_quantile, median_of_runs, percentile, summary


def test_percentile_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 99) == pytest.approx(3.97)


def test_percentile_of_one_value_and_of_none() -> None:
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_names_every_statistic() -> None:
    s = summary([0.1, -0.2, 0.3])
    assert s["n"] == 3 and s["min"] == -0.2 and s["max"] == 0.3
    assert s["p50"] == 0.1
    assert s["mean"] == pytest.approx(0.2 / 3)


def test_histogram_quantile_like_prometheus() -> None:
    # 10 observations: 5 in (0, 0.01], 4 in (0.01, 0.1], 1 in (0.1, 1].
    buckets = {0.01: 5.0, 0.1: 9.0, 1.0: 10.0, math.inf: 10.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert histogram_quantile(0.9, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.55)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.005)


def test_histogram_quantile_in_the_inf_bucket_and_empty() -> None:
    assert histogram_quantile(0.99, {1.0: 1.0, math.inf: 10.0}) == 1.0
    assert histogram_quantile(0.5, {1.0: 0.0, math.inf: 0.0}) is None
    assert histogram_quantile(0.5, {}) is None


def test_bucket_delta_is_the_window_between_scrapes() -> None:
    before = {0.1: 3.0, math.inf: 4.0}
    after = {0.1: 10.0, math.inf: 12.0}
    assert bucket_delta(after, before) == {0.1: 7.0, math.inf: 8.0}


def test_median_of_runs_per_key_and_nested() -> None:
    runs = [
        {"a": 1.0, "n": 3, "name": "x", "nested": {"b": 10.0}, "maybe": None},
        {"a": 3.0, "n": 5, "name": "x", "nested": {"b": 30.0}, "maybe": 2.0},
        {"a": 2.0, "n": 4, "name": "x", "nested": {"b": 20.0}, "maybe": 4.0},
    ]
    merged = median_of_runs(runs)
    assert merged["a"] == 2.0
    assert merged["n"] == 4 and isinstance(merged["n"], int)
    assert merged["name"] == "x"
    assert merged["nested"] == {"b": 20.0}
    assert merged["maybe"] == 3.0


def test_median_of_runs_ignores_nan_and_keeps_missing_keys() -> None:
    merged = median_of_runs([{"a": math.nan, "b": 1.0}, {"a": 2.0}])
    assert merged["a"] == 2.0
    assert merged["b"] == 1.0
