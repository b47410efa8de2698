"""RouteWorker and Controller on a fake clock: exact schedules, no wall-clock sleeps.

The event loop's time is faked with looptime (``pytest.mark.looptime``): the worker's timers
(the failback recheck, the retry backoff) fire at exact fake times, and an hour of probing
takes milliseconds. Probe results come from :class:`ScriptedProbes`, pushed by the test at
chosen fake times, and ``Deps.now`` is derived from the same fake time, so policy windows and
timers agree. The Kubernetes side is FakeKube feeding a real ObjectCache, and every call it
receives is stamped with the fake time it was made at (:class:`TimedCalls`).

Timeline used throughout (probe every 5 s, failureThreshold 3, successThreshold 2,
stabilizationSeconds 60): the route is added at 0 s, both backends answer at 5 s (routed to
vendor), vendor fails at 10, 15 and 20 s (failover to inhouse at 20 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelroute.control.controller import Controller
from modelroute.control.route import Deps
from modelroute.core.policy import APPROVE_FAILBACK_ANNOTATION
from modelroute.kube.cache import ObjectCache, slim_object, slim_secret
from modelroute.kube.client import SECRETS, SERVICES
from modelroute.kube.events import EventRecorder
from modelroute.metrics import Metrics
from modelroute.probing.hub import ProbeKey, Subscriber
from modelroute.probing.prober import ProbeResult
from modelroute.settings import Settings
from tests.fakes.kube import FakeKube

pytestmark = pytest.mark.looptime

NS = "ai"
ROUTE_KEY = (NS, "chat")
STABLE_KEY = (NS, "chat-llm")
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
WRITES = ("create", "patch", "patch_status", "create_event")
# The worker wakes 1 ms after a stabilization window ends (so float rounding never wakes it a
# hair early and finds the window still open): a window ending at 90 s acts at 90.001 s.
RECHECK_SLACK = 0.001


def window_end(at: float) -> float:
    """The fake time at which the worker acts on a stabilization window ending at ``at`` s."""
    return round(at + RECHECK_SLACK, 6)


class Clock:
    """Fake loop time, as seconds since the world started and as the UTC time ``now`` gives."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()

    def elapsed(self) -> float:
        """Fake seconds since the start, at looptime's microsecond resolution."""
        return round(self._loop.time() - self._start, 6)

    def now(self) -> datetime:
        """The operator's clock (``Deps.now``, probe ``finished_at``): epoch + fake time."""
        return EPOCH + timedelta(seconds=self.elapsed())

    async def until(self, at: float) -> None:
        """Let fake time run to ``at`` s; everything due before it (reconciles, timers) runs."""
        assert at > self.elapsed(), f"{at} s is not ahead of now ({self.elapsed()} s)"
        await asyncio.sleep(at - self.elapsed())


class TimedCalls(list[str]):
    """``FakeKube.calls`` that also stamps each call with the fake time it was made at."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self._clock = clock
        self.stamped: list[tuple[float, str]] = []

    def append(self, call: str) -> None:
        """Record ``call`` as a plain list would, and when it happened."""
        super().append(call)
        self.stamped.append((self._clock.elapsed(), call))


def endpoint(backend: str) -> str:
    """Where ``backend`` is probed: the host names the backend, so a ProbeKey tells whose it is."""
    return f"http://{backend}.probe.test"


class ScriptedProbes:
    """A ProbeSource with no loops and no HTTP: the test pushes each backend's results."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.subscribers: dict[ProbeKey, list[Subscriber]] = {}

    def subscribe(self, key: ProbeKey, subscriber: Subscriber) -> None:
        """Deliver the results pushed for ``key``'s backend to ``subscriber``."""
        self.subscribers.setdefault(key, []).append(subscriber)

    def unsubscribe(self, key: ProbeKey, subscriber: Subscriber) -> None:
        """Stop delivering to ``subscriber``."""
        self.subscribers[key].remove(subscriber)
        if not self.subscribers[key]:
            del self.subscribers[key]

    def counts(self) -> dict[str, int]:
        """Subscribers per probed backend."""
        return {key.url: len(subs) for key, subs in self.subscribers.items()}

    def push(self, backend: str, ok: bool) -> None:
        """A probe of ``backend`` finished now; repeated results are identical but for time."""
        result = ProbeResult(
            ok=ok,
            latency_ms=12 if ok else None,
            message="HTTP 200" if ok else "connection refused",
            finished_at=self._clock.now(),
        )
        url = endpoint(backend)
        subscribers = [s for key, subs in self.subscribers.items() if key.url == url for s in subs]
        assert subscribers, f"no route subscribed to {backend}'s probe"
        for subscriber in subscribers:
            subscriber(result)


