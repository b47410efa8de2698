"""Runtime.stop: nothing it started outlives it (the start-up re-list among them)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from modelroute.control.discovery import DriverAvailability
from modelroute.control.runtime import Runtime
from modelroute.kube.client import KubeClient
from modelroute.settings import Settings
from tests.unit import test_controller
from tests.unit.test_controller import World

world = test_controller.world  # the controller's fixture: FakeKube, real caches and probe hub


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
    )
    runtime.recheck = asyncio.create_task(recheck())
    await asyncio.sleep(0)
    await runtime.stop()
    assert runtime.recheck.done()
    assert seen == {"client closed while it ran": False}
    assert kube.closed
