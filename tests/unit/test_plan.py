"""Tests for plan(): the whole decision of one reconcile, as table tests and properties.

Every time is fixed (timezone-aware UTC); a reconcile that follows another is simulated by
feeding the returned split and status into the next PlanInput, as the worker does.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from modelroute.api.models import Backend, FailbackMode, FailbackSpec, ModelRouteSpec, ServiceSpec
from modelroute.api.status import Condition, ConditionStatus, ModelRouteStatus, TrafficWeight
from modelroute.core.conditions import get_condition
from modelroute.core.health import HealthRecord
from modelroute.core.plan import Plan, PlanInput, PlannedEvent, plan, plan_invalid
from modelroute.core.policy import APPROVE_FAILBACK_ANNOTATION
from modelroute.core.types import (
    ConditionType,
    DecisionReason,
    DegradedReason,
    EventType,
    Problem,
    ReadyReason,
    TrafficSplit,
    Transition,
)
from tests.unit.test_policy import make_spec

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
HOUR = timedelta(hours=1)
TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN
NORMAL, WARNING = EventType.NORMAL, EventType.WARNING
READY, DEGRADED = ConditionType.READY, ConditionType.DEGRADED
AUTO, MANUAL = FailbackMode.AUTOMATIC, FailbackMode.MANUAL


class DriverReason(enum.StrEnum):
    """A made-up driver reason: the core must carry any enum reason through unchanged."""

    TARGET_GONE = "TargetGone"


GONE = Problem(DriverReason.TARGET_GONE, "Service ai/llama-vllm of backend inhouse is missing")


TWO = make_spec(("vendor", 0), ("inhouse", 1))
TWO_MANUAL = make_spec(("vendor", 0), ("inhouse", 1), mode=MANUAL)


def up(since: datetime = T0) -> HealthRecord:
    return HealthRecord(
        healthy=True,
        consecutive_successes=2,
        healthy_since=since,
        last_probe_time=NOW,
        latency_ms=40,
        message="HTTP 200",
    )


def down(failures: int = 3, message: str = "HTTP 503") -> HealthRecord:
    return HealthRecord(
        healthy=False, consecutive_failures=failures, last_probe_time=NOW, message=message
    )


def ago(seconds: int) -> datetime:
    return NOW - timedelta(seconds=seconds)


NEVER = HealthRecord()
FRESH = ModelRouteStatus()


def single(backend: str | None) -> TrafficSplit | None:
    return TrafficSplit.single(backend) if backend is not None else None


def given_(
    records: Mapping[str, HealthRecord],
    routed: str | None,
    *,
    spec: ModelRouteSpec = TWO,
    previous: ModelRouteStatus = FRESH,
    written: ModelRouteStatus | None = None,
    approval: str | None = None,
    now: datetime = NOW,
    problem: Problem | None = None,
) -> PlanInput:
    return PlanInput(
        spec=spec,
        generation=7,
        records=records,
        routed=single(routed),
        previous=previous,
        written=written,
        approval=approval,
        now=now,
        problem=problem,
    )


def after(first: Plan, given: PlanInput, **changes: Any) -> PlanInput:
    """The next reconcile's input once ``first`` was carried out and its status written."""
    routed = first.split if first.split is not None and given.problem is None else given.routed
    nxt = dataclasses.replace(given, routed=routed, previous=first.status, written=first.status)
    return dataclasses.replace(nxt, **changes)


def cond(status: ModelRouteStatus, ctype: ConditionType) -> Condition:
    found = get_condition(status.conditions, ctype)
    assert found is not None, f"no {ctype} condition"
    return found


def kinds(events: tuple[PlannedEvent, ...]) -> list[tuple[EventType, str]]:
    return [(e.type, e.reason) for e in events]


# --- the table -------------------------------------------------------------------------------


class Row(NamedTuple):
    given: PlanInput
    split: str | None  # the single backend of the planned split; None: leave routing alone
    events: list[tuple[EventType, str]]
    moved: bool
    active: str | None  # status.activeBackend
    ready: tuple[ConditionStatus, str]
    degraded: tuple[ConditionStatus, str]
    recheck_at: datetime | None = None


