"""Garbage collection for a heap of many long-lived objects: thousands of routes' workers.

CPython's cyclic collector runs a full collection whenever the objects that survived into its
oldest generation grew by a quarter, and a full collection visits every tracked object. At
10,000 routes that is millions of objects, seconds per collection, and about 25 of them
while the routes start (the heap grows by a quarter again and again): a fifth of the
operator's CPU at start-up went to them (gc callbacks, bench scale at 3,000 routes), and each
one holds the event loop for its whole length.

Objects that survived a full collection are the long-lived ones (routes' workers, specs,
caches, metric series). Frozen (``gc.freeze``), they are left out of later collections, which
then visit only what was allocated since. What a frozen object cannot be is collected as part
of a reference cycle: a deleted route's worker (its tasks and callbacks refer back to it) stays
until the next unfreeze. So every ``unfreeze_seconds`` everything is unfrozen again, and the
next full collection, which Python runs by itself, visits the whole heap once and reclaims
those cycles (then it is frozen again).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from dataclasses import dataclass, field

#: How often (seconds) the keeper looks for a full collection that happened since its last look.
CHECK_SECONDS = 5.0


@dataclass
class HeapKeeper:
    """Freezes the heap after each full collection; unfreezes it every ``unfreeze_seconds``."""

    unfreeze_seconds: float
    # The gc module's functions (injectable for tests).
    full_collections: Callable[[], int] = field(default=lambda: gc.get_stats()[2]["collections"])
    freeze: Callable[[], None] = gc.freeze
    unfreeze: Callable[[], None] = gc.unfreeze
    _seen: int = 0
    _unfrozen_at: float | None = None

    def tick(self, now: float) -> None:
        """One look: freeze after a full collection, unfreeze when the period is over."""
        if self._unfrozen_at is None:
            self._unfrozen_at = now
        collections = self.full_collections()
        if now - self._unfrozen_at >= self.unfreeze_seconds:
            self.unfreeze()
            self._unfrozen_at = now
        elif collections != self._seen:
            self.freeze()
        self._seen = collections

    async def run(self) -> None:
        """Look every CHECK_SECONDS until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            self.tick(loop.time())
