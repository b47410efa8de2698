"""One call for the things an admin should see: a structured log line and a Kubernetes Event."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import aiohttp

from modelroute.api.models import GROUP, KIND, VERSION
from modelroute.core.types import EventType, RouteRef
from modelroute.kube.client import ApiError, KubeApi

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
    """Logs and posts Events; a failure to post is logged, never raised (not on the hot path)."""

    def __init__(self, kube: KubeApi, component: str) -> None:
        self._kube = kube
        self._component = component

    async def emit(
        self, route: RouteRef, event_type: EventType, reason: str, message: str, now: datetime
    ) -> None:
        """Log the event and create it on the route."""
        level = logging.WARNING if event_type is EventType.WARNING else logging.INFO
        logger.log(
            level,
            message,
            extra={"namespace": route.namespace, "route": route.name, "reason": str(reason)},
        )
        try:
            await self._kube.create_event(
                route.namespace,
                event_body(route, event_type, reason, message, now, self._component),
            )
        except (ApiError, OSError, aiohttp.ClientError, TimeoutError) as exc:
            logger.warning(
                "could not post event %s: %s",
                reason,
                exc,
                extra={"namespace": route.namespace, "route": route.name},
            )
