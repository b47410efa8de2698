"""Tests for the kstatus conditions (core/kstatus.py): Reconciling and Stalled in each state.

Each state is planned as the worker plans it, then read back the way kstatus (Flux, the
``kstatus`` helper of test_health_lua) and Argo CD (health.lua) read it: the three agree with
Ready, and a steady route still writes nothing.
"""

from __future__ import annotations

import enum
from datetime import timedelta

import pytest

from modelroute.api.status import ConditionStatus, ModelRouteStatus
from modelroute.core.health import HealthRecord
from modelroute.core.kstatus import STALLED_REASONS
from modelroute.core.plan import plan, plan_invalid
from modelroute.core.types import (
    ConditionType,
    Problem,
    ReadyReason,
    ReconcilingReason,
    StalledReason,
)
from modelroute.routing.aigatewayroute_object import AIGatewayRouteReason
from modelroute.routing.httproute_object import HTTPRouteReason
from modelroute.routing.service_object import ServiceReason
from tests.unit.test_health_lua import argo_health, kstatus
from tests.unit.test_plan import NEVER, NOW, after, cond, down, given_, up
from tests.unit.test_ramp import STAGED, Route, at

TRUE, FALSE = ConditionStatus.TRUE, ConditionStatus.FALSE
RECONCILING, STALLED = ConditionType.RECONCILING, ConditionType.STALLED
READY = ConditionType.READY
CONFLICT = "Service ai/chat-llm exists and is not managed by this ModelRoute"
INVALID = "spec.backends[1].name: duplicate backend name 'vendor'"
#: Ready reasons the operator resolves by itself: never Stalled.
SELF_HEALING = {
    ReadyReason.ROUTED,
    ReadyReason.AWAITING_FIRST_PROBES,
    ReadyReason.ALL_BACKENDS_UNHEALTHY,
}
#: Ready reasons an admin chose: neither Stalled nor Reconciling.
DELIBERATE = {ReadyReason.SUSPENDED}


def kinds(status: ModelRouteStatus) -> tuple[tuple[str, str], tuple[str, str]]:
    """(status, reason) of Reconciling and of Stalled."""
    rec, stalled = cond(status, RECONCILING), cond(status, STALLED)
    return (rec.status, rec.reason), (stalled.status, stalled.reason)


def wire(status: ModelRouteStatus, generation: int = 7) -> dict[str, object]:
    """The ModelRoute as kstatus and Argo CD read it from the API server."""
    return {
        "apiVersion": "modelroute.dev/v1alpha1",
        "kind": "ModelRoute",
        "metadata": {"name": "chat", "namespace": "ai", "generation": generation},
        "status": status.to_wire(),
    }


def readers(status: ModelRouteStatus, generation: int = 7) -> tuple[str, str]:
    """(kstatus, Argo CD health) of a route with ``status``."""
    obj = wire(status, generation)
    return kstatus(obj)[0], argo_health(obj)["status"]


def test_waiting_for_the_first_probes_is_reconciling() -> None:
    result = plan(given_({"vendor": NEVER, "inhouse": NEVER}, None))
    assert cond(result.status, READY).reason == ReadyReason.AWAITING_FIRST_PROBES
    assert kinds(result.status) == (
        (TRUE, ReconcilingReason.AWAITING_FIRST_PROBES),
        (FALSE, StalledReason.NOT_STALLED),
    )
    assert cond(result.status, RECONCILING).message == cond(result.status, READY).message
    assert readers(result.status) == ("InProgress", "Progressing")


def test_routed_is_current_and_healthy() -> None:
    result = plan(given_({"vendor": up(), "inhouse": up()}, "vendor"))
    assert cond(result.status, READY).status == TRUE
    assert kinds(result.status) == (
        (FALSE, ReconcilingReason.RECONCILED),
        (FALSE, StalledReason.NOT_STALLED),
    )
    assert readers(result.status) == ("Current", "Healthy")
    assert all(c.observed_generation == 7 for c in result.status.conditions)


