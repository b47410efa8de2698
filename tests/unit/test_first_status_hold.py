"""A new route's first status waits (up to first_status_hold_seconds) for every backend's first
verdict: one status write at start-up instead of one per backend. Routing and Events do not."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from modelroute.control.controller import Controller
from modelroute.control.route import Deps
from modelroute.kube.cache import ObjectCache, slim_object, slim_secret
from modelroute.kube.client import SECRETS, SERVICES
from modelroute.kube.events import EventRecorder
from modelroute.metrics import Metrics
from modelroute.settings import Settings
from tests.fakes.kube import FakeKube
from tests.unit.test_worker import Clock, ScriptedProbes, TimedCalls, World, _target, route

pytestmark = pytest.mark.looptime


@asynccontextmanager
async def held_world(hold: float) -> AsyncIterator[World]:
    clock, kube = Clock(), FakeKube()
    calls = TimedCalls(clock)
    kube.calls = calls
    for name in ("vendor", "inhouse", "alt"):
        kube.seed(_target(name), watched=False)
    probes = ScriptedProbes(clock)
    deps = Deps(
        settings=Settings(first_status_hold_seconds=hold),
        kube=kube,
        caches={SERVICES: ObjectCache(functools.partial(kube.get_object, SERVICES), slim_object)},
        secrets=ObjectCache(functools.partial(kube.get_object, SECRETS), slim_secret),
        metrics=(metrics := Metrics()),
        events=EventRecorder(kube, "test"),
        probes=probes,
        now=clock.now,
    )
    w = World(clock, kube, calls, probes, Controller(deps), metrics)
    try:
        yield w
    finally:
        await w.controller.shutdown()
        await deps.events.close()


async def test_the_first_status_waits_for_every_backends_first_verdict() -> None:
    async with held_world(5.0) as w:
        await w.controller.on_route_event("ADDED", route("vendor", "inhouse", "alt"))
        await w.tick(1, vendor=True)
        await w.clock.until(1.5)
        assert w.selector() == {"app": "vendor"}  # routing did not wait
        assert [call for _, call in w.writes()] == ["create", "create_event"]
        assert w.status() == {}
        await w.tick(2, inhouse=True)
        await w.tick(3, alt=False)
        await w.clock.until(3.5)
        # One status write, with all three verdicts, as soon as the last one came.
        assert [t for t, call in w.writes() if call == "patch_status"] == [3]
        assert [b.get("healthy") for b in w.status()["backends"]] == [True, True, False]
        assert w.condition("Ready")[0] == "True"


async def test_a_backend_without_a_verdict_holds_the_first_status_no_longer_than_the_hold() -> None:
    async with held_world(5.0) as w:
        await w.controller.on_route_event("ADDED", route("vendor", "inhouse"))
        await w.tick(1, vendor=True)
        await w.clock.until(4.9)
        assert w.status() == {}
        await w.clock.until(5.1)
        assert [t for t, call in w.writes() if call == "patch_status"] == [5]
        assert w.backend_status("inhouse").get("healthy") is None


async def test_without_a_hold_the_first_status_is_written_at_once() -> None:
    async with held_world(0.0) as w:
        await w.controller.on_route_event("ADDED", route("vendor", "inhouse"))
        await w.clock.until(0.5)
        assert w.condition("Ready") == ("False", "AwaitingFirstProbes")
