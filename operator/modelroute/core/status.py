"""Pure: build a route's status from what was observed and decided, and tell if it must be written.

Status is written only when something an admin acts on changes: health flags, the active
backend, conditions, messages. Counters are compared capped at their thresholds and probe
timestamps and latencies ride along with such writes, so a steady route (healthy or dead)
costs zero writes to the API server; live values are in the metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pydantic

from modelroute.api.models import ModelRouteSpec, ProbeSpec
from modelroute.api.status import BackendStatus, ConditionStatus, ModelRouteStatus, TrafficWeight
from modelroute.core import conditions, cost, health, policy
from modelroute.core.memo import IdentityMemo
from modelroute.core.types import (
    ConditionType,
    DecisionReason,
    DegradedReason,
    Problem,
    ReadyReason,
    TrafficSplit,
)

READY = ConditionType.READY
DEGRADED = ConditionType.DEGRADED


def _ready(
    spec: ModelRouteSpec,
    records: Mapping[str, health.HealthRecord],
    active: str | None,
    decision: policy.Decision,
    problem: Problem | None,
) -> tuple[ConditionStatus, str, str]:
    if problem is not None:
        return ConditionStatus.FALSE, problem.reason, problem.message
    if active is not None and records.get(active, health.HealthRecord()).healthy:
        return ConditionStatus.TRUE, ReadyReason.ROUTED, f"traffic goes to backend {active}"
    if decision.reason is DecisionReason.AWAITING_FIRST_PROBES:
        return ConditionStatus.FALSE, ReadyReason.AWAITING_FIRST_PROBES, decision.message
    where = f"routing stays on {active} (fail-static)" if active else "nothing is routed yet"
    return (
        ConditionStatus.FALSE,
        ReadyReason.ALL_BACKENDS_UNHEALTHY,
        f"no backend of {len(spec.backends)} is healthy; {where}",
    )


def _degraded(
    spec: ModelRouteSpec,
    records: Mapping[str, health.HealthRecord],
    active: str | None,
    decision: policy.Decision,
    problem: Problem | None,
) -> tuple[ConditionStatus, str, str]:
    if problem is not None and not records:
        return ConditionStatus.UNKNOWN, problem.reason, problem.message
    if decision.failback_pending is not None:
        return (
            ConditionStatus.TRUE,
            DegradedReason.FAILBACK_PENDING,
            f"backend {decision.failback_pending} is healthy and stable; traffic stays on "
            f"{active} until an admin approves (kubectl annotate modelroute <name> "
            "modelroute.dev/approve-failback=$(date +%s) --overwrite)",
        )
    degraded, reason, message = policy.is_degraded(spec, records, active)
    return (ConditionStatus.TRUE if degraded else ConditionStatus.FALSE), reason, message


def build_status(
    *,
    previous: ModelRouteStatus,
    spec: ModelRouteSpec,
    generation: int | None,
    records: Mapping[str, health.HealthRecord],
    traffic: TrafficSplit | None,
    decision: policy.Decision,
    problem: Problem | None,
    moved: bool,
    failback_approval: str | None,
    now: datetime,
) -> ModelRouteStatus:
    """The status for this reconcile; ``traffic`` is the split the routing object carries and
    ``moved`` is True when traffic just changed backend."""
    active = traffic.primary if traffic is not None else None
    known = [b.name for b in spec.backends if b.name in records]
    healthy = sum(1 for name in known if records[name].healthy)
    conds = list(previous.conditions)
    for ctype, (cstatus, reason, message) in (
        (READY, _ready(spec, records, active, decision, problem)),
        (DEGRADED, _degraded(spec, records, active, decision, problem)),
    ):
        conds = conditions.set_condition(
            conds,
            type=ctype,
            status=cstatus,
            reason=reason,
            message=message,
            now=now,
            observed_generation=generation,
        )
    return ModelRouteStatus(
        observed_generation=generation,
        active_backend=active,
        healthy_backends=f"{healthy}/{len(spec.backends)}",
        last_failover_time=now if moved else previous.last_failover_time,
        failover_count=previous.failover_count + (1 if moved else 0),
        failback_approval=failback_approval,
        backends=[_backend_status(records[name], name) for name in known],
        traffic=[TrafficWeight(backend=b, weight=w) for b, w in (traffic or {}).items()],
        conditions=conds,
        probe_cost=cost.probe_cost(spec),
    )


def _to_status(record: health.HealthRecord, name: str) -> BackendStatus:
    return health.to_status(name, record)


# Routes whose backends took one shared probe hold one record object: one entry for them all.
_backend_status = IdentityMemo(_to_status, limit=4096)


def material(status: ModelRouteStatus, spec: ModelRouteSpec | None) -> dict[str, Any]:
    """What decides whether ``status`` is worth a write (see the module docstring).

    The fields as Python values, not as JSON: equal values serialize equally, and comparing
    them skips pydantic's serializer (most of a plan's cost when it ran twice per plan).
    """
    fields = dict(status.__dict__)
    probes = _effective_probes(spec, None) if spec is not None else {}
    fields["backends"] = [
        _backend_material(entry, probes.get(entry.name)) for entry in status.backends
    ]
    return fields


def _probes_by_backend(spec: ModelRouteSpec, _: None) -> dict[str, ProbeSpec]:
    return {b.name: spec.effective_probe(b) for b in spec.backends}


# Per spec object (a worker's spec lives until the spec changes): asked twice per plan.
_effective_probes = IdentityMemo(_probes_by_backend)


def _backend_material(entry: BackendStatus, probe: ProbeSpec | None) -> tuple[object, ...]:
    return (entry.name, entry.healthy_since, *health.status_material_key(entry, probe))


def wire_patch(written: ModelRouteStatus | None, new: ModelRouteStatus) -> dict[str, Any]:
    """The JSON merge patch that makes the stored status ``new``.

    ``to_wire`` leaves unset fields out, and a merge patch keeps what it does not mention: a
    field set in the status last written and unset now (a finished staged failback, say) is
    sent as null, or it would stay in the stored status for good.
    """
    wire = new.to_wire()
    if written is not None:
        wire.update({key: None for key in written.to_wire() if key not in wire})
    return wire


def needs_write(
    written: ModelRouteStatus | None, new: ModelRouteStatus, spec: ModelRouteSpec | None
) -> bool:
    """True when ``new`` differs materially from the last status written (or read back)."""
    return written is None or material(written, spec) != material(new, spec)


def decisive(written: ModelRouteStatus | None, new: ModelRouteStatus) -> bool:
    """True when ``new`` differs from the status last written in more than backend counters.

    A failure (or success) counter still below its threshold, or a new probe message on a
    backend whose health did not flip, decides nothing: such a change may wait (and be written
    with the next decisive one). Anything else (a health flip, the active backend, traffic,
    conditions, failover counts, a failback step) is what an admin or an alert acts on now.
    """
    return written is None or _headline(written) != _headline(new)


def _headline(status: ModelRouteStatus) -> dict[str, Any]:
    fields = dict(status.__dict__)  # Python values, not JSON: see material()
    fields["backends"] = [(b.name, b.healthy) for b in status.backends]
    return fields


def build_invalid_status(
    *, previous: ModelRouteStatus, generation: int | None, problem: Problem | None, now: datetime
) -> ModelRouteStatus:
    """Status of a route whose spec breaks a rule: Ready=False naming the field, the rest kept."""
    reason, message = (
        (problem.reason, problem.message)
        if problem
        else (ReadyReason.INVALID_SPEC, "the spec is invalid")
    )
    conds = conditions.set_condition(
        previous.conditions,
        type=READY,
        status=ConditionStatus.FALSE,
        reason=reason,
        message=message,
        now=now,
        observed_generation=generation,
    )
    conds = conditions.set_condition(
        conds,
        type=DEGRADED,
        status=ConditionStatus.UNKNOWN,
        reason=reason,
        message="health is not probed while the route cannot be served as written",
        now=now,
        observed_generation=generation,
    )
    # Nothing is probed while the spec is invalid, so no drill runs either.
    update = {"observed_generation": generation, "conditions": conds, "drill": None}
    return previous.model_copy(update=update)


def accepted(answer: dict[str, Any], sent: ModelRouteStatus) -> ModelRouteStatus:
    """The status the API server stored, from its answer to a status write (``sent`` if it did
    not say: a client that returns no body) (pure).

    A field ``sent`` set that the answer lacks was pruned (a CRD older than the operator: helm
    upgrade leaves CRDs alone). It is kept as sent: a baseline without it would make every
    later plan write it again, at every probe result.
    """
    stored = answer.get("status") if isinstance(answer, dict) else None
    if not isinstance(stored, dict) or _within(stored, sent.to_wire()):
        # Stored as sent (the usual answer), or as sent less what the schema pruned, nested
        # fields included: keep ``sent`` rather than a parsed twin of it, which every route
        # held beside its desired status (a third of a route's memory).
        return sent
    try:
        taken = ModelRouteStatus.model_validate(stored)
    except pydantic.ValidationError:
        return sent
    lost = pruned(stored, sent)
    return taken.model_copy(update={f: getattr(sent, f) for f in lost}) if lost else taken


def pruned(stored: Mapping[str, Any], sent: ModelRouteStatus) -> list[str]:
    """The fields (Python names) set in ``sent``, not to their default, that ``stored`` (the
    status as the API server returned it) lacks: the server's schema does not know them."""
    return [
        name
        for name, field in ModelRouteStatus.model_fields.items()
        if (field.alias or name) not in stored
        and getattr(sent, name) != field.get_default(call_default_factory=True)
    ]


def pruned_paths(stored: Any, sent: Any, path: str = "") -> list[str]:
    """The paths (wire names, ``backends[].reason``) set in ``sent`` (a status's wire form)
    that ``stored`` lacks: what the API server's schema pruned (pure)."""
    if isinstance(stored, dict) and isinstance(sent, dict):
        found: list[str] = []
        for key, value in sent.items():
            at = f"{path}.{key}" if path else key
            if key not in stored:
                if value is not None:
                    found.append(at)
            else:
                found.extend(pruned_paths(stored[key], value, at))
        return found
    if isinstance(stored, list) and isinstance(sent, list):
        nested = (pruned_paths(a, b, f"{path}[]") for a, b in zip(stored, sent, strict=False))
        return list(dict.fromkeys(p for paths in nested for p in paths))
    return []


def _within(stored: Any, sent: Any) -> bool:
    """``stored`` is ``sent`` with some keys left out, at any depth, and nothing else changed."""
    if isinstance(stored, dict) and isinstance(sent, dict):
        return all(key in sent and _within(value, sent[key]) for key, value in stored.items())
    if isinstance(stored, list) and isinstance(sent, list):
        return len(stored) == len(sent) and all(map(_within, stored, sent))
    return bool(stored == sent)