@dataclass
class World:
    """The controller under test, its fakes and its clock."""

    clock: Clock
    kube: FakeKube
    calls: TimedCalls
    probes: ScriptedProbes
    controller: Controller
    metrics: Metrics

    async def tick(self, at: float, **results: bool) -> None:
        """At fake time ``at``, push one result per named backend (True: the probe passed)."""
        await self.clock.until(at)
        for backend, ok in results.items():
            self.probes.push(backend, ok)

    def status(self) -> dict[str, Any]:
        """The route's status as written to the (fake) API server."""
        return self.kube.route_status.get(ROUTE_KEY, {})

    def condition(self, ctype: str) -> tuple[str, str]:
        """(status, reason) of condition ``ctype`` in the written status."""
        found = next(c for c in self.status()["conditions"] if c["type"] == ctype)
        return found["status"], found["reason"]

    def backend_status(self, name: str) -> dict[str, Any]:
        """``status.backends[]`` entry of backend ``name``."""
        return next(b for b in self.status()["backends"] if b["name"] == name)

    def selector(self) -> dict[str, str] | None:
        """The stable Service's selector; None while the Service does not exist."""
        service = self.kube.services.get(STABLE_KEY)
        return service["spec"]["selector"] if service else None

    def events(self) -> list[tuple[str, str]]:
        """(type, reason) of every Event posted, in order."""
        return [(e["type"], e["reason"]) for e in self.kube.posted_events]

    def writes(self, since: float = 0.0) -> list[tuple[float, str]]:
        """Every write through the API from fake time ``since`` on, with its time."""
        return [(t, call) for t, call in self.calls.stamped if call in WRITES and t >= since]


def _target(name: str) -> dict[str, Any]:
    """A backend's own Service (the route's serviceRef), selecting pods ``app=<name>``."""
    return {
        "metadata": {"name": f"{name}-svc", "namespace": NS},
        "spec": {"selector": {"app": name}, "ports": [{"port": 8000, "targetPort": "http"}]},
    }


def route(*names: str, generation: int = 1, mode: str = "Automatic") -> dict[str, Any]:
    """A ModelRoute body; backends in preference order (default vendor, then inhouse)."""
    backends = [
        {
            "name": name,
            "priority": index,
            "serviceRef": {"name": f"{name}-svc", "port": 8000},
            "model": "gpt-4o",
            "endpoint": endpoint(name),
        }
        for index, name in enumerate(names or ("vendor", "inhouse"))
    ]
    return {
        "metadata": {
            "name": "chat",
            "namespace": NS,
            "uid": "uid-1",
            "generation": generation,
            "annotations": {},
        },
        "spec": {
            "service": {"name": "chat-llm", "port": 80},
            "backends": backends,
            "probe": {
                "intervalSeconds": 5,
                "timeoutSeconds": 2,
                "failureThreshold": 3,
                "successThreshold": 2,
            },
            "failback": {"mode": mode, "stabilizationSeconds": 60},
        },
    }


def approve(body: dict[str, Any], value: str, **others: str) -> dict[str, Any]:
    """``body`` annotated with an admin's failback approval ``value`` (and ``others``)."""
    changed = copy.deepcopy(body)
    changed["metadata"]["annotations"] = {**others, APPROVE_FAILBACK_ANNOTATION: value}
    return changed


