"""A route's timed wake-ups: each one asks its reconcile loop for one more pass.

Three kinds, one timer each: the plan's ``recheck_at`` (a window ends), the retry of a failed
reconcile (backoff), and the plan owed to changes that decide nothing (see
:meth:`Wakeups.quiet`), which any reconcile makes.
"""

from __future__ import annotations

import asyncio
from datetime import datetime


class Wakeups:
    """The timers that set one route's ``dirty`` event."""

    def __init__(self, dirty: asyncio.Event) -> None:
        self._dirty = dirty
        self._recheck: asyncio.TimerHandle | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._quiet: asyncio.TimerHandle | None = None
        self._quiet_since: float | None = None  # loop time of the first quiet change owed

    def _after(self, delay: float) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(delay, self._dirty.set)

    def recheck(self, at: datetime | None, now: datetime) -> None:
        """Wake at ``at`` (``None``: no recheck), replacing the previous recheck."""
        if self._recheck is not None:
            self._recheck.cancel()
            self._recheck = None
        if at is not None:
            # A window that ended while the reconcile ran (slow writes under load) gets an
            # immediate wake-up: delay 0, never a missed failback.
            self._recheck = self._after(max(0.0, (at - now).total_seconds()) + 0.001)

    def retry(self, delay: float) -> None:
        """Retry a failed reconcile after ``delay`` seconds, replacing a pending retry (a
        wake-up may have run it before its timer)."""
        if self._retry is not None:
            self._retry.cancel()
        self._retry = self._after(delay)

    def quiet(self, delay: float, at: float) -> None:
        """A change that decides nothing came at loop time ``at``: plan within ``delay``
        seconds of the first such change not planned yet (later ones keep its time).

        Why not at once: when a vendor shared by 3,000 routes failed its first probe, planning
        every route took a second of CPU, and the next probe, which decided the failover, came
        while it ran (bench mass, 3,000 routes probed every second). What such a change alters
        (status counters and messages) is deferred ``status_defer_seconds`` anyway.
        """
        if self._quiet_since is None:
            self._quiet_since = at
        if self._quiet is None:
            self._quiet = self._after(delay)

    def reconciling(self) -> float | None:
        """A plan is made from the records as they are now, so it takes in every quiet change
        so far: the timer is dropped. Returns the loop time of the first of them, if any."""
        if self._quiet is not None:
            self._quiet.cancel()
            self._quiet = None
        since, self._quiet_since = self._quiet_since, None
        return since

    def hurry(self) -> None:
        """Plan the quiet changes owed now rather than later (one failure decides now)."""
        if self._quiet is not None:
            self._quiet.cancel()
            self._quiet = None
            self._dirty.set()

    def cancel(self) -> None:
        """Cancel every timer (the route is stopping)."""
        for timer in filter(None, (self._recheck, self._retry, self._quiet)):
            timer.cancel()
        self._recheck = self._retry = self._quiet = None
