"""Tests for condition bookkeeping: keyed by type, lastTransitionTime moves only on a flip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelroute.api.status import Condition, ConditionStatus
from modelroute.core.conditions import get_condition, set_condition

TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN
BEFORE = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
NOW = BEFORE + timedelta(minutes=5)

READY = Condition(
    type="Ready",
    status=TRUE,
    reason="BackendActive",
    message="traffic on vendor",
    last_transition_time=BEFORE,
    observed_generation=1,
)
DEGRADED = Condition(
    type="Degraded",
    status=FALSE,
    reason="AllBackendsHealthy",
    message="",
    last_transition_time=BEFORE,
    observed_generation=1,
)


def set_ready(
    conditions: list[Condition],
    status: ConditionStatus = TRUE,
    reason: str = "BackendActive",
    message: str = "traffic on vendor",
    observed_generation: int | None = 1,
) -> list[Condition]:
    return set_condition(
        conditions,
        type="Ready",
        status=status,
        reason=reason,
        message=message,
        now=NOW,
        observed_generation=observed_generation,
    )


class Update(NamedTuple):
    status: ConditionStatus = TRUE
    reason: str = READY.reason
    message: str = READY.message
    observed_generation: int | None = 1


@pytest.mark.parametrize(
    ("update", "expected_time"),
    [
        pytest.param(Update(), BEFORE, id="nothing-changed"),
        pytest.param(Update(status=FALSE), NOW, id="status-flip-to-false"),
        pytest.param(Update(status=UNKNOWN), NOW, id="status-flip-to-unknown"),
        pytest.param(Update(reason="FailedOver"), BEFORE, id="reason-change-keeps-time"),
        pytest.param(Update(message="traffic on inhouse"), BEFORE, id="message-change-keeps-time"),
        pytest.param(Update(observed_generation=2), BEFORE, id="generation-change-keeps-time"),
        pytest.param(Update(observed_generation=None), BEFORE, id="generation-cleared"),
    ],
)
def test_last_transition_time_moves_only_on_status_flip(
    update: Update, expected_time: datetime
) -> None:
    (ready,) = set_ready([READY], *update)
    assert ready == Condition(type="Ready", last_transition_time=expected_time, **update._asdict())


def test_new_type_is_appended_with_now() -> None:
    result = set_condition(
        [READY],
        type="Degraded",
        status=TRUE,
        reason="NotOnPreferredBackend",
        message="traffic on inhouse",
        now=NOW,
        observed_generation=3,
    )
    assert result == [
        READY,
        Condition(
            type="Degraded",
            status=TRUE,
            reason="NotOnPreferredBackend",
            message="traffic on inhouse",
            last_transition_time=NOW,
            observed_generation=3,
        ),
    ]


def test_existing_type_is_replaced_in_place() -> None:
    result = set_ready([READY, DEGRADED], status=FALSE, reason="AllBackendsUnhealthy")
    assert [c.type for c in result] == ["Ready", "Degraded"]
    assert (result[0].status, result[0].reason) == (FALSE, "AllBackendsUnhealthy")
    assert result[1] is DEGRADED


def test_duplicate_types_collapse_to_one() -> None:
    stale = READY.model_copy(update={"reason": "Stale"})
    result = set_ready([READY, DEGRADED, stale], reason="Fresh")
    assert [(c.type, c.reason) for c in result] == [
        ("Ready", "Fresh"),
        ("Degraded", DEGRADED.reason),
    ]


def test_inputs_are_not_mutated() -> None:
    conditions = [READY, DEGRADED]
    result = set_ready(conditions, status=FALSE, reason="AllBackendsUnhealthy")
    assert conditions == [READY, DEGRADED]
    assert result is not conditions
    assert READY.status == TRUE and READY.last_transition_time == BEFORE


def test_wire_shape_uses_kubernetes_field_names() -> None:
    (ready,) = set_ready([], status=FALSE, reason="AwaitingFirstProbes", message="")
    assert ready.to_wire() == {
        "type": "Ready",
        "status": "False",
        "reason": "AwaitingFirstProbes",
        "message": "",
        "lastTransitionTime": "2025-01-01T12:05:00Z",
        "observedGeneration": 1,
    }


@pytest.mark.parametrize(
    ("conditions", "type_", "expected"),
    [
        pytest.param([READY, DEGRADED], "Degraded", DEGRADED, id="found"),
        pytest.param([READY], "Degraded", None, id="missing"),
        pytest.param([], "Ready", None, id="empty"),
    ],
)
def test_get_condition(conditions: list[Condition], type_: str, expected: Condition | None) -> None:
    assert get_condition(conditions, type_) == expected


updates = st.tuples(
    st.sampled_from(["Ready", "Degraded", "Progressing"]),
    st.sampled_from(list(ConditionStatus)),
    st.sampled_from(["A", "B"]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(updates, min_size=1, max_size=30))
def test_each_type_remembers_when_its_status_last_changed(
    sequence: list[tuple[str, ConditionStatus, str]],
) -> None:
    conditions: list[Condition] = []
    changed_at: dict[str, datetime] = {}
    first_seen: list[str] = []
    for step, (type_, status, reason) in enumerate(sequence):
        now = BEFORE + timedelta(seconds=step)
        previous = get_condition(conditions, type_)
        if previous is None or previous.status != status:
            changed_at[type_] = now
        if type_ not in first_seen:
            first_seen.append(type_)
        conditions = set_condition(
            conditions,
            type=type_,
            status=status,
            reason=reason,
            message="",
            now=now,
            observed_generation=step,
        )
    assert [c.type for c in conditions] == first_seen
    assert {c.type: c.last_transition_time for c in conditions} == changed_at


def test_an_unchanged_condition_keeps_the_very_objects() -> None:
    """Nothing to change: the same objects come back, so a plan can skip copying status."""
    result = set_ready([READY, DEGRADED])
    assert result == [READY, DEGRADED]
    assert result[0] is READY and result[1] is DEGRADED


def test_an_unchanged_condition_with_a_duplicate_still_drops_the_duplicate() -> None:
    stale = READY.model_copy(update={"message": "stale"})
    assert set_ready([READY, DEGRADED, stale]) == [READY, DEGRADED]
