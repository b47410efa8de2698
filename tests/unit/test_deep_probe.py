"""Deep probes, pure parts: the spec, validation, the cost estimate, scheduling, the health rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelroute.api.models import Backend, ModelRouteSpec, ProbeSpec, ProbeType
from modelroute.api.validation import InvalidSpecError, parse_spec, problems
from modelroute.control.feed import HealthFeed
from modelroute.core import cost
from modelroute.core.health import (
    HealthRecord,
    ProbeOutcome,
    fold,
    fold_deep,
    from_status,
    material_key,
    to_status,
)
from modelroute.core.types import ProbeFailure, RouteRef
from modelroute.metrics import Metrics
from modelroute.probing.hub import Subscriber
from modelroute.probing.keys import ProbeKey, ProbeKind, next_start
from modelroute.probing.prober import ProbeResult
from tests.unit.test_probe_failure_metrics import Source

T0 = datetime(2030, 1, 1, tzinfo=UTC)
PROBE = ProbeSpec(failure_threshold=3, success_threshold=2)


def spec(
    probe: dict[str, Any] | None = None, second: dict[str, Any] | None = None
) -> ModelRouteSpec:
    """Two backends; ``second`` is the in-house backend's own probe block."""
    inhouse = {"name": "inhouse", "priority": 1, "model": "llama", "endpoint": "http://i.test"}
    backends = [
        {"name": "vendor", "priority": 0, "model": "gpt-4o", "endpoint": "http://v.test:8080"},
        inhouse | ({"probe": second} if second is not None else {}),
    ]
    return ModelRouteSpec.model_validate({"backends": backends, "probe": probe or {}})


def outcome(ok: bool, second: int, reason: ProbeFailure | None = None) -> ProbeOutcome:
    message = "ok" if ok else "server error (500)"
    return ProbeOutcome(ok, 5, message, T0 + timedelta(seconds=second), None if ok else reason)


# -- spec and validation ------------------------------------------------------------------


def test_deep_defaults_and_the_backend_block_replaces_the_routes() -> None:
    s = spec({"deep": {}}, {"deep": {"intervalSeconds": 60}})
    route_deep = s.effective_probe(s.backends[0]).deep
    assert route_deep is not None
    assert (route_deep.type, route_deep.interval_seconds, route_deep.timeout_seconds) == (
        "Chat",
        300,
        10,
    )
    own = s.effective_probe(s.backends[1]).deep
    assert own is not None and own.interval_seconds == 60 and own.timeout_seconds == 10


@pytest.mark.parametrize("kind", ["Models", "HTTP", "TCP", "OpenAIModels"])
def test_a_deep_probe_must_generate(kind: str) -> None:
    with pytest.raises(InvalidSpecError, match=r"spec\.probe\.deep\.type"):
        parse_spec(spec().model_dump(by_alias=True) | {"probe": {"deep": {"type": kind}}})


def test_a_deep_probe_runs_at_most_as_often_as_the_cheap_one() -> None:
    slow_cheap = spec({"intervalSeconds": 60, "deep": {"intervalSeconds": 30}})
    assert problems(slow_cheap, ["Service"]) == [
        "spec.probe.deep.intervalSeconds: must be at least the probe's intervalSeconds (60), got 30"
    ]
    own = spec({"deep": {}}, {"intervalSeconds": 120, "deep": {"intervalSeconds": 60}})
    assert problems(own, ["Service"]) == [
        "spec.backends[1].probe.deep.intervalSeconds: must be at least the probe's "
        "intervalSeconds (120), got 60"
    ]
    assert (
        problems(spec({"intervalSeconds": 30, "deep": {"intervalSeconds": 30}}), ["Service"]) == []
    )


def test_a_probe_that_generates_already_has_no_deep_probe() -> None:
    s = spec({"deep": {}}, {"type": "OpenAIChat"})
    assert s.effective_probe(s.backends[1]).effective_deep is None
    assert ProbeKey.deep_for_backend("ai", s.backends[1], s.effective_probe(s.backends[1])) is None


# -- the cost estimate -----------------------------------------------------------------------


def test_cost_counts_every_backends_cheap_and_deep_probes() -> None:
    assert cost.probe_cost(spec()).model_dump() == {
        "requests_per_day": 2 * 17_280,  # two backends, every 5 s
        "estimated_tokens_per_day": 0,  # Models probes cost no tokens
    }
    deep = cost.probe_cost(spec({"deep": {"intervalSeconds": 300}}))
    assert deep.requests_per_day == 2 * (17_280 + 288)
    assert deep.estimated_tokens_per_day == 2 * 288 * 9  # 8 input + 1 output per completion