@contextlib.asynccontextmanager
async def running_world(settings: Settings | None = None) -> AsyncIterator[World]:
    """A Controller with scripted probes and FakeKube (target Services seeded); shut down after."""
    clock = Clock()
    kube = FakeKube()
    calls = TimedCalls(clock)
    kube.calls = calls
    for name in ("vendor", "inhouse", "alt"):
        kube.seed(_target(name), watched=False)
    probes = ScriptedProbes(clock)
    deps = Deps(
        settings=settings or Settings(),
        kube=kube,
        caches={SERVICES: ObjectCache(functools.partial(kube.get_object, SERVICES), slim_object)},
        secrets=ObjectCache(functools.partial(kube.get_object, SECRETS), slim_secret),
        metrics=(metrics := Metrics()),
        events=EventRecorder(kube, "test"),
        probes=probes,
        now=clock.now,
    )
    controller = Controller(deps)
    try:
        yield World(clock, kube, calls, probes, controller, metrics)
    finally:
        await controller.shutdown()


async def fail_over(w: World, body: dict[str, Any]) -> None:
    """Add ``body`` at 0 s, route to vendor at 5 s, fail vendor at 10, 15, 20 s; settle at 21 s."""
    await w.controller.on_route_event("ADDED", body)
    await w.tick(5, vendor=True, inhouse=True)
    for at in (10, 15, 20):
        await w.tick(at, vendor=False)
    await w.clock.until(21)


# --- 1. the first routing ------------------------------------------------------------------


async def test_first_routing_waits_for_the_preferred_backend_then_routes() -> None:
    async with running_world() as w:
        await w.controller.on_route_event("ADDED", route())
        await w.tick(1, inhouse=True)  # the fallback answers first: no settling for it
        await w.clock.until(1.5)
        assert w.selector() is None
        assert w.condition("Ready") == ("False", "AwaitingFirstProbes")
        await w.tick(2, vendor=True)
        await w.clock.until(3)

        assert w.writes() == [
            (0, "patch_status"),  # Ready=False AwaitingFirstProbes
            (1, "patch_status"),  # inhouse healthy, still waiting for vendor
            (2, "create"),  # the stable Service, pointing at vendor
            (2, "create_event"),
            (2, "patch_status"),
        ]
        assert w.selector() == {"app": "vendor"}
        assert w.events() == [("Normal", "Routed")]
        assert w.condition("Ready") == ("True", "Routed")
        assert w.status()["activeBackend"] == "vendor"
        assert w.status()["traffic"] == [{"backend": "vendor", "weight": 100}]
        assert w.status()["failoverCount"] == 0


# --- 2. failover ---------------------------------------------------------------------------


async def test_failover_after_failure_threshold_routes_first_then_event_and_status() -> None:
    async with running_world() as w:
        await fail_over(w, route())

        # Failures at 10 and 15 s decide nothing: their status change (counters) is deferred
        # and goes out with the failover's status. One routing write, one Event, one status.
        assert w.writes(since=6) == [
            (20, "patch"),  # 3 failures: the routing write comes first
            (20, "create_event"),
            (20, "patch_status"),
        ]
        assert w.calls.count("patch") == 1
        assert w.selector() == {"app": "inhouse"}
        event = w.kube.posted_events[-1]
        assert (event["type"], event["reason"]) == ("Warning", "FailedOver")
        assert "vendor failed 3 probes in a row" in event["message"]
        assert "moving traffic to inhouse" in event["message"]
        status = w.status()
        assert status["activeBackend"] == "inhouse"
        assert status["failoverCount"] == 1
        assert status["lastFailoverTime"] == "2025-01-01T00:00:20Z"
        assert status["traffic"] == [{"backend": "inhouse", "weight": 100}]
        assert w.condition("Ready") == ("True", "Routed")
        assert w.condition("Degraded") == ("True", "BackendUnhealthy")


async def test_status_writes_never_delay_a_routing_write() -> None:
    """A status write the API server has not answered, and failed probes that decide nothing,
    neither hold nor cost a routing write: the failover is carried out at the deciding probe."""
    async with running_world() as w:
        await w.controller.on_route_event("ADDED", route())
        await w.clock.until(1)
        w.kube.status_writes_held = held = asyncio.Event()
        await w.tick(5, vendor=True, inhouse=True)  # routed; this status write hangs
        await w.tick(10, vendor=False)
        await w.tick(15, vendor=False)
        assert w.writes(since=6) == []  # two failures decide nothing: no write at all
        await w.tick(20, vendor=False)
        await w.clock.until(21)

        assert w.selector() == {"app": "inhouse"}
        # The Event and the status follow the status write still in flight.
        assert w.writes(since=6) == [(20, "patch")]
        assert w.status()["conditions"][0]["reason"] == "AwaitingFirstProbes"
        held.set()
        await w.clock.until(22)
        # The write sent at 5 s lands; then one write carries everything since (coalesced).
        assert w.writes(since=6) == [(20, "patch"), (21, "create_event"), (21, "patch_status")]
        assert w.status()["activeBackend"] == "inhouse"
        assert w.status()["failoverCount"] == 1
        assert w.backend_status("vendor")["consecutiveFailures"] == 3