def test_first_probes_done_stops_reconciling_at_that_moment() -> None:
    given = given_({"vendor": NEVER, "inhouse": NEVER}, None)
    waiting = plan(given)
    later = NOW + timedelta(seconds=10)
    records = {"vendor": up(since=later), "inhouse": up(since=later)}
    routed = plan(after(waiting, given, records=records, now=later))
    assert cond(routed.status, RECONCILING).status == FALSE
    assert cond(routed.status, RECONCILING).last_transition_time == later
    assert cond(routed.status, STALLED).last_transition_time == NOW  # never flipped
    assert routed.write_status


def test_a_staged_failback_is_reconciling_until_it_completes() -> None:
    route = Route(STAGED, "inhouse")
    first = route.plan(at(0))
    assert kinds(first.status) == (
        (TRUE, ReconcilingReason.FAILBACK_IN_PROGRESS),
        (FALSE, StalledReason.NOT_STALLED),
    )
    message = cond(first.status, RECONCILING).message
    assert message == "staged failback to vendor: inhouse 90%, vendor 10%"
    assert message == cond(first.status, ConditionType.DEGRADED).message
    assert readers(first.status, generation=3) == ("InProgress", "Progressing")

    held = route.plan(at(1))
    assert not held.write_status  # nothing changed within a step

    second = route.plan(at(2))
    assert "vendor 50%" in cond(second.status, RECONCILING).message
    assert cond(second.status, RECONCILING).last_transition_time == at(0)

    done = route.plan(at(4))
    assert done.status.failback is None
    assert kinds(done.status)[0] == (FALSE, ReconcilingReason.RECONCILED)
    assert cond(done.status, RECONCILING).last_transition_time == at(4)
    assert readers(done.status, generation=3) == ("Current", "Healthy")
    steady = route.plan(at(10))
    assert not steady.write_status


def test_an_aborted_staged_failback_stops_reconciling() -> None:
    route = Route(STAGED, "inhouse")
    route.plan(at(0))
    route.records["vendor"] = down(failures=1)
    aborted = route.plan(at(1))
    assert aborted.status.failback is None
    assert kinds(aborted.status)[0] == (FALSE, ReconcilingReason.RECONCILED)


@pytest.mark.parametrize(
    "reason", [ReadyReason.INVALID_SPEC, ReadyReason.DRIVER_UNAVAILABLE], ids=str
)
def test_an_invalid_spec_or_a_missing_driver_is_stalled(reason: ReadyReason) -> None:
    before = plan(given_({"vendor": up(), "inhouse": up()}, "vendor"))
    later = NOW + timedelta(seconds=30)
    result = plan_invalid(
        previous=before.status,
        written=before.status,
        generation=8,
        problem=Problem(reason, INVALID),
        now=later,
    )
    assert result.write_status
    assert kinds(result.status) == ((FALSE, ReconcilingReason.RECONCILED), (TRUE, reason))
    stalled = cond(result.status, STALLED)
    assert (stalled.message, stalled.last_transition_time, stalled.observed_generation) == (
        INVALID,
        later,
        8,
    )
    assert readers(result.status, generation=8) == ("Failed", "Degraded")
    again = plan_invalid(
        previous=result.status,
        written=result.status,
        generation=8,
        problem=Problem(reason, INVALID),
        now=later + timedelta(hours=1),
    )
    assert not again.write_status and again.status == result.status


def test_an_invalid_spec_while_awaiting_probes_is_stalled_not_reconciling() -> None:
    waiting = plan(given_({"vendor": NEVER, "inhouse": NEVER}, None))
    result = plan_invalid(
        previous=waiting.status,
        written=waiting.status,
        generation=8,
        problem=Problem(ReadyReason.INVALID_SPEC, INVALID),
        now=NOW,
    )
    assert kinds(result.status) == (
        (FALSE, ReconcilingReason.RECONCILED),
        (TRUE, ReadyReason.INVALID_SPEC),
    )


def _driver_reasons() -> list[enum.StrEnum]:
    return [*ServiceReason, *HTTPRouteReason, *AIGatewayRouteReason]


@pytest.mark.parametrize("reason", _driver_reasons(), ids=str)
def test_a_conflict_or_missing_target_is_stalled(reason: enum.StrEnum) -> None:
    given = given_({"vendor": up(), "inhouse": up()}, "vendor", problem=Problem(reason, CONFLICT))
    result = plan(given)
    assert cond(result.status, READY).status == FALSE
    assert kinds(result.status) == ((FALSE, ReconcilingReason.RECONCILED), (TRUE, str(reason)))
    assert cond(result.status, STALLED).message == CONFLICT
    assert readers(result.status) == ("Failed", "Degraded")
    again = plan(after(result, given))
    assert not again.write_status


