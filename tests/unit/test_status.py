"""Tests for building status from health and decisions, and for when status is worth a write."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import pytest

from modelroute.api.models import FailbackMode, ModelRouteSpec
from modelroute.api.status import Condition, ConditionStatus, ModelRouteStatus
from modelroute.core import policy
from modelroute.core.conditions import get_condition
from modelroute.core.health import HealthRecord, ProbeOutcome, fold
from modelroute.core.status import (
    DEGRADED,
    READY,
    Problem,
    accepted,
    build_invalid_status,
    build_status,
    needs_write,
    pruned,
    pruned_paths,
)
from modelroute.core.types import ProbeFailure, TrafficSplit

TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)


def make_spec(
    mode: str = "Automatic", inhouse_probe: dict[str, Any] | None = None
) -> ModelRouteSpec:
    inhouse: dict[str, Any] = {
        "name": "inhouse",
        "priority": 1,
        "serviceRef": {"name": "llama-vllm", "port": 8000},
        "model": "llama",
    }
    if inhouse_probe:
        inhouse["probe"] = inhouse_probe
    return ModelRouteSpec.model_validate(
        {
            "service": {"name": "chat-llm", "port": 80},
            "backends": [
                {
                    "name": "vendor",
                    "priority": 0,
                    "serviceRef": {"name": "vendor-egress", "port": 8080},
                    "model": "gpt-4o",
                },
                inhouse,
            ],
            "probe": {"failureThreshold": 3, "successThreshold": 2},
            "failback": {"mode": mode, "stabilizationSeconds": 60},
        }
    )


SPEC = make_spec()
MANUAL = make_spec(mode=FailbackMode.MANUAL)


def up(successes: int = 2, since: datetime = T0, **extra: Any) -> HealthRecord:
    fields: dict[str, Any] = {"last_probe_time": NOW, "latency_ms": 40, "message": "HTTP 200"}
    fields.update(extra)
    return HealthRecord(
        healthy=True, consecutive_successes=successes, healthy_since=since, **fields
    )


def down(failures: int = 3, message: str = "HTTP 503", **extra: Any) -> HealthRecord:
    fields: dict[str, Any] = {"last_probe_time": NOW, "latency_ms": 12}
    fields.update(extra)
    return HealthRecord(healthy=False, consecutive_failures=failures, message=message, **fields)


def build(
    records: Mapping[str, HealthRecord],
    active: str | None,
    *,
    spec: ModelRouteSpec = SPEC,
    previous: ModelRouteStatus | None = None,
    problem: Problem | None = None,
    moved: bool = False,
    now: datetime = NOW,
    approval: str | None = None,
) -> ModelRouteStatus:
    decision = policy.decide(spec, records, active, now)
    return build_status(
        previous=previous or ModelRouteStatus(),
        spec=spec,
        generation=3,
        records=records,
        traffic=TrafficSplit.single(active) if active else None,
        decision=decision,
        problem=problem,
        moved=moved,
        failback_approval=approval,
        now=now,
    )


def cond(status: ModelRouteStatus, ctype: str) -> Condition:
    found = get_condition(status.conditions, ctype)
    assert found is not None, f"no {ctype} condition"
    return found


class Row(NamedTuple):
    records: Mapping[str, HealthRecord]
    active: str | None
    ready: tuple[ConditionStatus, str]
    degraded: tuple[ConditionStatus, str]
    healthy: str
    spec: ModelRouteSpec = SPEC
    problem: Problem | None = None


MISSING = Problem("TargetServiceMissing", "Service ai/llama-vllm of backend inhouse is missing")

TABLE = [
    pytest.param(
        Row({"vendor": up(), "inhouse": up()}, "vendor", (TRUE, "Routed"),
            (FALSE, "AllBackendsHealthy"), "2/2"),
        id="preferred-active-all-healthy",
    ),
    pytest.param(
        Row({"vendor": down(), "inhouse": up()}, "inhouse", (TRUE, "Routed"),
            (TRUE, "BackendUnhealthy"), "1/2"),
        id="failed-over",
    ),
    pytest.param(
        Row({"vendor": up(since=NOW), "inhouse": up()}, "inhouse", (TRUE, "Routed"),
            (TRUE, "NotOnPreferredBackend"), "2/2"),
        id="failback-stabilizing",
    ),
    pytest.param(
        Row({"vendor": up(), "inhouse": up()}, "inhouse", (TRUE, "Routed"),
            (TRUE, "FailbackPending"), "2/2", spec=MANUAL),
        id="manual-failback-pending",
    ),
    pytest.param(
        Row({"vendor": down(), "inhouse": down()}, "vendor", (FALSE, "AllBackendsUnhealthy"),
            (TRUE, "BackendUnhealthy"), "0/2"),
        id="all-unhealthy-fail-static",
    ),
    pytest.param(
        Row({"vendor": down(), "inhouse": down()}, None, (FALSE, "AllBackendsUnhealthy"),
            (TRUE, "BackendUnhealthy"), "0/2"),
        id="all-unhealthy-nothing-routed",
    ),
    pytest.param(
        Row({}, None, (FALSE, "AwaitingFirstProbes"), (TRUE, "NoActiveBackend"), "0/2"),
        id="awaiting-first-probes",
    ),
    pytest.param(
        Row({"inhouse": up()}, None, (FALSE, "AwaitingFirstProbes"), (TRUE, "NoActiveBackend"),
            "1/2"),
        id="waits-for-preferred-first-probe",
    ),
    pytest.param(
        Row({"vendor": up(), "inhouse": up()}, "vendor", (FALSE, "TargetServiceMissing"),
            (FALSE, "AllBackendsHealthy"), "2/2", problem=MISSING),
        id="problem-with-health",
    ),
    pytest.param(
        Row({}, None, (FALSE, "TargetServiceMissing"), (UNKNOWN, "TargetServiceMissing"), "0/2",
            problem=MISSING),
        id="problem-before-any-probe",
    ),
]  # fmt: skip


@pytest.mark.parametrize("row", TABLE)
def test_build_status_conditions(row: Row) -> None:
    status = build(row.records, row.active, spec=row.spec, problem=row.problem)
    ready, degraded = cond(status, READY), cond(status, DEGRADED)
    assert (ready.status, ready.reason) == row.ready
    assert (degraded.status, degraded.reason) == row.degraded
    assert status.healthy_backends == row.healthy
    assert status.active_backend == row.active
    assert status.observed_generation == 3
    assert ready.observed_generation == degraded.observed_generation == 3
    assert [c.type for c in status.conditions] == [READY, DEGRADED]
    if row.problem is None:
        expected_degraded = policy.is_degraded(row.spec, row.records, row.active)
        if degraded.reason != "FailbackPending":
            assert (degraded.status == TRUE, degraded.reason, degraded.message) == (
                expected_degraded
            )
    else:
        assert ready.message == row.problem.message


def test_ready_message_when_routed() -> None:
    status = build({"vendor": up(), "inhouse": up()}, "vendor")
    assert cond(status, READY).message == "traffic goes to backend vendor"


def test_all_unhealthy_message_says_fail_static() -> None:
    status = build({"vendor": down(), "inhouse": down()}, "inhouse")
    message = cond(status, READY).message
    assert "fail-static" in message
    assert "inhouse" in message
    assert "no backend of 2 is healthy" in message


def test_failback_pending_message_tells_how_to_approve() -> None:
    status = build({"vendor": up(), "inhouse": up()}, "inhouse", spec=MANUAL)
    message = cond(status, DEGRADED).message
    assert "vendor" in message
    assert "inhouse" in message
    assert "modelroute.dev/approve-failback" in message


def test_backends_follow_spec_order_and_only_probed_ones() -> None:
    records = {"inhouse": down(message="timeout"), "vendor": up(), "removed": up()}
    status = build(records, "vendor")
    assert [b.name for b in status.backends] == ["vendor", "inhouse"]
    inhouse = status.backends[1]
    assert (inhouse.healthy, inhouse.consecutive_failures, inhouse.message) == (
        False,
        3,
        "timeout",
    )
    assert status.healthy_backends == "1/2"


PREVIOUS = ModelRouteStatus(failover_count=4, last_failover_time=T0)


@pytest.mark.parametrize(
    ("moved", "count", "when"),
    [pytest.param(False, 4, T0, id="stayed"), pytest.param(True, 5, NOW, id="moved")],
)
def test_failover_counters_move_only_when_moved(moved: bool, count: int, when: datetime) -> None:
    status = build({"vendor": down(), "inhouse": up()}, "inhouse", previous=PREVIOUS, moved=moved)
    assert status.failover_count == count
    assert status.last_failover_time == when


def test_failback_approval_is_recorded() -> None:
    status = build({"vendor": up(), "inhouse": up()}, "vendor", approval="1735732800")
    assert status.failback_approval == "1735732800"


def test_last_transition_time_kept_while_status_unchanged() -> None:
    healthy = {"vendor": up(), "inhouse": up()}
    first = build(healthy, "vendor", now=T0)
    later = T0 + timedelta(minutes=5)
    # Same statuses, different reason/message for Degraded: still no transition.
    second = build({"vendor": up(), "inhouse": down()}, "vendor", previous=first, now=later)
    assert cond(second, READY).last_transition_time == T0
    assert cond(second, DEGRADED).status == TRUE
    assert cond(second, DEGRADED).last_transition_time == later
    third = build(healthy, "vendor", previous=second, now=later + timedelta(minutes=1))
    assert cond(third, READY).last_transition_time == T0


# --- needs_write ---------------------------------------------------------------------------


def records_at(**changes: HealthRecord) -> dict[str, HealthRecord]:
    return {"vendor": up(), "inhouse": down(), **changes}


BASE = build(records_at(), "vendor")

NO_WRITE = [
    pytest.param(
        build(records_at(vendor=up(last_probe_time=NOW + timedelta(seconds=5))), "vendor"),
        id="lastProbeTime",
    ),
    pytest.param(build(records_at(vendor=up(latency_ms=900)), "vendor"), id="latencyMs"),
    pytest.param(build(records_at(vendor=up(successes=50)), "vendor"), id="successes-beyond"),
    pytest.param(build(records_at(inhouse=down(failures=40)), "vendor"), id="failures-beyond"),
    pytest.param(
        build(records_at(), "vendor", previous=BASE, now=NOW + timedelta(hours=1)), id="later"
    ),
    pytest.param(BASE, id="identical"),
]

WRITE = [
    pytest.param(build(records_at(inhouse=up()), "vendor"), id="healthy-flips"),
    pytest.param(build(records_at(inhouse=down(message="timeout")), "vendor"), id="message"),
    pytest.param(
        build(records_at(inhouse=down(reason=ProbeFailure.UNAVAILABLE)), "vendor"), id="reason"
    ),
    pytest.param(build(records_at(), "inhouse"), id="active-changes"),
    pytest.param(build(records_at(inhouse=down(failures=2)), "vendor"), id="failures-below"),
    pytest.param(build(records_at(vendor=up(successes=1)), "vendor"), id="successes-below"),
    pytest.param(build(records_at(), "vendor", moved=True), id="failover-counted"),
    pytest.param(build(records_at(), "vendor", problem=MISSING), id="problem"),
    pytest.param(build(records_at(), "vendor", approval="1"), id="approval"),
    pytest.param(
        build({"vendor": up()}, "vendor"),
        id="backend-record-gone",
    ),
]


@pytest.mark.parametrize("new", NO_WRITE)
def test_needs_write_false(new: ModelRouteStatus) -> None:
    assert not needs_write(BASE, new, SPEC)


@pytest.mark.parametrize("new", WRITE)
def test_needs_write_true(new: ModelRouteStatus) -> None:
    assert needs_write(BASE, new, SPEC)


def test_needs_write_when_nothing_written_yet() -> None:
    assert needs_write(None, BASE, SPEC)


def test_needs_write_without_spec_compares_raw_counters() -> None:
    new = build(records_at(inhouse=down(failures=40)), "vendor")
    assert needs_write(BASE, new, None)


def test_needs_write_without_spec_sees_a_new_reason() -> None:
    new = build(records_at(inhouse=down(reason=ProbeFailure.AUTH_FAILED)), "vendor")
    assert needs_write(BASE, new, None)


def test_reason_reaches_the_wire() -> None:
    records = records_at(inhouse=down(message="HTTP 404", reason=ProbeFailure.MODEL_NOT_SERVED))
    wire = build(records, "vendor").to_wire()
    assert [b.get("reason") for b in wire["backends"]] == [None, "ModelNotServed"]


def test_needs_write_uses_the_backend_probe_override() -> None:
    spec = make_spec(inhouse_probe={"failureThreshold": 5})
    base = build(records_at(inhouse=down(failures=4)), "vendor", spec=spec)
    assert needs_write(base, build(records_at(inhouse=down(failures=5)), "vendor", spec=spec), spec)
    beyond = build(records_at(inhouse=down(failures=5)), "vendor", spec=spec)
    assert not needs_write(
        beyond, build(records_at(inhouse=down(failures=9)), "vendor", spec=spec), spec
    )


def test_steady_dead_route_stops_writing() -> None:
    records = {"vendor": HealthRecord(), "inhouse": HealthRecord()}
    written: ModelRouteStatus | None = None
    writes: list[int] = []
    for probe in range(1, 30):
        at = T0 + timedelta(seconds=5 * probe)
        for name in records:
            outcome = ProbeOutcome(False, 2000 + probe, "connection refused", at)
            records[name] = fold(records[name], outcome, SPEC.effective_probe(SPEC.backends[0]))
        new = build(records, None, previous=written, now=at)
        if needs_write(written, new, SPEC):
            written = new
            writes.append(probe)
    threshold = SPEC.probe.failure_threshold
    assert writes == list(range(1, threshold + 1))


# --- wire format ---------------------------------------------------------------------------


def strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


def test_to_wire_writes_empty_strings_as_they_are() -> None:
    # An emptied message must reach the API server as "" (the 1.20 test server is patched to
    # store it): leaving the field out of a merge patch would keep the old message.
    status = build(
        {"vendor": HealthRecord(healthy=True, healthy_since=T0), "inhouse": down(message="")},
        "vendor",
        problem=Problem("SomethingOdd", ""),
    )
    wire = status.to_wire()
    assert wire["backends"][1]["message"] == ""
    assert wire["conditions"][0]["message"] == ""
    assert wire["conditions"][0]["reason"] == "SomethingOdd"


def test_to_wire_shape() -> None:
    wire = build(records_at(), "vendor", moved=True).to_wire()
    assert wire["activeBackend"] == "vendor"
    assert wire["healthyBackends"] == "1/2"
    assert wire["failoverCount"] == 1
    assert wire["lastFailoverTime"] == "2025-01-01T13:00:00Z"
    assert wire["backends"][0]["consecutiveSuccesses"] == 2
    assert {c["type"] for c in wire["conditions"]} == {READY, DEGRADED}


def test_build_invalid_status_keeps_the_rest() -> None:
    previous = build(records_at(), "vendor", previous=PREVIOUS, now=T0)
    problem = Problem("InvalidSpec", "spec.backends[1].name: duplicate backend name 'a'")
    status = build_invalid_status(previous=previous, generation=7, problem=problem, now=NOW)
    ready, degraded = cond(status, READY), cond(status, DEGRADED)
    assert (ready.status, ready.reason, ready.message) == (FALSE, "InvalidSpec", problem.message)
    assert ready.last_transition_time == NOW  # it was True before
    assert (degraded.status, degraded.reason) == (UNKNOWN, "InvalidSpec")
    assert ready.observed_generation == degraded.observed_generation == 7
    assert status.observed_generation == 7
    assert status.active_backend == previous.active_backend == "vendor"
    assert status.failover_count == previous.failover_count == 4
    assert status.backends == previous.backends
    assert status.healthy_backends == previous.healthy_backends


def test_build_invalid_status_without_a_problem() -> None:
    status = build_invalid_status(previous=ModelRouteStatus(), generation=1, problem=None, now=NOW)
    assert (cond(status, READY).status, cond(status, READY).reason) == (FALSE, "InvalidSpec")
    assert "" not in strings(status.to_wire())


def test_a_field_the_server_pruned_is_kept_as_sent_and_nothing_else_is_taken_for_pruned() -> None:
    # A CRD older than the operator drops previousRouting: the baseline must still have it,
    # or every plan would write it again. Fields at their default (failoverCount 0, no
    # backends) are not sent, so their absence is no pruning.
    sent = ModelRouteStatus.model_validate(
        {
            "activeBackend": "vendor",
            "previousRouting": [{"apiVersion": "v1", "kind": "Service", "name": "old"}],
        }
    )
    stored = {"activeBackend": "vendor"}
    assert pruned(stored, sent) == ["previous_routing"]
    kept = accepted({"status": stored}, sent)
    assert kept == sent
    assert not needs_write(kept, sent, None)
    assert pruned(stored, ModelRouteStatus(active_backend="vendor")) == []


def test_a_nested_field_the_server_pruned_is_kept_as_sent_and_named() -> None:
    # backends[].reason is newer than a 0.1.0 CRD: a server with that CRD drops it, and a
    # baseline without it would make the route write the same status again every defer period.
    sent = ModelRouteStatus.model_validate(
        {
            "activeBackend": "inhouse",
            "backends": [
                {"name": "vendor", "healthy": False, "message": "401", "reason": "AuthFailed"},
                {"name": "inhouse", "healthy": True},
            ],
        }
    )
    stored = sent.to_wire()
    del stored["backends"][0]["reason"]
    assert pruned_paths(stored, sent.to_wire()) == ["backends[].reason"]
    kept = accepted({"status": stored}, sent)
    assert kept is sent
    assert not needs_write(kept, sent, None)
    changed = {**stored, "activeBackend": "vendor"}  # not only pruned: taken as stored
    assert accepted({"status": changed}, sent).active_backend == "vendor"
