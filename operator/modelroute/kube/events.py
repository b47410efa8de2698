"""One call for the things an admin should see: a structured log line and a Kubernetes Event.

An Event that cannot be posted because the API server is gone is kept and posted when it
answers again (its timestamps still say when it happened): a failover during an API server
restart keeps its Event. Other failures are logged and dropped (Events are not on the hot path).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

import aiohttp

from modelroute.api.models import GROUP, KIND, VERSION
from modelroute.core.types import EventType, RouteRef
from modelroute.kube.client import ApiError, KubeApi
from modelroute.kube.reachability import TRANSPORT_FAILURES, ApiReachability

logger = logging.getLogger("modelroute.kube.events")

# Events kept while the API server is gone; beyond this the oldest are dropped (logged).
MAX_PENDING = 1000


def event_body(
    route: RouteRef, event_type: EventType, reason: str, message: str, now: datetime, component: str
) -> dict[str, Any]:
    """A core/v1 Event about ``route`` (pure)."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{route.name}.", "namespace": route.namespace},
        "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": route.name,
            "namespace": route.namespace,
            "uid": route.uid,
        },
        "type": str(event_type),
        "reason": str(reason),
        "message": message[:1024],
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": component,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class EventRecorder:
    """Logs and posts Events; a failure to post is logged, never raised (not on the hot path)."""

    def __init__(
        self, kube: KubeApi, component: str, reachability: ApiReachability | None = None
    ) -> None:
        self._kube = kube
        self._component = component
        self._reachability = reachability
        self.pending: list[dict[str, Any]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def emit(
        self,
        route: RouteRef,
        event_type: EventType,
        reason: str,
        message: str,
        now: datetime,
        *,
        keep: bool = True,
    ) -> None:
        """Log the event and create it on the route. ``keep=False``: a caller that keeps its
        own Events in order (the route's reporter) gets the API server's absence raised instead
        of the Event being kept here, where a later Event or status could overtake it."""
        level = logging.WARNING if event_type is EventType.WARNING else logging.INFO
        logger.log(
            level,
            message,
            extra={"namespace": route.namespace, "route": route.name, "reason": str(reason)},
        )
        body = event_body(route, event_type, reason, message, now, self._component)
        await self._post(body, keep=keep)

    async def _post(self, body: dict[str, Any], *, keep: bool = True) -> None:
        namespace = body["metadata"]["namespace"]
        extra = {"namespace": namespace, "route": body["involvedObject"]["name"]}
        try:
            await self._kube.create_event(namespace, body)
        except TRANSPORT_FAILURES as exc:
            if not keep:
                raise
            if self._reachability is None:
                logger.warning("could not post event %s: %s", body["reason"], exc, extra=extra)
                return
            if len(self.pending) >= MAX_PENDING:
                dropped = self.pending.pop(0)
                logger.warning("dropped event %s kept too long", dropped["reason"], extra=extra)
            self.pending.append(body)
            self._reachability.wake_when_back(self._flush_soon)
            logger.warning(
                "API server unreachable: event %s kept until it answers",
                body["reason"],
                extra=extra,
            )
        except (ApiError, OSError, aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("could not post event %s: %s", body["reason"], exc, extra=extra)

    def _flush_soon(self) -> None:
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self.flush(), name="events-flush")

    async def flush(self) -> None:
        """Post the Events kept while the API server was gone, oldest first."""
        while True:
            pending, self.pending = self.pending, []
            for body in pending:
                await self._post(body)
            # Kept while this ran, with the API server back already (its wake-up came while
            # this flush ran, and was skipped): go on. Gone again: the next wake-up flushes.
            reach = self._reachability
            if not (self.pending and reach is not None and reach.reachable):
                return

    async def close(self) -> None:
        """Stop a flush in progress (shutdown); what is still kept is lost with the process."""
        if self._flushing is not None:
            self._flushing.cancel()
            await asyncio.gather(self._flushing, return_exceptions=True)
