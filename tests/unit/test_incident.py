"""Tests for the incident controls in plan(): spec.suspend and spec.drill (core/incident.py,
core/drill.py), on an injected clock.

A :class:`Game` plays the worker: probe results of healthy backends every 5 s, folded through the
drill overlay as the health feed folds them, then one plan carried out per tick.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest

from modelroute.api.models import ModelRouteSpec
from modelroute.api.status import DrillPhase, DrillStatus, ModelRouteStatus
from modelroute.api.validation import problems
from modelroute.core import drill
from modelroute.core.health import ProbeOutcome, fold
from modelroute.core.plan import Plan, PlanInput, plan
from modelroute.core.types import (
    ConditionType,
    DegradedReason,
    EventType,
    IncidentEvent,
    ReadyReason,
    ReconcilingReason,
    StalledReason,
    TrafficSplit,
    Transition,
)
from tests.unit.test_health_lua import argo_health, kstatus
from tests.unit.test_plan import NOW, cond, down, given_, up
from tests.unit.test_policy import make_spec
from tests.unit.test_ramp import STAGED, Route, at

READY, DEGRADED = ConditionType.READY, ConditionType.DEGRADED
RECONCILING, STALLED = ConditionType.RECONCILING, ConditionType.STALLED
TWO = make_spec(("vendor", 0), ("inhouse", 1), stabilization=60)
UNTIL = NOW + timedelta(seconds=60)


def drilled(
    spec: ModelRouteSpec, backend: str = "vendor", until: datetime = UNTIL
) -> ModelRouteSpec:
    return spec.model_copy(update={"drill": drill.DrillSpec(backend=backend, until=until)})


def suspended(spec: ModelRouteSpec, on: bool = True) -> ModelRouteSpec:
    return spec.model_copy(update={"suspend": on})


class Game:
    """The worker's part, on an injected clock: probe every backend, plan, carry the plan out."""

    def __init__(self, spec: ModelRouteSpec, routed: str = "vendor") -> None:
        self.spec = spec
        self.records = {b.name: up(since=NOW - timedelta(hours=1)) for b in spec.backends}
        self.routed: TrafficSplit | None = TrafficSplit.single(routed)
        self.status = ModelRouteStatus()
        self.events: list[tuple[str, str]] = []
        self.now = NOW  # the next tick

    def probe(self, now: datetime, ok: bool = True) -> None:
        probe = self.spec.probe
        for name, record in self.records.items():
            outcome = ProbeOutcome(ok, 10, "model listed" if ok else "HTTP 503", now)
            self.records[name] = fold(record, drill.overlay(outcome, name, self.spec.drill), probe)

    def given(self, now: datetime) -> PlanInput:
        """The next reconcile's input: the status of the last plan was written."""
        return PlanInput(
            spec=self.spec,
            generation=2,
            records=dict(self.records),
            routed=self.routed,
            previous=self.status,
            written=self.status,
            approval=None,
            now=now,
        )

    def plan(self, now: datetime) -> Plan:
        result = plan(self.given(now))
        if result.split is not None:
            self.routed = result.split
        self.status = result.status
        self.events += [(e.reason, e.message) for e in result.events]
        return result

    def run(self, until: datetime, step: int = 5) -> None:
        """Tick every ``step`` seconds from where the game stands, up to ``until`` included."""
        while self.now <= until:
            self.probe(self.now)
            self.plan(self.now)
            self.now += timedelta(seconds=step)

    def reasons(self) -> list[str]:
        return [reason for reason, _ in self.events]


# --- drills -------------------------------------------------------------------------------------