def test_cost_of_a_chat_probe_every_5s_is_what_issue_14_complains_about() -> None:
    chat = cost.probe_cost(spec({"type": "Chat", "deep": {}}))  # deep is skipped: redundant
    assert chat.requests_per_day == 2 * 17_280
    assert chat.estimated_tokens_per_day == 2 * 17_280 * 9
    assert cost.tokens_per_probe(ProbeType.OPENAI_CHAT) == 9
    assert cost.tokens_per_probe(ProbeType.TCP) == 0


# -- keys and scheduling -------------------------------------------------------------------


def test_the_deep_key_is_its_own_shared_probe() -> None:
    s = spec({"deep": {"intervalSeconds": 120, "timeoutSeconds": 7}})
    vendor, probe = s.backends[0], s.effective_probe(s.backends[0])
    cheap = ProbeKey.for_backend("ai", vendor, probe)
    deep = ProbeKey.deep_for_backend("ai", vendor, probe)
    assert deep is not None and deep != cheap
    assert (deep.kind, deep.type, deep.interval_seconds, deep.timeout_seconds) == (
        ProbeKind.DEEP,
        ProbeType.CHAT,
        120,
        7,
    )
    assert deep.retry_seconds == 5 and cheap.retry_seconds is None
    # Another route with the same backend and settings gets the same key: one loop.
    again = Backend.model_validate(vendor.model_dump())
    assert ProbeKey.deep_for_backend("ai", again, probe) == deep
    assert cheap.target == deep.target == "v.test:8080/gpt-4o"


def test_target_carries_no_secret_and_names_the_default_port() -> None:
    backend = Backend(
        name="b", priority=0, model="gpt-4o", endpoint="https://user:pw@api.example.com/v1?k=s"
    )
    assert ProbeKey.for_backend("ai", backend, PROBE).target == "api.example.com:443/gpt-4o"


@pytest.mark.parametrize(
    ("kind", "failed", "retry_after", "expected"),
    [
        pytest.param("cheap", False, None, 105.0, id="fixed-rate"),
        pytest.param("cheap", True, None, 105.0, id="cheap-failure-same-rate"),
        pytest.param("deep", False, None, 400.0, id="deep-at-its-interval"),
        pytest.param("deep", True, None, 105.0, id="failed-deep-retries-at-cheap-interval"),
        pytest.param("deep", True, 30.0, 131.0, id="retry-after-pushes-back"),
        pytest.param("deep", True, 999.0, 161.0, id="retry-after-capped"),
    ],
)
def test_next_start(kind: str, failed: bool, retry_after: float | None, expected: float) -> None:
    s = spec({"deep": {}})
    vendor, probe = s.backends[0], s.effective_probe(s.backends[0])
    key = (
        ProbeKey.deep_for_backend("ai", vendor, probe)
        if kind == "deep"
        else ProbeKey.for_backend("ai", vendor, probe)
    )
    assert key is not None
    assert next_start(key, 100.0, 101.0, failed, retry_after, 60.0) == expected


def test_an_overrun_probe_is_followed_at_once() -> None:
    key = ProbeKey.for_backend("ai", spec().backends[0], PROBE)
    assert next_start(key, 100.0, 107.5, False, None, 60.0) == 107.5


# -- the health rule -------------------------------------------------------------------------


def test_one_failed_deep_probe_makes_a_healthy_backend_unhealthy() -> None:
    healthy = HealthRecord(healthy=True, consecutive_successes=9, healthy_since=T0)
    after = fold_deep(healthy, outcome(False, 1, ProbeFailure.BAD_RESPONSE), PROBE)
    assert after.healthy is False
    assert after.consecutive_failures == PROBE.failure_threshold
    assert after.deep_failure is ProbeFailure.BAD_RESPONSE
    assert after.message == "deep probe failed: server error (500)"


def test_cheap_successes_do_not_heal_a_backend_that_cannot_generate() -> None:
    record = fold_deep(
        HealthRecord(healthy=True), outcome(False, 1, ProbeFailure.UNAVAILABLE), PROBE
    )
    for second in range(2, 10):
        record = fold(record, outcome(True, second), PROBE)
    assert record.healthy is False
    assert record.consecutive_successes == 0
    assert record.reason is ProbeFailure.UNAVAILABLE
    assert record.message == (
        "ok; unhealthy until a deep probe passes (the last one failed: Unavailable)"
    )
    # The message is the same every time: a steady state writes no status.
    again = fold(record, outcome(True, 11), PROBE)
    assert material_key(again, PROBE) == material_key(record, PROBE)


