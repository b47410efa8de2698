"""Which backend should receive traffic: a pure function of spec, health and the active backend.

Pure: no I/O and no clock reads (``now`` is a parameter), so every rule is a table test. The
caller applies ``Decision.target`` to routing when it is not ``None``; ``None`` means "leave
routing as it is", which is how fail-static and "not enough is known yet" are expressed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from modelroute.api.models import FailbackMode, ModelRouteSpec
from modelroute.core.health import HealthRecord
from modelroute.core.types import DecisionReason, DegradedReason, Transition

APPROVE_FAILBACK_ANNOTATION = "modelroute.dev/approve-failback"

_UNKNOWN = HealthRecord()


@dataclass(frozen=True)
class Decision:
    """Where traffic should go and why.

    ``target`` is ``None`` when routing should stay as it is; ``transition`` is ``None`` when
    traffic does not move. ``failback_pending`` names the more preferred backend that is ready
    to take traffic back while Manual mode waits for an admin.
    """

    target: str | None
    transition: Transition | None
    reason: DecisionReason
    message: str
    failback_pending: str | None = None


def decide(
    spec: ModelRouteSpec,
    health: Mapping[str, HealthRecord],
    active: str | None,
    now: datetime,
    *,
    failback_approved: bool = False,
) -> Decision:
    """Decide which backend should receive traffic.

    ``health`` maps backend names to records (missing names count as never probed), ``active``
    is the backend routing points at now (``None`` before the first decision), ``now`` is a
    timezone-aware UTC time, and ``failback_approved`` is an admin's go-ahead for Manual mode.
    """
    order = [backend.name for backend in spec.preference_order()]
    records = {name: health.get(name, _UNKNOWN) for name in order}
    if active is None or active not in records:
        return _choose_without_active(order, records, removed=active)
    active_health = records[active].healthy
    if active_health is None:
        return _stay(
            active, DecisionReason.AWAITING_FIRST_PROBES, f"waiting for the first probe of {active}"
        )
    if not active_health:
        return _fail_over(order, records, active)
    return _consider_failback(spec, order, records, active, now, failback_approved)


def is_degraded(
    spec: ModelRouteSpec, health: Mapping[str, HealthRecord], active: str | None
) -> tuple[bool, DegradedReason, str]:
    """Return ``(degraded, reason, message)`` for the ``Degraded`` condition.

    Degraded while any backend is unhealthy or traffic is not on the most preferred backend.
    Unhealthy backends win as the reason because they are usually why traffic moved.
    """
    order = [backend.name for backend in spec.preference_order()]
    preferred = order[0]
    unhealthy = [name for name in order if health.get(name, _UNKNOWN).healthy is False]
    if unhealthy:
        message = f"unhealthy: {', '.join(unhealthy)}"
        if active != preferred:
            message += f"; {_where_traffic_is(active, order)}"
        return True, DegradedReason.BACKEND_UNHEALTHY, message
    if active is None:
        return True, DegradedReason.NO_ACTIVE_BACKEND, "no backend receives traffic yet"
    if active != preferred:
        message = _where_traffic_is(active, order)
        return True, DegradedReason.NOT_ON_PREFERRED_BACKEND, message
    return (
        False,
        DegradedReason.ALL_BACKENDS_HEALTHY,
        f"traffic is on {preferred}, the preferred backend",
    )


def _where_traffic_is(active: str | None, order: Sequence[str]) -> str:
    if active is None:
        return "no backend receives traffic yet"
    if active not in order:
        return f"traffic is still on {active}, which is no longer in spec"
    return f"traffic is on {active} instead of the preferred backend {order[0]}"


def _choose_without_active(
    order: Sequence[str], records: Mapping[str, HealthRecord], *, removed: str | None
) -> Decision:
    """First choice, or a new choice after the active backend was removed from spec.

    Walks the order and stops at the first backend that is not known unhealthy: if it has not
    answered yet we wait for it rather than settle for a worse backend and fail back later.
    """
    for name in order:
        healthy = records[name].healthy
        if healthy is None:
            return Decision(
                None, None, DecisionReason.AWAITING_FIRST_PROBES, _awaiting_message(name, removed)
            )
        if healthy:
            return _initial_or_reroute(name, removed)
    unhealthy = f"no backend is healthy ({_failure_list(order, records)})"
    if removed is not None:
        unhealthy += f"; routing stays on {removed}, which was removed from spec"
    return Decision(None, None, DecisionReason.ALL_BACKENDS_UNHEALTHY, unhealthy)


def _initial_or_reroute(target: str, removed: str | None) -> Decision:
    if removed is None:
        message = f"routing traffic to {target}, the most preferred healthy backend"
        return Decision(target, Transition.INITIAL, DecisionReason.INITIAL, message)
    message = f"active backend {removed} was removed from spec; moving traffic to {target}"
    return Decision(target, Transition.REROUTE, DecisionReason.ACTIVE_BACKEND_REMOVED, message)


def _awaiting_message(name: str, removed: str | None) -> str:
    waiting = f"waiting for the first probe of {name} before choosing a backend"
    if removed is None:
        return waiting
    return f"active backend {removed} was removed from spec; {waiting}"


def _fail_over(order: Sequence[str], records: Mapping[str, HealthRecord], active: str) -> Decision:
    """Move off an unhealthy active backend; with nowhere to go, leave routing alone."""
    # Unknown backends are skipped here, unlike the first choice: traffic is failing right now.
    target = _first_healthy(order, records)
    why = _failure_summary(active, records[active])
    if target is None:
        message = f"{why}; no backend is healthy, routing stays on {active}"
        return Decision(None, None, DecisionReason.ALL_BACKENDS_UNHEALTHY, message)
    message = f"{why}; moving traffic to {target}"
    return Decision(target, Transition.FAILOVER, DecisionReason.ACTIVE_BACKEND_UNHEALTHY, message)


def _consider_failback(
    spec: ModelRouteSpec,
    order: Sequence[str],
    records: Mapping[str, HealthRecord],
    active: str,
    now: datetime,
    approved: bool,
) -> Decision:
    """The active backend is healthy: move back to a more preferred one when policy allows."""
    # Only the most preferred healthy candidate counts: failing back to a middle backend and
    # again shortly after would move traffic twice for one recovery.
    candidate = _first_healthy(order[: order.index(active)], records)
    if candidate is None:
        return _stay(
            active, DecisionReason.STEADY, f"{active} is the most preferred healthy backend"
        )
    healthy_for = _healthy_for(records[candidate], now)
    stabilization = spec.failback.stabilization_seconds
    stable = healthy_for is not None and healthy_for >= timedelta(seconds=stabilization)
    if spec.failback.mode == FailbackMode.MANUAL:
        return _manual_failback(active, candidate, healthy_for, stable, approved)
    if stable:
        message = (
            f"{candidate} has been healthy for {_seconds(healthy_for)} "
            f"(stabilization {stabilization}s); moving traffic back from {active} to {candidate}"
        )
        return Decision(
            candidate, Transition.FAILBACK, DecisionReason.PREFERRED_BACKEND_RECOVERED, message
        )
    message = (
        f"{_stabilizing_message(active, candidate, healthy_for)}, failback after {stabilization}s"
    )
    return _stay(active, DecisionReason.STEADY, message)


def _manual_failback(
    active: str, candidate: str, healthy_for: timedelta | None, stable: bool, approved: bool
) -> Decision:
    # An approval skips the stabilization wait: the admin has decided the backend is good.
    if approved:
        message = f"failback approved; moving traffic from {active} back to {candidate}"
        return Decision(candidate, Transition.FAILBACK, DecisionReason.FAILBACK_APPROVED, message)
    if not stable:
        message = (
            f"{_stabilizing_message(active, candidate, healthy_for)}, failback is offered once "
            "it is stable"
        )
        return _stay(active, DecisionReason.STEADY, message)
    message = (
        f"{candidate} has been healthy for {_seconds(healthy_for)}; annotate the route with "
        f"{APPROVE_FAILBACK_ANNOTATION} to move traffic from {active} back to {candidate}"
    )
    return Decision(
        active, None, DecisionReason.FAILBACK_PENDING, message, failback_pending=candidate
    )


def _stabilizing_message(active: str, candidate: str, healthy_for: timedelta | None) -> str:
    return f"{active} is active; {candidate} is healthy for {_seconds(healthy_for)}"


def _stay(active: str, reason: DecisionReason, message: str) -> Decision:
    return Decision(active, None, reason, message)


def _first_healthy(order: Sequence[str], records: Mapping[str, HealthRecord]) -> str | None:
    return next((name for name in order if records[name].healthy), None)


def _healthy_for(record: HealthRecord, now: datetime) -> timedelta | None:
    """How long the backend has been healthy; ``None`` when the start is not known."""
    if record.healthy_since is None:
        return None
    return now - record.healthy_since


def _seconds(duration: timedelta | None) -> str:
    return "an unknown time" if duration is None else f"{int(duration.total_seconds())}s"


def _failure_summary(name: str, record: HealthRecord) -> str:
    failures = record.consecutive_failures
    # Zero failures happens when a fail-static backend has started to recover but not yet enough.
    if failures == 0:
        summary = f"{name} is unhealthy"
    else:
        summary = f"{name} failed {failures} probe{'' if failures == 1 else 's'} in a row"
    if record.reason is not None:
        return f"{summary} ({_failure_detail(record)})"
    # A success (a recovering backend), or a record written before reasons existed.
    return f"{summary} (last: {record.message})" if record.message else summary


def _failure_list(order: Sequence[str], records: Mapping[str, HealthRecord]) -> str:
    return ", ".join(
        f"{name}: {detail}" if (detail := _failure_detail(records[name])) else name
        for name in order
    )


def _failure_detail(record: HealthRecord) -> str:
    # The failure class first: it says what to fix (AuthFailed: the key; Unavailable: the host).
    if record.reason is None:
        return record.message
    return f"{record.reason}: {record.message}" if record.message else str(record.reason)