def test_overlay_reads_the_drilled_backends_successes_as_failures_until_the_end() -> None:
    spec = drilled(TWO)
    ok = ProbeOutcome(True, 12, "model gpt-4o listed", UNTIL - timedelta(seconds=1))
    read = drill.overlay(ok, "vendor", spec.drill)
    assert (read.ok, read.reason, read.latency_ms, read.finished_at) == (
        False,
        None,
        12,
        ok.finished_at,
    )
    assert read.message.startswith("drill until ") and "model gpt-4o listed" in read.message
    assert drill.overlay(ok, "inhouse", spec.drill) is ok  # another backend
    assert drill.overlay(ok, "vendor", None) is ok  # no drill
    at_end = dataclasses.replace(ok, finished_at=UNTIL)
    assert drill.overlay(at_end, "vendor", spec.drill) is at_end  # the drill is over
    failed = ProbeOutcome(False, None, "connection refused", ok.finished_at)
    assert drill.overlay(failed, "vendor", spec.drill) is failed  # a real failure stays real


def test_a_drill_fails_over_and_back_on_a_healthy_system_marked_as_drill() -> None:
    game = Game(drilled(TWO))
    game.run(NOW)  # the drill begins
    assert game.status.drill == DrillStatus(backend="vendor", until=UNTIL, phase=DrillPhase.ACTIVE)
    assert game.reasons() == [IncidentEvent.DRILL_STARTED]
    degraded = cond(game.status, DEGRADED)
    assert (degraded.status, degraded.reason) == ("True", DegradedReason.DRILL)
    assert degraded.message.startswith("drill until ")

    game.run(NOW + timedelta(seconds=10))  # three drilled probes: the real failover
    assert game.routed == TrafficSplit.single("inhouse")
    reason, message = game.events[-1]
    assert reason == Transition.FAILOVER and message.startswith(drill.PREFIX)
    assert "vendor failed 3 probes in a row" in message
    assert cond(game.status, READY).status == "True"  # traffic is served: a real failover
    assert game.status.backends[0].message.startswith("drill until ")

    game.run(UNTIL)  # the drill ends by itself; the first real probe counts
    assert game.status.drill is not None and game.status.drill.phase is DrillPhase.RECOVERING
    assert IncidentEvent.DRILL_ENDED in game.reasons()
    assert game.routed == TrafficSplit.single("inhouse")  # normal failback rules: not yet

    game.run(UNTIL + timedelta(seconds=65))  # successThreshold, then stabilizationSeconds
    assert game.routed == TrafficSplit.single("vendor")
    reason, message = game.events[-1]
    assert reason == Transition.FAILBACK and message.startswith(drill.PREFIX)
    assert game.status.drill is None
    assert cond(game.status, DEGRADED).reason == DegradedReason.ALL_BACKENDS_HEALTHY
    assert game.reasons() == [
        IncidentEvent.DRILL_STARTED,
        Transition.FAILOVER,
        IncidentEvent.DRILL_ENDED,
        Transition.FAILBACK,
    ]
    assert game.status.failover_count == 2


def test_failback_waits_for_stabilization_counted_from_the_drills_end() -> None:
    game = Game(drilled(TWO))
    game.run(UNTIL + timedelta(seconds=55))
    # Healthy again after 2 real probes (UNTIL + 5 s): stabilization ends at UNTIL + 65 s.
    assert game.routed == TrafficSplit.single("inhouse")
    game.run(UNTIL + timedelta(seconds=65))
    assert game.routed == TrafficSplit.single("vendor")


def test_the_drill_end_is_a_recheck() -> None:
    game = Game(drilled(TWO))
    first = game.plan(NOW)
    assert first.recheck_at == UNTIL


def test_a_real_failure_after_the_drill_ends_the_drill() -> None:
    game = Game(drilled(TWO))
    game.run(UNTIL - timedelta(seconds=5))
    game.records["vendor"] = down(failures=1)
    game.records["vendor"] = dataclasses.replace(game.records["vendor"], last_probe_time=UNTIL)
    game.plan(UNTIL)
    assert game.status.drill is None
    assert IncidentEvent.DRILL_ENDED in game.reasons()


