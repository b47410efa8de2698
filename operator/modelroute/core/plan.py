"""The whole decision of one reconcile, as one pure function: :func:`plan`.

It takes everything observed (spec, health records, the split the routing object carries, the
status written before, an admin's approval) and ``now``, and returns what to do: the split to
apply, the status to write (and whether it is worth a write), the Events to post, and when to
look again (``recheck_at``: a failback stabilization window that ends with no probe result
changing anything). No I/O, no clock: every rule is a table test.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from modelroute.api.models import ModelRouteSpec
from modelroute.api.status import ConditionStatus, FailbackProgress, ModelRouteStatus
from modelroute.core import incident, kstatus, policy, ramp, status
from modelroute.core.conditions import get_condition, set_condition
from modelroute.core.health import HealthRecord
from modelroute.core.types import (
    ConditionType,
    EventType,
    PlannedEvent,
    Problem,
    ReadyReason,
    TrafficSplit,
    Transition,
    Verdict,
)

_EVENT_TYPES = {
    Transition.INITIAL: EventType.NORMAL,
    Transition.FAILBACK_STEP: EventType.NORMAL,
    Transition.FAILBACK_ABORTED: EventType.WARNING,
    Transition.FAILOVER: EventType.WARNING,
    Transition.FAILBACK: EventType.NORMAL,
    Transition.REROUTE: EventType.NORMAL,
}


@dataclass(frozen=True)
class PlanInput:
    """Everything one reconcile decides from.

    ``previous`` is the status the last plan built (written or not: a failed write must not
    lose a counted failover), ``written`` the one last written to (or read from) the API
    server. ``problem`` is set when the driver reported that the routing object cannot carry
    what was asked (the worker then plans again with it).
    """

    spec: ModelRouteSpec
    generation: int | None
    records: Mapping[str, HealthRecord]
    routed: TrafficSplit | None
    previous: ModelRouteStatus
    written: ModelRouteStatus | None
    approval: str | None
    now: datetime
    problem: Problem | None = None
    verdict: Verdict | None = None  # the gateway's, for drivers whose object a gateway judges
    # The split the routing object carries after the driver reported ``problem``: when it is the
    # planned one (e.g. a gateway rejected the route itself), traffic did move on our side.
    carried: TrafficSplit | None = None


@dataclass(frozen=True)
class Plan:
    """What one reconcile does, in order: apply ``split``, post ``events``, write ``status``."""

    split: TrafficSplit | None  # None: leave routing as it is (fail-static, waiting, invalid)
    decision: policy.Decision | None  # None for an invalid spec
    status: ModelRouteStatus
    events: tuple[PlannedEvent, ...]
    recheck_at: datetime | None
    moved: bool  # traffic moves from one backend to another with this plan
    # What write_status judges ``status`` against: the status last written, and the spec (None
    # for an invalid one); ``must_write``: a status written whatever it is (a resumed failover).
    baseline: ModelRouteStatus | None = field(default=None, repr=False, compare=False)
    baseline_spec: ModelRouteSpec | None = field(default=None, repr=False, compare=False)
    must_write: bool = False

    @functools.cached_property
    def write_status(self) -> bool:
        """True when ``status`` is worth a write against the status last written.

        Judged when first asked, not when planned: the worker's reporter judges each status
        again against what the API server accepted, so the plans of a mass failover (one per
        route, between the routing writes) do not pay for it."""
        return self.must_write or status.needs_write(self.baseline, self.status, self.baseline_spec)

    @property
    def active(self) -> str | None:
        """The backend with the traffic once the plan is carried out."""
        return self.status.active_backend


def plan(given: PlanInput) -> Plan:
    """Decide the split, the status, the Events and the next recheck (see the module doc),
    with the incident controls (spec.suspend, spec.drill) applied."""
    return incident.with_incident_controls(given, _routing_plan)


def _routing_plan(given: PlanInput) -> Plan:
    progress = ramp.in_progress(given.spec, given.previous, given.routed)
    # During a staged failback the fallback stays the active backend, whatever its share.
    active = progress.fallback if progress else _primary(given.routed)
    approved = given.approval is not None and given.approval != given.previous.failback_approval
    # A backend whose staged failback was aborted stabilizes again from the abort.
    records = ramp.restarted(given.records, given.previous.failback_aborted)
    decision = policy.decide(given.spec, records, active, given.now, failback_approved=approved)
    given = _standing_verdict(given)
    step = _ramp_step(given, progress, records, decision, active)
    split = step.split if step is not None else _split(given.spec, decision, active)
    achieved = given.problem is None or (split is not None and given.carried == split)
    transition = decision.transition if achieved and step is None else None
    if step is not None:
        moved = achieved and step.completed
    else:
        moved = transition is not None and active is not None
    new = status.build_status(
        previous=given.previous,
        spec=given.spec,
        generation=given.generation,
        records=records,
        traffic=split if achieved and split is not None else given.routed,
        decision=decision,
        problem=given.problem,
        moved=moved,
        failback_approval=_approval_to_record(given, decision, approved and not achieved),
        now=given.now,
    )
    held = step if achieved else None  # a step routing could not carry out is not taken
    new = ramp.with_progress(new, given.previous, held, given.problem, given.now, given.generation)
    new = kstatus.with_kstatus(_with_verdict(new, given), given.generation, given.now)
    events = _problem_events(given.previous, new)
    if achieved and step is not None and step.event is not None:
        events = (step.event, *events)
    elif transition is not None:
        events = (PlannedEvent(_EVENT_TYPES[transition], transition, decision.message), *events)
    recheck = _recheck_at(given.spec, records, new.active_backend, given.now)
    if achieved and step is not None and step.recheck_at is not None:
        recheck = min(filter(None, (recheck, step.recheck_at)))
    return Plan(
        split=split,
        decision=decision,
        status=new,
        baseline=given.written,
        baseline_spec=given.spec,
        events=events,
        recheck_at=recheck,
        moved=moved,
    )


def _primary(routed: TrafficSplit | None) -> str | None:
    return routed.primary if routed is not None else None


def _standing_verdict(given: PlanInput) -> PlanInput:
    """``given`` with the gateway's last word standing until it answers for the object as it is
    now (itself, not a copy, in the usual case: no verdict, or a fresh one).

    Every routing write makes a new generation that no gateway has judged yet: showing Unknown
    (and Ready=True) until it does would flap the conditions on every failover.
    """
    verdict = given.verdict
    if verdict is None or verdict.status != ConditionStatus.UNKNOWN:
        return given
    last = get_condition(given.previous.conditions, ConditionType.ROUTING_ACCEPTED)
    if last is None or last.status is ConditionStatus.UNKNOWN:
        return given
    kept, problem = Verdict(last.status, last.reason, last.message), given.problem
    if last.status is ConditionStatus.FALSE and problem is None:
        problem = Problem(ReadyReason.GATEWAY_REJECTED, last.message)
    return dataclasses.replace(given, verdict=kept, problem=problem)


def _ramp_step(
    given: PlanInput,
    progress: FailbackProgress | None,
    records: Mapping[str, HealthRecord],
    decision: policy.Decision,
    active: str | None,
) -> ramp.RampStep | None:
    """The staged failback's move in this reconcile, if one runs or starts now."""
    if progress is not None and decision.transition is not Transition.FAILOVER:
        return ramp.advance(given.spec, progress, records, given.now)
    if decision.transition is Transition.FAILBACK and active and decision.target:
        return ramp.start(given.spec, decision.target, active, decision.message, given.now)
    return None


