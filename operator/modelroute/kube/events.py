"""The things an admin should see: a structured log line and a Kubernetes Event.

The two are separate calls: the route's reporter (``control/report.py``) logs an Event once,
when it is decided, and posts it when it can. An Event the API server cannot be reached for is
raised to that caller, which keeps it in order with the route's later Events and status and
posts it, stamped with when it was decided, once the API server answers again. Other failures
are logged and dropped (Events are not on the hot path).

A decision Event (a failover, a failback) is posted exactly once, counted on the server: its
name is derived from the route's uid, the reason and the decision (:func:`decision_name`), the
same in every process, so a process that takes the decision again after a crash between the
Event and the status write (``core.resume``), or a kept Event whose first post did reach the
API server, is refused with 409 AlreadyExists, which counts as posted. Other Events keep
``generateName``: the same reason may recur with nothing that tells two occurrences apart.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import aiohttp

from modelroute.api.models import GROUP, KIND, VERSION
from modelroute.core.types import EventType, RouteRef, Transition
from modelroute.kube.client import ApiError, KubeApi
from modelroute.kube.reachability import TRANSPORT_FAILURES

logger = logging.getLogger("modelroute.kube.events")


# An Event's name is a DNS subdomain (at most 253 characters): the route's name, a dot, and
# 16 hex digits of the digest.
_DIGEST_CHARS = 16
_NAME_MAX = 253


def decision_name(route: RouteRef, reason: str, decision: str) -> str:
    """The Event name of one decision about ``route`` (pure): equal for the same decision in
    any process, different for different routes (uids), reasons or decisions.

    ``decision`` tells this decision apart from the route's others (:func:`decision_of`)."""
    digest = hashlib.sha256(f"{route.uid}/{reason}/{decision}".encode()).hexdigest()
    prefix = route.name[: _NAME_MAX - _DIGEST_CHARS - 1].rstrip(".-")
    return f"{prefix}.{digest[:_DIGEST_CHARS]}"


# Decisions that move traffic and add one to failoverCount, so no two of a route's share it.
# Others (a failback step, an abort, a problem) may recur with the same count and traffic:
# they keep generated names (at-least-once) rather than risk a later one being taken for a
# repost and never shown.
COUNTED_MOVES = frozenset({Transition.FAILOVER, Transition.FAILBACK, Transition.REROUTE})


def decision_of(reason: str, failover_count: int, traffic: Mapping[str, int]) -> str | None:
    """What identifies a decision Event (pure), from the status the decision leads to: the
    failoverCount and the weights it sets; None when ``reason`` is no counted move."""
    if reason not in COUNTED_MOVES:
        return None
    weights = ",".join(f"{name}={weight}" for name, weight in sorted(traffic.items()))
    return f"{failover_count}:{weights}"


def event_body(
    route: RouteRef,
    event_type: EventType,
    reason: str,
    message: str,
    now: datetime,
    component: str,
    *,
    name: str | None = None,
) -> dict[str, Any]:
    """A core/v1 Event about ``route`` (pure), stamped ``now``: the time of what it reports.
    ``name``: a fixed name (decision Events); None lets the API server generate one."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    named = {"name": name} if name is not None else {"generateName": f"{route.name}."}
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {**named, "namespace": route.namespace},
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

    def __init__(
        self, kube: KubeApi, component: str, on_posted: Callable[[], None] | None = None
    ) -> None:
        """``on_posted`` is called once per Event the API server created (the operator's
        write counter: a counter blind to Events reads flat while a backlog of them is sent)."""
        self._kube = kube
        self._component = component
        self._on_posted = on_posted

    def log(self, route: RouteRef, event_type: EventType, reason: str, message: str) -> None:
        """The Event's log line (a Warning Event at WARNING level), once per Event."""
        level = logging.WARNING if event_type is EventType.WARNING else logging.INFO
        logger.log(
            level,
            message,
            extra={"namespace": route.namespace, "route": route.name, "reason": str(reason)},
        )

    async def post(
        self,
        route: RouteRef,
        event_type: EventType,
        reason: str,
        message: str,
        now: datetime,
        *,
        decision: str | None = None,
    ) -> None:
        """Create the Event on the route, stamped ``now`` (when it was decided); raises a
        transport failure (the API server is gone: the caller posts it again when it is back),
        logs and drops any other. ``decision`` (:func:`decision_of`) makes it a decision Event:
        a repost of one already there (409) counts as posted, and a 429 or 5xx answer is raised
        too (the caller retries: safe, a repeat gets 409)."""
        name = decision_name(route, reason, decision) if decision is not None else None
        body = event_body(route, event_type, reason, message, now, self._component, name=name)
        extra = {"namespace": route.namespace, "route": route.name}
        try:
            await self._kube.create_event(route.namespace, body)
            if self._on_posted is not None:
                self._on_posted()
        except TRANSPORT_FAILURES:
            raise
        except ApiError as exc:
            if exc.status == 409 and name is not None:
                # This decision's Event is there already (posted before a crash, or by a first
                # attempt whose answer was lost): posted, exactly once.
                logger.debug("event %s posted already", reason, extra=extra)
                return
            if name is not None and _transient(exc):
                raise  # a named Event is safe to post again (a repeat gets 409): caller retries
            logger.warning("could not post event %s: %s", reason, exc, extra=extra)
        except (OSError, aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("could not post event %s: %s", reason, exc, extra=extra)


def _transient(exc: ApiError) -> bool:
    """Throttled or a server-side failure: the same post may succeed later."""
    return exc.status == 429 or exc.status >= 500
