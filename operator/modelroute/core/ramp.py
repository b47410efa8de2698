"""Staged failback: traffic goes back to a recovered backend in steps (weighted drivers only).

With ``failback.steps`` (e.g. ``[10, 50, 100]``), a failback that policy allows does not move
all traffic at once: the recovered backend gets each step's share in turn, each held
``stepSeconds`` while its probes keep passing. One failed probe during the ramp gives all
traffic back to the fallback at once and its stabilization starts over. Failover is never
staged. Pure: the ramp's state lives in ``status.failback``, time comes in as ``now``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from modelroute.api.models import ModelRouteSpec
from modelroute.api.status import (
    ConditionStatus,
    FailbackAbort,
    FailbackProgress,
    ModelRouteStatus,
)
from modelroute.core.conditions import get_condition, set_condition
from modelroute.core.health import HealthRecord
from modelroute.core.types import (
    ConditionType,
    DegradedReason,
    EventType,
    PlannedEvent,
    Problem,
    TrafficSplit,
    Transition,
)

if TYPE_CHECKING:
    from modelroute.core.plan import Plan


@dataclass(frozen=True)
class RampStep:
    """What the ramp does in this reconcile."""

    split: TrafficSplit
    event: PlannedEvent | None
    progress: FailbackProgress | None  # None once finished or aborted
    aborted: FailbackAbort | None
    completed: bool  # all traffic is back on the recovered backend
    recheck_at: datetime | None


def steps_of(spec: ModelRouteSpec) -> list[int]:
    """The configured steps, ending at 100 (implied when the list stops short)."""
    steps = list(spec.failback.steps or [])
    if steps and steps[-1] < 100:
        steps.append(100)
    return steps


def restarted(
    records: Mapping[str, HealthRecord], aborted: FailbackAbort | None
) -> Mapping[str, HealthRecord]:
    """Records whose stabilization counts from the last aborted ramp of that backend."""
    if aborted is None or aborted.backend not in records:
        return records
    record = records[aborted.backend]
    if record.healthy_since is None or record.healthy_since >= aborted.at:
        return records
    return {**records, aborted.backend: dataclasses.replace(record, healthy_since=aborted.at)}


def in_progress(
    spec: ModelRouteSpec, previous: ModelRouteStatus, routed: TrafficSplit | None
) -> FailbackProgress | None:
    """The ramp status says is running, if the routing object still carries it."""
    progress = previous.failback
    steps = steps_of(spec)
    if progress is None or routed is None or not 0 <= progress.step < len(steps):
        return None  # no ramp, or failback.steps changed under it: start afresh
    names = {b.name for b in spec.backends}
    if {progress.backend, progress.fallback} - names:
        return None
    expected = _split(progress.backend, progress.fallback, steps[progress.step])
    # Only the ramp status describes, on the routing object as it is now (not a stale status).
    return progress if routed == expected else None


def start(
    spec: ModelRouteSpec, backend: str, fallback: str, reason: str, now: datetime
) -> RampStep | None:
    """The first step of a failback policy allows; None when it is not staged."""
    steps = steps_of(spec)
    if not steps or steps[0] >= 100:
        return None
    progress = FailbackProgress(backend=backend, fallback=fallback, step=0, since=now)
    return _at_step(spec, progress, f"{reason}; staged failback", now)


def advance(
    spec: ModelRouteSpec,
    progress: FailbackProgress,
    records: Mapping[str, HealthRecord],
    now: datetime,
) -> RampStep:
    """Hold the current step, take the next one, finish, or abort on a failed probe."""
    record = records.get(progress.backend, HealthRecord())
    if not record.healthy or record.consecutive_failures > 0:
        return _abort(progress, record, now)
    ends = progress.since + timedelta(seconds=spec.failback.step_seconds)
    if now < ends:
        split = _split(progress.backend, progress.fallback, steps_of(spec)[progress.step])
        return RampStep(split, None, progress, None, False, ends)
    nxt = progress.model_copy(update={"step": progress.step + 1, "since": now})
    return _at_step(spec, nxt, f"{progress.backend} stayed healthy", now)


def _at_step(spec: ModelRouteSpec, progress: FailbackProgress, why: str, now: datetime) -> RampStep:
    steps = steps_of(spec)
    weight = steps[progress.step]
    if weight >= 100:
        message = (
            f"{why}; staged failback complete: all traffic moved back from {progress.fallback} "
            f"to {progress.backend}"
        )
        event = PlannedEvent(EventType.NORMAL, Transition.FAILBACK, message)
        return RampStep(TrafficSplit.single(progress.backend), event, None, None, True, None)
    message = (
        f"{why}; step {progress.step + 1}/{len(steps)}: {weight}% of traffic to "
        f"{progress.backend}, {100 - weight}% stays on {progress.fallback} for "
        f"{spec.failback.step_seconds}s"
    )
    event = PlannedEvent(EventType.NORMAL, Transition.FAILBACK_STEP, message)
    ends = now + timedelta(seconds=spec.failback.step_seconds)
    split = _split(progress.backend, progress.fallback, weight)
    return RampStep(split, event, progress, None, False, ends)


def _abort(progress: FailbackProgress, record: HealthRecord, now: datetime) -> RampStep:
    # The failure class first (AuthFailed, Unavailable, ...), then what the probe said.
    detail = ": ".join(part for part in (record.reason, record.message) if part)
    why = f" ({detail})" if detail else ""
    message = (
        f"{progress.backend} failed a probe during the staged failback{why}; all traffic is "
        f"back on {progress.fallback} and its stabilization starts over"
    )
    event = PlannedEvent(EventType.WARNING, Transition.FAILBACK_ABORTED, message)
    aborted = FailbackAbort(backend=progress.backend, at=now)
    return RampStep(TrafficSplit.single(progress.fallback), event, None, aborted, False, None)


def _split(backend: str, fallback: str, weight: int) -> TrafficSplit:
    # The fallback is listed first: on a 50/50 step it is still the "active" backend.
    return TrafficSplit({fallback: 100 - weight, backend: weight})


def with_progress(
    new: ModelRouteStatus,
    previous: ModelRouteStatus,
    step: RampStep | None,
    problem: Problem | None,
    now: datetime,
    generation: int | None,
) -> ModelRouteStatus:
    """The ramp's state in status, and Degraded saying a staged failback is under way.

    ``step`` is this reconcile's ramp step if routing carried it out; ``problem`` keeps a ramp
    in progress as it stands while routing cannot move.
    """
    if step is None:
        done = new.failover_count > previous.failover_count and new.active_backend is not None
        cleared = done and previous.failback_aborted is not None
        aborted = None if cleared else previous.failback_aborted
        progress = previous.failback if problem is not None else None
    else:
        progress = step.progress
        aborted = step.aborted or (None if step.completed else previous.failback_aborted)
    if (new.failback, new.failback_aborted) != (progress, aborted):
        new = new.model_copy(update={"failback": progress, "failback_aborted": aborted})
    if progress is None:
        return new
    weights = ", ".join(f"{t.backend} {t.weight}%" for t in new.traffic)
    # Against the Degraded condition as it was before this plan: build_status may have set it
    # False (most traffic already on the preferred backend), which is not a transition.
    before = get_condition(previous.conditions, ConditionType.DEGRADED)
    base = [before if c.type == ConditionType.DEGRADED and before else c for c in new.conditions]
    conds = set_condition(
        base,
        type=ConditionType.DEGRADED,
        status=ConditionStatus.TRUE,
        reason=DegradedReason.FAILBACK_IN_PROGRESS,
        message=f"staged failback to {progress.backend}: {weights}",
        now=now,
        observed_generation=generation,
    )
    return new.model_copy(update={"conditions": conds, "active_backend": progress.fallback})


def after_routing_write(decided: Plan, planned_at: datetime, written_at: datetime) -> Plan:
    """``decided`` with a new staged-failback step timed from when its routing write finished.

    A step is held ``stepSeconds`` as the gateway sees it: counted from the plan's ``now``, a
    slow write of this step followed by a fast write of the next would shorten the hold.
    """
    progress = decided.status.failback
    if progress is None or progress.since != planned_at or written_at <= planned_at:
        return decided
    shift = written_at - planned_at
    moved = progress.model_copy(update={"since": written_at})
    recheck = decided.recheck_at + shift if decided.recheck_at is not None else None
    new = decided.status.model_copy(update={"failback": moved})
    return dataclasses.replace(decided, status=new, recheck_at=recheck)
