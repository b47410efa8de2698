"""Tests for the routing policy: table tests per rule, then a simulated run with hypothesis."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from modelroute.api.models import (
    Backend,
    FailbackMode,
    FailbackSpec,
    ModelRouteSpec,
    ProbeOverride,
    ServiceSpec,
)
from modelroute.core.health import HealthRecord, ProbeOutcome, fold
from modelroute.core.policy import Decision, Transition, decide, is_degraded
from modelroute.core.types import DecisionReason, ProbeFailure

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
AUTO = FailbackMode.AUTOMATIC
MANUAL = FailbackMode.MANUAL


def make_spec(
    *backends: tuple[str, int], mode: FailbackMode = AUTO, stabilization: int = 60
) -> ModelRouteSpec:
    """A route over ``(name, priority)`` backends, in the given list order."""
    return ModelRouteSpec(
        service=ServiceSpec(name="chat-llm", port=80),
        backends=[Backend(name=name, priority=priority, model="m") for name, priority in backends],
        failback=FailbackSpec(mode=mode, stabilization_seconds=stabilization),
    )


def up(for_seconds: int = 3600) -> HealthRecord:
    """Healthy since ``for_seconds`` before NOW."""
    return HealthRecord(
        healthy=True, consecutive_successes=2, healthy_since=NOW - timedelta(seconds=for_seconds)
    )


def down(
    failures: int = 3, message: str = "HTTP 503", reason: ProbeFailure | None = None
) -> HealthRecord:
    return HealthRecord(
        healthy=False, consecutive_failures=failures, message=message, reason=reason
    )


UNKNOWN = HealthRecord()
TWO = make_spec(("vendor", 0), ("inhouse", 1))
THREE = make_spec(("a", 0), ("b", 1), ("c", 2))


class Case(NamedTuple):
    spec: ModelRouteSpec
    health: Mapping[str, HealthRecord]
    active: str | None
    approved: bool
    target: str | None
    transition: Transition | None
    reason: str
    pending: str | None = None


def case(
    spec: ModelRouteSpec,
    health: Mapping[str, HealthRecord],
    active: str | None,
    expect: tuple[str | None, Transition | None, str],
    *,
    approved: bool = False,
    pending: str | None = None,
) -> Case:
    return Case(spec, health, active, approved, *expect, pending)


NO_ACTIVE = [
    pytest.param(
        case(
            TWO, {"vendor": up(), "inhouse": up()}, None, ("vendor", Transition.INITIAL, "Initial")
        ),
        id="initial-most-preferred-healthy",
    ),
    pytest.param(
        case(
            make_spec(("a", 1), ("b", 0), ("c", 0)),
            {"a": up(), "b": up(), "c": up()},
            None,
            ("b", Transition.INITIAL, "Initial"),
        ),
        id="initial-priority-beats-list-order-and-ties-go-to-list-order",
    ),
    pytest.param(
        case(
            make_spec(("x", 0), ("y", 0)),
            {"x": down(), "y": up()},
            None,
            ("y", Transition.INITIAL, "Initial"),
        ),
        id="initial-tie-skips-unhealthy",
    ),
    pytest.param(
        case(
            TWO,
            {"vendor": down(), "inhouse": up()},
            None,
            ("inhouse", Transition.INITIAL, "Initial"),
        ),
        id="initial-skips-unhealthy-preferred",
    ),
    pytest.param(
        case(TWO, {"vendor": UNKNOWN, "inhouse": up()}, None, (None, None, "AwaitingFirstProbes")),
        id="initial-waits-for-unknown-preferred",
    ),
    pytest.param(
        case(TWO, {"inhouse": up()}, None, (None, None, "AwaitingFirstProbes")),
        id="initial-missing-record-counts-as-unknown",
    ),
    pytest.param(
        case(
            THREE,
            {"a": down(), "b": UNKNOWN, "c": up()},
            None,
            (None, None, "AwaitingFirstProbes"),
        ),
        id="initial-waits-for-unknown-between-unhealthy-and-healthy",
    ),
    pytest.param(
        case(
            TWO,
            {"vendor": up(), "inhouse": UNKNOWN},
            None,
            ("vendor", Transition.INITIAL, "Initial"),
        ),
        id="initial-ignores-unknown-less-preferred",
    ),
    pytest.param(
        case(TWO, {}, None, (None, None, "AwaitingFirstProbes")),
        id="initial-nothing-probed",
    ),
    pytest.param(
        case(
            TWO, {"vendor": down(), "inhouse": down()}, None, (None, None, "AllBackendsUnhealthy")
        ),
        id="initial-all-unhealthy",
    ),
    pytest.param(
        case(
            TWO,
            {"vendor": down(), "inhouse": up()},
            "gone",
            ("inhouse", Transition.REROUTE, "ActiveBackendRemoved"),
        ),
        id="removed-active-reroutes-to-first-healthy",
    ),
    pytest.param(
        case(
            TWO,
            {"vendor": UNKNOWN, "inhouse": up(), "gone": up()},
            "gone",
            (None, None, "AwaitingFirstProbes"),
        ),
        id="removed-active-waits-for-unknown-preferred",
    ),
    pytest.param(
        case(
            TWO,
            {"vendor": down(), "inhouse": down(), "gone": up()},
            "gone",
            (None, None, "AllBackendsUnhealthy"),
        ),
        id="removed-active-all-unhealthy-fail-static",
    ),
]

ACTIVE_UNHEALTHY_OR_UNKNOWN = [
    pytest.param(
        case(
            TWO,
            {"vendor": down(), "inhouse": up()},
            "vendor",
            ("inhouse", Transition.FAILOVER, "ActiveBackendUnhealthy"),
        ),
        id="failover-to-next-healthy",
    ),
    pytest.param(
        case(
            THREE,
            {"a": up(for_seconds=1), "b": down(), "c": up()},
            "b",
            ("a", Transition.FAILOVER, "ActiveBackendUnhealthy"),
        ),
        id="failover-to-more-preferred-without-stabilization",
    ),
    pytest.param(
        case(
            THREE,
            {"a": down(), "b": UNKNOWN, "c": up()},
            "a",
            ("c", Transition.FAILOVER, "ActiveBackendUnhealthy"),
        ),
        id="failover-does-not-wait-for-unknown",
    ),
    pytest.param(
        case(
            make_spec(("a", 0), ("b", 1), ("c", 1)),
            {"a": down(), "b": up(), "c": up()},
            "a",
            ("b", Transition.FAILOVER, "ActiveBackendUnhealthy"),
        ),
        id="failover-tie-goes-to-list-order",
    ),
    pytest.param(
        case(
            THREE,
            {"a": down(), "b": down(), "c": UNKNOWN},
            "a",
            (None, None, "AllBackendsUnhealthy"),
        ),
        id="fail-static-when-nothing-healthy",
    ),
    pytest.param(
        case(
            TWO,
            {"vendor": UNKNOWN, "inhouse": up()},
            "vendor",
            ("vendor", None, "AwaitingFirstProbes"),
        ),
        id="active-unknown-stays",
    ),
    pytest.param(
        case(TWO, {"inhouse": up()}, "vendor", ("vendor", None, "AwaitingFirstProbes")),
        id="active-without-record-stays",
    ),
]

ACTIVE_HEALTHY = [
    pytest.param(
        case(TWO, {"vendor": up(), "inhouse": up()}, "vendor", ("vendor", None, "Steady")),
        id="steady-on-preferred",
    ),
    pytest.param(
        case(TWO, {"vendor": down(), "inhouse": up()}, "inhouse", ("inhouse", None, "Steady")),
        id="steady-while-preferred-unhealthy",
    ),
    pytest.param(
        case(
            TWO,
            {"vendor": up(for_seconds=60), "inhouse": up()},
            "inhouse",
            ("vendor", Transition.FAILBACK, "PreferredBackendRecovered"),
        ),
        id="automatic-failback-exactly-at-stabilization",
    ),
    pytest.param(
        case(
            TWO,
            {"vendor": up(for_seconds=59), "inhouse": up()},
            "inhouse",
            ("inhouse", None, "Steady"),
        ),
        id="automatic-no-failback-1s-before-stabilization",
    ),
    pytest.param(
        case(
            make_spec(("vendor", 0), ("inhouse", 1), stabilization=0),
            {"vendor": up(for_seconds=0), "inhouse": up()},
            "inhouse",
            ("vendor", Transition.FAILBACK, "PreferredBackendRecovered"),
        ),
        id="automatic-zero-stabilization-fails-back-at-once",
    ),
    pytest.param(
        case(
            THREE,
            {"a": down(), "b": up(), "c": up()},
            "c",
            ("b", Transition.FAILBACK, "PreferredBackendRecovered"),
        ),
        id="failback-skips-unhealthy-more-preferred",
    ),
    pytest.param(
        case(
            THREE,
            {"a": up(for_seconds=10), "b": up(), "c": up()},
            "c",
            ("c", None, "Steady"),
        ),
        id="failback-waits-for-most-preferred-to-stabilize",
    ),
    pytest.param(
        case(
            make_spec(("a", 1), ("b", 0), ("c", 0)),
            {"a": up(), "b": up(), "c": up()},
            "c",
            ("b", Transition.FAILBACK, "PreferredBackendRecovered"),
        ),
        id="failback-to-earlier-backend-of-same-priority",
    ),
    pytest.param(
        case(
            TWO,
            {"vendor": HealthRecord(healthy=True), "inhouse": up()},
            "inhouse",
            ("inhouse", None, "Steady"),
        ),
        id="automatic-unknown-healthy-since-is-not-stable",
    ),
    pytest.param(
        case(
            TWO,
            {"vendor": up(for_seconds=10), "inhouse": up()},
            "inhouse",
            ("inhouse", None, "Steady"),
            approved=True,
        ),
        id="automatic-ignores-approval",
    ),
]

MANUAL_SPEC = make_spec(("vendor", 0), ("inhouse", 1), mode=MANUAL)

MANUAL_MODE = [
    pytest.param(
        case(
            MANUAL_SPEC,
            {"vendor": up(for_seconds=60), "inhouse": up()},
            "inhouse",
            ("inhouse", None, "FailbackPending"),
            pending="vendor",
        ),
        id="manual-stable-not-approved-pending",
    ),
    pytest.param(
        case(
            MANUAL_SPEC,
            {"vendor": up(for_seconds=59), "inhouse": up()},
            "inhouse",
            ("inhouse", None, "Steady"),
        ),
        id="manual-not-yet-stable-not-pending",
    ),
    pytest.param(
        case(
            MANUAL_SPEC,
            {"vendor": up(for_seconds=60), "inhouse": up()},
            "inhouse",
            ("vendor", Transition.FAILBACK, "FailbackApproved"),
            approved=True,
        ),
        id="manual-approved-fails-back",
    ),
    pytest.param(
        case(
            MANUAL_SPEC,
            {"vendor": up(for_seconds=1), "inhouse": up()},
            "inhouse",
            ("vendor", Transition.FAILBACK, "FailbackApproved"),
            approved=True,
        ),
        id="manual-approved-skips-stabilization",
    ),
    pytest.param(
        case(
            MANUAL_SPEC,
            {"vendor": down(), "inhouse": up()},
            "inhouse",
            ("inhouse", None, "Steady"),
            approved=True,
        ),
        id="manual-approved-needs-healthy-preferred",
    ),
    pytest.param(
        case(
            MANUAL_SPEC,
            {"vendor": up(), "inhouse": up()},
            "vendor",
            ("vendor", None, "Steady"),
            approved=True,
        ),
        id="manual-approved-already-on-preferred",
    ),
    pytest.param(
        case(
            MANUAL_SPEC,
            {"vendor": down(), "inhouse": up()},
            "vendor",
            ("inhouse", Transition.FAILOVER, "ActiveBackendUnhealthy"),
        ),
        id="manual-failover-is-automatic",
    ),
]


@pytest.mark.parametrize(
    "row", NO_ACTIVE + ACTIVE_UNHEALTHY_OR_UNKNOWN + ACTIVE_HEALTHY + MANUAL_MODE
)
def test_decide(row: Case) -> None:
    decision = decide(row.spec, row.health, row.active, NOW, failback_approved=row.approved)
    assert (decision.target, decision.transition, decision.reason, decision.failback_pending) == (
        row.target,
        row.transition,
        row.reason,
        row.pending,
    )


@pytest.mark.parametrize(
    ("health", "active", "expected"),
    [
        pytest.param(
            {"vendor": down(message="connection failed: Connection refused"), "inhouse": up()},
            "vendor",
            "vendor failed 3 probes in a row (last: connection failed: Connection refused); "
            "moving traffic to inhouse",
            id="failover-names-from-to-and-why",
        ),
        pytest.param(
            {"vendor": up(for_seconds=75), "inhouse": up()},
            "inhouse",
            "vendor has been healthy for 75s (stabilization 60s); "
            "moving traffic back from inhouse to vendor",
            id="failback-names-from-to-and-why",
        ),
        pytest.param(
            {"vendor": up(), "inhouse": up()},
            "gone",
            "active backend gone was removed from spec; moving traffic to vendor",
            id="reroute-names-removed-and-new",
        ),
        pytest.param(
            {"vendor": down(failures=4, message="timeout"), "inhouse": down(message="HTTP 500")},
            "vendor",
            "vendor failed 4 probes in a row (last: timeout); no backend is healthy, "
            "routing stays on vendor",
            id="fail-static-says-routing-stays",
        ),
        pytest.param(
            {
                "vendor": HealthRecord(healthy=False, consecutive_successes=1, message="200 OK"),
                "inhouse": up(),
            },
            "vendor",
            "vendor is unhealthy (last: 200 OK); moving traffic to inhouse",
            id="failover-from-recovering-backend-does-not-claim-failures",
        ),
        pytest.param(
            {
                "vendor": down(
                    failures=2,
                    message="unauthorized (401): check authSecretRef: Incorrect API key provided",
                    reason=ProbeFailure.AUTH_FAILED,
                ),
                "inhouse": up(),
            },
            "vendor",
            "vendor failed 2 probes in a row (AuthFailed: unauthorized (401): check "
            "authSecretRef: Incorrect API key provided); moving traffic to inhouse",
            id="failover-names-the-failure-class",
        ),
        pytest.param(
            {
                "vendor": down(message="timeout after 2s", reason=ProbeFailure.UNAVAILABLE),
                "inhouse": down(message="", reason=ProbeFailure.SECRET_MISSING),
            },
            "vendor",
            "vendor failed 3 probes in a row (Unavailable: timeout after 2s); no backend is "
            "healthy, routing stays on vendor",
            id="fail-static-names-the-failure-class",
        ),
    ],
)
def test_decision_message(health: Mapping[str, HealthRecord], active: str, expected: str) -> None:
    assert decide(TWO, health, active, NOW).message == expected


def test_manual_pending_message_tells_the_admin_how_to_approve() -> None:
    decision = decide(MANUAL_SPEC, {"vendor": up(), "inhouse": up()}, "inhouse", NOW)
    assert "modelroute.dev/approve-failback" in decision.message
    assert "inhouse" in decision.message and "vendor" in decision.message


@pytest.mark.parametrize(
    ("health", "active", "expected"),
    [
        pytest.param(
            {"vendor": up(), "inhouse": up()},
            "vendor",
            (False, "AllBackendsHealthy"),
            id="on-preferred-all-healthy",
        ),
        pytest.param(
            {"vendor": up(), "inhouse": UNKNOWN},
            "vendor",
            (False, "AllBackendsHealthy"),
            id="unknown-is-not-unhealthy",
        ),
        pytest.param(
            {"vendor": up(), "inhouse": up()},
            "inhouse",
            (True, "NotOnPreferredBackend"),
            id="failback-pending-is-degraded",
        ),
        pytest.param(
            {"vendor": up(), "inhouse": down()},
            "vendor",
            (True, "BackendUnhealthy"),
            id="unhealthy-standby-is-degraded",
        ),
        pytest.param(
            {"vendor": down(), "inhouse": up()},
            "inhouse",
            (True, "BackendUnhealthy"),
            id="failed-over-reports-the-cause",
        ),
        pytest.param({}, None, (True, "NoActiveBackend"), id="no-active-backend"),
        pytest.param(
            {"vendor": up(), "inhouse": up()},
            "gone",
            (True, "NotOnPreferredBackend"),
            id="active-removed-from-spec",
        ),
    ],
)
def test_is_degraded(
    health: Mapping[str, HealthRecord], active: str | None, expected: tuple[bool, str]
) -> None:
    degraded, reason, _ = is_degraded(TWO, health, active)
    assert (degraded, reason) == expected


def test_degraded_message_names_unhealthy_backends_and_where_traffic_is() -> None:
    spec = make_spec(("vendor", 0), ("inhouse", 1), ("spare", 2))
    health = {"vendor": down(), "inhouse": up(), "spare": down()}
    _, _, message = is_degraded(spec, health, "inhouse")
    assert message == (
        "unhealthy: vendor, spare; traffic is on inhouse instead of the preferred backend vendor"
    )


# --- simulated runs --------------------------------------------------------------------------

T0 = datetime(2025, 1, 1, tzinfo=UTC)
NAMES = ("b0", "b1", "b2", "b3", "b4")


@dataclass(frozen=True)
class Tick:
    """Simulated time passing; then every present backend due for a probe finishes one."""

    seconds: int
    toggle: int | None  # remove this backend from spec, or add it back
    approve: bool  # an admin approved failback (Manual mode)


@dataclass(frozen=True)
class Scenario:
    backends: tuple[Backend, ...]
    failback: FailbackSpec
    ticks: tuple[Tick, ...]
    # Per backend, per tick: success, failure, or None when no probe finished in that tick.
    outcomes: tuple[tuple[bool | None, ...], ...]


def outcome_sequence(tick_count: int) -> st.SearchStrategy[tuple[bool | None, ...]]:
    """Runs of successes and failures (long enough to cross thresholds), probed every k ticks.

    The first probe may come a few ticks late, so other backends get decided on while this one
    is still unknown.
    """
    runs = st.lists(
        st.tuples(st.sampled_from([True, True, False]), st.integers(1, 8)), min_size=2, max_size=10
    )

    def expand(drawn: tuple[list[tuple[bool, int]], int, int]) -> tuple[bool | None, ...]:
        run_list, every, first = drawn
        results = [ok for ok, length in run_list for _ in range(length)]
        results += [results[-1]] * tick_count  # the last run lasts to the end
        return tuple(
            result if tick >= first and (tick - first) % every == 0 else None
            for tick, result in enumerate(results[:tick_count])
        )

    return st.tuples(runs, st.integers(1, 3), st.integers(0, 3)).map(expand)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    count = draw(st.integers(1, 5))
    backends = tuple(
        Backend(
            name=NAMES[i],
            priority=draw(st.integers(0, 3)),
            model="m",
            probe=ProbeOverride(
                failure_threshold=draw(st.integers(1, 4)),
                success_threshold=draw(st.integers(1, 4)),
            ),
        )
        for i in range(count)
    )
    failback = FailbackSpec(
        mode=draw(st.sampled_from(FailbackMode)), stabilization_seconds=draw(st.integers(0, 30))
    )
    tick = st.builds(
        Tick,
        seconds=st.integers(1, 10),
        # Rare membership changes and approvals: on every tick they would hide the dynamics.
        toggle=st.integers(-40, count - 1).map(lambda i: i if i >= 0 else None),
        approve=st.integers(0, 5).map(lambda i: i == 0),
    )
    ticks = draw(st.lists(tick, min_size=10, max_size=50))
    outcomes = tuple(draw(outcome_sequence(len(ticks))) for _ in range(count))
    return Scenario(backends, failback, tuple(ticks), outcomes)


@dataclass
class Observer:
    """Facts about each backend, derived from raw outcomes, not from the record's counters."""

    failure_run: dict[str, int] = field(default_factory=dict)
    success_run: dict[str, int] = field(default_factory=dict)
    # Run length when the backend last went healthy -> unhealthy (or back); None when it came
    # from unknown, where the first probe decides and there is nothing to flap from.
    failure_run_at_fall: dict[str, int | None] = field(default_factory=dict)
    success_run_at_rise: dict[str, int | None] = field(default_factory=dict)
    became_healthy_at: dict[str, datetime] = field(default_factory=dict)

    def forget(self, name: str) -> None:
        for facts in (
            self.failure_run,
            self.success_run,
            self.failure_run_at_fall,
            self.success_run_at_rise,
            self.became_healthy_at,
        ):
            facts.pop(name, None)

    def saw(
        self, name: str, ok: bool, before: HealthRecord, after: HealthRecord, now: datetime
    ) -> None:
        self.failure_run[name] = 0 if ok else self.failure_run.get(name, 0) + 1
        self.success_run[name] = self.success_run.get(name, 0) + 1 if ok else 0
        if before.healthy is not True and after.healthy is True:
            self.became_healthy_at[name] = now
            rise = None if before.healthy is None else self.success_run[name]
            self.success_run_at_rise[name] = rise
        if before.healthy is not False and after.healthy is False:
            fall = None if before.healthy is None else self.failure_run[name]
            self.failure_run_at_fall[name] = fall