ROUTED_T = (TRUE, ReadyReason.ROUTED)
HEALTHY_F = (FALSE, DegradedReason.ALL_BACKENDS_HEALTHY)
UNHEALTHY_T = (TRUE, DegradedReason.BACKEND_UNHEALTHY)
NOT_PREFERRED_T = (TRUE, DegradedReason.NOT_ON_PREFERRED_BACKEND)
PENDING_T = (TRUE, DegradedReason.FAILBACK_PENDING)
AWAITING_F = (FALSE, ReadyReason.AWAITING_FIRST_PROBES)
ALL_DOWN_F = (FALSE, ReadyReason.ALL_BACKENDS_UNHEALTHY)
ROUTED_EVENT = (NORMAL, Transition.INITIAL)
FAILOVER_EVENT = (WARNING, Transition.FAILOVER)
FAILBACK_EVENT = (NORMAL, Transition.FAILBACK)
ALL_DOWN_EVENT = (WARNING, ReadyReason.ALL_BACKENDS_UNHEALTHY)

TABLE = [
    # First routing.
    pytest.param(
        Row(
            given_({"vendor": NEVER, "inhouse": up()}, None),
            None,
            [],
            False,
            None,
            AWAITING_F,
            (TRUE, DegradedReason.NO_ACTIVE_BACKEND),
        ),
        id="first-waits-for-the-preferred-backends-first-probe",
    ),
    pytest.param(
        Row(
            given_({"inhouse": up()}, None),
            None,
            [],
            False,
            None,
            AWAITING_F,
            (TRUE, DegradedReason.NO_ACTIVE_BACKEND),
        ),
        id="first-missing-record-counts-as-never-probed",
    ),
    pytest.param(
        Row(
            given_({"vendor": up(), "inhouse": NEVER}, None),
            "vendor",
            [ROUTED_EVENT],
            False,
            "vendor",
            ROUTED_T,
            HEALTHY_F,
        ),
        id="first-routes-to-the-preferred-backend",
    ),
    pytest.param(
        Row(
            given_({"vendor": down(), "inhouse": up()}, None),
            "inhouse",
            [ROUTED_EVENT],
            False,
            "inhouse",
            ROUTED_T,
            UNHEALTHY_T,
        ),
        id="first-skips-an-unhealthy-preferred-backend",
    ),
    pytest.param(
        Row(
            given_({"vendor": down(), "inhouse": down()}, None),
            None,
            [ALL_DOWN_EVENT],
            False,
            None,
            ALL_DOWN_F,
            UNHEALTHY_T,
        ),
        id="first-with-nothing-healthy-routes-nothing",
    ),
    # Failover.
    pytest.param(
        Row(
            given_({"vendor": down(), "inhouse": up()}, "vendor"),
            "inhouse",
            [FAILOVER_EVENT],
            True,
            "inhouse",
            ROUTED_T,
            UNHEALTHY_T,
        ),
        id="failover-to-the-next-healthy-backend",
    ),
    pytest.param(
        Row(
            given_(
                {"a": down(), "b": down(), "c": up()},
                "a",
                spec=make_spec(("a", 0), ("b", 1), ("c", 2)),
            ),
            "c",
            [FAILOVER_EVENT],
            True,
            "c",
            ROUTED_T,
            UNHEALTHY_T,
        ),
        id="failover-skips-an-unhealthy-middle-backend",
    ),
    pytest.param(
        Row(
            given_(
                {"a": down(), "b": NEVER, "c": up()},
                "a",
                spec=make_spec(("a", 0), ("b", 1), ("c", 2)),
            ),
            "c",
            [FAILOVER_EVENT],
            True,
            "c",
            ROUTED_T,
            UNHEALTHY_T,
        ),
        id="failover-does-not-wait-for-a-never-probed-backend",
    ),
    # Fail-static.
    pytest.param(
        Row(
            given_({"vendor": down(), "inhouse": down()}, "vendor"),
            "vendor",
            [ALL_DOWN_EVENT],
            False,
            "vendor",
            ALL_DOWN_F,
            UNHEALTHY_T,
        ),
        id="fail-static-stays-on-the-active-backend",
    ),
    pytest.param(
        Row(
            given_({"vendor": down(), "inhouse": down()}, "inhouse"),
            "inhouse",
            [ALL_DOWN_EVENT],
            False,
            "inhouse",
            ALL_DOWN_F,
            UNHEALTHY_T,
        ),
        id="fail-static-on-the-fallback",
    ),
    # The active backend is not probed yet (e.g. an operator restart).
    pytest.param(
        Row(
            given_({"vendor": NEVER, "inhouse": up()}, "vendor"),
            "vendor",
            [],
            False,
            "vendor",
            AWAITING_F,
            HEALTHY_F,
        ),
        id="restart-keeps-the-active-backend-until-it-answers",
    ),
    # Automatic failback.
    pytest.param(
        Row(
            given_({"vendor": up(since=ago(30)), "inhouse": up()}, "inhouse"),
            "inhouse",
            [],
            False,
            "inhouse",
            ROUTED_T,
            NOT_PREFERRED_T,
            ago(30) + timedelta(seconds=60),
        ),
        id="failback-automatic-before-the-window",
    ),
    pytest.param(
        Row(
            given_({"vendor": up(since=ago(59)), "inhouse": up()}, "inhouse"),
            "inhouse",
            [],
            False,
            "inhouse",
            ROUTED_T,
            NOT_PREFERRED_T,
            NOW + timedelta(seconds=1),
        ),
        id="failback-automatic-one-second-before-the-window",
    ),
    pytest.param(
        Row(
            given_({"vendor": up(since=ago(60)), "inhouse": up()}, "inhouse"),
            "vendor",
            [FAILBACK_EVENT],
            True,
            "vendor",
            ROUTED_T,
            HEALTHY_F,
        ),
        id="failback-automatic-when-the-window-ends",
    ),
    pytest.param(
        Row(
            given_({"vendor": up(since=ago(600)), "inhouse": up()}, "inhouse"),
            "vendor",
            [FAILBACK_EVENT],
            True,
            "vendor",
            ROUTED_T,
            HEALTHY_F,
        ),
        id="failback-automatic-after-the-window",
    ),
    pytest.param(
        Row(
            given_(
                {"vendor": up(since=ago(10)), "inhouse": down()},
                "inhouse",
            ),
            "vendor",
            [FAILOVER_EVENT],
            True,
            "vendor",
            ROUTED_T,
            UNHEALTHY_T,
        ),
        id="failover-back-to-a-stabilizing-backend-when-the-active-one-fails",
    ),
    pytest.param(
        Row(
            given_(
                {"a": up(since=ago(20)), "b": up(since=ago(50)), "c": up()},
                "c",
                spec=make_spec(("a", 0), ("b", 1), ("c", 2)),
            ),
            "c",
            [],
            False,
            "c",
            ROUTED_T,
            NOT_PREFERRED_T,
            ago(50) + timedelta(seconds=60),
        ),
        id="recheck-at-the-earliest-window-of-a-more-preferred-backend",
    ),
    pytest.param(
        Row(
            given_(
                {"vendor": up(since=ago(30)), "inhouse": up()},
                "inhouse",
                spec=make_spec(("vendor", 0), ("inhouse", 1), stabilization=0),
            ),
            "vendor",
            [FAILBACK_EVENT],
            True,
            "vendor",
            ROUTED_T,
            HEALTHY_F,
        ),
        id="failback-at-once-without-stabilization",
    ),
    # Manual failback.
    pytest.param(
        Row(
            given_({"vendor": up(since=ago(30)), "inhouse": up()}, "inhouse", spec=TWO_MANUAL),
            "inhouse",
            [],
            False,
            "inhouse",
            ROUTED_T,
            NOT_PREFERRED_T,
            ago(30) + timedelta(seconds=60),
        ),
        id="manual-before-the-window-rechecks-to-offer-failback",
    ),
    pytest.param(
        Row(
            given_({"vendor": up(since=ago(60)), "inhouse": up()}, "inhouse", spec=TWO_MANUAL),
            "inhouse",
            [],
            False,
            "inhouse",
            ROUTED_T,
            PENDING_T,
        ),
        id="manual-after-the-window-is-failback-pending",
    ),
    pytest.param(
        Row(
            given_(
                {"vendor": up(since=ago(60)), "inhouse": up()},
                "inhouse",
                spec=TWO_MANUAL,
                approval="1",
            ),
            "vendor",
            [FAILBACK_EVENT],
            True,
            "vendor",
            ROUTED_T,
            HEALTHY_F,
        ),
        id="manual-approved",
    ),
    pytest.param(
        Row(
            given_(
                {"vendor": up(since=ago(5)), "inhouse": up()},
                "inhouse",
                spec=TWO_MANUAL,
                approval="1",
            ),
            "vendor",
            [FAILBACK_EVENT],
            True,
            "vendor",
            ROUTED_T,
            HEALTHY_F,
        ),
        id="manual-approval-skips-the-stabilization-wait",
    ),
    pytest.param(
        Row(
            given_(
                {"vendor": down(), "inhouse": up()},
                "inhouse",
                spec=TWO_MANUAL,
                approval="1",
            ),
            "inhouse",
            [],
            False,
            "inhouse",
            ROUTED_T,
            UNHEALTHY_T,
        ),
        id="manual-approval-needs-a-healthy-preferred-backend",
    ),
    # The active backend was removed from spec.
    pytest.param(
        Row(
            given_({"vendor": up(), "inhouse": up()}, "gone"),
            "vendor",
            [(NORMAL, Transition.REROUTE)],
            True,
            "vendor",
            ROUTED_T,
            HEALTHY_F,
        ),
        id="active-removed-reroutes",
    ),
    pytest.param(
        Row(
            given_({"vendor": down(), "inhouse": down()}, "gone"),
            None,
            [ALL_DOWN_EVENT],
            False,
            "gone",
            ALL_DOWN_F,
            UNHEALTHY_T,
        ),
        id="active-removed-and-nothing-healthy-leaves-routing-alone",
    ),
    pytest.param(
        Row(
            given_({"vendor": NEVER, "inhouse": up()}, "gone"),
            None,
            [],
            False,
            "gone",
            AWAITING_F,
            NOT_PREFERRED_T,
        ),
        id="active-removed-waits-for-the-preferred-backend",
    ),
]