def _with_verdict(new: ModelRouteStatus, given: PlanInput) -> ModelRouteStatus:
    """The gateway's verdict as the RoutingAccepted condition (L7 drivers only)."""
    if given.verdict is None:
        return new
    conds = set_condition(
        new.conditions,
        type=ConditionType.ROUTING_ACCEPTED,
        status=ConditionStatus(given.verdict.status),
        reason=given.verdict.reason,
        message=given.verdict.message,
        now=given.now,
        observed_generation=given.generation,
    )
    return new.model_copy(update={"conditions": conds})


def _approval_to_record(given: PlanInput, decision: policy.Decision, blocked: bool) -> str | None:
    """The approval value status records as acted on.

    Recorded as given, even empty (an empty value must not approve on every reconcile), and
    also when nothing was pending (it then does nothing, and cannot trigger a failback later).
    An approved failback that routing could not carry out stays pending instead: the admin's
    decision is acted on once the problem is fixed, without annotating again.
    """
    consumed = given.previous.failback_approval
    if given.approval is None or (blocked and decision.transition is Transition.FAILBACK):
        return consumed
    return given.approval


def plan_invalid(
    *,
    previous: ModelRouteStatus,
    written: ModelRouteStatus | None,
    generation: int | None,
    problem: Problem,
    now: datetime,
) -> Plan:
    """The plan for a route that cannot be served as written: no probing, no routing, Ready=False
    with ``problem`` (an InvalidSpec naming the field, or a DriverUnavailable)."""
    new = status.build_invalid_status(
        previous=previous, generation=generation, problem=problem, now=now
    )
    new = kstatus.with_kstatus(new, generation, now)
    return Plan(
        split=None,
        decision=None,
        status=new,
        baseline=written,
        events=_problem_events(previous, new),
        recheck_at=None,
        moved=False,
    )


def _split(
    spec: ModelRouteSpec, decision: policy.Decision, active: str | None
) -> TrafficSplit | None:
    """The split to apply: the decision's target, else the active backend again (drift).

    An active backend no longer in spec is not applied again (no driver can point at a backend
    it has no spec for): routing is left as it is until a backend of the spec can take over.
    """
    target = decision.target if decision.target is not None else active
    if target is None or target not in {backend.name for backend in spec.backends}:
        return None
    return TrafficSplit.single(target)


def _problem_events(previous: ModelRouteStatus, new: ModelRouteStatus) -> tuple[PlannedEvent, ...]:
    """A Warning when Ready turns False for a new reason (waiting for probes is no problem)."""
    old_ready = get_condition(previous.conditions, ConditionType.READY)
    ready = get_condition(new.conditions, ConditionType.READY)
    if ready is None or ready.status is ConditionStatus.TRUE:
        return ()
    if ready.reason == ReadyReason.AWAITING_FIRST_PROBES:
        return ()
    if old_ready is not None and old_ready.reason == ready.reason:
        return ()
    return (PlannedEvent(EventType.WARNING, ready.reason, ready.message),)


def _recheck_at(
    spec: ModelRouteSpec, records: Mapping[str, HealthRecord], active: str | None, now: datetime
) -> datetime | None:
    """When the earliest more preferred backend's stabilization window ends, if in the future.

    Failback waits on time alone, with no probe result changing anything material, so the
    worker must wake itself then. A window that already ended is acted on by this very plan.
    """
    order = [b.name for b in spec.preference_order()]
    if active is None or active not in order:
        return None
    window = timedelta(seconds=spec.failback.stabilization_seconds)
    ready_at = [
        record.healthy_since + window
        for name in order[: order.index(active)]
        if (record := records.get(name)) and record.healthy and record.healthy_since
    ]
    future = [at for at in ready_at if at > now]
    return min(future) if future else None
