"""A route's status and Events wait for a burst of routing writes to pass (``Lanes.until_quiet``)
before they are even judged: in a mass failover the event loop's time goes to the routing
writes, and nothing of the reports could be sent before they are through anyway. What is
submitted meanwhile is judged later in order, never lost, and its Events logged once."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator

import pytest

from modelroute.control.report import Reporter
from modelroute.kube.client import ApiError
from modelroute.kube.lanes import Lanes
from tests.unit.test_report import REF, ROUTE_KEY, Setup, moved, on, reporter

pytestmark = pytest.mark.looptime


def with_lanes(s: Setup) -> Lanes:
    """Give the reporter an API client's request lanes (none in use yet)."""
    lanes = Lanes(4)
    s.reporter._deps = dataclasses.replace(s.reporter._deps, lanes=lanes)
    return lanes


@contextlib.asynccontextmanager
async def in_a_burst() -> AsyncIterator[tuple[Setup, Lanes]]:
    """A reporter whose API client has a routing write in flight (released by the test)."""
    async with reporter(on("vendor")) as s:
        lanes = with_lanes(s)
        await lanes.acquire(urgent=True)
        yield s, lanes


def logged(caplog: pytest.LogCaptureFixture, message: str) -> int:
    return sum(1 for r in caplog.records if r.getMessage() == message)


async def test_a_report_waits_for_the_routing_writes_then_goes_out_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="modelroute.kube.events")
    async with in_a_burst() as (s, lanes):
        s.reporter.submit(moved("FailedOver"), on("inhouse", count=1), None)
        await s.clock.until(1)
        assert s.reporter.pending
        assert "create_event" not in s.kube.calls and s.patches() == 0
        assert logged(caplog, "FailedOver happened") == 1  # logged when decided, not when sent
        lanes.release(urgent=True)
        await s.clock.until(1.5)
        order = [c for c in s.kube.calls if c in ("create_event", "patch_status")]
        assert order == ["create_event", "patch_status"]
        assert s.stored() == "inhouse"
        assert logged(caplog, "FailedOver happened") == 1
        stamps = [e["firstTimestamp"] for e in s.kube.posted_events]
        assert stamps == ["2025-01-01T00:00:00Z"]  # when decided, not when judged


async def test_reports_submitted_in_a_burst_are_judged_in_order_into_one_status_write() -> None:
    async with in_a_burst() as (s, lanes):
        s.reporter.submit(moved("FailedOver"), on("inhouse", count=1), None)
        s.reporter.submit(moved("FailedBack"), on("vendor", count=2), None)
        s.reporter.submit((), on("vendor", failures=1, count=2), None)
        lanes.release(urgent=True)
        await s.clock.until(1)
        assert [e["reason"] for e in s.kube.posted_events] == ["FailedOver", "FailedBack"]
        assert s.patches() == 1
        stored = s.kube.route_status[ROUTE_KEY]
        assert (stored["activeBackend"], stored["failoverCount"]) == ("vendor", 2)


async def test_a_report_waits_while_routing_writes_still_queue_for_a_slot() -> None:
    async with in_a_burst() as (s, lanes):
        waiting = asyncio.create_task(_second_routing_write(lanes))
        await s.clock.until(0.1)
        s.reporter.submit(moved("FailedOver"), on("inhouse", count=1), None)
        lanes.release(urgent=True)  # the first is through; the second takes its slot
        await s.clock.until(1)
        assert s.patches() == 0 and not s.kube.posted_events
        waiting.cancel()  # the last routing write gives up waiting: the burst is over
        await asyncio.gather(waiting, return_exceptions=True)
        await s.clock.until(2)
        assert s.stored() == "inhouse"


async def _second_routing_write(lanes: Lanes) -> None:
    await lanes.acquire(urgent=True)
    try:
        await asyncio.sleep(3600)
    finally:
        lanes.release(urgent=True)


