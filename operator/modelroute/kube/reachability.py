"""Wake the routes that could not reach the API server as soon as it answers again.

A route whose write failed retries on an exponential backoff (up to 30 s). When the failure
was the API server itself being gone (connection refused or reset), that backoff would delay a
decision taken during the outage by up to the backoff after the API server is back: a failover
decided while the API server restarted would land seconds late. Instead, one small poll (a
discovery GET every ``interval`` seconds, only while someone waits) wakes every waiting route the
moment the API server answers, and the decisions are written at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import aiohttp

from modelroute.kube.client import ApiError

logger = logging.getLogger("modelroute.kube.reachability")

# Failures that say "the API server is not there", not "it refused this request".
# A timeout is one too: a partitioned or overloaded API server need not refuse connections.
TRANSPORT_FAILURES = (aiohttp.ClientConnectionError, ConnectionError, TimeoutError)


class ApiReachability:
    """Calls the registered wake-ups once the API server answers ``check`` again."""

    def __init__(self, check: Callable[[], Awaitable[object]], interval: float = 0.25) -> None:
        self._check = check
        self._interval = interval
        self._waiting: set[Callable[[], None]] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def reachable(self) -> bool:
        """False while someone waits for the API server to come back."""
        return self._task is None

    def wake_when_back(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` (once) as soon as the API server answers again."""
        self._waiting.add(wake)  # a bound method compares equal to itself: added once
        if self._task is None:
            logger.warning("API server unreachable: waiting for it to answer again")
            self._task = asyncio.create_task(self._poll(), name="api-reachability")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._check()
            except (ApiError, aiohttp.ClientError, OSError, TimeoutError):
                continue
            break
        self._task = None
        waiting, self._waiting = self._waiting, set()
        logger.info("API server answers again: waking %d route(s)", len(waiting))
        for wake in waiting:
            wake()

    async def close(self) -> None:
        """Stop polling (shutdown)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._waiting.clear()
