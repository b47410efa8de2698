"""The Runtime: its parts follow the settings, and nothing it started outlives its stop()."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

from modelroute.control.discovery import DriverAvailability
from modelroute.control.runtime import Runtime, _build_deps
from modelroute.core.types import EventType, RouteRef
from modelroute.kube.client import ApiError, KubeClient
from modelroute.kube.credentials import Credentials
from modelroute.metrics import Metrics
from modelroute.settings import Settings
from tests.fakes.kube import FakeKube
from tests.unit import test_ca_bundle_secret, test_controller
from tests.unit.test_controller import World

world = test_controller.world  # the controller's fixture: FakeKube, real caches and probe hub
pems = test_ca_bundle_secret.pems  # two CA certificates, PEM


class ClosingKube:
    """The API client's close, recorded (stop() closes it last)."""

    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


async def test_stop_waits_for_the_start_up_recheck_before_closing_the_client(
    world: World,
) -> None:
    kube = ClosingKube()
    seen: dict[str, Any] = {}

    async def recheck() -> None:
        try:
            await asyncio.Event().wait()  # a re-list in flight
        finally:
            await asyncio.sleep(0.2)  # its request unwinding, on the client
            seen["client closed while it ran"] = kube.closed

    runtime = Runtime(
        settings=Settings(),
        controller=world.controller,
        deps=world.controller._deps,  # the fixture's own deps
        kube=cast(KubeClient, kube),
        probes=world.hub,
        runners=[],
        drivers=DriverAvailability(),
        credentials=Credentials(server="http://127.0.0.1:9", ssl_context=False),
    )
    runtime.recheck = asyncio.create_task(recheck())
    await asyncio.sleep(0)
    await runtime.stop()
    assert runtime.recheck.done()
    assert seen == {"client closed while it ran": False}
    assert kube.closed


async def test_the_probe_trust_store_keeps_as_many_contexts_as_its_setting(
    pems: tuple[str, str],
) -> None:
    settings = Settings(max_trust_contexts=1)
    kube = cast(KubeClient, FakeKube())
    deps, probes = _build_deps(settings, kube, Metrics(), DriverAvailability())
    try:
        trust = probes._trust  # the hub's store of caBundleSecretRef contexts
        first = await trust.context_for(pems[0])
        await trust.context_for(pems[1])
        assert len(trust) == 1
        assert await trust.context_for(pems[0]) is not first  # dropped, so built again
    finally:
        await probes.close()
        if deps.reachability is not None:
            await deps.reachability.close()


class LaneKube(FakeKube):
    """FakeKube whose GETs record whether they went in the routing writes' lane."""

    def __init__(self) -> None:
        super().__init__()
        self.lanes: list[tuple[str, bool]] = []

    async def request(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        self.lanes.append((path, bool(kwargs.get("urgent"))))
        return None


async def test_a_probe_key_read_on_a_cache_miss_goes_in_the_routing_lane() -> None:
    # A new probe loop's first probe, and with it a new route's first routing, waits on the
    # Secret: in the normal lane it waited for a start-up's stream of routing writes.
    kube = LaneKube()
    deps, probes = _build_deps(Settings(), cast(KubeClient, kube), Metrics(), DriverAvailability())
    try:
        assert await deps.secrets.get(("ai", "vendor-key")) is None
        assert kube.lanes == [("/api/v1/namespaces/ai/secrets/vendor-key", True)]
    finally:
        await probes.close()
        if deps.reachability is not None:
            await deps.reachability.close()


async def test_every_event_the_api_server_created_is_counted_as_a_write() -> None:
    """modelroute_api_writes_total counts Events too: blind to them, it read flat for seconds
    while a start-up's backlog of Events went out (all before the statuses queued behind
    them), and the scale bench took that for steady state (bench/notes.md)."""
    kube = FakeKube()
    metrics = Metrics()
    deps, probes = _build_deps(Settings(), cast(KubeClient, kube), metrics, DriverAvailability())

    def events_written() -> float | None:
        labels = {"resource": "events"}
        return metrics.registry.get_sample_value("modelroute_api_writes_total", labels)

    try:
        route = RouteRef("ai", "chat", "uid-1")
        when = datetime(2025, 1, 1, tzinfo=UTC)
        await deps.events.post(route, EventType.NORMAL, "Routed", "m", when)
        await deps.events.post(route, EventType.NORMAL, "Routed", "m", when)
        assert events_written() == 2.0
        kube.event_error = ApiError(403, "Forbidden", "no")  # refused: nothing was written
        await deps.events.post(route, EventType.NORMAL, "Routed", "m", when)
        assert events_written() == 2.0
        assert len(kube.posted_events) == 2
    finally:
        await probes.close()
        if deps.reachability is not None:
            await deps.reachability.close()
