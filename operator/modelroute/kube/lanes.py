"""A bound on requests in flight to the API server, with a fast lane for routing writes."""

from __future__ import annotations

import asyncio
import collections
import contextlib

# Requests in flight to the API server at once (the connection pool has as many).
MAX_IN_FLIGHT = 20


class Lanes:
    """At most ``limit`` requests in flight; routing writes (the routing-object writes that
    move traffic) go first, and nothing else is sent while one is in flight or waiting.

    Why: when one shared vendor goes down under many routes, every route decides at the same
    moment and each sends a Service patch, an Event and a status patch. In arrival order the
    traffic moves waited behind the others (bench mass, 1,000 routes: the last route switched
    6.7-9.1 s after the floor); with routing writes only taking free slots first, Events and
    status writes still shared the API server with the routing writes still in flight, and
    each status write comes back as a watch event the operator processes on the same loop.
    Holding the rest until the burst of routing writes is through keeps both off its critical
    path. Only the order changes: every request is still sent.
    """

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._urgent_in_flight = 0
        self._waiting: tuple[collections.deque[asyncio.Future[None]], ...] = (
            collections.deque(),  # urgent: routing writes
            collections.deque(),  # the rest
        )

    async def acquire(self, urgent: bool) -> None:
        """Wait for a slot; ``urgent`` waiters are served before all others, and the others
        only while no urgent request is in flight. Pair with ``release(urgent)``."""
        urgent_queue, normal_queue = self._waiting
        if self._free > 0 and not urgent_queue:
            if urgent:
                self._take(urgent=True)
                return
            if not normal_queue and not self._urgent_in_flight:
                self._take(urgent=False)
                return
        queue = urgent_queue if urgent else normal_queue
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(urgent)  # the slot was handed over just as we were cancelled
            else:
                with contextlib.suppress(ValueError):  # _dispatch may have skipped it already
                    queue.remove(future)
            raise

    def release(self, urgent: bool = False) -> None:
        """Free the slot taken by ``acquire(urgent)`` and hand slots to the next waiters."""
        if urgent:
            self._urgent_in_flight -= 1
        self._free += 1
        self._dispatch()

    def _take(self, *, urgent: bool) -> None:
        self._free -= 1
        if urgent:
            self._urgent_in_flight += 1

    def _dispatch(self) -> None:
        urgent_queue, normal_queue = self._waiting
        while self._free > 0:
            if (future := _next_live(urgent_queue)) is not None:
                self._take(urgent=True)
            elif self._urgent_in_flight or (future := _next_live(normal_queue)) is None:
                return
            else:
                self._take(urgent=False)
            future.set_result(None)  # the slot passes straight to this waiter


def _next_live(queue: collections.deque[asyncio.Future[None]]) -> asyncio.Future[None] | None:
    while queue:
        future = queue.popleft()
        if not future.done():
            return future
    return None
