"""One fake OpenAI backend in its own process, driven over HTTP by the benchmark.

``python -m bench.fakehost --name vendor --model gpt-4o [--api-key-env VAR]`` prints one JSON
line ``{"url": ..., "control": ...}`` and serves until SIGTERM. It wraps
:class:`tests.fakes.openai_backend.FakeBackend` and adds what the benchmark needs beyond the
fake's own control endpoints:

- a control server on a *separate* port (``POST /fault {"fault": ...}``, ``GET /stats``), so
  ``refused`` (which closes the backend's listener) can be set and cleared from outside;
- a count of *traffic* requests (those carrying the ``X-Bench-Traffic`` header, sent by the
  peer benchmark's request load) apart from health probes, with the wall-clock time of the
  last one: that is how "the peer stopped sending requests to the dead backend" is observed.

Each fake runs in a process of its own so probe load on it never starves the operator or the
benchmark driver of the GIL.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import signal
import sys
import time
from typing import Any

from aiohttp import web

from tests.fakes.openai_backend import CONTROL_PREFIX, FakeBackend, Fault

TRAFFIC_HEADER = "X-Bench-Traffic"


class CountingBackend(FakeBackend):
    """A FakeBackend that also counts benchmark traffic separately from probes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.traffic_total = 0
        self.traffic_last_at: float | None = None  # time.time() of the last traffic request
        self.traffic_while_faulted = 0
        self.probes_total = 0
        # Arrival times (time.time()) of the latest probes: which probe decided a failover.
        self.probe_times: collections.deque[float] = collections.deque(maxlen=64)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith(CONTROL_PREFIX):
            if TRAFFIC_HEADER in request.headers:
                self.traffic_total += 1
                self.traffic_last_at = time.time()
                if self.fault is not Fault.NONE:
                    self.traffic_while_faulted += 1
            else:
                self.probes_total += 1
                self.probe_times.append(time.time())
        return await super()._middleware(request, handler)

    def stats(self) -> dict[str, Any]:
        return super().stats() | {
            "traffic_total": self.traffic_total,
            "traffic_last_at": self.traffic_last_at,
            "traffic_while_faulted": self.traffic_while_faulted,
            "probes_total": self.probes_total,
            "probe_times": list(self.probe_times),
        }


async def _serve(args: argparse.Namespace) -> None:
    api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
    backend = CountingBackend(tuple(args.model), api_key=api_key, name=args.name)
    url = await backend.start()
    # Extra listeners on the same app (same faults, same counters): one port per route makes
    # every route's probe a distinct request, as if each route had its own egress to the
    # vendor. REFUSED closes only the first listener; use OUTAGE with extra ports.
    extra: list[str] = []
    for _ in range(args.extra_ports):
        site = web.TCPSite(backend._runner, "127.0.0.1", 0)  # type: ignore[arg-type]
        await site.start()
        extra.append(f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}")  # type: ignore[union-attr]

    async def fault(request: web.Request) -> web.Response:
        body = await request.json()
        await backend.set_fault(Fault(body["fault"]))
        return web.json_response(backend.stats() | {"at": time.time()})

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(backend.stats())

    async def reset(_: web.Request) -> web.Response:
        backend.reset_counters()
        backend.traffic_total = backend.traffic_while_faulted = backend.probes_total = 0
        backend.traffic_last_at = None
        return web.json_response(backend.stats())

    app = web.Application()
    app.router.add_post("/fault", fault)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(
        json.dumps({"url": url, "urls": [url, *extra], "control": f"http://127.0.0.1:{port}"}),
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Bounded: a fake left behind by a crashed driver ends by itself after --max-seconds.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), args.max_seconds)
    await runner.cleanup()
    await backend.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fakehost")
    parser.add_argument("--name", required=True)
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--api-key-env")
    parser.add_argument("--extra-ports", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=4 * 3600)
    asyncio.run(_serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
