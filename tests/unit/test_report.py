"""The Reporter's interleavings, on a fake clock: what it writes is judged against what the API
server accepted, never against a baseline captured before an await; Events go out in order,
each before the status that follows its decision, even across an API server outage."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from modelroute.api.status import BackendStatus, ModelRouteStatus, TrafficWeight
from modelroute.control.report import Reporter
from modelroute.core.types import EventType, PlannedEvent, RouteRef
from modelroute.kube.client import ApiError
from tests.fakes.kube import FakeKube
from tests.unit.test_worker import ROUTE_KEY, Clock
from tests.unit.test_worker_reconnect import Gone, reconnecting_world

pytestmark = pytest.mark.looptime

REF = RouteRef(*ROUTE_KEY, "uid-1")
GONE = aiohttp.ClientConnectionError("connect call failed")


def on(backend: str, *, failures: int = 0, count: int = 0) -> ModelRouteStatus:
    """A status with traffic on ``backend``; ``failures`` is a counter below any threshold."""
    return ModelRouteStatus(
        active_backend=backend,
        failover_count=count,
        traffic=[TrafficWeight(backend=backend, weight=100)],
        backends=[BackendStatus(name="vendor", healthy=True, consecutive_failures=failures)],
    )


def moved(reason: str) -> tuple[PlannedEvent, ...]:
    return (PlannedEvent(EventType.WARNING, reason, f"{reason} happened"),)


@dataclass
class Setup:
    clock: Clock
    kube: FakeKube
    reporter: Reporter
    api: Gone

    def patches(self) -> int:
        return self.kube.calls.count("patch_status")

    def stored(self) -> str | None:
        return self.kube.route_status.get(ROUTE_KEY, {}).get("activeBackend")


@contextlib.asynccontextmanager
async def reporter(written: ModelRouteStatus) -> AsyncIterator[Setup]:
    """A Reporter of the route whose status ``written`` is stored, in test_worker_reconnect's
    world (FakeKube, a reachability poll, the API server there until the test says not)."""
    crashed: list[BaseException] = []

    def done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            crashed.append(exc)

    async with reconnecting_world() as (w, api):
        api.back = True
        w.kube.route_status[ROUTE_KEY] = written.to_wire()
        made = Reporter(REF, w.controller._deps, written, done)
        try:
            yield Setup(w.clock, w.kube, made, api)
        finally:
            await made.stop()
    assert crashed == []


async def test_a_flap_back_decided_while_a_write_was_in_flight_is_written() -> None:
    # vendor -> inhouse is being written; the next plan says vendor again (the move was undone).
    # Judged against the status written before the first write (vendor), it looks like nothing to
    # write; against what the server accepted (inhouse), it must be written.
    async with reporter(on("vendor")) as s:
        s.kube.status_writes_held = held = asyncio.Event()
        s.reporter.submit(moved("FailedOver"), on("inhouse"), None)
        await s.clock.until(1)
        held.set()
        await s.clock.until(2)
        assert s.stored() == "inhouse"
        s.reporter.submit((), on("vendor"), None)
        await s.clock.until(3)
        assert s.stored() == "vendor"
        assert s.patches() == 2


async def test_the_same_status_decided_during_its_own_write_is_not_written_twice() -> None:
    async with reporter(on("vendor")) as s:
        s.kube.status_writes_held = held = asyncio.Event()
        s.reporter.submit(moved("FailedOver"), on("inhouse"), None)
        await s.clock.until(1)
        s.reporter.submit((), on("inhouse"), None)  # planned again while the write was held
        held.set()
        await s.clock.until(60)
        assert s.stored() == "inhouse"
        assert s.patches() == 1


async def test_a_counter_only_change_after_a_write_is_deferred_not_lost() -> None:
    async with reporter(on("vendor")) as s:
        s.kube.status_writes_held = held = asyncio.Event()
        s.reporter.submit(moved("FailedOver"), on("inhouse"), None)
        await s.clock.until(1)
        s.reporter.submit((), on("inhouse", failures=1), None)  # decides nothing: may wait
        held.set()
        await s.clock.until(2)
        assert s.patches() == 1
        await s.clock.until(40)  # status_defer_seconds (30) after it was decided
        assert s.patches() == 2
        stored = s.kube.route_status[ROUTE_KEY]["backends"][0]
        assert stored["consecutiveFailures"] == 1


async def test_a_write_cut_off_by_a_lost_server_is_not_taken_for_the_baseline() -> None:
    # The write of inhouse may or may not have landed (the connection dropped); the next plan
    # says vendor, as the last accepted status did. The server might hold inhouse: write.
    async with reporter(on("vendor")) as s:
        s.kube.status_write_error = GONE
        s.reporter.submit((), on("inhouse"), None)
        await s.clock.until(0.5)
        s.reporter.submit((), on("vendor"), None)
        s.kube.status_write_error = None
        await s.clock.until(5)
        assert s.kube.route_status[ROUTE_KEY]["activeBackend"] == "vendor"
        assert s.patches() >= 2


async def test_events_of_an_outage_go_out_in_order_each_before_the_status_after_it() -> None:
    # FailedOver, then FailedBack, both decided while the API server was gone. The server
    # answers again before the reachability poll notices: the later decision must not overtake
    # the earlier one's Event, and status (the latest) follows both.
    async with reporter(on("vendor")) as s:
        s.api.back = False
        s.kube.event_error = s.kube.status_write_error = GONE
        s.reporter.submit(moved("FailedOver"), on("inhouse", count=1), None)
        await s.clock.until(10)
        s.kube.event_error = s.kube.status_write_error = None  # back; the poll has not seen it
        s.reporter.submit(moved("FailedBack"), on("vendor", count=2), None)
        await s.clock.until(11)
        s.api.back = True
        await s.clock.until(20)
        order = [c for c in s.kube.calls if c in ("create_event", "patch_status")]
        posted = [e["reason"] for e in s.kube.posted_events]
        assert posted == ["FailedOver", "FailedBack"]
        assert order[-3:] == ["create_event", "create_event", "patch_status"]
        stored = s.kube.route_status[ROUTE_KEY]
        assert (stored["activeBackend"], stored["failoverCount"]) == ("vendor", 2)
        stamps = [e["firstTimestamp"] for e in s.kube.posted_events]
        assert stamps == ["2025-01-01T00:00:00Z", "2025-01-01T00:00:10Z"]  # when decided


async def test_a_decision_event_reposted_after_a_crash_is_posted_once() -> None:
    # A process posts FailedOver and dies before its status write; the next one takes the same
    # failover again (core.resume) and submits the same decision: the server keeps one Event.
    async with reporter(on("vendor")) as s:
        s.kube.status_write_error = GONE  # the status write never lands: the "crash"
        s.reporter.submit(moved("FailedOver"), on("inhouse", count=1), None)
        await s.clock.until(1)
        await s.reporter.stop()
        s.kube.status_write_error = None
        again = Reporter(REF, s.reporter._deps, on("vendor"), lambda task: None)
        again.submit(moved("FailedOver"), on("inhouse", count=1), None)
        await s.clock.until(5)
        await again.stop()
        named = [e for e in s.kube.posted_events if e["reason"] == "FailedOver"]
        assert len(named) == 1
        assert "name" in named[0]["metadata"]  # a fixed name: the repost got a 409
        assert s.kube.calls.count("create_event") == 2
        assert s.stored() == "inhouse"


async def test_a_decision_event_throttled_by_the_server_is_retried_then_status_follows() -> None:
    async with reporter(on("vendor")) as s:
        s.kube.event_error = ApiError(429, "TooManyRequests", "slow down")
        s.reporter.submit(moved("FailedOver"), on("inhouse", count=1), None)
        await s.clock.until(2)
        assert s.kube.posted_events == [] and s.stored() == "vendor"  # Event first, always
        s.kube.event_error = None
        await s.clock.until(10)
        assert [e["reason"] for e in s.kube.posted_events] == ["FailedOver"]
        assert s.stored() == "inhouse"


async def test_a_decision_event_refused_for_good_is_dropped_and_status_follows() -> None:
    async with reporter(on("vendor")) as s:
        s.kube.event_error = ApiError(403, "Forbidden", "events is forbidden")
        s.reporter.submit(moved("FailedOver"), on("inhouse", count=1), None)
        await s.clock.until(5)
        assert s.kube.calls.count("create_event") == 1 and s.kube.posted_events == []
        assert s.stored() == "inhouse"