class Simulation:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.present = [backend.name for backend in scenario.backends]
        self.spec = self._spec()
        self.health: dict[str, HealthRecord] = {}
        self.active: str | None = None
        self.now = T0
        self.observer = Observer()

    def _spec(self) -> ModelRouteSpec:
        backends = [b for b in self.scenario.backends if b.name in self.present]
        return ModelRouteSpec(
            service=ServiceSpec(name="chat-llm", port=80),
            backends=backends,
            failback=self.scenario.failback,
        )

    def toggle(self, index: int | None) -> None:
        if index is None:
            return
        name = NAMES[index]
        if name in self.present:
            if len(self.present) == 1:
                return  # a route needs at least one backend
            self.present.remove(name)
            # A removed backend leaves status; if it comes back it starts unknown.
            self.health.pop(name, None)
            self.observer.forget(name)
        else:
            self.present.append(name)
        self.spec = self._spec()

    def probe(self, tick: int) -> None:
        for backend, sequence in zip(self.scenario.backends, self.scenario.outcomes, strict=True):
            ok = sequence[tick]
            if ok is None or backend.name not in self.present:
                continue
            before = self.health.get(backend.name, HealthRecord())
            outcome = ProbeOutcome(ok, 5, "ok" if ok else "HTTP 503", self.now)
            after = fold(before, outcome, self.spec.effective_probe(backend))
            self.health[backend.name] = after
            self.observer.saw(backend.name, ok, before, after, self.now)

    def healthy(self, name: str | None) -> bool | None:
        return None if name is None else self.health.get(name, HealthRecord()).healthy


