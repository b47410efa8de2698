"""The /metrics endpoint: rendered in short slices between the event loop's other work.

A render of thousands of routes is tens to hundreds of milliseconds of Python. In one piece
on the event loop it stalls every probe and the Lease renewal for that long, once per scrape.
In a worker thread it is no better: under the GIL each wake-up of the loop then waits for the
render thread to hand the GIL over, and probes fall behind. So the render runs on the loop in
slices (``fastmetrics.exposition_parts``), and after each ``slice_s`` of work the loop runs
whatever is ready (probe results, timers, the Lease) before the next slice. A scrape takes a
little longer; nothing else waits more than a slice. When the loop is busy, slices grow with
the time its other work takes (at most a quarter of it, at most 25 ms), so a render is not
starved.

Scrapes that arrive while a render runs share it, and a render is reused for
``min_interval_s``, so two Prometheus replicas scraping at once cost one render. A scraper
that disconnects does not cancel the render others wait for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

#: A busy loop's share given to a render: a slice may last this fraction of the time the
#: loop's other work took between the last two slices (see :func:`_next_slice`).
BUSY_SHARE = 0.25
#: The longest slice (seconds), however busy the loop.
MAX_SLICE_S = 0.025


def _next_slice(slice_s: float, busy_s: float) -> float:
    """The next slice's length: ``slice_s``, or ``busy_s`` (a share of the time the loop's
    other work took since the last slice) when that is longer, at most MAX_SLICE_S.

    With fixed slices a render waits a whole loop iteration per slice; with thousands of
    routes starting (or failing over) at once an iteration takes tens of milliseconds, and a
    render of 1,000 slices took longer than any scrape timeout. A slice of a quarter of the
    wait (at most MAX_SLICE_S) keeps the render's share of a busy loop at a fifth: a scrape
    takes at most about five times its render, and the other work waits at most 25 % longer.
    """
    return min(MAX_SLICE_S, max(slice_s, busy_s))


class MetricsEndpoint:
    """Serves the exposition ``parts()`` yields, letting the event loop run between slices."""

    def __init__(
        self,
        parts: Callable[[], Iterable[bytes]],
        *,
        min_interval_s: float,
        slice_s: float = 0.002,
        busy_share: float = BUSY_SHARE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._parts = parts
        self._min_interval = min_interval_s
        self._slice = slice_s
        self._busy_share = busy_share
        self._clock = clock
        self._body: tuple[bytes, ...] | None = None
        self._rendered_at = 0.0
        self._pending: asyncio.Future[tuple[bytes, ...]] | None = None

    async def parts(self) -> tuple[bytes, ...]:
        """The exposition in slices: the last render if it is recent enough, else a new one."""
        if self._body is not None and self._clock() - self._rendered_at < self._min_interval:
            return self._body
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._render())
        return await asyncio.shield(self._pending)

    async def body(self) -> bytes:
        """The exposition in one piece (tests, tools; the handler streams the slices)."""
        return b"".join(await self.parts())

    async def _render(self) -> tuple[bytes, ...]:
        started = self._clock()
        try:
            chunks: list[bytes] = []
            deadline = time.perf_counter() + self._slice
            for part in self._parts():
                chunks.append(part)
                if (paused := time.perf_counter()) >= deadline:
                    await asyncio.sleep(0)  # the loop's other work runs here
                    resumed = time.perf_counter()
                    deadline = resumed + _next_slice(
                        self._slice, self._busy_share * (resumed - paused)
                    )
        finally:
            self._pending = None
        body = self._body = tuple(chunks)
        self._rendered_at = started
        return body

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler of ``GET /metrics``: the slices are written one by one (joining
        megabytes into one buffer would be a long stall of its own). Never gzip, though
        Prometheus asks for it: 18 MB took 33 ms of CPU to compress, and the scrape on loopback
        took 2-3x longer (bench/scrape.py)."""
        parts = await self.parts()
        response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE_LATEST})
        response.content_length = sum(len(part) for part in parts)
        await response.prepare(request)
        for part in parts:
            await response.write(part)  # waits for the socket when its buffer is full
        await response.write_eof()
        return response
