"""Tests for kube/events.py: decision Events are posted exactly once, counted on the server.

A process killed after posting a failover's Event but before writing status takes the same
failover again when it restarts (core/resume.py); the Event's name, derived from the decision,
makes the API server refuse the repost (409), and the recorder counts that as posted.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import aiohttp
import pytest

from modelroute.core.types import EventType, RouteRef
from modelroute.kube.client import ApiError
from modelroute.kube.events import EventRecorder, decision_name, decision_of, event_body
from tests.fakes.kube import FakeKube

ROUTE = RouteRef("ai", "chat", "uid-1")
DECIDED_AT = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
FAILOVER = "1:inhouse=100"
# What the API server accepts as an object name (a DNS subdomain).
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def test_a_decision_has_one_name_in_every_process() -> None:
    assert decision_name(ROUTE, "FailedOver", FAILOVER) == decision_name(
        RouteRef("ai", "chat", "uid-1"), "FailedOver", "1:inhouse=100"
    )


@pytest.mark.parametrize(
    ("route", "reason", "decision"),
    [
        pytest.param(RouteRef("ai", "chat", "uid-2"), "FailedOver", FAILOVER, id="recreated"),
        pytest.param(ROUTE, "FailedBack", FAILOVER, id="other-reason"),
        pytest.param(ROUTE, "FailedOver", "3:inhouse=100", id="later-failover"),
        pytest.param(ROUTE, "FailedOver", "1:alt=100", id="elsewhere"),
    ],
)
def test_other_decisions_get_other_names(route: RouteRef, reason: str, decision: str) -> None:
    assert decision_name(route, reason, decision) != decision_name(ROUTE, "FailedOver", FAILOVER)


def test_decision_of_a_counted_move() -> None:
    assert decision_of("FailedOver", 1, {"inhouse": 100}) == FAILOVER
    assert decision_of("FailedBack", 2, {"a": 10, "b": 90}) == decision_of(
        "FailedBack", 2, {"b": 90, "a": 10}
    )
    assert decision_of("Rerouted", 3, {"alt": 100}) == "3:alt=100"


@pytest.mark.parametrize(
    "reason", ["FailbackStep", "FailbackAborted", "Routed", "AllBackendsUnhealthy", "Suspended"]
)
def test_events_that_may_recur_with_the_same_count_are_no_decisions(reason: str) -> None:
    """A failback step can be given again after an abort with the same count and weights:
    naming it would hide the second one."""
    assert decision_of(reason, 1, {"vendor": 10, "inhouse": 90}) is None


@pytest.mark.parametrize("name", ["chat", "a" * 253, "x" * 235 + "-" + "y" * 17, "a.b-c"])
def test_a_decision_name_is_a_valid_object_name(name: str) -> None:
    got = decision_name(RouteRef("ai", name, "u"), "FailedOver", FAILOVER)
    assert len(got) <= 253 and DNS_SUBDOMAIN.match(got), got


def test_a_decision_event_is_named_and_others_are_generated() -> None:
    named = event_body(ROUTE, EventType.NORMAL, "FailedOver", "m", DECIDED_AT, "c", name="n")
    generated = event_body(ROUTE, EventType.NORMAL, "Suspended", "m", DECIDED_AT, "c")
    assert named["metadata"] == {"name": "n", "namespace": "ai"}
    assert generated["metadata"] == {"generateName": "chat.", "namespace": "ai"}


async def test_a_decision_taken_again_after_a_crash_is_posted_once() -> None:
    kube = FakeKube()
    first, second = EventRecorder(kube, "first"), EventRecorder(kube, "second")
    await first.post(
        ROUTE, EventType.WARNING, "FailedOver", "vendor down", DECIDED_AT, decision=FAILOVER
    )
    # The next process, after a crash before the status write, takes the same failover again
    # (its message may differ: it knows the vendor's failure only from status).
    later = datetime(2025, 1, 1, 12, 0, 30, tzinfo=UTC)
    await second.post(ROUTE, EventType.WARNING, "FailedOver", "moved off", later, decision=FAILOVER)
    assert [e["message"] for e in kube.posted_events] == ["vendor down"]
    assert kube.calls.count("create_event") == 2  # the repost reached the server: refused


async def test_distinct_decisions_are_all_posted() -> None:
    kube = FakeKube()
    recorder = EventRecorder(kube, "c")
    moves = [
        ("FailedOver", "1:inhouse=100"),
        ("FailedBack", "2:vendor=100"),
        ("FailedOver", "3:inhouse=100"),  # the same move again: a new one
    ]
    for reason, decision in moves:
        await recorder.post(ROUTE, EventType.NORMAL, reason, "m", DECIDED_AT, decision=decision)
    assert [e["reason"] for e in kube.posted_events] == ["FailedOver", "FailedBack", "FailedOver"]
    assert len({e["metadata"]["name"] for e in kube.posted_events}) == 3


async def test_events_without_a_decision_are_posted_every_time() -> None:
    kube = FakeKube()
    recorder = EventRecorder(kube, "c")
    for _ in range(2):
        await recorder.post(ROUTE, EventType.WARNING, "ServiceConflict", "m", DECIDED_AT)
    assert len(kube.posted_events) == 2


async def test_a_conflict_on_a_generated_name_is_logged_not_counted_as_posted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube = FakeKube()
    kube.event_error = ApiError(409, "AlreadyExists", "generated name taken")
    await EventRecorder(kube, "c").post(ROUTE, EventType.NORMAL, "Resumed", "m", DECIDED_AT)
    assert "could not post event Resumed" in caplog.text


async def test_an_unreachable_api_server_is_raised_to_the_caller_who_keeps_the_event() -> None:
    """The reporter keeps the Event in order and posts it again, with its decision's time and
    name, once the API server answers: the repost of one whose answer was lost is refused."""
    kube = FakeKube()
    recorder = EventRecorder(kube, "c")
    await recorder.post(
        ROUTE, EventType.WARNING, "FailedOver", "down", DECIDED_AT, decision=FAILOVER
    )
    kube.event_error = aiohttp.ClientConnectionError("connection reset")
    with pytest.raises(aiohttp.ClientConnectionError):
        await recorder.post(
            ROUTE, EventType.WARNING, "FailedOver", "down", DECIDED_AT, decision=FAILOVER
        )
    kube.event_error = None
    await recorder.post(
        ROUTE, EventType.WARNING, "FailedOver", "down", DECIDED_AT, decision=FAILOVER
    )
    assert [e["reason"] for e in kube.posted_events] == ["FailedOver"]
    assert kube.posted_events[0]["lastTimestamp"] == "2025-01-01T12:00:00Z"


def test_timestamps_are_the_time_given_not_the_time_of_posting() -> None:
    body = event_body(ROUTE, EventType.NORMAL, "FailedOver", "m", DECIDED_AT, "c", name="n")
    assert body["firstTimestamp"] == body["lastTimestamp"] == "2025-01-01T12:00:00Z"


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_a_throttled_decision_event_is_raised_to_its_retrying_caller(status: int) -> None:
    """A named Event is safe to post again (a repeat gets 409): the reporter retries it."""
    kube = FakeKube()
    kube.event_error = ApiError(status, "ServiceUnavailable", "try later")
    recorder = EventRecorder(kube, "c")
    with pytest.raises(ApiError):
        await recorder.post(
            ROUTE, EventType.WARNING, "FailedOver", "m", DECIDED_AT, decision=FAILOVER
        )


@pytest.mark.parametrize(
    ("status", "decision"),
    [
        pytest.param(403, FAILOVER, id="permanent"),
        pytest.param(503, None, id="unnamed: a repost could duplicate it"),
    ],
)
async def test_other_failed_events_are_logged_not_raised(
    status: int, decision: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    kube = FakeKube()
    kube.event_error = ApiError(status, "Forbidden", "no")
    await EventRecorder(kube, "c").post(
        ROUTE, EventType.WARNING, "FailedOver", "m", DECIDED_AT, decision=decision
    )
    assert "could not post event FailedOver" in caplog.text