def test_a_passing_deep_probe_starts_the_recovery() -> None:
    record = fold_deep(
        HealthRecord(healthy=True), outcome(False, 1, ProbeFailure.UNAVAILABLE), PROBE
    )
    record = fold_deep(record, outcome(True, 2), PROBE)
    assert (record.healthy, record.consecutive_successes, record.deep_failure) == (False, 1, None)
    record = fold(record, outcome(True, 3), PROBE)  # successThreshold 2: the deep pass + this
    assert record.healthy is True and record.healthy_since == T0 + timedelta(seconds=3)


def test_a_passing_deep_probe_of_a_healthy_backend_changes_nothing() -> None:
    healthy = HealthRecord(healthy=True, consecutive_successes=4, healthy_since=T0)
    assert fold_deep(healthy, outcome(True, 5), PROBE) is healthy


def test_the_deep_failure_survives_a_restart() -> None:
    record = fold_deep(
        HealthRecord(healthy=True), outcome(False, 1, ProbeFailure.AUTH_FAILED), PROBE
    )
    status = to_status("vendor", record)
    assert status.deep_probe_failure == "AuthFailed"
    assert from_status(status) == record
    assert from_status(status.model_copy(update={"deep_probe_failure": None})).deep_failure is None


async def test_removing_the_deep_probe_forgets_its_failure() -> None:
    failed = fold_deep(
        HealthRecord(healthy=True), outcome(False, 1, ProbeFailure.UNAVAILABLE), PROBE
    )
    with_deep = HealthFeed(Source(), Metrics(), {"vendor": failed}, lambda: None)
    with_deep.start(RouteRef("ai", "chat", "uid"), spec({"deep": {}}))
    assert with_deep.records["vendor"].deep_failure is ProbeFailure.UNAVAILABLE  # kept
    source = Source()
    without = HealthFeed(source, Metrics(), {"vendor": failed}, lambda: None)
    without.start(RouteRef("ai", "chat", "uid"), spec())
    assert without.records["vendor"].deep_failure is None
    for second in (2, 3):  # successThreshold 2: the cheap probe heals it again
        source.push(
            "http://v.test:8080", ProbeResult(True, 5, "ok", T0 + timedelta(seconds=second))
        )
    assert without.records["vendor"].healthy is True


class KeyedSource:
    """A ProbeSource the test pushes results through by key (cheap and deep share a URL)."""

    def __init__(self) -> None:
        self.subscribers: dict[ProbeKey, list[Subscriber]] = {}

    def subscribe(self, key: ProbeKey, subscriber: Subscriber) -> None:
        self.subscribers.setdefault(key, []).append(subscriber)

    def unsubscribe(self, key: ProbeKey, subscriber: Subscriber) -> None:
        self.subscribers[key].remove(subscriber)

    def push(self, key: ProbeKey, result: ProbeResult) -> None:
        for subscriber in self.subscribers[key]:
            subscriber(result)


async def test_a_drill_reads_cheap_results_as_failures_but_never_fakes_a_deep_failure() -> None:
    # A faked deep failure would hold the backend unhealthy until the next deep probe (300 s by
    # default), long after the drill ended: the drill is the cheap probe's business only.
    until = (T0 + timedelta(seconds=60)).isoformat()
    raw = spec({"deep": {}}).model_dump(by_alias=True, exclude_none=True)
    drilled = ModelRouteSpec.model_validate(raw | {"drill": {"backend": "vendor", "until": until}})
    source = KeyedSource()
    feed = HealthFeed(source, Metrics(), {"vendor": HealthRecord(healthy=True)}, lambda: None)
    feed.start(RouteRef("ai", "chat", "uid"), drilled)
    backend = drilled.backends[0]
    probe = drilled.effective_probe(backend)
    deep = ProbeKey.deep_for_backend("ai", backend, probe)
    cheap = ProbeKey.for_backend("ai", backend, probe)
    assert deep is not None
    source.push(deep, ProbeResult(True, 5, "ok", T0 + timedelta(seconds=1)))
    assert feed.records["vendor"].deep_failure is None
    for second in (2, 3, 4):  # failureThreshold 3: the drill's failover
        source.push(cheap, ProbeResult(True, 5, "ok", T0 + timedelta(seconds=second)))
    assert feed.records["vendor"].healthy is False
    for second in (61, 62):  # after the drill, successThreshold 2 heals it
        source.push(cheap, ProbeResult(True, 5, "ok", T0 + timedelta(seconds=second)))
    assert feed.records["vendor"].healthy is True
