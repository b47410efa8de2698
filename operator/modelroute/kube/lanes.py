"""A bound on requests in flight to the API server, with a fast lane for routing writes."""

from __future__ import annotations

import asyncio
import collections
import contextlib

# Requests in flight to the API server at once (the connection pool has as many).
MAX_IN_FLIGHT = 20


class Lanes:
    """At most ``limit`` requests in flight; routing writes (the routing-object writes that
    move traffic) take free slots before anything else waiting.

    Why: when one shared vendor goes down under many routes, every route decides at the same
    moment and each sends a Service patch, an Event and a status patch, and the status writes
    of the previous (non-deciding) failed probe may still be queued. In arrival order the
    traffic moves waited behind all of those (bench mass, 1,000 routes: the last route
    switched 6.7-9.1 s after the floor). Only the order changes: every request is still sent.
    """

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiting: tuple[collections.deque[asyncio.Future[None]], ...] = (
            collections.deque(),  # urgent: routing writes
            collections.deque(),  # the rest
        )

    async def acquire(self, urgent: bool) -> None:
        """Wait for a slot; ``urgent`` waiters are served before all others."""
        urgent_queue, normal_queue = self._waiting
        if self._free > 0 and not urgent_queue and (urgent or not normal_queue):
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (urgent_queue if urgent else normal_queue).append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            else:
                with contextlib.suppress(ValueError):  # release() may have skipped it already
                    (urgent_queue if urgent else normal_queue).remove(future)
            raise

    def release(self) -> None:
        """Give the slot to the next waiter (urgent first), or free it."""
        for queue in self._waiting:
            while queue:
                future = queue.popleft()
                if not future.done():
                    future.set_result(None)  # the slot passes straight to the next waiter
                    return
        self._free += 1