def test_a_drilled_standby_recovers_without_traffic_moving() -> None:
    game = Game(drilled(TWO, backend="inhouse"))
    game.run(UNTIL + timedelta(seconds=10))
    assert game.routed == TrafficSplit.single("vendor")
    assert Transition.FAILOVER not in game.reasons()
    assert game.status.drill is None
    assert game.reasons() == [IncidentEvent.DRILL_STARTED, IncidentEvent.DRILL_ENDED]


def test_a_drill_that_already_ended_does_nothing() -> None:
    game = Game(drilled(TWO, until=NOW - timedelta(minutes=1)))
    game.run(NOW + timedelta(seconds=20))
    assert (game.status.drill, game.events) == (None, [])
    assert game.routed == TrafficSplit.single("vendor")


def test_a_steady_drill_writes_nothing() -> None:
    game = Game(drilled(TWO))
    game.run(NOW + timedelta(seconds=20))
    again = plan(game.given(NOW + timedelta(seconds=25)))
    assert (again.write_status, again.events) == (False, ())


def test_the_drill_is_neither_reconciling_nor_stalled() -> None:
    game = Game(drilled(TWO))
    game.run(NOW + timedelta(seconds=10))
    assert cond(game.status, RECONCILING).status == "False"
    assert cond(game.status, STALLED).status == "False"


@pytest.mark.parametrize(
    ("drill_spec", "expected"),
    [
        (
            {"backend": "claude", "until": "2026-12-01T15:00:00Z"},
            "spec.drill.backend: no backend is named 'claude' (backends: vendor, inhouse)",
        ),
        (
            {"backend": "vendor", "until": "2026-12-01T15:00:00"},
            "spec.drill.until: needs a time zone",
        ),
    ],
)
def test_a_bad_drill_is_invalid_naming_the_field(drill_spec: dict[str, str], expected: str) -> None:
    spec = ModelRouteSpec.model_validate({**TWO.to_wire(), "drill": drill_spec})
    assert any(p.startswith(expected) for p in problems(spec, ["Service"]))


# --- suspend -------------------------------------------------------------------------------------


def test_suspended_routing_is_never_written_while_health_goes_on() -> None:
    given = given_({"vendor": down(), "inhouse": up()}, "vendor", spec=suspended(TWO))
    result = plan(given)
    assert result.split is None and not result.moved
    ready = cond(result.status, READY)
    assert (ready.status, ready.reason) == ("False", ReadyReason.SUSPENDED)
    assert "traffic stays where it is (vendor 100%)" in ready.message
    assert "would move traffic to inhouse 100%" in ready.message
    assert cond(result.status, DEGRADED).status == "True"  # health is still tracked
    assert result.status.active_backend == "vendor"
    assert [b.healthy for b in result.status.backends] == [False, True]
    assert [(e.type, e.reason) for e in result.events] == [
        (EventType.NORMAL, IncidentEvent.SUSPENDED)
    ]
    assert result.status.failover_count == 0


def test_suspended_is_current_for_kstatus_and_suspended_for_argo_cd() -> None:
    result = plan(given_({"vendor": up(), "inhouse": up()}, "vendor", spec=suspended(TWO)))
    rec, stalled = cond(result.status, RECONCILING), cond(result.status, STALLED)
    assert (rec.status, rec.reason) == ("False", ReconcilingReason.SUSPENDED)
    assert (stalled.status, stalled.reason) == ("False", StalledReason.NOT_STALLED)
    obj = {
        "apiVersion": "modelroute.dev/v1alpha1",
        "kind": "ModelRoute",
        "metadata": {"name": "chat", "namespace": "ai", "generation": 7},
        "status": result.status.to_wire(),
    }
    assert kstatus(obj)[0] == "Current"
    assert argo_health(obj)["status"] == "Suspended"