@pytest.mark.parametrize("row", TABLE)
def test_plan(row: Row) -> None:
    result = plan(row.given)
    assert result.split == single(row.split)
    assert kinds(result.events) == row.events
    assert result.moved is row.moved
    assert result.active == result.status.active_backend == row.active
    ready, degraded = cond(result.status, READY), cond(result.status, DEGRADED)
    assert (ready.status, ready.reason) == row.ready
    assert (degraded.status, degraded.reason) == row.degraded
    assert result.recheck_at == row.recheck_at
    assert result.status.failover_count == (1 if row.moved else 0)
    assert result.status.last_failover_time == (NOW if row.moved else None)
    expected_traffic = [] if row.active is None else [TrafficWeight(backend=row.active, weight=100)]
    assert result.status.traffic == expected_traffic
    assert result.status.observed_generation == 7
    assert result.write_status  # nothing was written before
    assert result.decision is not None


# --- events and messages ---------------------------------------------------------------------


def test_first_routing_then_routed_event() -> None:
    waiting = given_({"vendor": NEVER, "inhouse": up()}, None)
    first = plan(waiting)
    assert (first.split, first.events, first.moved) == (None, (), False)
    second = plan(after(first, waiting, records={"vendor": up(), "inhouse": up()}))
    assert second.split == TrafficSplit.single("vendor")
    assert second.events == (
        PlannedEvent(
            NORMAL,
            Transition.INITIAL,
            "routing traffic to vendor, the most preferred healthy backend",
        ),
    )
    assert second.moved is False
    assert second.status.failover_count == 0
    assert second.write_status


