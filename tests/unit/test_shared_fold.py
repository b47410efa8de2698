"""A probe result is folded once per probe: routes that share a probe share one folded record."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from modelroute.api.models import ModelRouteSpec
from modelroute.control.feed import HealthFeed
from modelroute.core.health import HealthRecord
from modelroute.core.types import ProbeFailure, RouteRef
from modelroute.metrics import Metrics
from modelroute.probing.prober import ProbeResult
from tests.unit.test_probe_failure_metrics import Source, count

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def spec(failure_threshold: int = 2, drill: dict[str, Any] | None = None) -> ModelRouteSpec:
    raw: dict[str, Any] = {
        "service": {"name": "chat-llm", "port": 80},
        "probe": {"failureThreshold": failure_threshold},
        "backends": [
            {"name": "vendor", "priority": 0, "model": "m", "endpoint": "http://v.test"},
            {"name": "inhouse", "priority": 1, "model": "m", "endpoint": "http://i.test"},
        ],
    }
    if drill is not None:
        raw["drill"] = drill
    return ModelRouteSpec.model_validate(raw)


class Route:
    """A route's feed and how often it was woken."""

    def __init__(
        self,
        source: Source,
        metrics: Metrics,
        name: str,
        route_spec: ModelRouteSpec,
        records: dict[str, HealthRecord] | None = None,
    ) -> None:
        self.wakes = 0
        self.feed = HealthFeed(source, metrics, dict(records or {}), self._wake)
        self.feed.start(RouteRef("ai", name, name), route_spec)

    def _wake(self) -> None:
        self.wakes += 1

    def vendor(self) -> HealthRecord:
        return self.feed.records["vendor"]


def ok(at: int) -> ProbeResult:
    return ProbeResult(True, 5, "ok", T0 + timedelta(seconds=at))


def down(at: int) -> ProbeResult:
    return ProbeResult(
        False, None, "503", T0 + timedelta(seconds=at), reason=ProbeFailure.UNAVAILABLE
    )


async def test_routes_on_one_probe_share_one_record_and_each_is_counted() -> None:
    source, metrics = Source(), Metrics()
    routes = [Route(source, metrics, f"r{i}", spec()) for i in range(50)]
    assert len(source.subscribers["http://v.test"]) == 1  # one subscriber for all 50
    source.push("http://v.test", ok(0))
    first = routes[0].vendor()
    assert first.healthy is True
    assert all(r.vendor() is first for r in routes)
    assert all(r.wakes == 1 for r in routes)
    for at in range(1, 6):  # successes past the success threshold
        source.push("http://v.test", ok(at))
    woken = routes[0].wakes
    source.push("http://v.test", ok(6))  # nothing material: nobody wakes
    assert all(r.wakes == woken for r in routes)
    source.push("http://v.test", down(7))  # below the threshold: status-worthy, still a wake
    source.push("http://v.test", down(8))  # the deciding one
    assert all(r.vendor().healthy is False for r in routes)
    assert all(r.vendor() is routes[0].vendor() for r in routes)
    assert all(r.wakes == woken + 2 for r in routes)
    assert all(count(metrics, f"r{i}", "vendor", "Unavailable") == 2 for i in range(50))


async def test_other_thresholds_and_other_histories_fold_on_their_own() -> None:
    source, metrics = Source(), Metrics()
    strict = Route(source, metrics, "strict", spec(failure_threshold=1))
    usual = Route(source, metrics, "usual", spec())
    source.push("http://v.test", ok(0))
    # Started later, from a status that says the vendor was already failing once (after the
    # last result: that one is not taken again).
    after_ok = T0 + timedelta(seconds=0.5)
    late = Route(
        source, metrics, "late", spec(), {"vendor": HealthRecord(True, 1, 0, None, after_ok)}
    )
    source.push("http://v.test", down(1))
    assert strict.vendor().healthy is False  # threshold 1
    assert usual.vendor().healthy is True
    assert usual.vendor().consecutive_failures == 1
    assert late.vendor().healthy is False  # its second failure in a row
    equal = dataclasses.replace(usual.vendor())  # equal, not the same object
    assert equal is not usual.vendor()
    twin = Route(source, metrics, "twin", spec(), {"vendor": equal})
    source.push("http://v.test", ok(2))
    assert twin.vendor() is usual.vendor()  # equal records fold once, into one record
    assert late.vendor() is not usual.vendor()
    assert late.vendor().consecutive_successes == usual.vendor().consecutive_successes == 1


async def test_a_drilled_backend_keeps_its_own_fold_and_the_others_share() -> None:
    source, metrics = Source(), Metrics()
    until = (T0 + timedelta(seconds=60)).isoformat()
    drilled = Route(source, metrics, "drilled", spec(drill={"backend": "vendor", "until": until}))
    plain = Route(source, metrics, "plain", spec())
    for at in (0, 1, 2):
        source.push("http://v.test", ok(at))
        source.push("http://i.test", ok(at))
    assert drilled.vendor().healthy is False  # successes read as failures until `until`
    assert plain.vendor().healthy is True
    assert drilled.feed.records["inhouse"] is plain.feed.records["inhouse"]