async def test_events_held_at_a_stop_are_logged_and_handed_to_the_next_reporter(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A spec change: the controller stops the route's worker, then hands its unsent Events on.
    caplog.set_level(logging.INFO, logger="modelroute.kube.events")
    async with in_a_burst() as (s, lanes):
        s.reporter.submit(moved("FailedOver"), on("inhouse", count=1), None)
        await s.reporter.stop()
        assert logged(caplog, "FailedOver happened") == 1  # logged at the stop, not lost
        unsent = s.reporter.unsent
        assert [entry[0].reason for entry in unsent] == ["FailedOver"]
        lanes.release(urgent=True)
        again = Reporter(REF, s.reporter._deps, on("vendor"), lambda task: None, unsent)
        again.submit((), on("inhouse", count=1), None)
        await s.clock.until(1)
        await again.stop()
        assert s.reporter._task is None  # the stopped reporter sends nothing more
        assert [e["reason"] for e in s.kube.posted_events] == ["FailedOver"]
        assert logged(caplog, "FailedOver happened") == 1
        assert s.patches() == 1 and s.stored() == "inhouse"


async def test_a_stopped_reporter_writes_nothing_after_the_next_one() -> None:
    # The old reporter's status write fails; the new one writes a failback. Nothing of the old
    # one may land after it (a stale status that nothing would correct).
    async with in_a_burst() as (s, lanes):
        s.kube.fail_status_writes = 1  # the first status write fails (and would be retried)
        s.reporter.submit(moved("FailedOver"), on("inhouse", count=1), None)
        await s.reporter.stop()
        unsent = s.reporter.unsent
        lanes.release(urgent=True)
        again = Reporter(REF, s.reporter._deps, on("vendor"), lambda task: None, unsent)
        again.submit(moved("FailedBack"), on("vendor", count=2), None)
        await s.clock.until(60)
        await again.stop()
        stored = s.kube.route_status[ROUTE_KEY]
        assert (stored["activeBackend"], stored["failoverCount"]) == ("vendor", 2)
        assert [e["reason"] for e in s.kube.posted_events] == ["FailedOver", "FailedBack"]


async def test_drain_takes_what_was_submitted_in_a_burst() -> None:
    async with in_a_burst() as (s, lanes):
        s.reporter.submit(moved("FailedOver"), on("inhouse", count=1), None)
        drained = asyncio.create_task(s.reporter.drain())
        await s.clock.until(1)
        assert not drained.done()  # the status is due: drain waits for it
        lanes.release(urgent=True)
        await s.clock.until(2)
        assert drained.done()
        assert s.stored() == "inhouse"


async def test_drain_waits_for_a_decision_held_while_it_waited() -> None:
    async with reporter(on("vendor")) as s:
        lanes = with_lanes(s)
        s.kube.status_writes_held = held = asyncio.Event()
        s.reporter.submit(moved("FailedOver"), on("inhouse", count=1), None)
        drained = asyncio.create_task(s.reporter.drain())
        await s.clock.until(1)  # the failover's status write is in flight
        await lanes.acquire(urgent=True)
        s.reporter.submit(moved("FailedBack"), on("vendor", count=2), None)  # held
        held.set()
        await s.clock.until(2)
        assert not drained.done()  # the failback is what the next leader must plan from
        lanes.release(urgent=True)
        await s.clock.until(3)
        assert drained.done()
        assert s.kube.route_status[ROUTE_KEY]["failoverCount"] == 2


async def test_a_decision_held_while_events_post_is_written_in_the_same_status_write() -> None:
    async with reporter(on("vendor")) as s:
        lanes = with_lanes(s)
        s.kube.events_held = posting = asyncio.Event()
        s.reporter.submit(moved("FailedOver"), on("inhouse", count=1), None)
        await s.clock.until(1)  # FailedOver is being posted
        await lanes.acquire(urgent=True)
        s.reporter.submit(moved("FailedBack"), on("vendor", count=2), None)  # held
        posting.set()
        await s.clock.until(2)
        lanes.release(urgent=True)
        await s.clock.until(3)
        assert [e["reason"] for e in s.kube.posted_events] == ["FailedOver", "FailedBack"]
        assert s.patches() == 1  # one status write after both, as without a burst
        assert s.kube.route_status[ROUTE_KEY]["failoverCount"] == 2


async def test_what_is_held_is_bounded() -> None:
    async with in_a_burst() as (s, lanes):
        kept = s.reporter._deps.settings.max_unsent_events
        for n in range(3 * kept):
            s.reporter.submit(moved("FailedOver"), on("inhouse", count=n + 1), None)
        assert len(s.reporter._inbox) <= kept
        assert len(s.reporter.unsent) <= kept  # the oldest Events dropped, as always
        lanes.release(urgent=True)
        await s.clock.until(5)
        assert s.kube.route_status[ROUTE_KEY]["failoverCount"] == 3 * kept


async def test_a_decision_submitted_in_a_burst_does_not_sit_out_a_backoff() -> None:
    async with reporter(on("vendor")) as s:
        lanes = with_lanes(s)
        s.kube.status_write_error = ApiError(503, "ServiceUnavailable", "busy")
        s.reporter.submit((), on("inhouse", count=1), None)
        await s.clock.until(40)  # retried at 0, 1, 3, 7, 15, 31 s: the next at 61 s
        tried = s.patches()
        s.kube.status_write_error = None
        await lanes.acquire(urgent=True)
        s.reporter.submit(moved("FailedBack"), on("vendor", count=2), None)
        await s.clock.until(40.5)
        lanes.release(urgent=True)
        await s.clock.until(41)
        assert s.patches() == tried + 1
        assert s.kube.route_status[ROUTE_KEY]["failoverCount"] == 2


async def test_a_status_due_before_a_burst_is_built_after_it_from_the_newest() -> None:
    # Start-up: a route's first status is due, then every route's routing write comes; by the
    # time the status can go out, a newer one was decided. Only the newest is written.
    async with reporter(on("vendor")) as s:
        lanes = with_lanes(s)
        # A status write waits as it would in the client's normal lane while urgent is busy.
        s.kube.status_writes_held = lane_free = asyncio.Event()
        s.reporter.submit((), on("inhouse", count=1), None)  # due now
        await lanes.acquire(urgent=True)
        await s.clock.until(1)
        s.reporter.submit(moved("FailedBack"), on("vendor", count=2), None)  # held
        lanes.release(urgent=True)
        lane_free.set()
        await s.clock.until(2)
        assert s.patches() == 1
        assert s.kube.route_status[ROUTE_KEY]["failoverCount"] == 2


async def test_a_report_is_held_no_longer_than_its_bound() -> None:
    # A routing write that keeps timing out (a validating webhook down) keeps urgent requests
    # busy for minutes: every status must not wait for all of it.
    async with in_a_burst() as (s, lanes):
        bound = s.reporter._deps.settings.report_hold_max_seconds
        s.reporter.submit(moved("FailedOver"), on("inhouse", count=1), None)
        await s.clock.until(bound - 0.5)
        assert s.patches() == 0
        await s.clock.until(bound + 0.5)
        assert [e["reason"] for e in s.kube.posted_events] == ["FailedOver"]
        assert s.stored() == "inhouse"
        lanes.release(urgent=True)