def test_failover_event_names_from_to_and_why() -> None:
    result = plan(given_({"vendor": down(message="HTTP 503"), "inhouse": up()}, "vendor"))
    (event,) = result.events
    assert (event.type, event.reason) == (WARNING, "FailedOver")
    assert event.message == (
        "vendor failed 3 probes in a row (last: HTTP 503); moving traffic to inhouse"
    )
    assert result.decision is not None
    assert result.decision.reason is DecisionReason.ACTIVE_BACKEND_UNHEALTHY


def test_failover_counts_and_records_time_and_traffic() -> None:
    previous = ModelRouteStatus(failover_count=4, last_failover_time=T0)
    result = plan(given_({"vendor": down(), "inhouse": up()}, "vendor", previous=previous))
    assert result.moved
    assert result.status.failover_count == 5
    assert result.status.last_failover_time == NOW
    assert result.status.traffic == [TrafficWeight(backend="inhouse", weight=100)]
    assert result.status.active_backend == "inhouse"


def test_failback_event_names_from_to_and_why() -> None:
    result = plan(given_({"vendor": up(since=ago(90)), "inhouse": up()}, "inhouse"))
    (event,) = result.events
    assert (event.type, event.reason) == (NORMAL, "FailedBack")
    assert "inhouse" in event.message
    assert "vendor" in event.message
    assert "healthy for 90s" in event.message


