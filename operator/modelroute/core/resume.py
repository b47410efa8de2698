"""Resuming after a crash between a failover's routing write and its status write.

The routing object is written first, then Events and status. A process killed in between
leaves the routing object on the fallback while status still names the backend traffic left.
The next process trusts the routing object (it never moves traffic back), but the failover
itself must not be lost: its Event, ``failoverCount`` and ``lastFailoverTime`` are still owed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from modelroute.api.models import ModelRouteSpec
from modelroute.api.status import ModelRouteStatus
from modelroute.core import drill
from modelroute.core.conditions import get_condition
from modelroute.core.health import HealthRecord
from modelroute.core.types import (
    ConditionType,
    EventType,
    PlannedEvent,
    ReadyReason,
    TrafficSplit,
    Transition,
)

if TYPE_CHECKING:
    from modelroute.core.plan import Plan

MOVED_OFF = "traffic had been moved off it when the operator restarted"


def unrecorded_failover(
    spec: ModelRouteSpec,
    recorded: TrafficSplit | None,
    observed: TrafficSplit,
    records: Mapping[str, HealthRecord],
    status: ModelRouteStatus | None = None,
) -> dict[str, HealthRecord] | None:
    """Records under which the first plan takes again the failover from ``recorded`` (what
    status says) to ``observed`` (what the routing object says), or None when this is not
    an unrecorded failover.

    The backend traffic left is marked failed, as the process that moved traffic had found
    it: the plan then fails over to ``observed`` (already in place, so nothing is written to
    routing) and emits the Event and counts the move. Only a whole-traffic move to a less
    preferred backend that is the first healthy one qualifies, so the plan's target is exactly
    where traffic already is and nothing can move it anywhere else.

    A route whose ``status`` shows it suspended and whose ``spec`` still is was not moved by
    the operator (it never writes routing while suspended): traffic found elsewhere then was
    pinned by hand, and is no failover. A status that says suspended under a spec that is not
    may be one a resumed route's process never got to replace (it routed, then was killed
    before its status write): that move is the operator's, and owed.
    """
    if status is not None and spec.suspend and _suspended(status):
        return None
    if recorded is None or len(recorded) != 1 or len(observed) != 1:
        return None
    old, new = recorded.primary, observed.primary
    order = [b.name for b in spec.preference_order()]
    if old == new or old not in order or new not in order or order.index(new) < order.index(old):
        return None
    healthy = [n for n in order if n != old and (r := records.get(n)) and r.healthy]
    if not healthy or healthy[0] != new:
        return None
    backend = next(b for b in spec.backends if b.name == old)
    threshold = spec.effective_probe(backend).failure_threshold
    record = records.get(old, HealthRecord())
    failed = dataclasses.replace(
        record,
        healthy=False,
        consecutive_failures=max(record.consecutive_failures, threshold),
        consecutive_successes=0,
        healthy_since=None,
        message=record.message if record.reason is not None else MOVED_OFF,
    )
    return {**records, old: failed}


def _suspended(status: ModelRouteStatus) -> bool:
    ready = get_condition(status.conditions, ConditionType.READY)
    return ready is not None and ready.reason == ReadyReason.SUSPENDED


def recorded(taken: Plan, decided: Plan, owed: TrafficSplit | None, now: datetime) -> Plan:
    """``decided`` with the unrecorded failover to ``owed`` recorded, when ``taken`` (the plan
    from the split status recorded, under :func:`unrecorded_failover`'s records) took it but
    could not carry it out, as a suspended route's plan never does: ``decided`` is the plan on
    the split the routing object carries (``owed``), which shows traffic where it is but, not
    moving it, would record the move nowhere. The move is recorded here, once: its Event, count
    and time; the route's next plans start from ``owed`` and never take it again.
    """
    decision = taken.decision
    if (
        owed is None
        or decided.moved
        or decision is None
        or decision.transition is not Transition.FAILOVER
        or decision.target != owed.primary
        or decided.status.active_backend != owed.primary
    ):
        return decided
    count = decided.status.failover_count + 1
    new = decided.status.model_copy(update={"failover_count": count, "last_failover_time": now})
    event = PlannedEvent(EventType.WARNING, Transition.FAILOVER, decision.message)
    marked = drill.events(new.drill, new.drill, (event,))  # "Drill: " during a drill, as always
    return dataclasses.replace(
        decided, status=new, events=(*marked, *decided.events), moved=True, must_write=True
    )
