"""Pure helpers: percentiles, Prometheus histogram quantiles, medians of repeated runs."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks.

    The same definition as numpy's default (``method="linear"``): for n values sorted
    ascending, the rank is ``(n - 1) * q / 100``. Raises ValueError on no values.
    """
    data = sorted(values)
    if not data:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100, got {q}")
    rank = (len(data) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (rank - low)


def summary(values: Sequence[float]) -> dict[str, float | int]:
    """n, min, p50, p90, p99, max and mean of ``values`` (seconds or whatever unit they carry)."""
    return {
        "n": len(values),
        "min": min(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative ``{upper bound: count}`` buckets.

    ``q`` is 0..1. Linear interpolation inside the bucket that holds the rank, the first bucket
    starting at 0; a rank in the ``+Inf`` bucket returns the largest finite bound (as Prometheus
    does). None when the histogram is empty.
    """
    bounds = sorted(buckets)
    if not bounds:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                finite = [b for b in bounds if not math.isinf(b)]
                return finite[-1] if finite else None
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (
                count - previous_count
            )
        previous_bound, previous_count = bound, count
    return bounds[-1]


def bucket_delta(after: Mapping[float, float], before: Mapping[float, float]) -> dict[float, float]:
    """Cumulative bucket counts observed between two scrapes of the same histogram."""
    return {bound: after[bound] - before.get(bound, 0.0) for bound in after}


def median_of_runs(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per key, the median of the numeric values across ``runs`` (non-numbers: the first run's).

    Nested mappings are merged the same way, key by key. Keys missing from some runs are taken
    from the runs that have them; a key whose values are all None stays None.
    """
    keys: list[str] = []
    for run in runs:
        keys.extend(k for k in run if k not in keys)
    merged: dict[str, Any] = {}
    for key in keys:
        values = [run[key] for run in runs if key in run]
        if all(isinstance(v, Mapping) for v in values):
            merged[key] = median_of_runs(values)
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            present = [float(v) for v in values if not math.isnan(v)]
            merged[key] = statistics.median(present) if present else math.nan
            if all(isinstance(v, int) for v in values) and float(merged[key]).is_integer():
                merged[key] = int(merged[key])
        else:
            numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
            if numbers and all(v is None or v in numbers for v in values):
                merged[key] = statistics.median(numbers)
            else:
                merged[key] = values[0]
    return merged
