"""The controller and route workers, with our own API boundary faked (tests.fakes.kube).

Backends are real loopback fakes; the Kubernetes side is FakeKube feeding real caches.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from modelroute.control.controller import Controller
from modelroute.control.route import Deps
from modelroute.kube.cache import ObjectCache, slim_object, slim_secret
from modelroute.kube.client import MODELROUTES, SECRETS, SERVICES
from modelroute.kube.events import EventRecorder
from modelroute.metrics import Metrics
from modelroute.probing import prober
from modelroute.probing.hub import ProbeHub
from modelroute.settings import Settings
from tests.fakes.kube import FakeKube
from tests.fakes.openai_backend import FakeBackend, Fault

NS = "ai"


def _target(name: str, port: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": {"app": name}, "ports": [{"port": port}]},
    }


def _route(vendor_url: str, inhouse_url: str) -> dict[str, Any]:
    backend = {"priority": 0, "serviceRef": {"name": "vendor-egress", "port": 8080}}
    return {
        "metadata": {"name": "chat", "namespace": NS, "uid": "uid-1", "generation": 1},
        "spec": {
            "service": {"name": "chat-llm", "port": 80},
            "backends": [
                {**backend, "name": "vendor", "model": "gpt-4o", "endpoint": vendor_url},
                {
                    "name": "inhouse",
                    "priority": 1,
                    "model": "llama",
                    "serviceRef": {"name": "llama-vllm", "port": 8000},
                    "endpoint": inhouse_url,
                },
            ],
            "probe": {"intervalSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 2},
        },
    }


class World:
    def __init__(self, kube: FakeKube, controller: Controller, hub: ProbeHub) -> None:
        self.kube, self.controller, self.hub = kube, controller, hub

    def status(self) -> dict[str, Any]:
        return self.kube.route_status.get((NS, "chat"), {})


@pytest.fixture
async def world() -> AsyncIterator[World]:
    kube = FakeKube()
    kube.seed(_target("vendor-egress", 8080), watched=False)
    kube.seed(_target("llama-vllm", 8000), watched=False)
    metrics = Metrics()
    secrets = ObjectCache(functools.partial(kube.get_object, SECRETS), slim_secret)

    def now() -> datetime:
        return datetime.now(UTC)

    hub = ProbeHub(
        session=prober.new_session(connection_limit=0, connection_limit_per_host=5),
        secrets=secrets,
        metrics=metrics,
        now=now,
        start_jitter_seconds=0.0,
        max_retry_after_seconds=60.0,
    )
    deps = Deps(
        settings=Settings(),
        kube=kube,
        caches={SERVICES: ObjectCache(functools.partial(kube.get_object, SERVICES), slim_object)},
        secrets=secrets,
        metrics=metrics,
        events=EventRecorder(kube, "test"),
        probes=hub,
        now=now,
    )
    controller = Controller(deps)
    yield World(kube, controller, hub)
    await controller.shutdown()
    await hub.close()


async def _until(predicate: Callable[[], object], within: float = 30.0) -> None:
    # The ceiling only guards a hang (probes are real, over loopback): wide for a loaded CI.
    async with asyncio.timeout(within):
        # The state lives in fakes with no event to wait on: poll it briefly.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_routes_to_the_preferred_backend_and_writes_status(world: World) -> None:
    async with FakeBackend(("gpt-4o",)) as vendor, FakeBackend(("llama",)) as inhouse:
        await world.controller.on_route_event("ADDED", _route(vendor.url, inhouse.url))
        await _until(lambda: world.status().get("activeBackend") == "vendor")
        assert world.kube.services[(NS, "chat-llm")]["spec"]["selector"] == {"app": "vendor-egress"}
        assert [e["reason"] for e in world.kube.posted_events] == ["Routed"]
        assert len(world.hub) == 2


async def test_a_failed_status_write_is_retried_without_a_health_change(world: World) -> None:
    world.kube.fail_status_writes = 2
    async with FakeBackend(("gpt-4o",)) as vendor, FakeBackend(("llama",)) as inhouse:
        await world.controller.on_route_event("ADDED", _route(vendor.url, inhouse.url))
        # Backoff 1 s then 2 s; health settles within the first second and then stays put.
        await _until(lambda: world.status().get("activeBackend") == "vendor")
        assert world.kube.calls.count("patch_status") >= 3
        assert world.controller.stalled(asyncio.get_running_loop().time()) == []


async def test_a_crashed_worker_fails_liveness(world: World) -> None:
    world.kube.status_write_error = RuntimeError("a bug")  # not an API error: never swallowed
    async with FakeBackend(("gpt-4o",)) as vendor, FakeBackend(("llama",)) as inhouse:
        await world.controller.on_route_event("ADDED", _route(vendor.url, inhouse.url))
        loop = asyncio.get_running_loop()
        await _until(lambda: world.controller.stalled(loop.time()) == [(NS, "chat")])


async def test_deleting_a_route_stops_its_probes(world: World) -> None:
    async with FakeBackend(("gpt-4o",)) as vendor, FakeBackend(("llama",)) as inhouse:
        body = _route(vendor.url, inhouse.url)
        await world.controller.on_route_event("ADDED", body)
        await _until(lambda: len(world.hub) == 2)
        await world.controller.on_route_event("DELETED", body)
        assert len(world.hub) == 0
        assert world.controller.workers == {}


async def test_a_standby_keeps_routes_and_starts_them_when_it_leads(world: World) -> None:
    standby = Controller(world.controller._deps, leading=False)
    async with FakeBackend(("gpt-4o",)) as vendor, FakeBackend(("llama",)) as inhouse:
        await standby.on_route_event(None, _route(vendor.url, inhouse.url))
        assert standby.workers == {}
        assert vendor.requests_total == 0
        await standby.start_leading()
        assert list(standby.workers) == [(NS, "chat")]
        await _until(lambda: world.status().get("activeBackend") == "vendor")
        await standby.stop_leading()
        assert standby.workers == {}
        assert len(world.hub) == 0


async def test_route_signal_gauges_follow_a_failover_and_go_with_the_route(world: World) -> None:
    metrics = world.controller._deps.metrics

    def signal(name: str) -> float | None:
        labels = {"namespace": NS, "route": "chat"}
        return metrics.registry.get_sample_value(f"modelroute_{name}", labels)

    async with FakeBackend(("gpt-4o",)) as vendor, FakeBackend(("llama",)) as inhouse:
        body = _route(vendor.url, inhouse.url)
        await world.controller.on_route_event("ADDED", body)
        await _until(lambda: world.status().get("activeBackend") == "vendor")
        assert (signal("route_failed_over"), signal("failback_pending")) == (0, 0)
        await vendor.set_fault(Fault.OUTAGE)
        await _until(lambda: signal("route_failed_over") == 1)
        assert signal("failback_pending") == 0
        # Back and healthy, but the default 60 s stabilization keeps traffic on inhouse.
        await vendor.set_fault(Fault.NONE)
        await _until(lambda: signal("failback_pending") == 1)
        assert signal("route_failed_over") == 1
        await world.controller.on_route_event("DELETED", body)
        assert (signal("route_failed_over"), signal("failback_pending")) == (None, None)


# --- sharding: a route relabelled to another shard ---------------------------------------------

SHARD_A = "modelroute.dev/shard=a"


def _shard(world: World) -> Controller:
    deps = dataclasses.replace(world.controller._deps, settings=Settings(label_selector=SHARD_A))
    return Controller(deps)


@pytest.mark.parametrize(
    ("stored_uid", "left"),
    [
        pytest.param("uid-1", True, id="relabelled-away"),
        pytest.param(None, False, id="deleted"),
        pytest.param("uid-2", False, id="deleted-and-recreated"),
    ],
)
async def test_a_route_that_left_the_shard_is_dropped_not_finalized(
    world: World, caplog: pytest.LogCaptureFixture, stored_uid: str | None, left: bool
) -> None:
    shard = _shard(world)
    async with FakeBackend(("gpt-4o",)) as vendor, FakeBackend(("llama",)) as inhouse:
        body = _route(vendor.url, inhouse.url)
        await shard.on_route_event("ADDED", body)
        await _until(lambda: world.status().get("activeBackend") == "vendor")
        if stored_uid is not None:
            stored = {**body, "metadata": {**body["metadata"], "uid": stored_uid}}
            world.kube.store(MODELROUTES)[(NS, "chat")] = stored
        with caplog.at_level(logging.INFO, "modelroute.control.controller"):
            await shard.on_route_event("DELETED", body)
        assert shard.workers == {}
        assert len(world.hub) == 0
        assert ("another shard serves it now" in caplog.text) is left
        # Whatever happened, the Service is left to its ownerReference.
        assert (NS, "chat-llm") in world.kube.services
        await shard.shutdown()


async def test_without_a_selector_a_deletion_needs_no_lookup(world: World) -> None:
    async with FakeBackend(("gpt-4o",)) as vendor, FakeBackend(("llama",)) as inhouse:
        body = _route(vendor.url, inhouse.url)
        await world.controller.on_route_event("ADDED", body)
        await _until(lambda: len(world.hub) == 2)
        gets = world.kube.calls.count("get")
        await world.controller.on_route_event("DELETED", body)
        assert world.kube.calls.count("get") == gets
