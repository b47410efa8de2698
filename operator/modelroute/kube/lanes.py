"""A bound on requests in flight to the API server, with a fast lane for routing writes."""

from __future__ import annotations

import asyncio
import collections
import contextlib

# Requests in flight to the API server at once, by default (settings.api_max_in_flight).
MAX_IN_FLIGHT = 50
# Slots beyond it that only urgent requests (routing writes, the reads they wait on, the
# Lease) may take, by default (settings.api_routing_extra_in_flight). The connection pool
# keeps as many connections as both together.
ROUTING_EXTRA_IN_FLIGHT = 50


class Lanes:
    """At most ``limit`` requests in flight, and ``limit + urgent_extra`` while routing
    writes are sent; routing writes (the routing-object writes that move traffic) go first,
    and nothing else is sent while one is in flight or waiting.

    Why first: when one shared vendor goes down under many routes, every route decides at the
    same moment and each sends a Service patch, an Event and a status patch. In arrival order
    the traffic moves waited behind the others (bench mass, 1,000 routes: the last route
    switched 6.7-9.1 s after the floor); with routing writes only taking free slots first,
    Events and status writes still shared the API server with the routing writes still in
    flight, and each status write comes back as a watch event the operator processes on the
    same loop. Holding the rest until the burst of routing writes is through keeps both off
    its critical path. Only the order changes: every request is still sent.

    Why more slots for them: the API server spends less CPU a write the more writes it is sent
    at once, and of the operator's 50 in flight it held only about 30 by its own stamps in a
    mass failover (the rest on their way in or out). With 100 for the routing writes it held
    about 60, spent what it spends in a plain write burst, and the last of 3,000 routes at a
    1 s interval switched 2.86-3.11 s over the floor against 4.23-4.26 s (bench/notes.md item
    17). A failover's burst lasts seconds; a start-up's creates and reads (urgent too) take the
    extra slots as well, for as long as the start-up writes (about 40 s at 10,000 routes).
    """

    def __init__(self, limit: int, urgent_extra: int = 0) -> None:
        if limit < 1:
            raise ValueError(f"at least one request in flight is needed, not {limit}")
        if urgent_extra < 0:
            raise ValueError(f"the routing writes' extra slots cannot be negative: {urgent_extra}")
        self._limit = limit
        self._urgent_limit = limit + urgent_extra
        self._in_flight = 0
        self._urgent_in_flight = 0
        self._quiet: list[asyncio.Future[None]] = []  # until_quiet() waiters
        self._waiting: tuple[collections.deque[asyncio.Future[None]], ...] = (
            collections.deque(),  # urgent: routing writes
            collections.deque(),  # the rest
        )

    @property
    def capacity(self) -> int:
        """The most requests ever in flight at once (the connections worth keeping)."""
        return self._urgent_limit

    async def acquire(self, urgent: bool, *, first: bool = False) -> None:
        """Wait for a slot; ``urgent`` waiters are served before all others, and the others
        only while no urgent request is in flight; ``first`` goes ahead of the waiters of its
        lane (the Lease: a renewal must not wait behind a start-up's reads). Pair with
        ``release(urgent)``."""
        urgent_queue, normal_queue = self._waiting
        if not urgent_queue:
            if urgent and self._in_flight < self._urgent_limit:
                self._take(urgent=True)
                return
            if not urgent and self._may_send_other() and not normal_queue:
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
        self._in_flight -= 1
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

    def _may_send_other(self) -> bool:
        """A request that is not urgent may take a slot now."""
        return self._in_flight < self._limit and not self._urgent_in_flight

    def _take(self, *, urgent: bool) -> None:
        self._in_flight += 1
        if urgent:
            self._urgent_in_flight += 1

    def _dispatch(self) -> None:
        urgent_queue, normal_queue = self._waiting
        # Each slot passes straight to a waiter: urgent ones first, up to their larger limit.
        while self._in_flight < self._urgent_limit:
            if (future := _next_live(urgent_queue)) is None:
                break
            self._take(urgent=True)
            future.set_result(None)
        while self._may_send_other():
            if (future := _next_live(normal_queue)) is None:
                break
            self._take(urgent=False)
            future.set_result(None)


def _next_live(queue: collections.deque[asyncio.Future[None]]) -> asyncio.Future[None] | None:
    while queue:
        future = queue.popleft()
        if not future.done():
            return future
    return None
