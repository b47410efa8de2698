"""The incident controls on top of the routing plan: ``spec.suspend`` and ``spec.drill``. Pure.

- Suspended: the routing plan is made as usual, with routing held where it is (as if routing
  could not move), so health, Degraded and the decision are still current; the split is then
  dropped (the worker only observes), and Ready is False, reason Suspended, saying where
  traffic stays and what the operator would do if resumed. Resuming routes at once to the
  current decision, and says so in a ``Resumed`` Event.
- Drill: ``status.drill``, Degraded, the Events and the next recheck (see :mod:`.drill`).

:func:`modelroute.core.plan.plan` calls :func:`with_incident_controls`; the routing plan is
passed in so this module needs no import of it at run time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from modelroute.api.status import ConditionStatus, ModelRouteStatus
from modelroute.core import drill, kstatus
from modelroute.core.conditions import get_condition, set_condition
from modelroute.core.types import (
    ConditionType,
    EventType,
    IncidentEvent,
    PlannedEvent,
    Problem,
    ReadyReason,
    TrafficSplit,
)

if TYPE_CHECKING:
    from modelroute.core.plan import Plan, PlanInput

RoutingPlan = Callable[["PlanInput"], "Plan"]


def with_incident_controls(given: PlanInput, routing_plan: RoutingPlan) -> Plan:
    """The routing plan for ``given`` with suspension and drills applied."""
    if given.spec.suspend:
        decided = _suspended(given, routing_plan)
    else:
        decided = routing_plan(given)
        resumed = _resumed(given.previous, decided.status)
        if resumed:
            decided = dataclasses.replace(decided, events=(*decided.events, *resumed))
    if given.spec.drill is None and given.previous.drill is None and decided.status.drill is None:
        # No drill, none to end: _with_drill would hand ``decided`` back unchanged (a plan per
        # route on a mass failover: the copy was a tenth of plan()).
        return decided
    return _with_drill(given, decided)


def _suspended(given: PlanInput, routing_plan: RoutingPlan) -> Plan:
    held = Problem(ReadyReason.SUSPENDED, "routing is suspended")
    decided = routing_plan(dataclasses.replace(given, problem=held, carried=None))
    message = _suspended_message(given, decided)
    conds = set_condition(
        decided.status.conditions,
        type=ConditionType.READY,
        status=ConditionStatus.FALSE,
        reason=ReadyReason.SUSPENDED,
        message=message,
        now=given.now,
        observed_generation=given.generation,
    )
    new = decided.status.model_copy(update={"conditions": conds})
    new = kstatus.with_kstatus(new, given.generation, given.now)
    # The routing plan announces a new Ready=False reason as a Warning; a suspension is an
    # admin's decision, announced once as a Normal Event instead.
    events = tuple(e for e in decided.events if e.reason != ReadyReason.SUSPENDED)
    if _ready_reason(given.previous) != ReadyReason.SUSPENDED:
        suspended = PlannedEvent(EventType.NORMAL, IncidentEvent.SUSPENDED, message)
        events = (suspended, *events)
    return dataclasses.replace(decided, split=None, status=new, events=events, moved=False)


def _suspended_message(given: PlanInput, decided: Plan) -> str:
    routed = given.routed
    where = (
        f"traffic stays where it is ({routed})" if routed is not None else "nothing is routed yet"
    )
    decision = decided.decision
    why = decision.message if decision is not None else ""
    if decided.split is None:
        would = f"if resumed, routing would stay as it is: {why}"
    elif decided.split == routed:
        would = f"if resumed, traffic would stay there ({why})"
    else:
        would = f"if resumed, the operator would move traffic to {decided.split}: {why}"
    message = f"spec.suspend is true, so routing is not written; {where}; {would}"
    if given.problem is not None:
        message += f"; the routing object: {given.problem.message}"
    return message


def _resumed(previous: ModelRouteStatus, new: ModelRouteStatus) -> tuple[PlannedEvent, ...]:
    if _ready_reason(previous) != ReadyReason.SUSPENDED:
        return ()
    ready = get_condition(new.conditions, ConditionType.READY)
    now = f" ({ready.message})" if ready is not None else ""
    message = f"spec.suspend is false again: routing follows the operator's decisions{now}"
    return (PlannedEvent(EventType.NORMAL, IncidentEvent.RESUMED, message),)


def _ready_reason(status: ModelRouteStatus) -> str | None:
    ready = get_condition(status.conditions, ConditionType.READY)
    return ready.reason if ready is not None else None


def _with_drill(given: PlanInput, decided: Plan) -> Plan:
    traffic = _split_of(decided.status)
    state = drill.status_of(given.spec, given.previous.drill, given.records, traffic, given.now)
    new = drill.with_degraded(decided.status, state, given.now, given.generation)
    return dataclasses.replace(
        decided,
        status=new,
        events=drill.events(given.previous.drill, state, decided.events),
        recheck_at=drill.recheck(state, decided.recheck_at),
    )


def _split_of(status: ModelRouteStatus) -> TrafficSplit | None:
    if not status.traffic:
        return None
    return TrafficSplit({t.backend: t.weight for t in status.traffic})
