"""When a new probe loop sends its first probe: at once for the first few, spread after."""

from __future__ import annotations

from modelroute.probing.keys import START_BURST, StartSpread


def _spread(jitter: float = 1.0) -> tuple[StartSpread, list[tuple[float, float]]]:
    asked: list[tuple[float, float]] = []

    def rand(a: float, b: float) -> float:
        asked.append((a, b))
        return b  # the latest start the range allows

    return StartSpread(jitter, rand), asked


def test_the_first_loops_probe_at_once() -> None:
    # A restarted operator's 1,000 routes on one shared vendor wait on that one loop: its first
    # probe is not delayed by up to an interval.
    spread, asked = _spread()
    assert [spread.delay(10.0, 1.0) for _ in range(START_BURST)] == [0.0] * START_BURST
    assert asked == []


def test_loops_beyond_the_burst_are_spread_over_the_jitter_capped_at_the_interval() -> None:
    spread, asked = _spread(jitter=5.0)
    for _ in range(START_BURST):
        spread.delay(10.0, 2.0)
    assert spread.delay(10.5, 2.0) == 2.0
    assert asked == [(0.0, 2.0)]


def test_a_new_window_starts_a_new_burst() -> None:
    spread, _ = _spread(jitter=1.0)
    for _ in range(START_BURST + 3):
        spread.delay(10.0, 1.0)
    assert spread.delay(10.9, 1.0) > 0.0  # still the same window
    assert spread.delay(11.0, 1.0) == 0.0  # a loop started a jitter later: no bunch to spread


def test_no_jitter_means_no_delay() -> None:
    spread, asked = _spread(jitter=0.0)
    assert all(spread.delay(10.0, 1.0) == 0.0 for _ in range(START_BURST * 3))
    assert asked == []
