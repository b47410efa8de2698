"""Per-backend health with hysteresis: fold probe outcomes into a record.

Pure: no I/O and no clock reads. Time only enters through ``finished_at`` of each probe, so the
same outcomes always give the same record, and the record round-trips through
``status.backends[]`` so the state machine resumes after an operator restart without flapping.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from modelroute.api.models import ProbeSpec
from modelroute.api.status import BackendStatus
from modelroute.core.types import ProbeFailure


class ProbeOutcomeLike(Protocol):
    """What :func:`fold` reads from one finished probe (the prober's result has these too)."""

    @property
    def ok(self) -> bool: ...

    @property
    def latency_ms(self) -> int | None: ...

    @property
    def message(self) -> str: ...

    @property
    def finished_at(self) -> datetime: ...

    @property
    def reason(self) -> ProbeFailure | None:
        """The failure's class; ``None`` for a success."""
        ...


@dataclass(frozen=True)
class ProbeOutcome:
    """A finished probe, for callers that do not have the prober's result at hand."""

    ok: bool
    latency_ms: int | None
    message: str
    finished_at: datetime
    reason: ProbeFailure | None = None


@dataclass(frozen=True)
class HealthRecord:
    """Health of one backend after hysteresis; the default is "never probed yet"."""

    healthy: bool | None = None
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    healthy_since: datetime | None = None
    last_probe_time: datetime | None = None
    latency_ms: int | None = None
    message: str = ""
    #: Class of the last probe's failure; ``None`` after a success (or before any probe).
    reason: ProbeFailure | None = None
    #: Class of the last deep probe's failure while it has not passed since; the backend
    #: stays unhealthy meanwhile, whatever the cheap probe says.
    deep_failure: ProbeFailure | None = None


def fold(record: HealthRecord, outcome: ProbeOutcomeLike, probe: ProbeSpec) -> HealthRecord:
    """Return ``record`` updated with one probe ``outcome`` under ``probe``'s thresholds.

    A never-probed backend takes the verdict of its first probe: there is nothing to flap from
    yet, and waiting for a full threshold would delay the first routing decision. After that, a
    healthy backend needs ``failure_threshold`` failures in a row to turn unhealthy and an
    unhealthy one needs ``success_threshold`` successes in a row to turn healthy.
    """
    if record.deep_failure is not None and outcome.ok:
        # Listing works but generating did not: successes do not count until a deep probe
        # passes, and the message says why the backend stays unhealthy.
        return _updated(
            record,
            outcome,
            healthy=False,
            failures=0,
            successes=0,
            message=f"{outcome.message}; {_deep_wait(record.deep_failure)}",
            reason=record.deep_failure,
        )
    if outcome.ok:
        successes, failures = record.consecutive_successes + 1, 0
    else:
        successes, failures = 0, record.consecutive_failures + 1
    healthy = _next_verdict(record.healthy, successes, failures, probe)
    if record.deep_failure is not None:
        healthy = False
    reason = None if outcome.ok else outcome.reason
    return _updated(record, outcome, healthy, failures, successes, outcome.message, reason)


def fold_deep(record: HealthRecord, outcome: ProbeOutcomeLike, probe: ProbeSpec) -> HealthRecord:
    """Return ``record`` updated with one deep probe ``outcome``.

    A failed deep probe makes the backend unhealthy at once, as if it had failed
    ``failure_threshold`` probes in a row: deep probes are rare, and a backend that lists its
    model but cannot generate takes every request it gets. It stays unhealthy until a deep
    probe passes; that pass counts as the first of the ``success_threshold`` successes it needs,
    the cheap probes that follow count the rest.
    """
    if not outcome.ok:
        reason = outcome.reason or ProbeFailure.UNAVAILABLE
        failures = max(record.consecutive_failures + 1, probe.failure_threshold)
        message = f"deep probe failed: {outcome.message}"
        fields = _updated(record, outcome, False, failures, 0, message, reason)
        return _replace_deep(fields, reason)
    if record.deep_failure is None:
        return record  # generating works, as expected: the cheap probe keeps the record
    successes = 1
    healthy = _next_verdict(False, successes, 0, probe)
    message = f"deep probe passed: {outcome.message}"
    return _replace_deep(_updated(record, outcome, healthy, 0, successes, message, None), None)


def without_deep_probe(record: HealthRecord) -> HealthRecord:
    """``record`` for a backend that has no deep probe (any more): a deep failure no deep probe
    can clear is forgotten, and the cheap probe's successes count from now on."""
    return record if record.deep_failure is None else _replace_deep(record, None)


def _deep_wait(failure: ProbeFailure) -> str:
    return f"unhealthy until a deep probe passes (the last one failed: {failure.value})"


def _updated(
    record: HealthRecord,
    outcome: ProbeOutcomeLike,
    healthy: bool,
    failures: int,
    successes: int,
    message: str,
    reason: ProbeFailure | None,
) -> HealthRecord:
    return HealthRecord(
        healthy=healthy,
        consecutive_failures=failures,
        consecutive_successes=successes,
        healthy_since=_next_healthy_since(record, healthy, outcome.finished_at),
        last_probe_time=outcome.finished_at,
        latency_ms=outcome.latency_ms,
        message=message,
        reason=reason,
        deep_failure=record.deep_failure,
    )


def _replace_deep(record: HealthRecord, deep_failure: ProbeFailure | None) -> HealthRecord:
    return dataclasses.replace(record, deep_failure=deep_failure)


def _next_verdict(current: bool | None, successes: int, failures: int, probe: ProbeSpec) -> bool:
    """Healthy or not after the counters moved; exactly one of the counters is non-zero."""
    if current is None:
        return successes > 0
    # ">=" rather than "==": thresholds can be lowered by a spec edit while counts are high.
    if current:
        return failures < probe.failure_threshold
    return successes >= probe.success_threshold


def _next_healthy_since(
    record: HealthRecord, healthy: bool, finished_at: datetime
) -> datetime | None:
    """Start the stabilization clock when the backend turns healthy, keep it while it stays."""
    if not healthy:
        return None
    # A healthy record without a start time (status written before the field existed) restarts
    # the clock now: failback waits a little longer instead of trusting an unknown start.
    if record.healthy and record.healthy_since is not None:
        return record.healthy_since
    return finished_at


def material_key(record: HealthRecord, probe: ProbeSpec) -> tuple[object, ...]:
    """What of ``record`` can change a decision or is worth a status write.

    Counters are capped at their thresholds: past them, one more failure of a dead backend
    changes nothing an admin acts on (live counts are in the metrics). Probe times and
    latencies are left out for the same reason. The worker wakes a reconcile, and status is
    written, only when this key changes.
    """
    return (
        record.healthy,
        min(record.consecutive_failures, probe.failure_threshold),
        min(record.consecutive_successes, probe.success_threshold),
        record.message,
        record.reason,
        record.deep_failure,
    )


def decides_nothing(before: HealthRecord, after: HealthRecord) -> bool:
    """True when a material change of a backend's record cannot move traffic by itself: the
    backend was healthy and still is (a failure below its threshold, a new message, a success
    streak of a healthy backend). What it changes is status counters and messages, which may
    wait (``status_defer_seconds``); a staged failback or a drill, which one failure decides,
    is the caller's to tell apart."""
    return (
        before.healthy is True
        and after.healthy is True
        and before.deep_failure is None
        and after.deep_failure is None
    )


def status_material_key(status: BackendStatus, probe: ProbeSpec | None) -> tuple[object, ...]:
    """:func:`material_key` of the record ``status`` holds, read without rebuilding it; with no
    ``probe`` (a backend no longer in spec) nothing is capped and the deep failure is left out."""
    failures, successes = status.consecutive_failures, status.consecutive_successes
    reason = _failure(status.reason)
    if probe is None:
        return (status.healthy, failures, successes, status.message, reason)
    return (
        status.healthy,
        min(failures, probe.failure_threshold),
        min(successes, probe.success_threshold),
        status.message,
        reason,
        _failure(status.deep_probe_failure),
    )


def from_status(status: BackendStatus) -> HealthRecord:
    """Rebuild a backend's record from ``status.backends[]`` (resume after a restart)."""
    return HealthRecord(
        healthy=status.healthy,
        consecutive_failures=status.consecutive_failures,
        consecutive_successes=status.consecutive_successes,
        healthy_since=status.healthy_since,
        last_probe_time=status.last_probe_time,
        latency_ms=status.latency_ms,
        message=status.message,
        reason=_failure(status.reason),
        deep_failure=_failure(status.deep_probe_failure),
    )


def _failure(value: str | None) -> ProbeFailure | None:
    # A reason this version does not know (written by a newer operator) reads as none: the
    # next failed probe sets it again.
    try:
        return ProbeFailure(value) if value is not None else None
    except ValueError:
        return None


def to_status(name: str, record: HealthRecord) -> BackendStatus:
    """Render backend ``name``'s record as its ``status.backends[]`` entry."""
    return BackendStatus(
        name=name,
        healthy=record.healthy,
        consecutive_failures=record.consecutive_failures,
        consecutive_successes=record.consecutive_successes,
        healthy_since=record.healthy_since,
        last_probe_time=record.last_probe_time,
        latency_ms=record.latency_ms,
        message=record.message,
        reason=record.reason.value if record.reason is not None else None,
        deep_probe_failure=(record.deep_failure.value if record.deep_failure is not None else None),
    )
