"""Runtime.start that fails part-way leaves nothing behind: kopf tries the start-up again (every
STARTUP_RETRY_SECONDS), and a port still bound, a leftover elector holding the Lease or a
second gc hook would break every later attempt. A port that cannot be bound is a permanent
error (no retry makes the address the Pod's), named in the message."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import kopf
import pytest
import yaml
from aiohttp import web

from modelroute.control import handlers
from modelroute.control.heap import HeapKeeper
from modelroute.control.runtime import Runtime
from modelroute.settings import Settings

V1 = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [{"name": "services", "kind": "Service", "namespaced": True}],
}


@pytest.fixture
async def kubeconfig(tmp_path: Path) -> AsyncIterator[Path]:
    """A kubeconfig for a loopback server that answers discovery of v1, 503 to a LIST of
    ModelRoutes (its storage is away) and 404 to anything else."""

    async def handle(request: web.Request) -> web.Response:
        if request.path == "/api/v1":
            return web.json_response(V1)
        if request.path.endswith("/modelroutes"):  # the start-up's LIST of routes
            status = {"kind": "Status", "reason": "ServiceUnavailable", "message": "etcd is away"}
            return web.json_response(status, status=503)
        return web.json_response({"kind": "Status", "reason": "NotFound"}, status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    server = f"http://127.0.0.1:{runner.addresses[0][1]}"
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t0k3n"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    yield path
    await runner.cleanup()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def settings(kubeconfig: Path, metrics_port: int, health_port: int) -> Settings:
    return Settings(
        kubeconfig=str(kubeconfig),
        routing_drivers=("Service",),
        bind_address="127.0.0.1",
        metrics_port=metrics_port,
        health_port=health_port,
        leader_election=True,
        leader_election_namespace="ops",
        gc_freeze=True,
    )


def leftovers() -> tuple[list[str], int]:
    """Tasks of a runtime still running, and HeapKeeper gc hooks installed."""
    tasks = [
        t.get_name()
        for t in asyncio.all_tasks()
        if t.get_name() == "leader-election" and not t.done()
    ]
    return tasks, sum(1 for callback in gc.callbacks if isinstance(callback, HeapKeeper))


async def test_a_port_that_cannot_be_bound_fails_for_good_and_leaves_nothing(
    kubeconfig: Path,
) -> None:
    metrics_port = free_port()
    with socket.socket() as taken:  # another process holds the health port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        health_port = taken.getsockname()[1]
        with pytest.raises(kopf.PermanentError, match=f"'127.0.0.1' port {health_port}"):
            await Runtime.start(settings(kubeconfig, metrics_port, health_port))
    await asyncio.sleep(0)
    assert leftovers() == ([], 0)
    # The metrics port it had bound is free again, and the next attempt starts.
    runtime = await Runtime.start(settings(kubeconfig, metrics_port, health_port))
    try:
        assert runtime.ready and leftovers() == (["leader-election"], 1)
    finally:
        await runtime.stop()
    assert leftovers() == ([], 0)


async def test_a_failed_start_of_the_routes_stops_the_runtime_for_the_next_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The runtime started, then starting its routes failed: the start-up handler stops it
    before kopf tries again, and keeps no half-started runtime in the memo."""
    events: list[str] = []

    class HalfStarted:
        async def start_routes(self) -> None:
            events.append("start_routes")
            raise ConnectionResetError("the API server went away")

        async def stop(self) -> None:
            events.append("stop")

    async def start(settings: Settings) -> HalfStarted:
        events.append("start")
        return HalfStarted()

    monkeypatch.setattr(Runtime, "start", staticmethod(start))
    memo = kopf.Memo(settings=Settings())
    with pytest.raises(ConnectionResetError):
        await handlers.start(settings=kopf.OperatorSettings(), memo=memo)
    assert events == ["start", "start_routes", "stop"] and "runtime" not in memo