def check_routes_only_to_healthy(sim: Simulation, decision: Decision) -> None:
    """(a) Never route to a backend known unhealthy while a healthy one exists."""
    any_healthy = any(sim.healthy(name) for name in sim.present)
    if decision.transition is not None:
        assert sim.healthy(decision.target) is True
    if decision.target is not None and any_healthy:
        assert sim.healthy(decision.target) is not False
    if any_healthy and sim.active in sim.present and sim.healthy(sim.active) is False:
        assert decision.target is not None and decision.target != sim.active


def check_no_flapping(sim: Simulation, decision: Decision, approved: bool) -> None:
    """(b) Traffic moves only as fast as the thresholds and stabilization allow."""
    if decision.transition is None:
        return
    assert decision.target is not None
    check_target_recovered_fully(sim, decision.target)
    if decision.transition in (Transition.INITIAL, Transition.REROUTE):
        assert (sim.active is None) is (decision.transition == Transition.INITIAL)
        assert sim.active not in sim.present
        check_no_better_backend_unanswered(sim, decision.target)
    elif decision.transition == Transition.FAILOVER:
        assert sim.active is not None
        check_left_after_threshold_failures(sim, sim.active)
    elif sim.spec.failback.mode == FailbackMode.AUTOMATIC:
        healthy_for = sim.now - sim.observer.became_healthy_at[decision.target]
        assert healthy_for >= timedelta(seconds=sim.spec.failback.stabilization_seconds)
    else:
        assert approved


