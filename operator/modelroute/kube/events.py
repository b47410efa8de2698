"""The things an admin should see: a structured log line and a Kubernetes Event.

The two are separate calls: the route's reporter (``control/report.py``) logs an Event once,
when it is decided, and posts it when it can. An Event the API server cannot be reached for is
raised to that caller, which keeps it in order with the route's later Events and status and
posts it, stamped with when it was decided, once the API server answers again. Other failures
are logged and dropped (Events are not on the hot path).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import aiohttp

from modelroute.api.models import GROUP, KIND, VERSION
from modelroute.core.types import EventType, RouteRef
from modelroute.kube.client import ApiError, KubeApi
from modelroute.kube.reachability import TRANSPORT_FAILURES

logger = logging.getLogger("modelroute.kube.events")


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
    """Logs and posts Events; a failure to post is logged, never raised, except the API
    server's absence (the caller keeps the Event in order and posts it again)."""

    def __init__(self, kube: KubeApi, component: str) -> None:
        self._kube = kube
        self._component = component

    def log(self, route: RouteRef, event_type: EventType, reason: str, message: str) -> None:
        """The Event's log line (a Warning Event at WARNING level), once per Event."""
        level = logging.WARNING if event_type is EventType.WARNING else logging.INFO
        logger.log(
            level,
            message,
            extra={"namespace": route.namespace, "route": route.name, "reason": str(reason)},
        )

    async def post(
        self, route: RouteRef, event_type: EventType, reason: str, message: str, now: datetime
    ) -> None:
        """Create the Event on the route, stamped ``now``; raises a transport failure (the API
        server is gone: the caller posts it again when it is back), logs and drops any other."""
        body = event_body(route, event_type, reason, message, now, self._component)
        extra = {"namespace": route.namespace, "route": route.name}
        try:
            await self._kube.create_event(route.namespace, body)
        except TRANSPORT_FAILURES:
            raise
        except (ApiError, OSError, aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("could not post event %s: %s", body["reason"], exc, extra=extra)