async def test_gauges_follow_health_and_traffic_through_a_failover() -> None:
    async with running_world() as w:

        def gauge(name: str, backend: str) -> float | None:
            labels = {"namespace": NS, "route": "chat", "backend": backend}
            return w.metrics.registry.get_sample_value(name, labels)

        await w.controller.on_route_event("ADDED", route())
        await w.tick(5, vendor=True, inhouse=True)
        await w.clock.until(6)
        assert [gauge("modelroute_backend_up", b) for b in ("vendor", "inhouse")] == [1, 1]
        assert [gauge("modelroute_active_backend", b) for b in ("vendor", "inhouse")] == [1, 0]
        for at in (10, 15, 20):
            await w.tick(at, vendor=False)
        await w.clock.until(21)
        assert [gauge("modelroute_backend_up", b) for b in ("vendor", "inhouse")] == [0, 1]
        assert [gauge("modelroute_active_backend", b) for b in ("vendor", "inhouse")] == [0, 1]
        assert gauge("modelroute_backend_weight", "inhouse") == 100


async def test_a_mass_failover_costs_each_route_one_routing_write_one_event_one_status() -> None:
    routes = 40
    async with running_world() as w:
        for i in range(routes):
            body = route()
            body["metadata"].update(name=f"chat-{i}", uid=f"uid-{i}")
            body["spec"]["service"]["name"] = f"chat-{i}-llm"
            await w.controller.on_route_event("ADDED", body)
        await w.tick(5, vendor=True, inhouse=True)  # every route shares both probes
        await w.clock.until(6)
        for at in (10, 15, 20):
            await w.tick(at, vendor=False)
        await w.clock.until(60)

        writes = [call for _, call in w.writes(since=6)]
        assert writes.count("patch") == routes
        assert writes.count("create_event") == routes
        assert writes.count("patch_status") == routes
        assert {e["involvedObject"]["name"] for e in w.kube.posted_events[-routes:]} == {
            f"chat-{i}" for i in range(routes)
        }
        for i in range(routes):
            assert w.kube.services[(NS, f"chat-{i}-llm")]["spec"]["selector"] == {"app": "inhouse"}
            assert w.kube.route_status[(NS, f"chat-{i}")]["failoverCount"] == 1
        # Nothing was written before the deciding probe, and no routing write after it.
        assert {t for t, _ in w.writes(since=6)} == {20}


# --- 3. automatic failback -----------------------------------------------------------------


async def test_automatic_failback_fires_on_the_recheck_timer_at_the_end_of_stabilization() -> None:
    async with running_world() as w:
        await fail_over(w, route())
        await w.tick(25, vendor=True)
        await w.tick(30, vendor=True)  # healthy again (successThreshold 2): healthy since 30 s
        await w.clock.until(89.9)  # no probe result after 30 s: only the timer can act
        assert w.selector() == {"app": "inhouse"}
        await w.clock.until(200)

        assert w.writes(since=21) == [
            # 25 s: one success of two decides nothing (deferred); 30 s: vendor is healthy.
            (30, "patch_status"),
            (window_end(90), "patch"),  # healthy since 30 s + stabilizationSeconds 60
            (window_end(90), "create_event"),
            (window_end(90), "patch_status"),
        ]
        assert w.selector() == {"app": "vendor"}
        assert w.events()[-1] == ("Normal", "FailedBack")
        status = w.status()
        assert status["activeBackend"] == "vendor"
        assert status["failoverCount"] == 2  # failovers and failbacks
        assert status["lastFailoverTime"] == "2025-01-01T00:01:30.001000Z"
        assert w.condition("Degraded") == ("False", "AllBackendsHealthy")


