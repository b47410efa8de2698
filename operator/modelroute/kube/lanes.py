"""A bound on requests in flight to the API server, with a fast lane for routing writes."""

from __future__ import annotations

import asyncio
import collections
import contextlib

# Requests in flight to the API server at once, by default (settings.api_max_in_flight; the
# connection pool has as many).
MAX_IN_FLIGHT = 50


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
        if limit < 1:
            raise ValueError(f"at least one request in flight is needed, not {limit}")
        self._free = limit
        self._urgent_in_flight = 0
        self._quiet: list[asyncio.Future[None]] = []  # until_quiet() waiters
        self._waiting: tuple[collections.deque[asyncio.Future[None]], ...] = (
            collections.deque(),  # urgent: routing writes
            collections.deque(),  # the rest
        )

    async def acquire(self, urgent: bool, *, first: bool = False) -> None:
        """Wait for a slot; ``urgent`` waiters are served before all others, and the others
        only while no urgent request is in flight; ``first`` goes ahead of the waiters of its
        lane (the Lease: a renewal must not wait behind a start-up's reads). Pair with
        ``release(urgent)``."""
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
        if first:
            queue.appendleft(future)
        else:
            queue.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(urgent)  # the slot was handed over just as we were cancelled
            else:
                with contextlib.suppress(ValueError):  # _dispatch may have skipped it already
                    queue.remove(future)
                self._wake_quiet()  # it may have been the last routing write waiting
            raise

    def release(self, urgent: bool = False) -> None:
        """Free the slot taken by ``acquire(urgent)`` and hand slots to the next waiters."""
        if urgent:
            self._urgent_in_flight -= 1
        self._free += 1
        self._dispatch()
        self._wake_quiet()

    @property
    def urgent_busy(self) -> bool:
        """True while an urgent request (a routing write, a read one waits on, the Lease) is
        in flight or waiting for a slot."""
        return bool(self._urgent_in_flight) or any(not f.done() for f in self._waiting[0])

    async def until_quiet(self) -> None:
        """Return once no urgent request is in flight or waiting (at once if none is).

        Work that only follows routing writes (a route's status and Events, judged and logged)
        waits here, so that in a burst of routing writes the event loop spends its time on
        them: that work could not be sent before the burst ends anyway."""
        while self.urgent_busy:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._quiet.append(future)
            await future

    def _wake_quiet(self) -> None:
        if self._quiet and not self.urgent_busy:
            waiters, self._quiet = self._quiet, []
            for future in waiters:
                if not future.done():
                    future.set_result(None)

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
