"""The routing objects a route's earlier specs routed through, released once the current one
carries the traffic (see :mod:`modelroute.routing.handover`)."""

from __future__ import annotations

import logging

import aiohttp

from modelroute.control.route import Driven
from modelroute.core.types import RouteRef
from modelroute.kube.client import ApiError, KubeApi
from modelroute.routing import RoutingState
from modelroute.routing.handover import Routed, explain, moved, release

logger = logging.getLogger("modelroute.control.handover")

_API_FAILURES = (ApiError, aiohttp.ClientError, TimeoutError, OSError)


class Handover:
    """Previous routing objects of one route still to release, oldest first."""

    def __init__(self, previous: list[Routed]) -> None:
        self.previous = previous

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
        self, kube: KubeApi, route: RouteRef, driven: Driven, state: RoutingState
    ) -> None:
        """Release the previous objects once ``state`` (the current object's, after this
        reconcile's routing) carries traffic and its gateway, if any, accepted it (a new
        object reads back Pending at first, and may yet be rejected); a failure is retried on
        the next reconcile."""
        now = Routed(driven.info, driven.spec)
        if not self.previous or state.split is None or state.problem is not None:
            return
        if state.verdict is not None and state.verdict.status != "True":
            return
        while self.previous:
            old = self.previous[0]
            if moved(route, old, now):
                try:
                    await release(kube, route, old, now)
                except _API_FAILURES as exc:
                    extra = {"namespace": route.namespace, "route": route.name}
                    logger.warning(
                        "could not release the previous routing object: %s", exc, extra=extra
                    )
                    return
            self.previous.pop(0)