async def test_a_failed_probe_while_recovering_restarts_the_stabilization_wait() -> None:
    async with running_world() as w:
        await fail_over(w, route())
        await w.tick(25, vendor=True)
        await w.tick(30, vendor=False)  # the streak breaks: not healthy at 30 s after all
        await w.tick(35, vendor=True)
        await w.tick(40, vendor=True)  # healthy since 40 s
        await w.clock.until(200)

        moves = [(t, call) for t, call in w.writes(since=21) if call == "patch"]
        assert moves == [(window_end(100), "patch")]
        assert w.selector() == {"app": "vendor"}


async def test_a_relapse_during_stabilization_cancels_the_pending_failback() -> None:
    async with running_world() as w:
        await fail_over(w, route())
        await w.tick(25, vendor=True)
        await w.tick(30, vendor=True)  # healthy since 30 s: failback due at 90 s
        for at in (35, 40, 45):
            await w.tick(at, vendor=False)  # unhealthy again at 45 s
        await w.tick(50, vendor=True)
        await w.tick(55, vendor=True)  # healthy since 55 s: failback due at 115 s
        await w.clock.until(114)
        assert w.selector() == {"app": "inhouse"}
        await w.clock.until(200)

        moves = [(t, call) for t, call in w.writes(since=21) if call == "patch"]
        assert moves == [(window_end(115), "patch")]
        assert w.status()["failoverCount"] == 2


# --- 4. manual failback --------------------------------------------------------------------


async def pending_manual_failback(w: World, body: dict[str, Any]) -> None:
    """Fail ``body`` (Manual mode) over at 20 s; vendor healthy from 30 s; settle at 95 s."""
    await fail_over(w, body)
    await w.tick(25, vendor=True)
    await w.tick(30, vendor=True)
    await w.clock.until(95)


async def test_manual_failback_waits_for_the_approval_annotation() -> None:
    async with running_world() as w:
        body = route(mode="Manual")
        await pending_manual_failback(w, body)
        assert w.selector() == {"app": "inhouse"}
        assert w.condition("Degraded") == ("True", "FailbackPending")
        # Stabilization ended at 90 s: status says so, the Service stays.
        assert w.writes(since=31) == [(window_end(90), "patch_status")]

        await w.clock.until(100)
        await w.controller.on_route_event("MODIFIED", approve(body, "1"))
        await w.clock.until(101)

        assert w.writes(since=96) == [
            (100, "patch"),
            (100, "create_event"),
            (100, "patch_status"),
        ]
        assert w.selector() == {"app": "vendor"}
        assert w.events()[-1] == ("Normal", "FailedBack")
        assert w.status()["failbackApproval"] == "1"
        assert w.status()["activeBackend"] == "vendor"
        assert w.condition("Degraded") == ("False", "AllBackendsHealthy")


async def test_an_approval_value_moves_traffic_once() -> None:
    async with running_world() as w:
        body = route(mode="Manual")
        await pending_manual_failback(w, body)
        await w.clock.until(100)
        await w.controller.on_route_event("MODIFIED", approve(body, "1"))
        await w.clock.until(101)
        await w.controller.on_route_event("MODIFIED", approve(body, "1"))  # the same again
        # A second outage and recovery: FailbackPending again from 185 s.
        for at in (105, 110, 115):
            await w.tick(at, vendor=False)
        await w.tick(120, vendor=True)
        await w.tick(125, vendor=True)
        await w.clock.until(190)
        assert w.condition("Degraded") == ("True", "FailbackPending")
        # The old value, with another annotation changed so the worker does reconcile.
        await w.controller.on_route_event("MODIFIED", approve(body, "1", note="x"))
        await w.clock.until(200)
        assert w.selector() == {"app": "inhouse"}
        assert w.writes(since=186) == []
        await w.controller.on_route_event("MODIFIED", approve(body, "2", note="x"))
        await w.clock.until(201)

        patches = [t for t, call in w.calls.stamped if call == "patch"]
        assert patches == [20, 100, 115, 200]
        assert w.selector() == {"app": "vendor"}
        assert w.status()["failbackApproval"] == "2"
        assert w.status()["failoverCount"] == 4