def check_target_recovered_fully(sim: Simulation, target: str) -> None:
    """A backend that was unhealthy takes traffic only after successThreshold successes."""
    run_at_rise = sim.observer.success_run_at_rise[target]
    threshold = sim.spec.effective_probe(_backend(sim, target)).success_threshold
    assert run_at_rise is None or run_at_rise >= threshold


def check_no_better_backend_unanswered(sim: Simulation, target: str) -> None:
    """A first choice does not settle for a backend while a preferred one has not answered."""
    order = [backend.name for backend in sim.spec.preference_order()]
    assert all(sim.healthy(name) is not None for name in order[: order.index(target)])


def check_left_after_threshold_failures(sim: Simulation, left: str) -> None:
    """A healthy backend loses traffic only after failureThreshold failures in a row."""
    assert sim.healthy(left) is False
    run_at_fall = sim.observer.failure_run_at_fall[left]
    threshold = sim.spec.effective_probe(_backend(sim, left)).failure_threshold
    assert run_at_fall is None or run_at_fall >= threshold


def check_idempotent(sim: Simulation, decision: Decision, approved: bool) -> None:
    """(c) Once the target is applied, the same inputs ask for no further move."""
    applied = decision.target if decision.target is not None else sim.active
    again = decide(sim.spec, sim.health, applied, sim.now, failback_approved=approved)
    assert again.transition is None
    assert again.target in (None, applied)