def test_fail_static_warns_once_per_new_reason() -> None:
    healthy = given_({"vendor": up(), "inhouse": up()}, "vendor")
    routed = plan(healthy)
    assert routed.events == ()
    dead = plan(after(routed, healthy, records={"vendor": down(), "inhouse": down()}))
    assert dead.split == TrafficSplit.single("vendor")
    (warning,) = dead.events
    assert (warning.type, warning.reason) == (WARNING, "AllBackendsUnhealthy")
    assert "fail-static" in warning.message
    still_dead = plan(
        after(dead, healthy, records={"vendor": down(9), "inhouse": down(9)}, now=NOW + HOUR)
    )
    assert still_dead.events == ()
    assert still_dead.split == TrafficSplit.single("vendor")
    assert not still_dead.write_status  # counters past the threshold are not material
    # Ready stays False, for a new reason: one more Warning.
    other = plan(
        after(still_dead, healthy, records={"vendor": down(9), "inhouse": down(9)}, problem=GONE)
    )
    assert kinds(other.events) == [(WARNING, DriverReason.TARGET_GONE)]


# --- steady state ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("records", "routed"),
    [
        pytest.param({"vendor": up(), "inhouse": up()}, "vendor", id="healthy"),
        pytest.param({"vendor": down(), "inhouse": up()}, "vendor", id="failing-over"),
        pytest.param({"vendor": down(), "inhouse": down()}, "vendor", id="dead"),
        pytest.param({"vendor": up(since=ago(10)), "inhouse": up()}, "inhouse", id="stabilizing"),
        pytest.param({"vendor": NEVER, "inhouse": up()}, None, id="waiting"),
    ],
)
def test_steady_state_needs_no_write_and_no_events(
    records: Mapping[str, HealthRecord], routed: str | None
) -> None:
    given = given_(records, routed)
    first = plan(given)
    assert first.write_status
    again = plan(after(first, given))
    assert (again.events, again.write_status, again.moved) == ((), False, False)
    assert again.split == single(first.active)
    assert again.status == first.status
    assert plan(after(again, given)) == again


def test_steady_manual_pending_needs_no_write() -> None:
    given = given_({"vendor": up(since=ago(600)), "inhouse": up()}, "inhouse", spec=TWO_MANUAL)
    first = plan(given)
    again = plan(after(first, given, now=NOW + HOUR))
    assert cond(again.status, DEGRADED).reason == DegradedReason.FAILBACK_PENDING
    assert (again.events, again.write_status, again.recheck_at) == ((), False, None)


# --- manual approval -------------------------------------------------------------------------

PENDING = {"vendor": up(since=ago(600)), "inhouse": up()}


def test_approval_annotation_name() -> None:
    assert APPROVE_FAILBACK_ANNOTATION == "modelroute.dev/approve-failback"


def test_approval_is_consumed_exactly_once() -> None:
    given = given_(PENDING, "inhouse", spec=TWO_MANUAL, approval="100")
    approved = plan(given)
    assert approved.split == TrafficSplit.single("vendor")
    assert kinds(approved.events) == [FAILBACK_EVENT]
    assert approved.status.failback_approval == "100"
    # Traffic fails over again, vendor recovers; the old annotation value is still there.
    failed_over = plan(after(approved, given, records={"vendor": down(), "inhouse": up()}))
    assert failed_over.split == TrafficSplit.single("inhouse")
    assert failed_over.status.failback_approval == "100"
    recovered = plan(after(failed_over, given, records=PENDING))
    assert recovered.split == TrafficSplit.single("inhouse")
    assert recovered.events == ()
    assert cond(recovered.status, DEGRADED).reason == DegradedReason.FAILBACK_PENDING
    # A new value approves again.
    again = plan(after(recovered, given, approval="200"))
    assert again.split == TrafficSplit.single("vendor")
    assert again.status.failback_approval == "200"