def test_a_conflict_resolved_is_no_longer_stalled() -> None:
    problem = Problem(ServiceReason.SERVICE_CONFLICT, CONFLICT)
    given = given_({"vendor": up(), "inhouse": up()}, "vendor", problem=problem)
    stuck = plan(given)
    later = NOW + timedelta(minutes=5)
    fixed = plan(after(stuck, given, problem=None, now=later))
    assert kinds(fixed.status)[1] == (FALSE, StalledReason.NOT_STALLED)
    assert cond(fixed.status, STALLED).last_transition_time == later
    assert readers(fixed.status) == ("Current", "Healthy")


def test_a_rejection_during_a_staged_failback_is_stalled_not_reconciling() -> None:
    route = Route(STAGED, "inhouse")
    route.plan(at(0))
    rejected = route.plan(at(2), problem=Problem(ReadyReason.GATEWAY_REJECTED, "no listener"))
    assert rejected.status.failback is not None  # the ramp waits where it stands
    assert kinds(rejected.status) == (
        (FALSE, ReconcilingReason.RECONCILED),
        (TRUE, ReadyReason.GATEWAY_REJECTED),
    )
    assert readers(rejected.status, generation=3) == ("Failed", "Degraded")


def test_all_backends_unhealthy_is_not_stalled_it_recovers_by_itself() -> None:
    result = plan(given_({"vendor": down(), "inhouse": down()}, "vendor"))
    ready = cond(result.status, READY)
    assert (ready.status, ready.reason) == (FALSE, ReadyReason.ALL_BACKENDS_UNHEALTHY)
    assert kinds(result.status) == (
        (FALSE, ReconcilingReason.RECONCILED),
        (FALSE, StalledReason.NOT_STALLED),
    )
    # kstatus does not read Ready: Current (gate on Ready with kubectl wait or healthCheckExprs);
    # Argo CD reads Ready: Degraded.
    assert readers(result.status) == ("Current", "Degraded")


@pytest.mark.parametrize(
    "records",
    [
        pytest.param({"vendor": NEVER, "inhouse": NEVER}, id="waiting"),
        pytest.param({"vendor": up(), "inhouse": up()}, id="routed"),
        pytest.param({"vendor": down(), "inhouse": up()}, id="failed-over"),
        pytest.param({"vendor": down(), "inhouse": down()}, id="all-unhealthy"),
    ],
)
def test_steady_state_writes_nothing(records: dict[str, HealthRecord]) -> None:
    given = given_(records, "vendor" if records["vendor"] is not NEVER else None)
    first = plan(given)
    second = plan(after(first, given))
    again = plan(after(second, given, now=NOW + timedelta(hours=1)))
    assert (again.write_status, again.events) == (False, ())
    assert again.status == second.status


def test_a_status_without_the_kstatus_conditions_is_written_once() -> None:
    """After an upgrade from an operator that did not set them: one write, then none."""
    given = given_({"vendor": up(), "inhouse": up()}, "vendor")
    first = plan(given)
    legacy = first.status.model_copy(
        update={"conditions": [c for c in first.status.conditions if c.type in (READY,)]}
    )
    upgraded = plan(after(first, given, previous=legacy, written=legacy))
    assert upgraded.write_status
    assert not plan(after(upgraded, given)).write_status


def test_every_ready_reason_is_classified() -> None:
    """A new Ready reason (the core's or a driver's) must be sorted: Stalled or self-healing."""
    every = {str(r) for r in [*ReadyReason, *_driver_reasons()]}
    others = {str(r) for r in SELF_HEALING | DELIBERATE}
    assert every == {str(r) for r in STALLED_REASONS} | others
    assert not STALLED_REASONS & others


def test_conditions_keep_their_order_and_the_new_ones_come_last() -> None:
    result = plan(given_({"vendor": up(), "inhouse": up()}, "vendor"))
    types = [c.type for c in result.status.conditions]
    assert types == [READY, ConditionType.DEGRADED, RECONCILING, STALLED]
