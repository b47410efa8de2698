"""The incident controls through RouteWorker and Controller, on a fake clock (see test_worker):
a suspended route writes no routing while its health and status go on; a drill makes the real
failover on healthy backends, marked as a drill."""

from __future__ import annotations

import asyncio
import copy
import functools
from typing import Any

import pytest

from modelroute.kube.client import MODELROUTES, SERVICES
from modelroute.routing.service_object import BACKEND_ANNOTATION
from tests.unit.test_worker import EPOCH, NS, STABLE_KEY, World, route, running_world

pytestmark = pytest.mark.looptime


def with_spec(body: dict[str, Any], generation: int, **spec: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    changed["spec"].update(spec)
    changed["metadata"]["generation"] = generation
    return changed


async def routed_to_vendor(w: World) -> dict[str, Any]:
    body = route()
    await w.controller.on_route_event("ADDED", body)
    await w.tick(5, vendor=True, inhouse=True)
    await w.clock.until(6)
    assert w.selector() == {"app": "vendor"}
    return body


async def test_a_suspended_route_writes_no_routing_and_resuming_routes_at_once() -> None:
    async with running_world() as w:
        body = await routed_to_vendor(w)
        await w.controller.on_route_event("MODIFIED", with_spec(body, 2, suspend=True))
        await w.clock.until(7)
        assert w.condition("Ready") == ("False", "Suspended")
        assert w.events()[-1] == ("Normal", "Suspended")
        for at in (10, 15, 20, 25):
            await w.tick(at, vendor=False, inhouse=True)
        await w.clock.until(26)
        assert [call for _, call in w.writes(since=6) if call in ("create", "patch")] == []
        assert w.selector() == {"app": "vendor"}  # held where it was
        assert w.backend_status("vendor")["healthy"] is False  # health goes on
        assert w.condition("Degraded") == ("True", "BackendUnhealthy")
        ready = next(c for c in w.status()["conditions"] if c["type"] == "Ready")
        assert "would move traffic to inhouse 100%" in ready["message"]
        assert w.condition("Reconciling") == ("False", "Suspended")

        await w.controller.on_route_event("MODIFIED", with_spec(body, 3, suspend=False))
        await w.clock.until(27)
        assert w.writes(since=26)[0][1] == "patch"  # routing first, at once
        assert w.selector() == {"app": "inhouse"}
        assert w.events()[-2:] == [("Warning", "FailedOver"), ("Normal", "Resumed")]
        assert w.condition("Ready") == ("True", "Routed")


async def test_a_drill_fails_over_a_healthy_backend_and_says_so() -> None:
    async with running_world() as w:
        body = await routed_to_vendor(w)
        until = (EPOCH.replace(second=40)).isoformat().replace("+00:00", "Z")
        drill = {"backend": "vendor", "until": until}
        await w.controller.on_route_event("MODIFIED", with_spec(body, 2, drill=drill))
        await w.clock.until(7)
        assert w.events()[-1] == ("Normal", "DrillStarted")
        assert w.status()["drill"] == {"backend": "vendor", "until": until, "phase": "Active"}
        for at in (10, 15, 20):
            await w.tick(at, vendor=True, inhouse=True)  # every probe passes
        await w.clock.until(21)
        assert w.selector() == {"app": "inhouse"}  # the real failover
        failed_over = w.kube.posted_events[-1]
        assert failed_over["reason"] == "FailedOver"
        assert failed_over["message"].startswith("Drill: ")
        assert w.condition("Degraded") == ("True", "Drill")
        await w.clock.until(41)  # the drill's end is a recheck: status says it ended
        assert w.status()["drill"]["phase"] == "Recovering"
        assert w.events()[-1] == ("Normal", "DrillEnded")


async def test_a_route_waiting_to_adopt_takes_over_once_the_retaining_route_is_deleted() -> None:
    async with running_world() as w:
        old = with_spec(route(), 1, routing={"deletionPolicy": "Retain"})
        w.kube.seed(
            {**old, "apiVersion": "modelroute.dev/v1alpha1", "kind": "ModelRoute"},
            kind=MODELROUTES,
            watched=False,
        )
        await w.controller.on_route_event("ADDED", old)
        await w.tick(5, vendor=True, inhouse=True)
        await w.clock.until(6)
        assert w.kube.services[STABLE_KEY]["metadata"].get("ownerReferences") in (None, [])

        renamed = with_spec(route(), 1, routing={"adopt": True})
        renamed["metadata"].update(name="chat-renamed", uid="uid-2")
        await w.controller.on_route_event("ADDED", renamed)
        await w.tick(10, vendor=True, inhouse=True)
        await w.clock.until(11)
        status = w.kube.route_status[(NS, "chat-renamed")]
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "ServiceConflict"  # the retaining route still exists

        w.kube.delete((NS, "chat"), kind=MODELROUTES)
        await w.controller.on_route_event("DELETED", old)
        await w.clock.until(12)  # no probe result: the deletion alone wakes the adopter
        service = w.kube.services[STABLE_KEY]
        assert [o["uid"] for o in service["metadata"]["ownerReferences"]] == ["uid-2"]
        assert service["metadata"]["labels"]["modelroute.dev/route"] == "chat-renamed"
        assert service["spec"]["selector"] == {"app": "vendor"}


async def test_traffic_pinned_by_hand_while_suspended_shows_in_status_and_moves_with_events() -> (
    None
):
    # On-call suspends the route and pins traffic to inhouse by hand: status must say where
    # traffic is, and resuming moves it back with the Event a failback always has.
    async with running_world() as w:
        body = await routed_to_vendor(w)
        await w.controller.on_route_event("MODIFIED", with_spec(body, 2, suspend=True))
        await w.clock.until(7)
        pin = {"metadata": {"annotations": {BACKEND_ANNOTATION: "inhouse"}}}
        w.kube.mutate(STABLE_KEY, pin | {"spec": {"selector": {"app": "inhouse"}}})
        w.kube.deliver_to(functools.partial(w.controller.on_object_event, SERVICES))
        await w.clock.until(8)
        assert w.status()["activeBackend"] == "inhouse"
        assert w.status()["traffic"] == [{"backend": "inhouse", "weight": 100}]
        assert w.condition("Ready") == ("False", "Suspended")
        assert [call for _, call in w.writes(since=7) if call in ("create", "patch")] == []

        await w.controller.on_route_event("MODIFIED", with_spec(body, 3, suspend=False))
        for at in range(15, 100, 5):  # past the 60 s stabilization window
            await w.tick(at, vendor=True, inhouse=True)
        await w.clock.until(101)
        assert w.selector() == {"app": "vendor"}
        assert ("Normal", "FailedBack") in w.events()


async def test_a_spec_change_right_after_a_failover_keeps_its_unposted_failed_over_event() -> None:
    # Events wait behind routing writes in a mass failover; an admin's edit in that window
    # replaces the worker, and the FailedOver it had not posted yet must still be posted, once.
    async with running_world() as w:
        body = await routed_to_vendor(w)
        w.kube.events_held = held = asyncio.Event()
        for at in (10, 15, 20):
            await w.tick(at, vendor=False, inhouse=True)
        await w.clock.until(21)
        assert w.selector() == {"app": "inhouse"}  # routing went first
        assert ("Warning", "FailedOver") not in w.events()  # its Event still waits
        await w.controller.on_route_event("MODIFIED", with_spec(body, 2, suspend=False))
        await w.clock.until(22)
        held.set()
        await w.tick(25, vendor=False, inhouse=True)
        await w.clock.until(26)
        assert w.events().count(("Warning", "FailedOver")) == 1
