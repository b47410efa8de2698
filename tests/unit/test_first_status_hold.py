"""A new route's first status waits (up to first_status_hold_seconds) for every backend's first
verdict: one status write at start-up instead of one per backend. Routing and Events do not."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

import pytest

from modelroute.settings import Settings
from tests.unit.test_worker import World, route, running_world

pytestmark = pytest.mark.looptime


def held_world(hold: float) -> AbstractAsyncContextManager[World]:
    return running_world(Settings(first_status_hold_seconds=hold))


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
