"""The routing objects a route's earlier specs routed through, released once the current one
carries the traffic (see :mod:`modelroute.routing.handover`)."""

from __future__ import annotations

import contextlib
import enum
import logging
from datetime import datetime, timedelta

import aiohttp

from modelroute.control.route import Deps, Driven
from modelroute.core.types import EventType, RouteRef
from modelroute.kube.client import ApiError
from modelroute.routing import RoutingState
from modelroute.routing.handover import Routed, explain, moved, release

logger = logging.getLogger("modelroute.control.handover")

_API_FAILURES = (ApiError, aiohttp.ClientError, TimeoutError, OSError)


class HandoverEvent(enum.StrEnum):
    """Event reasons of a handover."""

    RELEASE_FAILED = "ReleaseFailed"  # Warning: the first failure of a release in a row


class Handover:
    """Previous routing objects of one route still to release, oldest first."""

    def __init__(self, previous: list[Routed], deps: Deps) -> None:
        self.previous = previous
        self._deps = deps
        self._failures = 0  # of the release in progress, in a row
        self._retry_at: datetime | None = None

    def with_current(self, driven: Driven | None) -> list[Routed]:
        """What the route's next worker has to release: what is still to release here, and
        this worker's own routing object (``driven``), which the next spec may not use."""
        current = [Routed(driven.info, driven.spec)] if driven is not None else []
        return [*self.previous, *current]

    def explain(self, route: RouteRef, driven: Driven, state: RoutingState) -> RoutingState:
        """``state``, its RouteConflict on an object a previous routing object generates told as
        such (see :func:`modelroute.routing.handover.explain`)."""
        return explain(route, Routed(driven.info, driven.spec), self.previous, state)

    async def settle(self, route: RouteRef, driven: Driven, state: RoutingState) -> None:
        """Release the previous objects once ``state`` (the current object's, after this
        reconcile's routing) carries traffic and its gateway, if any, accepted it (a new
        object reads back Pending at first, and may yet be rejected); a failure is retried on
        the next reconcile."""
        now = Routed(driven.info, driven.spec)
        if not self.previous or state.split is None or state.problem is not None:
            return
        if state.verdict is not None and state.verdict.status != "True":
            return
        if self._retry_at is not None and self._deps.now() < self._retry_at:
            return
        while self.previous:
            old = self.previous[0]
            if moved(route, old, now):
                try:
                    await release(self._deps.kube, route, old, now)
                except _API_FAILURES as exc:
                    await self._failed(route, old, exc)
                    return
            self.previous.pop(0)
            self._failures, self._retry_at = 0, None

    async def _failed(self, route: RouteRef, old: Routed, exc: BaseException) -> None:
        """Back off; the first failure in a row is a Warning Event, every one a log line."""
        self._failures += 1
        # Backoff of a release that keeps failing (a 403: the ClusterRole lacks delete after an
        # image-only upgrade; a webhook refusing it): not a GET, DELETE and Warning per reconcile.
        settings = self._deps.settings
        first, most = settings.release_retry_first_seconds, settings.release_retry_max_seconds
        delay = min(first * 2 ** (self._failures - 1), most)
        now = self._deps.now()
        self._retry_at = now + timedelta(seconds=delay)
        extra = {"namespace": route.namespace, "route": route.name}
        logger.warning(
            "could not release the previous routing object, retrying in %.0fs: %s",
            delay,
            exc,
            extra=extra,
        )
        if self._failures == 1:
            message = (
                f"could not release the previous routing object {old.info.kind.kind} "
                f"{route.namespace}/{old.name(route)}: {exc}; retried with backoff"
            )
            events = self._deps.events
            events.log(route, EventType.WARNING, HandoverEvent.RELEASE_FAILED, message)
            with contextlib.suppress(*_API_FAILURES):
                await events.post(
                    route, EventType.WARNING, HandoverEvent.RELEASE_FAILED, message, now
                )
