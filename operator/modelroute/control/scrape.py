"""The /metrics endpoint: rendered in a thread of its own, one render at a time, reused briefly.

A render of thousands of routes is tens of milliseconds of Python. On the event loop it would
stall every probe and the Lease renewal for that long, once per scrape; in a worker thread the
loop keeps running (the GIL is handed over every few milliseconds). Scrapes that arrive while a
render runs share it, and a render is reused for ``min_interval_s``, so two Prometheus replicas
scraping at once cost one render. A scraper that disconnects does not cancel the render others
wait for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST


class MetricsEndpoint:
    """Serves ``render()`` (the exposition bytes) without running it on the event loop."""

    def __init__(
        self,
        render: Callable[[], bytes],
        *,
        min_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._render = render
        self._min_interval = min_interval_s
        self._clock = clock
        # One thread of its own: a long render never holds up the default executor (which
        # aiohttp's DNS lookups use).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics")
        self._body: bytes | None = None
        self._rendered_at = 0.0
        self._pending: asyncio.Future[bytes] | None = None

    async def body(self) -> bytes:
        """The exposition: the last render if it is recent enough, else a new one."""
        if self._body is not None and self._clock() - self._rendered_at < self._min_interval:
            return self._body
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._render_in_thread())
        return await asyncio.shield(self._pending)

    async def _render_in_thread(self) -> bytes:
        started = self._clock()
        try:
            loop = asyncio.get_running_loop()
            body = await loop.run_in_executor(self._executor, self._render)
        finally:
            self._pending = None
        self._body, self._rendered_at = body, started
        return body

    async def handle(self, _: web.Request) -> web.Response:
        """The aiohttp handler of ``GET /metrics``."""
        return web.Response(body=await self.body(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    def close(self) -> None:
        """Stop the render thread (a render in progress finishes first)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
