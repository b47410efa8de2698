"""The Reporter's interleavings, on a fake clock: what it writes is judged against what the API
server accepted, never against a baseline captured before an await; Events go out in order,
each before the status that follows its decision, even across an API server outage."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from modelroute.api.status import BackendStatus, ModelRouteStatus, TrafficWeight
from modelroute.control.report import Reporter
from modelroute.core.types import EventType, PlannedEvent, RouteRef
from modelroute.kube.client import ApiError
from modelroute.settings import Settings
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
async def reporter(
    written: ModelRouteStatus, settings: Settings | None = None
) -> AsyncIterator[Setup]:
    """A Reporter of the route whose status ``written`` is stored, in test_worker_reconnect's
    world (FakeKube, a reachability poll, the API server there until the test says not)."""
    crashed: list[BaseException] = []

    def done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            crashed.append(exc)

    async with reconnecting_world() as (w, api):
        api.back = True
        w.kube.route_status[ROUTE_KEY] = written.to_wire()
        deps = w.controller._deps
        if settings is not None:
            deps = dataclasses.replace(deps, settings=settings)
        made = Reporter(REF, deps, written, done)
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
        assert s.patches() >= 2


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
        assert s.patches() >= 2
        stored = s.kube.route_status[ROUTE_KEY]["backends"][0]
        assert stored["consecutiveFailures"] == 1


async def test_a_write_cut_off_by_a_lost_server_is_not_taken_for_the_baseline() -> None:
    # The write of inhouse landed but its answer was lost (the connection dropped); the next
    # plan says vendor, as the last accepted status did. The server holds inhouse: write.
    async with reporter(on("vendor")) as s:
        s.kube.status_answer_error = GONE
        s.reporter.submit((), on("inhouse"), None)
        await s.clock.until(0.5)
        assert s.stored() == "inhouse"  # landed, unanswered
        s.reporter.submit((), on("vendor"), None)
        s.kube.status_answer_error = None
        await s.clock.until(5)
        assert s.stored() == "vendor"
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


async def test_drain_returns_once_the_status_due_is_written_not_before() -> None:
    # A graceful stop: the failback's status is held in the API server's queue; drain waits
    # for it (the next leader must plan from it), then returns; a deferred change is not waited.
    async with reporter(on("inhouse", count=1)) as s:
        s.kube.status_writes_held = held = asyncio.Event()
        s.reporter.submit(moved("FailedBack"), on("vendor", count=2), None)
        drained = asyncio.create_task(s.reporter.drain())
        await s.clock.until(1)
        assert not drained.done()
        held.set()
        await s.clock.until(1.5)
        assert drained.done()
        assert s.kube.route_status[ROUTE_KEY]["failoverCount"] == 2
        s.reporter.submit((), on("vendor", failures=1, count=2), None)  # deferred 30 s
        await asyncio.wait_for(s.reporter.drain(), 1)


async def test_an_event_posted_through_an_outage_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with reporter(on("vendor")) as s:
        s.api.back = False
        s.kube.event_error = s.kube.status_write_error = GONE
        s.reporter.submit(moved("FailedOver"), on("inhouse", count=1), None)
        with caplog.at_level(logging.INFO, logger="modelroute.kube.events"):
            await s.clock.until(120)  # retried on every backoff step
            s.kube.event_error = s.kube.status_write_error = None
            s.api.back = True
            await s.clock.until(125)
        assert [e["reason"] for e in s.kube.posted_events] == ["FailedOver"]
        logged = [r for r in caplog.records if r.getMessage() == "FailedOver happened"]
        assert len(logged) == 1


async def test_reconciles_during_an_outage_do_not_cut_the_backoff() -> None:
    # The same status planned again every second (each probe): the failed write is retried on
    # its backoff (1, 2, 4... 30 s), not once per reconcile.
    async with reporter(on("vendor")) as s:
        s.api.back = False
        s.kube.status_write_error = GONE
        s.reporter.submit((), on("inhouse"), None)
        for at in range(1, 120):
            await s.clock.until(at)
            s.reporter.submit((), on("inhouse"), None)
        assert s.patches() <= 9  # 0, 1, 3, 7, 15, 31, 61, 91: 8 (one more for slack)
        s.kube.status_write_error = None
        s.api.back = True
        await s.clock.until(121)
        assert s.stored() == "inhouse"


async def test_a_refused_write_leaves_the_baseline_known() -> None:
    # A 422 is an answer: the stored status is as it was (vendor). A plan back to vendor then
    # has nothing to write; the refused write is not retried forever.
    async with reporter(on("vendor")) as s:
        s.kube.status_write_error = ApiError(422, "Invalid", "status.traffic: Invalid value")
        s.reporter.submit((), on("inhouse"), None)
        await s.clock.until(2)
        assert not s.reporter.uncertain
        s.reporter.submit((), on("vendor"), None)
        await s.clock.until(10)
        tried = s.patches()
        await s.clock.until(120)
        assert s.patches() == tried
        assert not s.reporter.pending


MAX_UNSENT = 7  # settings.max_unsent_events, not its default: the setting is what counts


async def test_events_kept_through_an_outage_are_bounded_newest_kept() -> None:
    async with reporter(on("vendor"), Settings(max_unsent_events=MAX_UNSENT)) as s:
        s.api.back = False
        s.kube.event_error = s.kube.status_write_error = GONE
        for n in range(MAX_UNSENT + 20):
            s.reporter.submit(moved(f"Move{n}"), on("inhouse", count=n), None)
        assert len(s.reporter.unsent) == MAX_UNSENT
        s.kube.event_error = s.kube.status_write_error = None
        s.api.back = True
        await s.clock.until(60)
        posted = [e["reason"] for e in s.kube.posted_events]
        assert posted == [f"Move{n}" for n in range(20, MAX_UNSENT + 20)]


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


MAX_EVENT_ATTEMPTS = 5  # settings.max_event_attempts, not its default


async def test_an_event_refused_again_and_again_is_dropped_and_the_status_written() -> None:
    # The Events API answers 500 for good (an etcd out of space, a failing webhook on Events):
    # the failover's status must not wait on its Event forever.
    async with reporter(on("vendor"), Settings(max_event_attempts=MAX_EVENT_ATTEMPTS)) as s:
        s.kube.event_error = ApiError(500, "InternalError", "etcdserver: mvcc: database space")
        s.reporter.submit(moved("FailedOver"), on("inhouse", count=1), None)
        await s.clock.until(60)
        assert s.kube.calls.count("create_event") == MAX_EVENT_ATTEMPTS
        assert s.stored() == "inhouse"
        await asyncio.wait_for(s.reporter.drain(), 1)
