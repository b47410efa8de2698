"""The ModelRoute's status as pydantic models (the status half of the CRD schema).

Written only by the operator, through the status subresource, and only when something material
changes (see ``core.status``).
"""

from __future__ import annotations

import enum
from datetime import datetime

from pydantic import Field

from modelroute.api.base import ApiModel


class ConditionStatus(enum.StrEnum):
    """Kubernetes condition status."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    """A Kubernetes-style condition (metav1.Condition shape)."""

    type: str = Field(description="Condition type, e.g. Ready or Degraded.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase machine-readable reason.")
    message: str = Field(default="", description="Human-readable details.")
    last_transition_time: datetime = Field(description="When status last changed.")
    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation the condition was computed from."
    )


class BackendStatus(ApiModel):
    """Observed health of one backend."""

    name: str = Field(description="Backend name.")
    healthy: bool | None = Field(
        default=None, description="Healthy after hysteresis; unset until the first probe finished."
    )
    consecutive_failures: int = Field(default=0, description="Failed probes in a row.")
    consecutive_successes: int = Field(default=0, description="Successful probes in a row.")
    healthy_since: datetime | None = Field(
        default=None, description="When the backend last became healthy (for stabilization)."
    )
    last_probe_time: datetime | None = Field(default=None, description="When the last probe ended.")
    latency_ms: int | None = Field(default=None, description="Latency of the last probe (ms).")
    message: str = Field(default="", description="Result of the last probe.")
    reason: str | None = Field(
        default=None,
        description="Class of the last probe's failure, unset after a success: AuthFailed, "
        "ModelNotServed, RateLimited, Unavailable, BadResponse, SlowResponse or SecretMissing.",
    )
    deep_probe_failure: str | None = Field(
        default=None,
        description="Class of the last deep probe's failure while the backend cannot generate "
        "(it stays unhealthy until a deep probe passes); unset once one passes.",
    )


class TrafficWeight(ApiModel):
    """One backend's share of the route's traffic, as the routing object carries it now."""

    backend: str = Field(description="Backend name.")
    weight: int = Field(description="Percentage of the traffic (0-100).")


class FailbackProgress(ApiModel):
    """A staged failback in progress (failback.steps with a weighted driver)."""

    backend: str = Field(description="The recovered backend traffic is given back to.")
    fallback: str = Field(description="The backend that gives the traffic back.")
    step: int = Field(description="Index in failback.steps of the weight the backend has now.")
    since: datetime = Field(description="When this step began.")


class FailbackAbort(ApiModel):
    """The last staged failback that was aborted: its backend's stabilization restarts then."""

    backend: str = Field(description="The backend whose failback was aborted.")
    at: datetime = Field(description="When it was aborted.")


class ProbeCost(ApiModel):
    """What this route's probes cost per day, computed from the spec alone.

    Counted as if no probe were shared with another route (shared probes run once; the
    ``modelroute_probe_requests_total`` metric counts what was really sent). Tokens are an
    estimate: each generating probe costs about 8 input tokens (a one-word prompt in the chat
    template) and 1 output token; other probe types cost none.
    """

    requests_per_day: int = Field(description="Probes sent per day, cheap and deep.")
    estimated_tokens_per_day: int = Field(
        description="Estimated tokens (input + output) the generating probes use per day."
    )


class DrillPhase(enum.StrEnum):
    """Where a drill stands."""

    ACTIVE = "Active"  # the backend's probe results read as failures
    RECOVERING = "Recovering"  # ended; traffic returns under the normal failback rules


class DrillStatus(ApiModel):
    """The failover drill under way (spec.drill), until traffic is back where it belongs."""

    backend: str = Field(description="The drilled backend.")
    until: datetime = Field(description="When the drill ends (spec.drill.until).")
    phase: DrillPhase = Field(
        description="Active until then; Recovering while traffic returns to the backend."
    )


class RoutingObjectRef(ApiModel):
    """A routing object an earlier spec routed through (a driver switch or a rename)."""

    api_version: str = Field(description="apiVersion of the object, e.g. v1.")
    kind: str = Field(description="Kind of the object, e.g. Service.")
    name: str = Field(description="Name of the object, in the route's namespace.")


class ModelRouteStatus(ApiModel):
    """Observed state of a ModelRoute, written only when it changes."""

    observed_generation: int | None = Field(default=None, description="Last generation acted on.")
    active_backend: str | None = Field(default=None, description="Backend receiving traffic.")
    healthy_backends: str | None = Field(default=None, description="Healthy/total, e.g. 1/2.")
    last_failover_time: datetime | None = Field(
        default=None, description="When traffic last moved between backends."
    )
    failover_count: int = Field(default=0, description="Number of failovers and failbacks.")
    failback_approval: str | None = Field(
        default=None,
        description="The last modelroute.dev/approve-failback annotation value acted on.",
    )
    backends: list[BackendStatus] = Field(default_factory=list, description="Per-backend health.")
    traffic: list[TrafficWeight] = Field(
        default_factory=list,
        description="The split the routing object carries now (backends with traffic only).",
    )
    failback: FailbackProgress | None = Field(
        default=None, description="The staged failback in progress, if any."
    )
    failback_aborted: FailbackAbort | None = Field(
        default=None, description="The last aborted staged failback (stabilization restarts)."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Degraded, Reconciling, Stalled and (L7 drivers) RoutingAccepted.",
    )
    probe_cost: ProbeCost | None = Field(
        default=None, description="Probes and estimated tokens per day, from the spec."
    )
    drill: DrillStatus | None = Field(
        default=None, description="The failover drill under way (spec.drill), if any."
    )
    previous_routing: list[RoutingObjectRef] | None = Field(
        default=None,
        description="Routing objects earlier specs routed through (a driver switch or a "
        "rename) that the operator has still to release: deleted under deletionPolicy Delete, "
        "kept without the route's ownerReference under Retain, once the current object carries "
        "the traffic. Kept here so a restarted operator releases them too; unset once released.",
    )
