"""One call for the things an admin should see: a structured log line and a Kubernetes Event.

An Event that cannot be posted because the API server is gone is kept and posted when it
answers again (its timestamps still say when it happened): a failover during an API server
restart keeps its Event. Other failures are logged and dropped (Events are not on the hot path).

A decision Event (a failover, a failback) is posted exactly once, counted on the server: its
name is derived from the route's uid, the reason and the decision (:func:`decision_name`), the
same in every process, so a process that takes the decision again after a crash between the
Event and the status write (``core.resume``), or a kept Event whose first post did reach the
API server, is refused with 409 AlreadyExists, which counts as posted. Other Events keep
``generateName``: the same reason may recur with nothing that tells two occurrences apart.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import aiohttp

from modelroute.api.models import GROUP, KIND, VERSION
from modelroute.core.types import EventType, RouteRef, Transition
from modelroute.kube.client import ApiError, KubeApi
from modelroute.kube.reachability import TRANSPORT_FAILURES, ApiReachability

logger = logging.getLogger("modelroute.kube.events")

# Events kept while the API server is gone; beyond this the oldest are dropped (logged).
MAX_PENDING = 1000


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
        decision: str | None = None,
    ) -> None:
        """Log the event and create it on the route. ``now`` is when it happened (the
        decision's time, not the post's); ``decision`` (:func:`decision_of`) makes it a
        decision Event, posted at most once whatever the retries and restarts. ``keep=False``:
        a caller that keeps its own Events in order (the route's reporter) gets the API
        server's absence raised instead of the Event being kept here, where a later Event or
        status could overtake it, and for a decision Event a 429 or 5xx answer too."""
        level = logging.WARNING if event_type is EventType.WARNING else logging.INFO
        logger.log(
            level,
            message,
            extra={"namespace": route.namespace, "route": route.name, "reason": str(reason)},
        )
        name = decision_name(route, reason, decision) if decision is not None else None
        body = event_body(route, event_type, reason, message, now, self._component, name=name)
        await self._post(body, keep=keep)

    async def _post(self, body: dict[str, Any], *, keep: bool = True) -> None:
        namespace = body["metadata"]["namespace"]
        extra = {"namespace": namespace, "route": body["involvedObject"]["name"]}
        try:
            await self._kube.create_event(namespace, body)
        except ApiError as exc:
            if exc.status == 409 and "name" in body["metadata"]:
                # This decision's Event is there already (posted before a crash, or by a first
                # attempt whose answer was lost): posted, exactly once.
                logger.debug("event %s posted already", body["reason"], extra=extra)
                return
            if not keep and "name" in body["metadata"] and _transient(exc):
                raise  # a named Event is safe to post again (a repeat gets 409): caller retries
            logger.warning("could not post event %s: %s", body["reason"], exc, extra=extra)
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
        except (OSError, aiohttp.ClientError, TimeoutError) as exc:
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


def _transient(exc: ApiError) -> bool:
    """Throttled or a server-side failure: the same post may succeed later."""
    return exc.status == 429 or exc.status >= 500