def test_approval_equal_to_the_recorded_one_does_nothing() -> None:
    previous = ModelRouteStatus(failback_approval="100")
    result = plan(given_(PENDING, "inhouse", spec=TWO_MANUAL, approval="100", previous=previous))
    assert result.split == TrafficSplit.single("inhouse")
    assert (result.moved, result.events) == (False, ())
    assert cond(result.status, DEGRADED).reason == DegradedReason.FAILBACK_PENDING
    assert result.status.failback_approval == "100"


def test_approval_with_nothing_pending_is_recorded_and_cannot_fail_back_later() -> None:
    given = given_(
        {"vendor": down(), "inhouse": up()}, "inhouse", spec=TWO_MANUAL, approval="early"
    )
    early = plan(given)
    assert (early.split, early.moved, early.events) == (TrafficSplit.single("inhouse"), False, ())
    assert early.status.failback_approval == "early"
    assert early.write_status
    later = plan(after(early, given, records=PENDING, now=NOW + HOUR))
    assert later.split == TrafficSplit.single("inhouse")
    assert (later.moved, later.events) == (False, ())
    assert cond(later.status, DEGRADED).reason == DegradedReason.FAILBACK_PENDING


def test_empty_approval_value_approves_once() -> None:
    """``kubectl annotate ... approve-failback=`` sets an empty value: still one approval."""
    given = given_(PENDING, "inhouse", spec=TWO_MANUAL, approval="")
    approved = plan(given)
    assert approved.split == TrafficSplit.single("vendor")
    assert approved.status.failback_approval == ""
    failed_over = plan(after(approved, given, records={"vendor": down(), "inhouse": up()}))
    assert failed_over.split == TrafficSplit.single("inhouse")
    # vendor is back but not stable yet: the spent empty value must not skip the wait.
    recovering = {"vendor": up(since=ago(1)), "inhouse": up()}
    recovered = plan(after(failed_over, given, records=recovering))
    assert recovered.split == TrafficSplit.single("inhouse")
    assert (recovered.moved, recovered.events) == (False, ())
    assert recovered.status.failback_approval == ""


def test_removed_annotation_keeps_the_recorded_value() -> None:
    previous = ModelRouteStatus(failback_approval="100")
    result = plan(given_(PENDING, "inhouse", spec=TWO_MANUAL, previous=previous))
    assert result.status.failback_approval == "100"
    assert not result.moved


# --- a driver problem ------------------------------------------------------------------------


def test_problem_keeps_traffic_where_it_is_and_warns() -> None:
    given = given_({"vendor": down(), "inhouse": up()}, "vendor", problem=GONE)
    result = plan(given)
    assert result.moved is False
    assert result.active == "vendor"
    assert result.status.traffic == [TrafficWeight(backend="vendor", weight=100)]
    assert result.status.failover_count == 0
    assert result.status.last_failover_time is None
    ready = cond(result.status, READY)
    assert (ready.status, ready.reason, ready.message) == (FALSE, "TargetGone", GONE.message)
    assert result.events == (PlannedEvent(WARNING, DriverReason.TARGET_GONE, GONE.message),)
    assert all(e.reason not in set(Transition) for e in result.events)
    assert result.write_status


def test_problem_on_first_routing_routes_nothing() -> None:
    result = plan(given_({"vendor": up(), "inhouse": up()}, None, problem=GONE))
    assert result.active is None
    assert result.status.traffic == []
    assert kinds(result.events) == [(WARNING, DriverReason.TARGET_GONE)]
    assert cond(result.status, READY).reason == "TargetGone"


def test_problem_warns_once_and_clears() -> None:
    given = given_({"vendor": down(), "inhouse": up()}, "vendor", problem=GONE)
    first = plan(given)
    again = plan(after(first, given))
    assert (again.events, again.write_status) == ((), False)
    fixed = plan(after(again, given, problem=None))
    assert kinds(fixed.events) == [FAILOVER_EVENT]
    assert fixed.moved
    assert fixed.status.failover_count == 1
    assert cond(fixed.status, READY).reason == ReadyReason.ROUTED


# --- previous versus written -----------------------------------------------------------------


