"""A spec change that moves routing to another object releases the previous one, through
Controller and RouteWorker on a fake clock (see test_worker): deleted under deletionPolicy
Delete once the new object carries traffic, kept without its ownerReference under Retain, and
left alone while nothing routes through the new one (suspended) or when it is not ours."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import aiohttp
import pytest

from modelroute.control.controller import Controller
from modelroute.kube.client import ApiError
from modelroute.settings import Settings
from tests.unit.test_worker import NS, ROUTE_KEY, STABLE_KEY, World, running_world
from tests.unit.test_worker_incident import routed_to_vendor, with_spec

pytestmark = pytest.mark.looptime

RENAMED_KEY = (NS, "chat-llm-v2")


def renamed(body: dict[str, Any], generation: int, **spec: Any) -> dict[str, Any]:
    changed = with_spec(body, generation, **spec)
    changed["spec"]["service"] = {"name": RENAMED_KEY[1], "port": 80}
    return changed


def selector(w: World, key: tuple[str, str]) -> dict[str, str] | None:
    service = w.kube.services.get(key)
    return service["spec"]["selector"] if service else None


async def test_renaming_the_routing_object_deletes_the_previous_one_once_the_new_routes() -> None:
    async with running_world() as w:
        body = await routed_to_vendor(w)
        await w.controller.on_route_event("MODIFIED", renamed(body, 2))
        await w.clock.until(7)
        assert selector(w, RENAMED_KEY) == {"app": "vendor"}
        assert STABLE_KEY not in w.kube.services
        assert w.calls.count("delete") == 1
        await w.tick(10, vendor=True, inhouse=True)
        await w.clock.until(11)
        assert w.calls.count("delete") == 1  # released once


async def test_under_retain_the_previous_object_stays_without_our_owner_reference() -> None:
    async with running_world() as w:
        body = await routed_to_vendor(w)
        assert w.kube.services[STABLE_KEY]["metadata"]["ownerReferences"]
        await w.controller.on_route_event(
            "MODIFIED", renamed(body, 2, routing={"deletionPolicy": "Retain"})
        )
        await w.clock.until(7)
        assert selector(w, RENAMED_KEY) == {"app": "vendor"}
        kept = w.kube.services[STABLE_KEY]
        assert kept["metadata"].get("ownerReferences") in (None, [])
        assert kept["spec"]["selector"] == {"app": "vendor"}  # where it last pointed
        assert w.calls.count("delete") == 0


async def test_nothing_is_released_while_the_new_object_carries_no_traffic() -> None:
    async with running_world() as w:
        body = await routed_to_vendor(w)
        suspended = renamed(body, 2, suspend=True)
        await w.controller.on_route_event("MODIFIED", suspended)
        await w.tick(10, vendor=True, inhouse=True)
        await w.clock.until(11)
        assert RENAMED_KEY not in w.kube.services  # suspended: routing is not written
        assert selector(w, STABLE_KEY) == {"app": "vendor"}  # so the old one still routes
        resumed = copy.deepcopy(suspended)
        resumed["spec"]["suspend"] = False
        resumed["metadata"]["generation"] = 3
        await w.controller.on_route_event("MODIFIED", resumed)
        await w.clock.until(12)
        assert selector(w, RENAMED_KEY) == {"app": "vendor"}
        assert STABLE_KEY not in w.kube.services  # released by the worker after the next


async def test_an_object_the_route_does_not_own_is_never_released() -> None:
    async with running_world() as w:
        body = await routed_to_vendor(w)
        w.kube.mutate(STABLE_KEY, {"metadata": {"ownerReferences": None}})  # someone took it
        await w.controller.on_route_event("MODIFIED", renamed(body, 2))
        await w.clock.until(7)
        assert selector(w, RENAMED_KEY) == {"app": "vendor"}
        assert STABLE_KEY in w.kube.services
        assert w.calls.count("delete") == 0


async def test_a_release_that_keeps_failing_backs_off_and_warns_once() -> None:
    # The ClusterRole lacks delete (an image-only upgrade): 403 on every try.
    async with running_world() as w:
        body = await routed_to_vendor(w)
        w.kube.delete_error = ApiError(403, "Forbidden", "cannot delete services")
        await w.controller.on_route_event("MODIFIED", renamed(body, 2))
        for at in range(7, 67, 3):  # a reconcile every 3 s for a minute (inhouse flaps)
            await w.tick(at, vendor=True, inhouse=at % 2 == 0)
        await w.clock.until(68)
        assert STABLE_KEY in w.kube.services
        # At 6 s (first), then 10 s, 20 s, 40 s later: 4, not one per reconcile (20).
        assert w.calls.count("delete") <= 4
        assert w.events().count(("Warning", "ReleaseFailed")) == 1
        w.kube.delete_error = None
        for at in range(70, 200, 3):
            await w.tick(at, vendor=True, inhouse=at % 2 == 0)
        await w.clock.until(201)
        assert STABLE_KEY not in w.kube.services  # released once it can be


async def test_the_release_backoff_follows_its_settings() -> None:
    settings = Settings(release_retry_first_seconds=30.0, release_retry_max_seconds=30.0)
    async with running_world(settings) as w:
        body = await routed_to_vendor(w)
        w.kube.delete_error = ApiError(403, "Forbidden", "cannot delete services")
        await w.controller.on_route_event("MODIFIED", renamed(body, 2))
        for at in range(7, 67, 3):  # a reconcile every 3 s for a minute
            await w.clock.until(at)
            w.controller.workers[ROUTE_KEY].wake()
        await w.clock.until(68)
        # At 6 s, then one reconcile at least 30 s later: 2 (the default 10 s backoff: 3).
        assert w.calls.count("delete") == 2
        assert w.events().count(("Warning", "ReleaseFailed")) == 1


STABLE_REF = {"apiVersion": "v1", "kind": "Service", "name": STABLE_KEY[1]}


async def renamed_then_restarted(w: World, body: dict[str, Any], spec: dict[str, Any]) -> None:
    """Rename the Service (its release fails: still to do), then kill the process; the next
    one, started on ``spec``, knows the old Service only from the route's status."""
    w.kube.delete_error = ApiError(503, "ServiceUnavailable", "try again")
    await w.controller.on_route_event("MODIFIED", renamed(body, 2))
    await w.clock.until(8)
    assert selector(w, RENAMED_KEY) == {"app": "vendor"}
    assert STABLE_KEY in w.kube.services
    assert w.kube.route_status[ROUTE_KEY]["previousRouting"] == [STABLE_REF]
    await w.controller.shutdown()
    w.kube.delete_error = None
    w.controller = Controller(w.controller._deps)
    restarted = copy.deepcopy(spec)
    restarted["status"] = copy.deepcopy(w.kube.route_status[ROUTE_KEY])
    await w.controller.on_route_event("ADDED", restarted)