def test_a_steady_suspension_writes_nothing_and_resuming_routes_at_once() -> None:
    spec = suspended(TWO)
    first = plan(given_({"vendor": down(), "inhouse": up()}, "vendor", spec=spec))
    given = given_(
        {"vendor": down(), "inhouse": up()},
        "vendor",
        spec=spec,
        previous=first.status,
        written=first.status,
        now=NOW + timedelta(minutes=5),
    )
    again = plan(given)
    assert (again.write_status, again.events, again.split) == (False, (), None)
    resumed = plan(dataclasses.replace(given, spec=suspended(TWO, on=False)))
    assert resumed.split == TrafficSplit.single("inhouse")
    assert [e.reason for e in resumed.events] == [Transition.FAILOVER, IncidentEvent.RESUMED]
    assert cond(resumed.status, READY).reason == ReadyReason.ROUTED
    assert resumed.status.failover_count == 1


def test_nothing_routed_yet_while_suspended() -> None:
    result = plan(given_({"vendor": up(), "inhouse": up()}, None, spec=suspended(TWO)))
    assert result.split is None
    message = cond(result.status, READY).message
    assert "nothing is routed yet" in message and "would move traffic to vendor 100%" in message


def test_a_routing_problem_while_suspended_is_in_the_message() -> None:
    from tests.unit.test_plan import GONE

    given = given_({"vendor": up(), "inhouse": up()}, "vendor", spec=suspended(TWO), problem=GONE)
    ready = cond(plan(given).status, READY)
    assert ready.reason == ReadyReason.SUSPENDED and GONE.message in ready.message


def test_a_suspension_holds_a_staged_failback_where_it_stands() -> None:
    route = Route(STAGED, "inhouse")
    started = route.plan(at(0))
    assert started.status.failback is not None
    route.spec = suspended(STAGED)
    held = route.plan(at(10))
    assert held.split is None
    assert held.status.failback == started.status.failback
    assert route.routed == started.split
    assert cond(held.status, RECONCILING).reason == ReconcilingReason.SUSPENDED


def test_a_drill_while_suspended_moves_nothing() -> None:
    game = Game(suspended(drilled(TWO)))
    game.run(NOW + timedelta(seconds=20))
    assert game.routed == TrafficSplit.single("vendor")
    assert game.status.drill is not None
    assert cond(game.status, READY).reason == ReadyReason.SUSPENDED
    assert "would move traffic to inhouse" in cond(game.status, READY).message


def test_the_incident_controls_example_is_valid() -> None:
    import yaml

    from modelroute import routing
    from tests.harness.apiserver import REPO_ROOT

    body = yaml.safe_load((REPO_ROOT / "examples" / "incident-controls.yaml").read_text())
    spec = ModelRouteSpec.model_validate(body["spec"])
    assert routing.spec_problems(spec) == []
    assert (spec.routing.deletion_policy, spec.routing.adopt, spec.suspend) == (
        "Retain",
        False,
        False,
    )
    assert spec.drill is not None and spec.drill.backend == "vendor"


def test_a_staged_failback_after_a_drill_is_marked_and_reconciling() -> None:
    game = Game(drilled(STAGED))
    game.run(UNTIL)
    assert game.routed == TrafficSplit.single("inhouse")
    reconciling: list[str] = []
    while game.routed != TrafficSplit.single("vendor") and game.now < UNTIL + timedelta(minutes=5):
        game.run(game.now, step=1)
        reconciling.append(cond(game.status, RECONCILING).reason)
        if game.status.failback is not None:
            assert game.status.drill is not None
            assert game.status.drill.phase is DrillPhase.RECOVERING
    assert game.routed == TrafficSplit.single("vendor")
    assert ReconcilingReason.FAILBACK_IN_PROGRESS in reconciling
    moves = [(r, m) for r, m in game.events if r in set(Transition)]
    assert [r for r, _ in moves] == [
        Transition.FAILOVER,
        Transition.FAILBACK_STEP,
        Transition.FAILBACK_STEP,
        Transition.FAILBACK,
    ]
    assert all(m.startswith(drill.PREFIX) for _, m in moves)
    assert game.status.drill is None