def test_failed_write_keeps_the_counted_failover() -> None:
    healthy = given_({"vendor": up(), "inhouse": up()}, "vendor")
    steady = plan(healthy)
    failing = after(steady, healthy, records={"vendor": down(), "inhouse": up()})
    failover = plan(failing)
    assert failover.status.failover_count == 1
    # The routing write went through, the status write failed: the worker keeps the planned
    # status as ``previous`` while ``written`` is still the steady one.
    retry = plan(
        dataclasses.replace(
            failing, routed=failover.split, previous=failover.status, written=steady.status
        )
    )
    assert steady.status.failover_count == 0
    assert retry.write_status
    assert retry.status.failover_count == 1
    assert retry.status.last_failover_time == NOW
    assert (retry.moved, retry.events) == (False, ())
    assert retry.status == failover.status


def test_write_compares_with_written_not_previous() -> None:
    given = given_({"vendor": up(), "inhouse": up()}, "vendor")
    first = plan(given)
    # previous equals the new status, but nothing was ever written.
    assert plan(after(first, given, written=None)).write_status
    assert not plan(after(first, given)).write_status


# --- lastTransitionTime ----------------------------------------------------------------------


def test_last_transition_time_moves_only_on_a_status_flip() -> None:
    healthy = given_({"vendor": up(), "inhouse": up()}, "vendor", now=T0)
    t1, t2, t3 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2), T0 + timedelta(minutes=3)
    first = plan(healthy)
    assert cond(first.status, READY).last_transition_time == T0
    assert cond(first.status, DEGRADED).last_transition_time == T0
    # Degraded flips False -> True, Ready stays True.
    second = plan(after(first, healthy, records={"vendor": up(), "inhouse": down()}, now=t1))
    assert cond(second.status, READY).last_transition_time == T0
    assert cond(second.status, DEGRADED).last_transition_time == t1
    # Degraded stays True with another message; Ready flips to False.
    dead = {"vendor": down(), "inhouse": down()}
    third = plan(after(second, healthy, records=dead, now=t2))
    assert cond(third.status, READY).last_transition_time == t2
    degraded = cond(third.status, DEGRADED)
    assert (degraded.status, degraded.last_transition_time) == (TRUE, t1)
    # Ready stays False for another reason: no transition.
    fourth = plan(after(third, healthy, records=dead, now=t3, problem=GONE))
    assert cond(fourth.status, READY).reason == "TargetGone"
    assert cond(fourth.status, READY).last_transition_time == t2


# --- plan_invalid ----------------------------------------------------------------------------

INVALID = "spec.backends[1].name: duplicate backend name 'a'"


def test_plan_invalid() -> None:
    healthy = given_({"vendor": up(), "inhouse": up()}, "vendor", now=T0)
    before = plan(healthy)
    result = plan_invalid(
        previous=before.status,
        written=before.status,
        generation=8,
        problem=Problem(ReadyReason.INVALID_SPEC, INVALID),
        now=NOW,
    )
    assert (result.split, result.decision, result.recheck_at, result.moved) == (
        None,
        None,
        None,
        False,
    )
    ready, degraded = cond(result.status, READY), cond(result.status, DEGRADED)
    assert (ready.status, ready.reason, ready.message) == (FALSE, "InvalidSpec", INVALID)
    assert ready.last_transition_time == NOW
    assert (degraded.status, degraded.reason) == (UNKNOWN, "InvalidSpec")
    assert result.events == (PlannedEvent(WARNING, ReadyReason.INVALID_SPEC, INVALID),)
    assert result.write_status
    assert result.status.observed_generation == 8
    # The rest of status is kept: where traffic was, the counters.
    assert result.status.active_backend == "vendor"
    assert result.status.traffic == before.status.traffic
    again = plan_invalid(
        previous=result.status,
        written=result.status,
        generation=8,
        problem=Problem(ReadyReason.INVALID_SPEC, INVALID),
        now=NOW + HOUR,
    )
    assert (again.events, again.write_status) == ((), False)
    assert again.status == result.status


def test_plan_invalid_from_scratch() -> None:
    result = plan_invalid(
        previous=FRESH,
        written=None,
        generation=1,
        problem=Problem(ReadyReason.INVALID_SPEC, INVALID),
        now=NOW,
    )
    assert kinds(result.events) == [(WARNING, ReadyReason.INVALID_SPEC)]
    assert result.write_status
    assert result.active is None


def test_plan_invalid_with_another_message_does_not_warn_again() -> None:
    first = plan_invalid(
        previous=FRESH,
        written=None,
        generation=1,
        problem=Problem(ReadyReason.INVALID_SPEC, INVALID),
        now=NOW,
    )
    second = plan_invalid(
        previous=first.status,
        written=first.status,
        generation=2,
        problem=Problem(ReadyReason.INVALID_SPEC, "other"),
        now=NOW,
    )
    assert second.events == ()
    assert second.write_status  # the message and generation changed
    assert cond(second.status, READY).message == "other"