async def test_a_restart_before_the_release_still_releases_the_previous_object() -> None:
    async with running_world() as w:
        body = await routed_to_vendor(w)
        await renamed_then_restarted(w, body, renamed(body, 2))
        await w.tick(10, vendor=True, inhouse=True)
        await w.clock.until(11)
        assert STABLE_KEY not in w.kube.services
        assert "previousRouting" not in w.kube.route_status[ROUTE_KEY]  # cleared once released


async def test_a_release_done_at_once_never_records_the_previous_object() -> None:
    async with running_world() as w:
        body = await routed_to_vendor(w)
        sent: list[dict[str, Any]] = []
        write = w.kube.patch_route_status

        async def recorded(namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
            sent.append(status)
            return await write(namespace, name, status)

        w.kube.patch_route_status = recorded  # type: ignore[method-assign]
        await w.controller.on_route_event("MODIFIED", renamed(body, 2))
        await w.clock.until(8)
        assert STABLE_KEY not in w.kube.services
        assert sent, "the new spec's status was not written"
        # Released before the status went out: no write carries the field.
        assert [p for p in sent if "previousRouting" in p] == []


async def test_a_switch_back_to_the_recorded_object_does_not_release_it() -> None:
    async with running_world() as w:
        body = await routed_to_vendor(w)
        await renamed_then_restarted(w, body, with_spec(body, 3))  # chat-llm again
        await w.tick(10, vendor=True, inhouse=True)
        await w.clock.until(11)
        assert selector(w, STABLE_KEY) == {"app": "vendor"}
        assert "previousRouting" not in w.kube.route_status[ROUTE_KEY]


async def test_a_release_failed_event_lost_to_an_outage_is_posted_when_the_api_is_back() -> None:
    # Posted by the route's reporter like every other Event: retried, never lost.
    async with running_world() as w:
        body = await routed_to_vendor(w)
        w.kube.delete_error = ApiError(403, "Forbidden", "cannot delete services")
        w.kube.event_error = aiohttp.ClientConnectionError("connect call failed")
        await w.controller.on_route_event("MODIFIED", renamed(body, 2))
        await w.clock.until(8)
        assert ("Warning", "ReleaseFailed") not in w.events()
        w.kube.event_error = None
        await w.clock.until(40)
        assert w.events().count(("Warning", "ReleaseFailed")) == 1


async def test_a_failover_whose_release_is_cut_short_still_posts_its_status_and_event() -> None:
    # The release runs before status; a spec edit replacing the worker while it hangs must not
    # lose the failover that the routing write already made (its Event, failoverCount).
    async with running_world() as w:
        body = await routed_to_vendor(w)
        w.kube.delete_error = ApiError(503, "ServiceUnavailable", "try again")
        await w.controller.on_route_event("MODIFIED", renamed(body, 2))
        await w.clock.until(7)
        assert STABLE_KEY in w.kube.services  # still to release, after a 10 s backoff
        # Vendor fails, below the threshold: no plan until a probe period (7 s) later, and
        # no release tried yet (its backoff).
        for at in (11, 13):
            await w.tick(at, vendor=False, inhouse=True)
        w.kube.delete_error = None
        delete, never = w.kube.delete_object, asyncio.Event()

        async def hung(*args: Any, **kwargs: Any) -> None:
            await never.wait()

        w.kube.delete_object = hung  # type: ignore[method-assign]
        await w.tick(17, vendor=False, inhouse=True)  # the third failure, after the backoff
        await w.clock.until(18)
        assert selector(w, RENAMED_KEY) == {"app": "inhouse"}  # the routing write went first
        assert ("Warning", "FailedOver") not in w.events()  # held behind the hung release
        w.kube.delete_object = delete  # type: ignore[method-assign]
        edited = renamed(body, 3, failback={"mode": "Automatic", "stabilizationSeconds": 90})
        await w.controller.on_route_event("MODIFIED", edited)
        await w.clock.until(20)
        assert w.events().count(("Warning", "FailedOver")) == 1
        status = w.status()
        assert (status["activeBackend"], status["failoverCount"]) == ("inhouse", 1)
        assert STABLE_KEY not in w.kube.services  # released by the new worker


async def test_a_crd_without_previous_routing_costs_no_status_write_per_probe_result() -> None:
    # The CRD predates previousRouting (helm upgrade leaves CRDs alone): the server prunes it.
    async with running_world() as w:
        body = await routed_to_vendor(w)
        write = w.kube.patch_route_status

        async def pruning(namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
            answer = await write(namespace, name, status)
            w.kube.route_status[(namespace, name)].pop("previousRouting", None)
            answer["status"].pop("previousRouting", None)
            return answer

        w.kube.patch_route_status = pruning  # type: ignore[method-assign]
        w.kube.delete_error = ApiError(503, "ServiceUnavailable", "try again")  # still to do
        await w.controller.on_route_event("MODIFIED", renamed(body, 2))
        await w.clock.until(8)
        assert w.writes(since=6).count((6, "patch_status")) == 1
        for at in range(10, 100, 5):  # steady state: the same results, a release pending
            await w.tick(at, vendor=True, inhouse=True)
        await w.clock.until(101)
        # The counters of the probes at 10 s (consecutiveSuccesses 2) go out deferred, at 40 s;
        # then nothing: the baseline kept the pruned field, stamp() changes nothing.
        assert w.writes(since=7) == [(40, "patch_status")]
        assert STABLE_KEY in w.kube.services
