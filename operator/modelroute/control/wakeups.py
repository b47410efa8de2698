"""A route's timed wake-ups: each one asks its reconcile loop for one more pass.

Three kinds, one timer each: the plan's ``recheck_at`` (a window ends), the retry of a failed
reconcile (backoff), and the plan owed to a change that decides nothing (see
:meth:`Wakeups.quiet`). A reconcile takes every record as it is, so it makes the last one moot.
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

    def quiet(self, delay: float) -> None:
        """Plan a change that decides nothing within ``delay`` seconds; a pending one keeps its
        earlier time (a backend failing every probe below its threshold is planned, at the
        latest, one delay after its first failure).

        Why not at once: when a vendor shared by 3,000 routes failed its first probe, planning
        every route took a second of CPU, still running when the next probe decided the
        failover, and the deciding plans and their routing writes queued behind it (bench
        mass, 3,000 routes probed every second). The deciding result plans at once.
        """
        if self._quiet is None:
            self._quiet = self._after(delay)

    def reconciling(self) -> None:
        """A reconcile starts: the plan owed to quiet changes is made by it."""
        if self._quiet is not None:
            self._quiet.cancel()
            self._quiet = None

    def cancel(self) -> None:
        """Cancel every timer (the route is stopping)."""
        for timer in filter(None, (self._recheck, self._retry, self._quiet)):
            timer.cancel()
        self._recheck = self._retry = self._quiet = None
