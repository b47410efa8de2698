"""Full garbage collections that walk only what is new: the survivors of each are frozen.

The operator keeps every route's spec, status, health records and tasks for its whole life: at
1,000 routes a few million objects, nearly all of them long-lived. CPython's full (generation
2) collection walks every one of them, and runs whenever the objects that survived a younger
collection since the last full one reach a quarter of the heap, which start-up and a mass
failover (a new status, Events and a plan for every route) do within seconds. Measured at
1,000 routes (bench mass): full collections of 0.15-1.7 s every 10-30 s during start-up and
outages, and nothing else runs meanwhile (probe results, routing writes, Lease renewals).

So the young generation is collected every :data:`YOUNG_THRESHOLD` allocations instead of
700 (fewer collections, and fewer short-lived objects, such as a request in flight, survive
into the older generations whose growth triggers a full collection), and after every full
collection its survivors are frozen (:func:`gc.freeze`: moved to a
permanent generation the collector does not walk), and the next full collection walks only
the objects that survived since. An object frozen while alive and left in a reference cycle
later (a replaced route's worker, say) would never be freed: once per :data:`THAW_SECONDS`
the frozen objects are handed back to the collector, so its next full collection walks
everything once and frees such cycles.
"""

from __future__ import annotations

import gc
import time
from typing import Any

#: How often a full collection walks every object again (seconds).
THAW_SECONDS = 3600.0
#: Allocations (less deallocations) of tracked objects between two young collections.
YOUNG_THRESHOLD = 10_000
_DEFAULT_THRESHOLDS = gc.get_threshold()


class _Freezer:
    def __init__(self, thaw_seconds: float) -> None:
        self._thaw_seconds = thaw_seconds
        self._thawed_at = time.monotonic()

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop" or info.get("generation") != 2:
            return
        now = time.monotonic()
        if now - self._thawed_at >= self._thaw_seconds:
            # The next full collection walks everything (and frees cycles frozen while alive).
            self._thawed_at = now
            gc.unfreeze()
            return
        gc.freeze()


def install(thaw_seconds: float = THAW_SECONDS) -> None:
    """Freeze the survivors of every full collection from now on (idempotent)."""
    uninstall()
    gc.set_threshold(YOUNG_THRESHOLD, *_DEFAULT_THRESHOLDS[1:])
    gc.callbacks.append(_Freezer(thaw_seconds))


def uninstall() -> None:
    """Stop freezing, hand every frozen object back to the collector, default thresholds."""
    gc.set_threshold(*_DEFAULT_THRESHOLDS)
    gc.callbacks[:] = [cb for cb in gc.callbacks if not isinstance(cb, _Freezer)]
    gc.unfreeze()