def _backend(sim: Simulation, name: str) -> Backend:
    return next(b for b in sim.spec.backends if b.name == name)


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_simulated_run_keeps_the_routing_invariants(scenario: Scenario) -> None:
    sim = Simulation(scenario)
    for index, tick in enumerate(scenario.ticks):
        sim.toggle(tick.toggle)
        sim.now += timedelta(seconds=tick.seconds)
        sim.probe(index)
        decision = decide(sim.spec, sim.health, sim.active, sim.now, failback_approved=tick.approve)
        check_routes_only_to_healthy(sim, decision)
        check_no_flapping(sim, decision, tick.approve)
        check_idempotent(sim, decision, tick.approve)
        event(f"decision: {decision.reason}")
        if decision.target is not None:
            sim.active = decision.target


def test_no_healthy_backend_lists_each_failure_class() -> None:
    health = {
        "vendor": down(message="rate limited (429)", reason=ProbeFailure.RATE_LIMITED),
        "inhouse": down(message="", reason=ProbeFailure.MODEL_NOT_SERVED),
    }
    decision = decide(TWO, health, None, NOW)
    assert decision.reason is DecisionReason.ALL_BACKENDS_UNHEALTHY
    assert decision.message == (
        "no backend is healthy (vendor: RateLimited: rate limited (429), inhouse: ModelNotServed)"
    )
