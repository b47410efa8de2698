"""Kubernetes-style conditions (``Ready``, ``Degraded``) keyed by type.

Pure: ``now`` is a parameter. ``lastTransitionTime`` follows the Kubernetes convention and moves
only when a condition's status flips, so a changing reason or message does not look like a new
transition to ``kubectl wait`` or alerting rules, and a steady route writes identical status.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from modelroute.api.status import Condition, ConditionStatus


def set_condition(
    conditions: Sequence[Condition],
    *,
    type: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int | None,
) -> list[Condition]:
    """Return ``conditions`` with the condition of ``type`` set; the input is not changed.

    An existing condition is replaced where it stands (so status diffs stay small) and a new type
    is appended. ``now`` becomes ``lastTransitionTime`` only for a new condition or a status flip.
    """
    previous = get_condition(conditions, type)
    if (
        previous is not None
        and (previous.status, previous.reason, previous.message) == (status, reason, message)
        and previous.observed_generation == observed_generation
        and sum(1 for condition in conditions if condition.type == type) == 1
    ):
        return list(conditions)  # as it is: the same objects, so callers can skip their copies
    if previous is not None and previous.status == status:
        transition_time = previous.last_transition_time
    else:
        transition_time = now
    updated = Condition(
        type=type,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition_time,
        observed_generation=observed_generation,
    )
    if previous is None:
        return [*conditions, updated]
    return _replace_first_of_type(conditions, updated)


def _replace_first_of_type(conditions: Sequence[Condition], updated: Condition) -> list[Condition]:
    # Keyed by type: a duplicate left behind by another writer is dropped, not kept stale.
    result: list[Condition] = []
    replaced = False
    for condition in conditions:
        if condition.type != updated.type:
            result.append(condition)
        elif not replaced:
            result.append(updated)
            replaced = True
    return result


def get_condition(conditions: Sequence[Condition], type: str) -> Condition | None:
    """The first condition of ``type``, or ``None`` when there is none."""
    return next((condition for condition in conditions if condition.type == type), None)
