"""Tests for the health fold: hysteresis thresholds and the round trip through status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelroute.api.models import ProbeSpec
from modelroute.api.status import BackendStatus
from modelroute.core.health import (
    HealthRecord,
    ProbeOutcome,
    fold,
    fold_deep,
    from_status,
    material_key,
    status_material_key,
    to_status,
)
from modelroute.core.types import ProbeFailure

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
EARLIER = T0 - timedelta(hours=1)

HEALTHY = HealthRecord(healthy=True, consecutive_successes=5, healthy_since=EARLIER)
UNHEALTHY = HealthRecord(healthy=False, consecutive_failures=5)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def fold_all(record: HealthRecord, results: str, probe: ProbeSpec, start: int = 1) -> HealthRecord:
    """Fold one probe per character ("+" success, "-" failure), one second apart."""
    for offset, result in enumerate(results):
        outcome = ProbeOutcome(result == "+", 10, f"probe {offset}", at(start + offset))
        record = fold(record, outcome, probe)
    return record


class Row(NamedTuple):
    start: HealthRecord
    results: str
    failure_threshold: int
    success_threshold: int
    healthy: bool | None
    failures: int
    successes: int


FOLD_TABLE = [
    pytest.param(Row(HealthRecord(), "+", 3, 2, True, 0, 1), id="unknown-first-success-healthy"),
    pytest.param(Row(HealthRecord(), "-", 3, 2, False, 1, 0), id="unknown-first-failure-down"),
    pytest.param(Row(HEALTHY, "--", 3, 2, True, 2, 0), id="healthy-2-of-3-failures-stays"),
    pytest.param(Row(HEALTHY, "---", 3, 2, False, 3, 0), id="healthy-3rd-failure-flips"),
    pytest.param(Row(HEALTHY, "-", 1, 2, False, 1, 0), id="healthy-threshold-1-flips-at-once"),
    pytest.param(Row(HEALTHY, "--+--", 3, 2, True, 2, 0), id="success-resets-failure-run"),
    pytest.param(Row(UNHEALTHY, "+", 3, 2, False, 0, 1), id="unhealthy-1-of-2-successes-stays"),
    pytest.param(Row(UNHEALTHY, "++", 3, 2, True, 0, 2), id="unhealthy-2nd-success-flips"),
    pytest.param(Row(UNHEALTHY, "+++", 3, 4, False, 0, 3), id="unhealthy-3-of-4-successes-stays"),
    pytest.param(Row(UNHEALTHY, "+-+", 3, 2, False, 0, 1), id="failure-resets-success-run"),
    pytest.param(Row(UNHEALTHY, "-", 3, 2, False, 6, 0), id="unhealthy-failure-counts-on"),
    pytest.param(Row(HEALTHY, "+", 3, 2, True, 0, 6), id="healthy-success-counts-on"),
    pytest.param(
        Row(HealthRecord(healthy=True, consecutive_failures=5), "-", 3, 2, False, 6, 0),
        id="threshold-lowered-below-count-flips",
    ),
    pytest.param(
        Row(HealthRecord(healthy=False, consecutive_successes=5), "+", 3, 2, True, 0, 6),
        id="success-threshold-lowered-below-count-flips",
    ),
]


@pytest.mark.parametrize("row", FOLD_TABLE)
def test_fold_hysteresis(row: Row) -> None:
    probe = ProbeSpec(
        failure_threshold=row.failure_threshold, success_threshold=row.success_threshold
    )
    record = fold_all(row.start, row.results, probe)
    assert (record.healthy, record.consecutive_failures, record.consecutive_successes) == (
        row.healthy,
        row.failures,
        row.successes,
    )


@pytest.mark.parametrize(
    ("start", "results", "expected_since"),
    [
        pytest.param(HealthRecord(), "+", at(1), id="unknown-becomes-healthy-now"),
        pytest.param(UNHEALTHY, "++", at(2), id="recovery-starts-at-threshold-probe"),
        pytest.param(HEALTHY, "++", EARLIER, id="staying-healthy-keeps-start"),
        pytest.param(HEALTHY, "--", EARLIER, id="failures-below-threshold-keep-start"),
        pytest.param(HEALTHY, "---", None, id="turning-unhealthy-clears-start"),
        pytest.param(UNHEALTHY, "+", None, id="still-recovering-has-no-start"),
        pytest.param(
            HealthRecord(healthy=True), "+", at(1), id="healthy-without-start-restarts-clock"
        ),
    ],
)
def test_fold_healthy_since(
    start: HealthRecord, results: str, expected_since: datetime | None
) -> None:
    record = fold_all(start, results, ProbeSpec(failure_threshold=3, success_threshold=2))
    assert record.healthy_since == expected_since


@pytest.mark.parametrize("ok", [True, False], ids=["success", "failure"])
def test_fold_always_records_the_last_probe(ok: bool) -> None:
    start = HealthRecord(
        healthy=True, last_probe_time=EARLIER, latency_ms=1, message="old", healthy_since=EARLIER
    )
    outcome = ProbeOutcome(ok=ok, latency_ms=742, message="HTTP 503", finished_at=at(7))
    record = fold(start, outcome, ProbeSpec())
    assert (record.last_probe_time, record.latency_ms, record.message) == (at(7), 742, "HTTP 503")


def test_fold_accepts_any_object_with_the_outcome_attributes() -> None:
    @dataclass(frozen=True)
    class ProbeResult:  # stands in for the prober's own result type, which has more fields
        ok: bool
        latency_ms: int | None
        message: str
        finished_at: datetime
        status_code: int
        reason: ProbeFailure | None = None

    record = fold(HealthRecord(), ProbeResult(True, None, "200 OK", at(3), 200), ProbeSpec())
    assert (record.healthy, record.latency_ms, record.message) == (True, None, "200 OK")


RECORDS = [
    pytest.param(HealthRecord(), id="never-probed"),
    pytest.param(
        HealthRecord(
            healthy=True,
            consecutive_successes=4,
            healthy_since=EARLIER,
            last_probe_time=at(0),
            latency_ms=120,
            message="model listed",
        ),
        id="healthy",
    ),
    pytest.param(
        HealthRecord(
            healthy=False,
            consecutive_failures=2,
            consecutive_successes=0,
            last_probe_time=at(0),
            message="connection failed: Connection refused",
            reason=ProbeFailure.UNAVAILABLE,
        ),
        id="unhealthy",
    ),
]


@pytest.mark.parametrize("record", RECORDS)
def test_status_round_trip_through_the_wire(record: HealthRecord) -> None:
    wire = to_status("vendor", record).to_wire()
    assert wire["name"] == "vendor"
    assert from_status(BackendStatus.model_validate(wire)) == record


def test_to_status_uses_camel_case_wire_names() -> None:
    record = HealthRecord(
        healthy=False, consecutive_failures=3, last_probe_time=at(0), latency_ms=5, message="x"
    )
    assert to_status("inhouse", record).to_wire() == {
        "name": "inhouse",
        "healthy": False,
        "consecutiveFailures": 3,
        "consecutiveSuccesses": 0,
        "lastProbeTime": "2025-01-01T12:00:00Z",
        "latencyMs": 5,
        "message": "x",
    }


def test_failure_reason_is_kept_until_a_success_clears_it() -> None:
    probe = ProbeSpec(failure_threshold=2)
    denied = ProbeOutcome(False, 80, "unauthorized (401)", at(1), ProbeFailure.AUTH_FAILED)
    failed = fold(HEALTHY, denied, probe)
    assert (failed.healthy, failed.reason) == (True, ProbeFailure.AUTH_FAILED)
    slow = ProbeOutcome(False, 900, "slow answer", at(2), ProbeFailure.SLOW_RESPONSE)
    assert fold(failed, slow, probe).reason is ProbeFailure.SLOW_RESPONSE
    # A success never carries a reason, whatever the outcome object says.
    passed = fold(failed, ProbeOutcome(True, 5, "ok", at(3), ProbeFailure.AUTH_FAILED), probe)
    assert passed.reason is None


def test_reason_is_written_to_status_and_read_back() -> None:
    record = HealthRecord(healthy=False, consecutive_failures=1, reason=ProbeFailure.RATE_LIMITED)
    wire = to_status("vendor", record).to_wire()
    assert wire["reason"] == "RateLimited"
    assert "reason" not in to_status("vendor", HEALTHY).to_wire()
    assert from_status(BackendStatus.model_validate(wire)).reason is ProbeFailure.RATE_LIMITED


def test_reason_unknown_to_this_version_reads_as_none() -> None:
    status = BackendStatus(name="vendor", healthy=False, reason="QuotaExhausted")
    assert from_status(status).reason is None


def test_a_new_failure_class_is_material() -> None:
    probe = ProbeSpec()
    unclassified = HealthRecord(healthy=False, consecutive_failures=3, message="m")
    classified = HealthRecord(
        healthy=False, consecutive_failures=3, message="m", reason=ProbeFailure.AUTH_FAILED
    )
    assert material_key(unclassified, probe) != material_key(classified, probe)


def test_resumed_record_keeps_counting_toward_the_threshold() -> None:
    """After a restart, two failures seen before plus one after must flip (no reset, no flap)."""
    probe = ProbeSpec(failure_threshold=3)
    before_restart = fold_all(HEALTHY, "--", probe)
    resumed = from_status(to_status("vendor", before_restart))
    assert fold_all(resumed, "-", probe, start=10).healthy is False


@settings(max_examples=200, deadline=None)
@given(
    failure_threshold=st.integers(1, 4),
    success_threshold=st.integers(1, 4),
    results=st.lists(st.booleans(), min_size=1, max_size=40),
)
def test_fold_flips_exactly_when_a_run_reaches_its_threshold(
    failure_threshold: int, success_threshold: int, results: list[bool]
) -> None:
    """Compare fold against run lengths counted here, independently of the record's counters."""
    probe = ProbeSpec(failure_threshold=failure_threshold, success_threshold=success_threshold)
    record = HealthRecord()
    run_ok, run_length = results[0], 0
    for step, ok in enumerate(results):
        run_length = run_length + 1 if ok == run_ok else 1
        run_ok = ok
        before = record.healthy
        record = fold(record, ProbeOutcome(ok, None, "", at(step)), probe)
        if before is None:
            assert record.healthy is ok
        elif before and not ok:
            assert record.healthy is (run_length < failure_threshold)
        elif not before and ok:
            assert record.healthy is (run_length >= success_threshold)
        else:
            assert record.healthy is before  # a result agreeing with the verdict never flips it
        assert (record.healthy_since is not None) is record.healthy


@settings(max_examples=100, deadline=None)
@given(
    failure_threshold=st.integers(1, 4),
    success_threshold=st.integers(1, 4),
    results=st.lists(st.sampled_from("+-d"), max_size=12),
)
def test_status_material_key_is_the_material_key_of_the_record_status_holds(
    failure_threshold: int, success_threshold: int, results: list[str]
) -> None:
    """The status comparison reads the key off ``status.backends[]`` without rebuilding the
    record: it must be the record's own key (capped with a probe, uncapped without)."""
    probe = ProbeSpec(failure_threshold=failure_threshold, success_threshold=success_threshold)
    record = HealthRecord()
    for step, result in enumerate(results):
        outcome = ProbeOutcome(result == "+", 10, f"m{step}", at(step), ProbeFailure.UNAVAILABLE)
        if result == "d":
            record = fold_deep(record, outcome, probe)
        else:
            record = fold(record, outcome, probe)
        entry = to_status("vendor", record)
        assert status_material_key(entry, probe) == material_key(from_status(entry), probe)
        uncapped = from_status(entry)
        assert status_material_key(entry, None) == (
            uncapped.healthy,
            uncapped.consecutive_failures,
            uncapped.consecutive_successes,
            uncapped.message,
            uncapped.reason,
        )
