"""The routing objects a route's earlier specs routed through, released once the current one
carries the traffic (see :mod:`modelroute.routing.handover`).

What is still to release is recorded in ``status.previousRouting``, written with the status
(:meth:`Handover.stamp`), so an operator restarted between the switch and the release
releases it too; the field is unset once everything is released. A release that fails is a
``ReleaseFailed`` Warning, posted by the route's reporter like every other Event.
"""

from __future__ import annotations

import enum
import logging
from datetime import datetime, timedelta

import aiohttp

from modelroute.api.status import ModelRouteStatus, RoutingObjectRef
from modelroute.control.route import Deps, Driven, WorkerState
from modelroute.core.types import EventType, PlannedEvent, RouteRef
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

    @classmethod
    def start(cls, status: ModelRouteStatus, deps: Deps, carried: WorkerState | None) -> Handover:
        """A worker's handover: what the route's previous worker (``carried``) had still to
        release, or, for the first worker of a process, what the route's status says."""
        if carried is not None:
            return cls(list(carried.routed_before), deps)
        routed = (Routed.recorded(ref) for ref in status.previous_routing or ())
        return cls([r for r in routed if r is not None], deps)

    def stamp(
        self, route: RouteRef, driven: Driven | None, status: ModelRouteStatus
    ) -> ModelRouteStatus:
        """``status`` with ``previousRouting``: the objects still to release (not the current
        one, ``driven``'s, which a switch back may have made one of them again)."""
        current = Routed(driven.info, driven.spec).key(route) if driven is not None else None
        refs: list[RoutingObjectRef] = []
        for old in self.previous:
            ref = old.ref(route)
            if ref is not None and old.key(route) != current and ref not in refs:
                refs.append(ref)
        if status.previous_routing == (refs or None):
            return status
        return status.model_copy(update={"previous_routing": refs or None})

    def with_current(self, driven: Driven | None) -> list[Routed]:
        """What the route's next worker has to release: what is still to release here, and
        this worker's own routing object (``driven``), which the next spec may not use."""
        current = [Routed(driven.info, driven.spec)] if driven is not None else []
        return [*self.previous, *current]

    def explain(self, route: RouteRef, driven: Driven, state: RoutingState) -> RoutingState:
        """``state``, its RouteConflict on an object a previous routing object generates told as
        such (see :func:`modelroute.routing.handover.explain`)."""
        return explain(route, Routed(driven.info, driven.spec), self.previous, state)

    async def settle(
        self, route: RouteRef, driven: Driven, state: RoutingState
    ) -> tuple[PlannedEvent, ...]:
        """Release the previous objects once ``state`` (the current object's, after this
        reconcile's routing) carries traffic and its gateway, if any, accepted it (a new
        object reads back Pending at first, and may yet be rejected); a failure is retried on
        the next reconcile. Returns the Events to post (the reporter posts them)."""
        now = Routed(driven.info, driven.spec)
        if not self.previous or state.split is None or state.problem is not None:
            return ()
        if state.verdict is not None and state.verdict.status != "True":
            return ()
        if self._retry_at is not None and self._deps.now() < self._retry_at:
            return ()
        while self.previous:
            old = self.previous[0]
            if moved(route, old, now):
                try:
                    await release(self._deps.kube, route, old, now)
                except _API_FAILURES as exc:
                    return self._failed(route, old, exc)
            self.previous.pop(0)
            self._failures, self._retry_at = 0, None
        return ()

    def _failed(self, route: RouteRef, old: Routed, exc: BaseException) -> tuple[PlannedEvent, ...]:
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
        if self._failures > 1:
            return ()
        message = (
            f"could not release the previous routing object {old.info.kind.kind} "
            f"{route.namespace}/{old.name(route)}: {exc}; retried with backoff"
        )
        return (PlannedEvent(EventType.WARNING, HandoverEvent.RELEASE_FAILED, message),)