# --- 5. an invalid spec --------------------------------------------------------------------


async def test_an_invalid_spec_is_reported_once_and_a_fixed_one_routes() -> None:
    async with running_world() as w:
        broken = route("vendor", "vendor")
        await w.controller.on_route_event("ADDED", broken)
        await w.clock.until(600)

        assert w.calls.stamped == [(0, "create_event"), (0, "patch_status")]
        assert w.events() == [("Warning", "InvalidSpec")]
        assert w.condition("Ready") == ("False", "InvalidSpec")
        ready = next(c for c in w.status()["conditions"] if c["type"] == "Ready")
        assert "spec.backends[1].name: duplicate backend name 'vendor'" in ready["message"]
        assert w.probes.subscribers == {}
        assert w.selector() is None

        await w.controller.on_route_event("MODIFIED", route(generation=2))
        await w.tick(605, vendor=True, inhouse=True)
        await w.clock.until(606)
        assert w.selector() == {"app": "vendor"}
        assert w.events() == [("Warning", "InvalidSpec"), ("Normal", "Routed")]
        assert w.condition("Ready") == ("True", "Routed")
        assert w.status()["observedGeneration"] == 2


# --- 6. a spec change during a failover ----------------------------------------------------


async def test_a_spec_change_during_a_failover_keeps_health_and_the_active_backend() -> None:
    async with running_world() as w:
        await fail_over(w, route())
        await w.clock.until(22)
        await w.controller.on_route_event(
            "MODIFIED", route("vendor", "inhouse", "alt", generation=2)
        )
        await w.tick(25, vendor=True, inhouse=True, alt=True)
        await w.clock.until(26)

        assert w.writes(since=21) == [(22, "patch_status"), (25, "patch_status")]
        assert (w.calls.count("create"), w.calls.count("patch")) == (1, 1)
        assert w.selector() == {"app": "inhouse"}
        assert w.events() == [("Normal", "Routed"), ("Warning", "FailedOver")]
        status = w.status()
        assert (status["activeBackend"], status["failoverCount"]) == ("inhouse", 1)
        assert status["observedGeneration"] == 2
        # vendor's record came along: one success after 3 failures is not healthy yet (a fresh
        # record would have taken that first result as healthy).
        vendor = w.backend_status("vendor")
        assert (vendor["healthy"], vendor["consecutiveSuccesses"]) == (False, 1)
        assert sorted(w.probes.counts().values()) == [1, 1, 1]  # the old worker unsubscribed


# --- 7. retrying a failed status write -----------------------------------------------------


async def test_a_failed_status_write_is_retried_on_the_backoff_timer() -> None:
    async with running_world() as w:
        await w.controller.on_route_event("ADDED", route())
        await w.tick(5, vendor=True, inhouse=True)
        await w.tick(10, vendor=False)
        await w.tick(15, vendor=False)
        await w.clock.until(16)
        w.kube.fail_status_writes = 2
        await w.tick(20, vendor=False)  # failover; then no probe result until 25 s
        await w.clock.until(22)
        assert w.status()["activeBackend"] == "vendor"  # two writes failed so far
        await w.clock.until(24.5)

        assert w.writes(since=16) == [
            (20, "patch"),
            (20, "create_event"),
            (20, "patch_status"),  # 500
            (21, "patch_status"),  # retry after 1 s: 500
            (23, "patch_status"),  # retry after 2 s more: written
        ]
        status = w.status()
        assert (status["activeBackend"], status["failoverCount"]) == ("inhouse", 1)
        assert status["lastFailoverTime"] == "2025-01-01T00:00:20Z"
        assert w.events() == [("Normal", "Routed"), ("Warning", "FailedOver")]
        await w.clock.until(120)
        assert w.writes(since=24) == []  # written: no more retries


# --- 8. steady state -----------------------------------------------------------------------


