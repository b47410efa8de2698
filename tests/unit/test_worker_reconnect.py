"""The worker and a lost API server, on a fake clock: a decision whose write found the API
server gone is written the moment it answers again, not after the retry backoff."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator

import aiohttp
import pytest

from modelroute.control.controller import Controller
from modelroute.control.route import Deps
from modelroute.kube.cache import ObjectCache, slim_object, slim_secret
from modelroute.kube.client import SECRETS, SERVICES
from modelroute.kube.events import EventRecorder
from modelroute.kube.reachability import ApiReachability
from modelroute.metrics import Metrics
from modelroute.settings import Settings
from tests.fakes.kube import FakeKube
from tests.unit.test_worker import Clock, ScriptedProbes, TimedCalls, World, _target, route

pytestmark = pytest.mark.looptime


class Gone:
    """The API server as the poll sees it: gone until ``back`` is set."""

    def __init__(self) -> None:
        self.back = False

    async def check(self) -> None:
        if not self.back:
            raise aiohttp.ClientConnectionError("connect call failed")


@contextlib.asynccontextmanager
async def reconnecting_world() -> AsyncIterator[tuple[World, Gone]]:
    """test_worker's world with a reachability poll: the API server as ``Gone`` says."""
    clock, kube, api = Clock(), FakeKube(), Gone()
    calls = TimedCalls(clock)
    kube.calls = calls
    for name in ("vendor", "inhouse"):
        kube.seed(_target(name), watched=False)
    probes = ScriptedProbes(clock)
    reach = ApiReachability(api.check, interval=0.25)
    deps = Deps(
        settings=Settings(),
        kube=kube,
        caches={SERVICES: ObjectCache(functools.partial(kube.get_object, SERVICES), slim_object)},
        secrets=ObjectCache(functools.partial(kube.get_object, SECRETS), slim_secret),
        metrics=(metrics := Metrics()),
        events=EventRecorder(kube, "test"),
        probes=probes,
        now=clock.now,
        reachability=reach,
    )
    w = World(clock, kube, calls, probes, Controller(deps), metrics)
    try:
        yield w, api
    finally:
        await w.controller.shutdown()
        await reach.close()


async def test_a_status_write_that_found_the_api_server_gone_lands_when_it_is_back() -> None:
    async with reconnecting_world() as (w, api):
        clock, kube, calls = w.clock, w.kube, w.calls
        await w.controller.on_route_event("ADDED", route())
        await w.tick(5, vendor=True, inhouse=True)
        await clock.until(6)
        kube.status_write_error = aiohttp.ClientConnectionError("connect call failed")
        kube.event_error = aiohttp.ClientConnectionError("connect call failed")
        for at in (10, 15, 20):
            await w.tick(at, vendor=False)
        await clock.until(59)
        assert w.selector() == {"app": "inhouse"}  # routing went through
        assert w.status()["activeBackend"] == "vendor"  # status did not
        # Back at 60 s: the backoff's next retry would be at 83 s (20 + 1 + 2 + 4 + 8 + 16 + 32
        # capped at 30); the poll wakes the route within 0.25 s.
        kube.status_write_error = kube.event_error = None
        api.back = True
        await clock.until(60)
        await clock.until(60.3)
        assert w.status()["activeBackend"] == "inhouse"
        written = [t for t, call in calls.stamped if call == "patch_status" and t >= 59]
        assert written and written[0] <= 60.25 + 1e-6
        assert [e[1] for e in w.events()].count("FailedOver") == 1  # kept, posted once


async def test_during_an_outage_no_status_claims_a_move_before_its_routing_write_lands() -> None:
    # Everything fails while the API server is gone: the failover decided then is not in status
    # (nor its Event) until its routing write has landed; then routing, Event, status, in order.
    gone = aiohttp.ClientConnectionError("connect call failed")
    async with reconnecting_world() as (w, api):
        clock, kube = w.clock, w.kube
        await w.controller.on_route_event("ADDED", route())
        await w.tick(5, vendor=True, inhouse=True)
        await clock.until(6)
        kube.patch_error = kube.status_write_error = kube.event_error = gone
        for at in (10, 15, 20, 25):
            await w.tick(at, vendor=False, inhouse=True)
        await clock.until(40)
        assert w.selector() == {"app": "vendor"}  # the routing write did not land
        assert w.status()["activeBackend"] == "vendor"
        assert ("Warning", "FailedOver") not in w.events()
        assert [c for _, c in w.writes(since=6) if c == "patch_status"] == []  # nothing claimed
        kube.patch_error = kube.status_write_error = kube.event_error = None
        api.back = True
        await clock.until(41)
        landed = [c for _, c in w.writes(since=40)]
        assert landed[:3] == ["patch", "create_event", "patch_status"]
        assert w.selector() == {"app": "inhouse"}
        assert w.status()["activeBackend"] == "inhouse"
        assert w.events().count(("Warning", "FailedOver")) == 1
