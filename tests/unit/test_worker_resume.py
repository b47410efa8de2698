"""A new process finds the routing object moved on, but status not (the process before it was
killed between its routing write and its status write), through Controller and RouteWorker on
a fake clock (see test_worker): status tells where traffic goes, suspended or not, and the move
is recorded (Event and count) exactly once."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelroute.control.controller import Controller
from modelroute.kube.client import SERVICES
from modelroute.routing.service_object import BACKEND_ANNOTATION
from tests.unit.test_worker import ROUTE_KEY, STABLE_KEY, World, running_world
from tests.unit.test_worker_incident import routed_to_vendor, with_spec

pytestmark = pytest.mark.looptime


async def restarted_after_an_unrecorded_move(w: World, target: str, **spec: Any) -> dict[str, Any]:
    """Route to vendor, then kill the process right after a routing write to ``target`` (its
    status and Event never made it) and start a new one on the same API server."""
    body = await routed_to_vendor(w)
    await w.controller.shutdown()
    pin = {"metadata": {"annotations": {BACKEND_ANNOTATION: target}}}
    w.kube.mutate(STABLE_KEY, pin | {"spec": {"selector": {"app": target}}})
    w.kube.deliver(w.controller._deps.caches[SERVICES])
    w.controller = Controller(w.controller._deps)
    restarted = with_spec(body, 2, **spec)
    restarted["status"] = copy.deepcopy(w.kube.route_status[ROUTE_KEY])
    assert restarted["status"]["activeBackend"] == "vendor"
    await w.controller.on_route_event("ADDED", restarted)
    return restarted


def routing_writes(w: World, since: float) -> list[tuple[float, str]]:
    return [(t, call) for t, call in w.writes(since=since) if call in ("create", "patch")]


async def test_an_unrecorded_failover_is_recorded_once_by_the_next_process() -> None:
    async with running_world() as w:
        await restarted_after_an_unrecorded_move(w, "inhouse")
        await w.tick(10, vendor=False, inhouse=True)
        await w.clock.until(11)
        assert w.status()["activeBackend"] == "inhouse"
        assert w.status()["failoverCount"] == 1
        assert w.events().count(("Warning", "FailedOver")) == 1
        assert routing_writes(w, since=6) == []  # traffic was already there


async def test_a_suspended_route_shows_an_unrecorded_failover_and_records_it_once() -> None:
    # The process that moved traffic was killed before its status write; the admin suspended
    # the route before the next process started. Status must say where traffic goes (inhouse),
    # and the failover the operator made is recorded once: now, not again on resume.
    async with running_world() as w:
        body = await restarted_after_an_unrecorded_move(w, "inhouse", suspend=True)
        await w.tick(10, vendor=False, inhouse=True)
        await w.clock.until(11)
        status = w.status()
        assert status["activeBackend"] == "inhouse"
        assert status["traffic"] == [{"backend": "inhouse", "weight": 100}]
        assert w.condition("Ready") == ("False", "Suspended")
        assert status["failoverCount"] == 1
        assert w.events().count(("Warning", "FailedOver")) == 1

        await w.controller.on_route_event("MODIFIED", with_spec(body, 3, suspend=False))
        for at in (15, 20):
            await w.tick(at, vendor=False, inhouse=True)
        await w.clock.until(21)
        assert w.status()["failoverCount"] == 1
        assert w.events().count(("Warning", "FailedOver")) == 1
        assert w.condition("Ready") == ("True", "Routed")
        assert routing_writes(w, since=6) == []


async def suspended_then_moved_to_inhouse(w: Any) -> dict[str, Any]:
    """Route on vendor, suspended (status written), the process stopped, the Service moved to
    inhouse while no process ran, and a new controller: returns the route's body."""
    body = await routed_to_vendor(w)
    await w.controller.on_route_event("MODIFIED", with_spec(body, 2, suspend=True))
    await w.clock.until(7)
    assert w.condition("Ready") == ("False", "Suspended")
    await w.controller.shutdown()
    pin = {"metadata": {"annotations": {BACKEND_ANNOTATION: "inhouse"}}}
    w.kube.mutate(STABLE_KEY, pin | {"spec": {"selector": {"app": "inhouse"}}})
    w.kube.deliver(w.controller._deps.caches[SERVICES])
    w.controller = Controller(w.controller._deps)
    return body


async def test_a_move_made_by_hand_while_suspended_and_down_is_shown_but_not_counted() -> None:
    # Suspended before the restart: the operator never writes routing while suspended, so a
    # move it finds then is an admin's pin, shown as it is, never counted as a failover.
    async with running_world() as w:
        body = await suspended_then_moved_to_inhouse(w)
        restarted = with_spec(body, 2, suspend=True)
        restarted["status"] = copy.deepcopy(w.kube.route_status[ROUTE_KEY])
        await w.controller.on_route_event("ADDED", restarted)
        await w.tick(10, vendor=True, inhouse=True)
        await w.clock.until(11)
        assert w.status()["activeBackend"] == "inhouse"
        assert w.status().get("failoverCount", 0) == 0
        assert ("Warning", "FailedOver") not in w.events()
        assert routing_writes(w, since=6) == []


async def test_a_failover_made_right_after_resuming_is_recorded_though_status_said_suspended() -> (
    None
):
    # Resumed (generation 3): the process failed over (routing write) and was killed before
    # its first status write, which still says Suspended. The spec is not suspended, so the
    # operator may have written routing: the move is its failover, owed, not a hand pin.
    async with running_world() as w:
        body = await suspended_then_moved_to_inhouse(w)
        restarted = with_spec(body, 3, suspend=False)
        restarted["status"] = copy.deepcopy(w.kube.route_status[ROUTE_KEY])
        await w.controller.on_route_event("ADDED", restarted)
        await w.tick(10, vendor=False, inhouse=True)
        await w.clock.until(11)
        assert w.status()["activeBackend"] == "inhouse"
        assert w.status().get("failoverCount", 0) == 1
        assert w.events().count(("Warning", "FailedOver")) == 1
        assert routing_writes(w, since=6) == []
