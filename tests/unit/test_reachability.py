"""ApiReachability on a fake clock: routes that found the API server gone are woken once it
answers again, and nothing is polled while nobody waits; an Event the API server is gone for
is raised to its caller (which keeps it), one it refuses is dropped."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aiohttp
import pytest

from modelroute.core.types import EventType, RouteRef
from modelroute.kube.client import ApiError
from modelroute.kube.events import EventRecorder
from modelroute.kube.reachability import ApiReachability
from tests.fakes.kube import FakeKube

pytestmark = pytest.mark.looptime


class FlakyApi:
    """Answers discovery only from ``up_at`` (fake seconds); counts the calls."""

    def __init__(self, up_at: float) -> None:
        self.up_at = up_at
        self.calls = 0
        self._start = asyncio.get_running_loop().time()

    async def check(self) -> set[str]:
        self.calls += 1
        if asyncio.get_running_loop().time() - self._start < self.up_at:
            raise aiohttp.ClientConnectionError("connect call failed")
        return {"services"}


async def test_waiting_routes_wake_within_one_poll_of_the_api_server_answering() -> None:
    api = FlakyApi(up_at=30.0)
    reach = ApiReachability(api.check, interval=0.25)
    woken: list[float] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    first, second = asyncio.Event(), asyncio.Event()
    reach.wake_when_back(first.set)
    reach.wake_when_back(second.set)
    reach.wake_when_back(first.set)  # registered twice, woken once
    assert not reach.reachable
    await first.wait()
    woken.append(loop.time() - start)
    assert second.is_set()
    assert 30.0 <= woken[0] <= 30.25 + 1e-6
    assert reach.reachable
    calls = api.calls
    await asyncio.sleep(60)
    assert api.calls == calls, "polled while nobody waited"
    await reach.close()


async def test_an_api_error_is_an_answer_that_is_not_yet_back() -> None:
    attempts: list[int] = []

    async def check() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise ApiError(503, "ServiceUnavailable", "etcd is starting")

    reach = ApiReachability(check, interval=1.0)
    woken = asyncio.Event()
    reach.wake_when_back(woken.set)
    await asyncio.wait_for(woken.wait(), timeout=10)
    assert len(attempts) == 3


async def test_close_stops_polling_and_wakes_nobody() -> None:
    api = FlakyApi(up_at=1e9)
    reach = ApiReachability(api.check, interval=0.25)
    woken = asyncio.Event()
    reach.wake_when_back(woken.set)
    await asyncio.sleep(1)
    await reach.close()
    calls = api.calls
    await asyncio.sleep(10)
    assert api.calls == calls and not woken.is_set()


async def test_an_event_the_api_server_was_gone_for_is_raised_to_the_caller() -> None:
    # The reporter keeps it, in order with the route's later Events and status (test_report).
    kube = FakeKube()
    recorder = EventRecorder(kube, "test")
    route = RouteRef("ai", "chat", "uid-1")
    kube.event_error = aiohttp.ClientConnectionError("connect call failed")
    stamp = datetime(2025, 1, 1, tzinfo=UTC)
    with pytest.raises(aiohttp.ClientConnectionError):
        await recorder.post(route, EventType.WARNING, "FailedOver", "vendor down", stamp)
    kube.event_error = None
    await recorder.post(route, EventType.WARNING, "FailedOver", "vendor down", stamp)
    assert [e["lastTimestamp"] for e in kube.posted_events] == ["2025-01-01T00:00:00Z"]


async def test_an_event_refused_by_the_api_server_is_dropped_not_raised() -> None:
    kube = FakeKube()
    recorder = EventRecorder(kube, "test")
    kube.event_error = ApiError(422, "Invalid", "bad event")
    now = datetime(2025, 1, 1, tzinfo=UTC)
    await recorder.post(RouteRef("ai", "chat", "u"), EventType.NORMAL, "Routed", "m", now)
    assert kube.posted_events == []
