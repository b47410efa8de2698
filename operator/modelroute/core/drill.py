"""Failover drills (``spec.drill``): an overlay on probe results, and the drill in status.

A drill does not pretend: until ``drill.until`` the named backend's successful probe results are
read as failures where results become health (:func:`overlay`), so hysteresis, the failover,
the Events and the metrics are the real ones, on a healthy system. When ``until`` passes, the
backend's real results count again and traffic returns under the normal failback rules
(``successThreshold``, ``stabilizationSeconds``, steps, Manual approval).

``status.drill`` follows the drill: ``Active`` until ``until``, then ``Recovering`` while the
traffic is on its way back to the backend; it ends when the backend has its traffic back, is no
more preferred than the active backend, or really fails (no longer a drill). While it is set,
Degraded says so (reason ``Drill``) and every traffic move's Event message starts with
"Drill: ". Pure: time comes from ``finished_at`` of each probe and the plan's ``now``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from modelroute.api.models import DrillSpec, ModelRouteSpec
from modelroute.api.status import ConditionStatus, DrillPhase, DrillStatus, ModelRouteStatus
from modelroute.core.conditions import get_condition, set_condition
from modelroute.core.health import HealthRecord, ProbeOutcome, ProbeOutcomeLike
from modelroute.core.types import (
    ConditionType,
    DegradedReason,
    EventType,
    IncidentEvent,
    PlannedEvent,
    TrafficSplit,
    Transition,
)

#: What every Event message of a traffic move during a drill starts with.
PREFIX = "Drill: "


def overlay(outcome: ProbeOutcomeLike, backend: str, drill: DrillSpec | None) -> ProbeOutcomeLike:
    """``outcome`` as the route's health reads it: a success of the drilled backend that
    finished before ``drill.until`` is a failure (a real failure stays as it is)."""
    if drill is None or backend != drill.backend or not outcome.ok:
        return outcome
    if outcome.finished_at >= drill.until:
        return outcome
    return ProbeOutcome(
        ok=False,
        latency_ms=outcome.latency_ms,
        message=f"drill until {_iso(drill.until)}: a successful probe read as a failure "
        f"({outcome.message})",
        finished_at=outcome.finished_at,
        reason=None,
    )


def status_of(
    spec: ModelRouteSpec,
    previous: DrillStatus | None,
    records: Mapping[str, HealthRecord],
    traffic: TrafficSplit | None,
    now: datetime,
) -> DrillStatus | None:
    """``status.drill`` after this reconcile (see the module docstring)."""
    drill = spec.drill
    if drill is None:
        return None
    if now < drill.until:
        return DrillStatus(backend=drill.backend, until=drill.until, phase=DrillPhase.ACTIVE)
    if previous is None or (previous.backend, previous.until) != (drill.backend, drill.until):
        return None  # a drill that was never seen running (until already past): nothing to do
    if _recovered(spec, drill, records.get(drill.backend), traffic):
        return None
    return DrillStatus(backend=drill.backend, until=drill.until, phase=DrillPhase.RECOVERING)


def _recovered(
    spec: ModelRouteSpec,
    drill: DrillSpec,
    record: HealthRecord | None,
    traffic: TrafficSplit | None,
) -> bool:
    if record is None:
        return True
    probed = record.last_probe_time
    if record.consecutive_failures and probed is not None and probed >= drill.until:
        return True  # a real failure after the drill: from here on it is an incident
    if traffic is None:
        return False
    if traffic.is_single and traffic.primary == drill.backend:
        return True
    order = [b.name for b in spec.preference_order()]
    # A drilled standby (no more preferred than the active backend) has nothing to get back.
    preferred = order.index(drill.backend) < order.index(traffic.primary)
    return not preferred and bool(record.healthy)


def with_degraded(
    new: ModelRouteStatus, drill: DrillStatus | None, now: datetime, generation: int | None
) -> ModelRouteStatus:
    """``new`` with ``status.drill`` set and, while a drill runs, Degraded saying so."""
    if new.drill != drill:  # no copy when nothing changes (the usual case: no drill at all)
        new = new.model_copy(update={"drill": drill})
    degraded = get_condition(new.conditions, ConditionType.DEGRADED)
    if drill is None or degraded is None:
        return new
    if drill.phase is DrillPhase.ACTIVE:
        what = (
            f"drill until {_iso(drill.until)}: backend {drill.backend}'s probe results read "
            "as failures"
        )
    else:
        what = (
            f"drill on backend {drill.backend} ended at {_iso(drill.until)}; traffic returns "
            "under the failback rules"
        )
    conds = set_condition(
        new.conditions,
        type=ConditionType.DEGRADED,
        status=ConditionStatus.TRUE,
        reason=DegradedReason.DRILL,
        message=f"{what}; {degraded.message}",
        now=now,
        observed_generation=generation,
    )
    return new.model_copy(update={"conditions": conds})


def events(
    previous: DrillStatus | None, new: DrillStatus | None, moves: tuple[PlannedEvent, ...]
) -> tuple[PlannedEvent, ...]:
    """The plan's Events with drill moves marked, and the drill's start and end announced."""
    if previous is None and new is None:
        return moves
    marked = tuple(
        PlannedEvent(e.type, e.reason, f"{PREFIX}{e.message}") if _is_move(e) else e for e in moves
    )
    was_active = previous is not None and previous.phase is DrillPhase.ACTIVE
    active = new is not None and new.phase is DrillPhase.ACTIVE
    if active and not was_active and new is not None:
        started = (
            f"{PREFIX}backend {new.backend}'s probe results read as failures until "
            f"{_iso(new.until)}; the real failover follows"
        )
        return (PlannedEvent(EventType.NORMAL, IncidentEvent.DRILL_STARTED, started), *marked)
    if was_active and not active and previous is not None:
        ended = (
            f"{PREFIX}ended for backend {previous.backend} (until {_iso(previous.until)}); its "
            "real probe results count again and traffic returns under the failback rules"
        )
        return (*marked, PlannedEvent(EventType.NORMAL, IncidentEvent.DRILL_ENDED, ended))
    return marked


def _is_move(event: PlannedEvent) -> bool:
    # Problem Warnings carry Ready's reasons; traffic moves carry Transition values.
    return event.reason in set(Transition)


def recheck(drill: DrillStatus | None, at: datetime | None) -> datetime | None:
    """``at``, or the drill's end when that comes first (the status must say it ended)."""
    if drill is None or drill.phase is not DrillPhase.ACTIVE:
        return at
    return drill.until if at is None else min(at, drill.until)


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")
