"""kstatus conditions: ``Reconciling`` and ``Stalled``, derived from the status a plan built.

kstatus (sigs.k8s.io/cli-utils pkg/kstatus), which Flux health checks and ``kubectl wait``-based
tooling read, does not read ``Ready``: a custom resource is InProgress while ``Reconciling`` is
True, Failed while ``Stalled`` is True, and Current otherwise (once ``observedGeneration`` is the
current generation). So:

- ``Reconciling`` True while the first probes are pending (Ready reason AwaitingFirstProbes) or a
  staged failback runs (``status.failback`` set); False, reason Reconciled, otherwise.
- ``Stalled`` True while Ready is False for a reason only a human can fix (an invalid spec, a
  missing driver, a conflict, a rejection, a missing target), with Ready's reason and message;
  False otherwise. All backends unhealthy is not Stalled: the route recovers by itself.
- A suspended route (Ready reason Suspended) is neither: an admin chose it, nothing converges
  and nothing is broken (``Reconciling`` False, reason Suspended). A drill is neither either:
  its failover and failback are real, so a staged failback after it is Reconciling as usual.

A route that is Stalled is not also Reconciling (nothing converges until a human acts). Both are
set with :func:`~modelroute.core.conditions.set_condition`, so they change only when what they
say changes and a steady route still writes nothing. Pure.
"""

from __future__ import annotations

import operator
from datetime import datetime

from modelroute.api.status import ConditionStatus, ModelRouteStatus
from modelroute.core.conditions import get_condition, set_condition
from modelroute.core.types import ConditionType, ReadyReason, ReconcilingReason, StalledReason

#: Ready=False reasons that need a human. Besides the core's own, the routing drivers' reasons
#: (``ServiceReason``, ``HTTPRouteReason``, ``AIGatewayRouteReason``), as the strings the API
#: shows: the core does not import the drivers (tests/unit/test_kstatus.py checks the list).
STALLED_REASONS: frozenset[str] = frozenset(
    {
        ReadyReason.INVALID_SPEC,
        ReadyReason.DRIVER_UNAVAILABLE,
        ReadyReason.GATEWAY_REJECTED,
        "ServiceConflict",
        "RouteConflict",
        "BackendRefMissing",
        "TargetServiceMissing",
        "TargetPortMissing",
        "ExternalNamePortMismatch",
    }
)

_RECONCILED = "the operator has acted on the current spec; nothing is left to converge"
_SUSPENDED = (
    "routing is suspended (spec.suspend): the operator converges nothing until it is resumed; "
    "see Ready for where traffic stays"
)
_NOT_STALLED = "no human action is needed: the operator converges this route by itself"


def with_kstatus(new: ModelRouteStatus, generation: int | None, now: datetime) -> ModelRouteStatus:
    """``new`` with ``Reconciling`` and ``Stalled`` set from its Ready condition and ramp."""
    ready = get_condition(new.conditions, ConditionType.READY)
    stalled = (
        ready is not None
        and ready.status is ConditionStatus.FALSE
        and ready.reason in STALLED_REASONS
    )
    if stalled and ready is not None:
        stall = (ConditionStatus.TRUE, ready.reason, ready.message)
    else:
        stall = (ConditionStatus.FALSE, StalledReason.NOT_STALLED, _NOT_STALLED)
    if stalled:
        reconcile = (ConditionStatus.FALSE, ReconcilingReason.RECONCILED, _RECONCILED)
    elif ready is not None and ready.reason == ReadyReason.SUSPENDED:
        reconcile = (ConditionStatus.FALSE, ReconcilingReason.SUSPENDED, _SUSPENDED)
    elif ready is not None and ready.reason == ReadyReason.AWAITING_FIRST_PROBES:
        reconcile = (ConditionStatus.TRUE, ReconcilingReason.AWAITING_FIRST_PROBES, ready.message)
    elif new.failback is not None:
        weights = ", ".join(f"{t.backend} {t.weight}%" for t in new.traffic)
        message = f"staged failback to {new.failback.backend}: {weights}"
        reconcile = (ConditionStatus.TRUE, ReconcilingReason.FAILBACK_IN_PROGRESS, message)
    else:
        reconcile = (ConditionStatus.FALSE, ReconcilingReason.RECONCILED, _RECONCILED)
    conds = list(new.conditions)
    for ctype, (cstatus, reason, message) in (
        (ConditionType.RECONCILING, reconcile),
        (ConditionType.STALLED, stall),
    ):
        conds = set_condition(
            conds,
            type=ctype,
            status=cstatus,
            reason=reason,
            message=message,
            now=now,
            observed_generation=generation,
        )
    if len(conds) == len(new.conditions) and all(map(operator.is_, conds, new.conditions)):
        return new  # both as they were: no copy (a plan runs per route on every health change)
    return new.model_copy(update={"conditions": conds})
