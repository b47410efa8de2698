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

The freeze runs from a ``gc.callbacks`` hook at the end ("stop") of each full collection:
right then nothing unreachable is left, so no garbage is frozen with the live objects (a
freeze a few seconds later also froze cyclic garbage made meanwhile, kept up to the hour).

Large blocks (:func:`map_large_blocks`): glibc's malloc serves a block of 128 KiB or more
with a mapping of its own, returned to the system when freed, but raises that threshold to
the size of each such block freed, after which blocks of that size come from the heap and
stay in the process's RSS when freed among live objects. Each TLS connection to the API
server reads into a buffer of 256 KiB (asyncio's), a burst of routing writes opens up to 100
connections, and a /metrics scrape builds megabytes of text: at 10,000 routes the fixed
threshold kept the steady RSS at 572 MiB against 603 MiB (bench scale, bench/notes.md item 17).
"""

from __future__ import annotations

import ctypes
import gc
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# mallopt's parameter for the mmap threshold (glibc's malloc.h).
_M_MMAP_THRESHOLD = -3
# The environment's ways to set it too: an admin's own choice is kept.
_MMAP_THRESHOLD_ENV = "MALLOC_MMAP_THRESHOLD_"
_TUNABLES_ENV, _MMAP_TUNABLE = "GLIBC_TUNABLES", "glibc.malloc.mmap_threshold"
# glibc takes at most 32 MiB on 64-bit platforms (HEAP_MAX_SIZE / 2).
MAX_MMAP_THRESHOLD = 32 << 20


def _libc_mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt``, or None where the C library has none (macOS, some musl)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # TypeError: Windows takes no None
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt


def map_large_blocks(
    threshold: int,
    mallopt: Callable[[], Callable[[int, int], int] | None] = _libc_mallopt,
    environ: Mapping[str, str] = os.environ,
) -> bool:
    """Fix the C allocator's mmap threshold at ``threshold`` bytes, so every block at least
    that large is mapped on its own and returned to the system when freed (see the module's
    docstring). False, and nothing changed: ``threshold`` is 0, the environment sets it
    (``MALLOC_MMAP_THRESHOLD_``, ``GLIBC_TUNABLES``), or the C library has no ``mallopt`` or
    refused it. ValueError: more than glibc takes (:data:`MAX_MMAP_THRESHOLD`)."""
    if not 0 <= threshold <= MAX_MMAP_THRESHOLD:
        raise ValueError(
            f"the mmap threshold must be 0 to {MAX_MMAP_THRESHOLD} bytes, not {threshold}"
        )
    chosen = _MMAP_THRESHOLD_ENV in environ or _MMAP_TUNABLE in environ.get(_TUNABLES_ENV, "")
    if threshold == 0 or chosen:
        return False
    call = mallopt()
    return call is not None and call(_M_MMAP_THRESHOLD, threshold) == 1


@dataclass
class HeapKeeper:
    """Freezes the heap right after each full collection; at the first full collection once
    ``unfreeze_seconds`` have passed since the last unfreeze, unfreezes it instead."""

    unfreeze_seconds: float
    # The clock and the gc module's functions (injectable for tests).
    clock: Callable[[], float] = time.monotonic
    freeze: Callable[[], None] = gc.freeze
    unfreeze: Callable[[], None] = gc.unfreeze
    callbacks: list[Any] = field(default_factory=lambda: gc.callbacks)  # where it hooks in
    _unfrozen_at: float | None = None

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        """The gc callback: acts only when a full (generation 2) collection has ended."""
        if phase != "stop" or info.get("generation") != 2:
            return
        now = self.clock()
        if self._unfrozen_at is None:
            self._unfrozen_at = now
        if now - self._unfrozen_at >= self.unfreeze_seconds:
            # The next full collection visits everything (and frees cycles frozen while alive).
            self.unfreeze()
            self._unfrozen_at = now
        else:
            self.freeze()

    def install(self) -> None:
        """Start keeping the heap (idempotent)."""
        self._unfrozen_at = self.clock()
        if self not in self.callbacks:
            self.callbacks.append(self)

    def uninstall(self) -> None:
        """Stop, and hand every frozen object back to the collector."""
        self.callbacks[:] = [cb for cb in self.callbacks if cb is not self]
        self.unfreeze()