# --- properties ------------------------------------------------------------------------------

NAMES = ["a", "b", "c", "d"]


@st.composite
def specs(draw: st.DrawFn) -> ModelRouteSpec:
    names = draw(st.permutations(NAMES))[: draw(st.integers(1, len(NAMES)))]
    return ModelRouteSpec(
        service=ServiceSpec(name="chat-llm", port=80),
        backends=[
            Backend(name=name, priority=draw(st.integers(0, 3)), model="m") for name in names
        ],
        failback=FailbackSpec(
            mode=draw(st.sampled_from([AUTO, MANUAL])),
            stabilization_seconds=draw(st.integers(0, 120)),
        ),
    )


# Mostly probed backends, so that failovers and failbacks are common.
HEALTH_KINDS = ["up", "down", "up", "down", "up", "down", "up", "up-no-since", "never", "missing"]


@st.composite
def records_for(draw: st.DrawFn, spec: ModelRouteSpec, now: datetime) -> dict[str, HealthRecord]:
    records: dict[str, HealthRecord] = {}
    for backend in spec.backends:
        kind = draw(st.sampled_from(HEALTH_KINDS))
        if kind == "never":
            records[backend.name] = NEVER
        elif kind == "down":
            records[backend.name] = down(draw(st.integers(0, 5)))
        elif kind == "up":
            since = now - timedelta(seconds=draw(st.integers(0, 300)))
            records[backend.name] = up(since=since)
        elif kind == "up-no-since":
            records[backend.name] = HealthRecord(healthy=True, consecutive_successes=2)
    return records


@st.composite
def plan_inputs(draw: st.DrawFn) -> PlanInput:
    spec = draw(specs())
    now = T0 + timedelta(seconds=draw(st.integers(0, 86_400)))
    names = [b.name for b in spec.backends]
    routed = draw(st.sampled_from([*names, None, *names, "gone"]))
    consumed = draw(st.sampled_from([None, "1"]))
    return PlanInput(
        spec=spec,
        generation=draw(st.sampled_from([None, 1, 2])),
        records=draw(records_for(spec, now)),
        routed=single(routed),
        previous=ModelRouteStatus(failback_approval=consumed, failover_count=3),
        written=draw(st.sampled_from([None, FRESH])),
        approval=draw(st.sampled_from([None, "1", "2"])),
        now=now,
        problem=draw(st.sampled_from([None, None, None, GONE])),
    )


def known_unhealthy(given: PlanInput, backend: str | None) -> bool:
    record = given.records.get(backend) if backend is not None else None
    return record is not None and record.healthy is False


@settings(max_examples=400, deadline=None)
@given(plan_inputs())
def test_plan_properties(given: PlanInput) -> None:
    result = plan(given)
    names = {b.name for b in given.spec.backends}
    if result.split is not None:
        assert set(result.split) <= names
        assert result.split.is_single  # the Service driver's contract today
    assert result.recheck_at is None or result.recheck_at > given.now
    some_healthy = any(r.healthy for name, r in given.records.items() if name in names)
    if given.problem is None and some_healthy:
        assert not known_unhealthy(given, result.active)
        assert result.split is None or not known_unhealthy(given, result.split.primary)
    if given.problem is not None:
        assert not result.moved
        assert result.active == (given.routed.primary if given.routed else None)
    assert result.status.failover_count == 3 + (1 if result.moved else 0)
    transitions = [e for e in result.events if e.reason in set(Transition)]
    assert len(transitions) <= 1
    if result.moved:
        assert transitions
    assert plan(given) == result
    reason = result.decision.reason if result.decision else None
    event(f"{reason}, moved={result.moved}, problem={given.problem is not None}")


@settings(max_examples=300, deadline=None)
@given(plan_inputs())
def test_plan_carried_out_is_a_fixed_point(given: PlanInput) -> None:
    """Once a plan is carried out and written, the same observations plan nothing more."""
    first = plan(given)
    again = plan(after(first, given))
    assert again.events == ()
    assert not again.moved
    assert not again.write_status
    assert again.status == first.status