async def test_identical_probe_results_for_an_hour_make_no_api_calls() -> None:
    async with running_world() as w:
        await w.controller.on_route_event("ADDED", route())
        for at in range(5, 3605, 5):  # vendor always up, inhouse always down
            await w.tick(at, vendor=True, inhouse=False)
        await w.clock.until(3606)

        assert w.writes() == [
            (0, "patch_status"),
            (5, "create"),
            (5, "create_event"),
            (5, "patch_status"),
            # 10 s: vendor reaches successThreshold, inhouse 2 failures; 15 s: inhouse reaches
            # failureThreshold (counters capped from here). Counters only, no health flip: one
            # deferred write, status_defer_seconds (30) after the first of them.
            (40, "patch_status"),
        ]
        assert [call for t, call in w.calls.stamped if t > 40] == []  # no reads either
        assert w.events() == [("Normal", "Routed")]
        assert w.selector() == {"app": "vendor"}


def reconciles(w: World) -> float:
    """Reconciles run so far (every route of the world)."""
    return w.metrics.registry.get_sample_value("modelroute_reconciles_total") or 0.0


async def failing_below_the_threshold(w: World) -> float:
    """Route to vendor at 5 s; vendor fails at 10 and 15 s (threshold 3). Returns the
    reconciles counted before those failures."""
    await w.controller.on_route_event("ADDED", route())
    await w.tick(5, vendor=True, inhouse=True)
    await w.clock.until(6)
    settled = reconciles(w)
    await w.tick(10, vendor=False)
    await w.tick(15, vendor=False)
    return settled


async def test_a_failure_below_the_threshold_is_planned_when_its_status_is_due() -> None:
    """It decides nothing: no plan at once (the deciding failure may be a probe away and must
    not queue behind 3,000 such plans), one when its deferred status is due, and its counters
    are written status_defer_seconds (30) after the first failure, not after the plan."""
    async with running_world() as w:
        settled = await failing_below_the_threshold(w)
        await w.clock.until(39.9)
        assert reconciles(w) == settled
        await w.clock.until(40.1)
        assert reconciles(w) == settled + 1
        await w.clock.until(60)

        assert w.writes(since=6) == [(40, "patch_status")]
        assert w.backend_status("vendor")["consecutiveFailures"] == 2
        assert w.backend_status("vendor")["healthy"] is True
        assert reconciles(w) == settled + 1


async def test_a_failure_below_the_threshold_then_the_deciding_one_plans_once() -> None:
    async with running_world() as w:
        settled = await failing_below_the_threshold(w)
        await w.tick(16, vendor=False)  # the deciding one, long before the quiet plan is due
        await w.clock.until(30)

        assert reconciles(w) == settled + 1
        assert w.writes(since=6) == [(16, "patch"), (16, "create_event"), (16, "patch_status")]
        assert w.selector() == {"app": "inhouse"}


async def test_a_rate_limited_backend_does_not_fail_liveness() -> None:
    """A Retry-After pause (up to 60 s) is a quiet probe loop, not a stuck one."""
    async with running_world() as w:
        await w.controller.on_route_event("ADDED", route())
        await w.tick(1, vendor=True, inhouse=True)
        quiet_from = asyncio.get_running_loop().time()
        # Probes every 5 s with a 2 s timeout: 6 x 7 s = 42 s, plus the 60 s Retry-After cap.
        assert w.controller.stalled(quiet_from + 101) == []
        assert w.controller.stalled(quiet_from + 103) == [ROUTE_KEY]


async def test_the_cluster_domain_setting_names_an_external_name_stable_service() -> None:
    """A backend Service without a selector (an egress to a vendor) is reached through an
    ExternalName in the cluster's own DNS domain (--cluster-domain), not cluster.local."""
    async with running_world(Settings(cluster_domain="corp.example")) as w:
        # It exposes the stable Service's port: DNS keeps the port a client dials.
        egress = {
            "metadata": {"name": "egress-svc", "namespace": NS},
            "spec": {"ports": [{"port": 80}]},
        }
        w.kube.seed(egress, watched=False)
        body = route("egress", "inhouse")
        await w.controller.on_route_event("ADDED", body)
        await w.tick(5, egress=True, inhouse=True)
        await w.clock.until(6)
        stable = w.kube.services[STABLE_KEY]["spec"]
        assert (stable["type"], stable["externalName"]) == (
            "ExternalName",
            f"egress-svc.{NS}.svc.corp.example",
        )
