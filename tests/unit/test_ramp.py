"""Staged failback through plan(): steps held while healthy, one failed probe aborts.

A recovered vendor with failback.steps [10, 50, 100], stepSeconds 2 and stabilization 5 s:
plan() is called the way the worker calls it, each time with the status and the split the
previous plan left behind, at exact times. No clock, no I/O.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from modelroute.api.models import FailbackMode, FailbackSpec, ModelRouteSpec
from modelroute.api.status import ConditionStatus, ModelRouteStatus
from modelroute.core.conditions import get_condition
from modelroute.core.health import HealthRecord
from modelroute.core.plan import Plan, PlanInput, plan
from modelroute.core.ramp import after_routing_write, steps_of
from modelroute.core.status import wire_patch
from modelroute.core.types import (
    ConditionType,
    DegradedReason,
    EventType,
    ProbeFailure,
    Problem,
    ReadyReason,
    TrafficSplit,
    Transition,
    Verdict,
)
from tests.unit.test_plan import NOW, down, up
from tests.unit.test_policy import make_spec

SPEC = make_spec(("vendor", 0), ("inhouse", 1), stabilization=5)
STAGED = SPEC.model_copy(
    update={"failback": FailbackSpec(stabilization_seconds=5, steps=[10, 50, 100], step_seconds=2)}
)
RECOVERED = NOW - timedelta(seconds=5)  # the vendor has been healthy exactly 5 s at NOW


def at(seconds: float) -> datetime:
    """NOW plus ``seconds``."""
    return NOW + timedelta(seconds=seconds)


class Route:
    """Carries plans out as the worker does: the split and status each plan leaves behind."""

    def __init__(self, spec: ModelRouteSpec, routed: str) -> None:
        self.spec = spec
        self.routed: TrafficSplit | None = TrafficSplit.single(routed)
        self.status = ModelRouteStatus(failover_count=1)
        self.records: dict[str, HealthRecord] = {
            "vendor": up(since=RECOVERED),
            "inhouse": up(),
        }

    def plan(self, now: datetime, approval: str | None = None, **changes: object) -> Plan:
        """One reconcile at ``now``; its split and status are carried out."""
        given = PlanInput(
            spec=self.spec,
            generation=3,
            records=dict(self.records),
            routed=self.routed,
            previous=self.status,
            written=self.status,
            approval=approval,
            now=now,
        )
        result = plan(dataclasses.replace(given, **changes))  # type: ignore[arg-type]
        if result.split is not None and (
            "problem" not in changes or changes.get("carried") == result.split
        ):
            self.routed = result.split
        self.status = result.status
        return result

    def weights(self) -> dict[str, int]:
        """The split carried now, with every backend named."""
        assert self.routed is not None
        return {"vendor": self.routed["vendor"], "inhouse": self.routed["inhouse"]}


def reasons(result: Plan) -> list[tuple[EventType, str]]:
    """The Events a plan posts, as (type, reason)."""
    return [(e.type, e.reason) for e in result.events]


def test_steps_end_at_100_even_when_the_list_stops_short() -> None:
    short = STAGED.model_copy(update={"failback": FailbackSpec(steps=[25, 75])})
    assert steps_of(short) == [25, 75, 100]
    assert steps_of(STAGED) == [10, 50, 100]
    assert steps_of(SPEC) == []


def test_recovery_walks_the_steps_each_held_step_seconds() -> None:
    route = Route(STAGED, "inhouse")
    first = route.plan(at(0))
    assert route.weights() == {"vendor": 10, "inhouse": 90}
    assert reasons(first) == [(EventType.NORMAL, Transition.FAILBACK_STEP)]
    assert "step 1/3: 10% of traffic to vendor" in first.events[0].message
    assert first.recheck_at == at(2)
    assert not first.moved and first.status.failover_count == 1
    degraded = get_condition(first.status.conditions, ConditionType.DEGRADED)
    assert degraded is not None and degraded.reason == DegradedReason.FAILBACK_IN_PROGRESS
    assert first.status.active_backend == "inhouse"  # most traffic is still there

    held = route.plan(at(1.999))
    assert route.weights() == {"vendor": 10, "inhouse": 90}
    assert held.events == () and not held.write_status and held.recheck_at == at(2)

    second = route.plan(at(2))
    assert route.weights() == {"vendor": 50, "inhouse": 50}
    assert reasons(second) == [(EventType.NORMAL, Transition.FAILBACK_STEP)]
    assert second.status.active_backend == "inhouse"  # a tie stays on the fallback
    assert second.recheck_at == at(4)

    last = route.plan(at(4))
    assert route.weights() == {"vendor": 100, "inhouse": 0}
    assert reasons(last) == [(EventType.NORMAL, Transition.FAILBACK)]
    assert last.moved and last.status.failover_count == 2
    assert last.status.last_failover_time == at(4)
    assert last.status.failback is None
    steady = route.plan(at(10))
    assert steady.events == () and not steady.write_status and steady.recheck_at is None


def test_a_failed_probe_during_the_ramp_aborts_at_once_and_stabilization_restarts() -> None:
    route = Route(STAGED, "inhouse")
    route.plan(at(0))
    route.plan(at(2))
    assert route.weights() == {"vendor": 50, "inhouse": 50}
    # One failed probe: still healthy by hysteresis, but the ramp gives way immediately.
    route.records["vendor"] = dataclasses.replace(
        route.records["vendor"],
        consecutive_failures=1,
        consecutive_successes=0,
        message="HTTP 503 from /v1/models",
        reason=ProbeFailure.UNAVAILABLE,
    )
    aborted = route.plan(at(3))
    assert route.weights() == {"vendor": 0, "inhouse": 100}
    assert reasons(aborted) == [(EventType.WARNING, Transition.FAILBACK_ABORTED)]
    assert "stabilization starts over" in aborted.events[0].message
    assert "(Unavailable: HTTP 503 from /v1/models)" in aborted.events[0].message
    assert aborted.status.failback is None
    assert aborted.status.failback_aborted is not None
    assert aborted.status.failback_aborted.at == at(3)
    assert aborted.status.failover_count == 1  # an abort is not a failover

    # Healthy again at once: the wait counts from the abort, not from the original recovery.
    route.records["vendor"] = up(since=RECOVERED)
    waiting = route.plan(at(4))
    assert route.weights() == {"vendor": 0, "inhouse": 100}
    assert waiting.events == ()
    assert waiting.recheck_at == at(3 + 5)
    restarted = route.plan(at(8))
    assert route.weights() == {"vendor": 10, "inhouse": 90}
    assert reasons(restarted) == [(EventType.NORMAL, Transition.FAILBACK_STEP)]


def test_the_fallback_failing_during_the_ramp_fails_over_in_one_step() -> None:
    route = Route(STAGED, "inhouse")
    route.plan(at(0))
    route.records["inhouse"] = down()
    result = route.plan(at(1))
    assert route.weights() == {"vendor": 100, "inhouse": 0}
    assert reasons(result) == [(EventType.WARNING, Transition.FAILOVER)]
    assert result.status.failback is None


def test_failover_is_never_staged() -> None:
    route = Route(STAGED, "vendor")
    route.records["vendor"] = down()
    result = route.plan(at(0))
    assert route.weights() == {"vendor": 0, "inhouse": 100}
    assert reasons(result) == [(EventType.WARNING, Transition.FAILOVER)]


def test_manual_mode_ramps_after_one_approval() -> None:
    manual = STAGED.model_copy(
        update={"failback": STAGED.failback.model_copy(update={"mode": FailbackMode.MANUAL})}
    )
    route = Route(manual, "inhouse")
    pending = route.plan(at(0))
    assert route.weights() == {"vendor": 0, "inhouse": 100}
    assert pending.events == ()
    route.plan(at(1), approval="go")
    assert route.weights() == {"vendor": 10, "inhouse": 90}
    route.plan(at(3), approval="go")
    assert route.weights() == {"vendor": 50, "inhouse": 50}
    route.plan(at(5), approval="go")
    assert route.weights() == {"vendor": 100, "inhouse": 0}


def test_a_restart_resumes_the_ramp_from_status_and_the_routing_object() -> None:
    route = Route(STAGED, "inhouse")
    route.plan(at(0))
    # A new operator process: the same status read back, the same split observed.
    resumed = Route(STAGED, "inhouse")
    resumed.routed, resumed.status = route.routed, route.status
    held = resumed.plan(at(1))
    assert held.events == () and resumed.weights() == {"vendor": 10, "inhouse": 90}
    resumed.plan(at(2))
    assert resumed.weights() == {"vendor": 50, "inhouse": 50}


def test_without_steps_failback_is_one_step() -> None:
    route = Route(SPEC, "inhouse")
    result = route.plan(at(0))
    assert route.weights() == {"vendor": 100, "inhouse": 0}
    assert reasons(result) == [(EventType.NORMAL, Transition.FAILBACK)]


def test_the_gateway_verdict_becomes_routing_accepted() -> None:
    route = Route(SPEC, "vendor")
    pending = route.plan(at(0), verdict=Verdict("Unknown", "Pending", "waiting for a Gateway"))
    accepted = get_condition(pending.status.conditions, ConditionType.ROUTING_ACCEPTED)
    assert accepted is not None and accepted.status == ConditionStatus.UNKNOWN
    ok = route.plan(at(1), verdict=Verdict("True", "Accepted", "accepted by gw"))
    accepted = get_condition(ok.status.conditions, ConditionType.ROUTING_ACCEPTED)
    assert accepted is not None and (accepted.status, accepted.reason) == ("True", "Accepted")
    assert accepted.last_transition_time == at(1)
    assert ok.write_status
    same = route.plan(at(2), verdict=Verdict("True", "Accepted", "accepted by gw"))
    assert not same.write_status


def test_a_step_is_timed_from_its_routing_write_not_from_the_plan() -> None:
    route = Route(STAGED, "inhouse")
    first = route.plan(at(0))
    # The HTTPRoute patch of this step took 40 ms: the hold counts from when it landed.
    later = after_routing_write(first, at(0), at(0.04))
    assert later.status.failback is not None
    assert later.status.failback.since == at(0.04)
    assert later.recheck_at == at(2.04)
    assert after_routing_write(first, at(0), at(0)) is first
    steady = Route(SPEC, "vendor").plan(at(0))
    assert after_routing_write(steady, at(0), at(0.5)) is steady  # no step: unchanged


def test_a_finished_ramp_is_removed_from_the_stored_status() -> None:
    route = Route(STAGED, "inhouse")
    ramping = route.plan(at(0))
    route.plan(at(2))
    done = route.plan(at(4))
    assert done.status.failback is None
    patch = wire_patch(ramping.status, done.status)
    assert patch["failback"] is None  # null deletes the field in a JSON merge patch
    assert "failbackAborted" not in patch  # never set: nothing to delete
    assert wire_patch(None, done.status) == done.status.to_wire()


SIXTY = SPEC.model_copy(
    update={"failback": FailbackSpec(stabilization_seconds=5, steps=[60, 100], step_seconds=3600)}
)


def test_a_dead_fallback_above_half_way_fails_over_at_once() -> None:
    route = Route(SIXTY, "inhouse")
    route.plan(at(0))
    assert route.weights() == {"vendor": 60, "inhouse": 40}
    route.records["inhouse"] = down()
    result = route.plan(at(1))
    assert route.weights() == {"vendor": 100, "inhouse": 0}
    assert reasons(result) == [(EventType.WARNING, Transition.FAILOVER)]


def test_a_failed_recovering_backend_aborts_even_when_it_has_most_traffic() -> None:
    route = Route(SIXTY, "inhouse")
    route.plan(at(0))
    route.records["vendor"] = down(failures=1)  # failureThreshold 1: unhealthy at once
    result = route.plan(at(1))
    assert route.weights() == {"vendor": 0, "inhouse": 100}
    assert reasons(result) == [(EventType.WARNING, Transition.FAILBACK_ABORTED)]
    assert result.status.failover_count == 1


def test_the_fallback_is_the_active_backend_for_the_whole_ramp() -> None:
    route = Route(SIXTY, "inhouse")
    first = route.plan(at(0))
    assert first.status.active_backend == "inhouse"
    degraded = get_condition(first.status.conditions, ConditionType.DEGRADED)
    assert degraded is not None
    for second in (1, 2, 3):
        held = route.plan(at(second))
        again = get_condition(held.status.conditions, ConditionType.DEGRADED)
        assert again is not None and again.last_transition_time == degraded.last_transition_time
        assert not held.write_status and held.status.active_backend == "inhouse"


def test_steps_changed_during_a_ramp_start_it_afresh_instead_of_crashing() -> None:
    route = Route(STAGED, "inhouse")
    route.plan(at(0))
    route.plan(at(2))  # step index 1: 50%
    route.spec = STAGED.model_copy(update={"failback": FailbackSpec(steps=[50])})
    route.plan(at(3))
    assert route.routed is not None and sum(route.routed.values()) == 100


def test_a_rejection_stands_until_the_gateway_judges_the_new_generation() -> None:
    route = Route(SPEC, "vendor")
    rejected = Verdict("False", "NotAllowedByListeners", "gw: not allowed")
    said = Problem(ReadyReason.GATEWAY_REJECTED, "gw: not allowed")
    first = route.plan(at(0), verdict=rejected, problem=said, carried=route.routed)
    ready = get_condition(first.status.conditions, ConditionType.READY)
    assert ready is not None and ready.status == ConditionStatus.FALSE
    # Our own write bumped the generation: the gateway has not answered yet.
    pending = Verdict("Unknown", "Pending", "waiting")
    held = route.plan(at(1), verdict=pending)
    accepted = get_condition(held.status.conditions, ConditionType.ROUTING_ACCEPTED)
    ready = get_condition(held.status.conditions, ConditionType.READY)
    assert accepted is not None and accepted.status == ConditionStatus.FALSE
    assert ready is not None and (ready.status, ready.reason) == ("False", "GatewayRejected")
    assert held.events == ()