async def test_the_last_route_to_stop_unsubscribes_the_shared_fold() -> None:
    source, metrics = Source(), Metrics()
    one, two = Route(source, metrics, "one", spec()), Route(source, metrics, "two", spec())
    one.feed.stop()
    source.push("http://v.test", down(0))
    assert "vendor" not in one.feed.records or one.feed.records["vendor"].healthy is None
    assert two.vendor().consecutive_failures == 1
    two.feed.stop()
    assert source.subscribers["http://v.test"] == []
    again = Route(source, metrics, "again", spec())
    source.push("http://v.test", ok(1))
    assert again.vendor().healthy is True


async def test_a_route_joining_a_probe_takes_its_latest_result_at_once() -> None:
    # A restarted operator starts its routes over a second or more while the shared loop
    # already probes: a route started after the first failure must not decide an interval
    # after the others.
    source, metrics = Source(), Metrics()
    healthy = HealthRecord(True, 0, 0, None, T0)  # as written by the previous process
    early = Route(source, metrics, "early", spec(), {"vendor": healthy})
    source.push("http://v.test", down(1))
    late = Route(source, metrics, "late", spec(), {"vendor": healthy})
    assert late.vendor().consecutive_failures == 1
    assert late.vendor() == early.vendor()
    assert late.wakes == 1
    assert count(metrics, "late", "vendor", "Unavailable") == 1
    source.push("http://v.test", down(2))  # the deciding one, for both at once
    assert late.vendor().healthy is False
    assert early.vendor().healthy is False
    assert late.vendor() is early.vendor()
    # A never-probed backend gets its first verdict from it too.
    fresh = Route(source, metrics, "fresh", spec())
    assert fresh.vendor().healthy is False


async def test_a_record_that_already_holds_the_latest_result_is_not_folded_twice() -> None:
    source, metrics = Source(), Metrics()
    early = Route(source, metrics, "early", spec(), {"vendor": HealthRecord(True, 0, 0, None, T0)})
    source.push("http://v.test", down(1))
    carried = {"vendor": early.vendor()}  # a worker replaced in this process carries it
    again = Route(source, metrics, "again", spec(), carried)
    assert again.vendor().consecutive_failures == 1
    assert again.wakes == 0


async def test_an_owed_failover_takes_no_result_before_its_first_plan() -> None:
    source, metrics = Source(), Metrics()
    Route(source, metrics, "early", spec())
    source.push("http://v.test", ok(1))  # the vendor is back
    owed = HealthRecord(False, 2, 0, None, T0)  # marked failed (control.resumption)
    feed = HealthFeed(source, metrics, {"vendor": owed}, lambda: None)
    feed.start(RouteRef("ai", "owed", "owed"), spec(), catch_up=False)
    assert feed.records["vendor"] is owed
    source.push("http://v.test", ok(2))  # later results are taken as usual
    assert feed.records["vendor"].consecutive_successes == 1


async def test_a_record_time_without_a_zone_takes_no_result_and_breaks_nothing() -> None:
    source, metrics = Source(), Metrics()
    Route(source, metrics, "early", spec())
    source.push("http://v.test", down(1))
    naive = HealthRecord(True, 0, 0, None, datetime(2030, 1, 1))
    late = Route(source, metrics, "late", spec(), {"vendor": naive})
    assert late.vendor().consecutive_failures == 0
    source.push("http://v.test", down(2))  # taken as usual from then on
    assert late.vendor().consecutive_failures == 1


class Calls:
    """How often a feed called each of its callbacks."""

    def __init__(self) -> None:
        self.decisive = 0
        self.quiet = 0

    def change(self) -> None:
        self.decisive += 1

    def quiet_change(self) -> None:
        self.quiet += 1

    def __eq__(self, other: object) -> bool:
        return (self.decisive, self.quiet) == other


async def test_a_healthy_backend_failing_below_its_threshold_is_a_quiet_change() -> None:
    source, metrics = Source(), Metrics()
    calls = Calls()
    feed = HealthFeed(source, metrics, {}, calls.change, calls.quiet_change)
    feed.start(RouteRef("ai", "r", "r"), spec(failure_threshold=3))
    source.push("http://v.test", ok(0))  # the first verdict
    assert calls == (1, 0)
    source.push("http://v.test", down(1))  # healthy still: counters and message only
    source.push("http://v.test", down(2))
    assert calls == (1, 2)
    source.push("http://v.test", down(3))  # the third: the backend turns unhealthy
    assert calls == (2, 2)
    source.push("http://v.test", ok(4))  # an unhealthy backend's first success: not quiet
    assert calls == (3, 2)


async def test_a_drilled_backend_failing_below_its_threshold_is_no_quiet_change() -> None:
    source, metrics = Source(), Metrics()
    calls = Calls()
    healthy = {"vendor": HealthRecord(healthy=True)}
    feed = HealthFeed(source, metrics, healthy, calls.change, calls.quiet_change)
    drill = {"backend": "vendor", "until": (T0 + timedelta(hours=1)).isoformat()}
    feed.start(RouteRef("ai", "r", "r"), spec(failure_threshold=3, drill=drill))
    source.push("http://v.test", ok(0))  # read as a failure: one failure decides a drill
    source.push("http://v.test", ok(1))
    assert feed.records["vendor"].healthy is True  # still below the threshold
    assert calls == (2, 0)
