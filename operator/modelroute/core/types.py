"""The vocabulary the layers share: route identity, problems, traffic splits and typed reasons.

Reasons are enums so no module compares condition or decision values as free strings; each is a
``StrEnum`` because its value is what the API shows (condition reasons, Event reasons).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class RouteRef:
    """Identity of a ModelRoute, as owner references and Events need it."""

    namespace: str
    name: str
    uid: str

    @property
    def key(self) -> tuple[str, str]:
        """(namespace, name)."""
        return self.namespace, self.name


class ConditionType(enum.StrEnum):
    """The condition types the operator sets on a ModelRoute."""

    READY = "Ready"
    DEGRADED = "Degraded"
    ROUTING_ACCEPTED = "RoutingAccepted"  # L7 drivers: the gateway's verdict on the object
    # kstatus' abnormal-true conditions (sigs.k8s.io/cli-utils pkg/kstatus): True while the
    # operator is still converging, and while the route needs a human; False otherwise.
    RECONCILING = "Reconciling"
    STALLED = "Stalled"


class ReadyReason(enum.StrEnum):
    """Reasons of the ``Ready`` condition that the core decides."""

    ROUTED = "Routed"
    AWAITING_FIRST_PROBES = "AwaitingFirstProbes"
    ALL_BACKENDS_UNHEALTHY = "AllBackendsUnhealthy"
    INVALID_SPEC = "InvalidSpec"
    DRIVER_UNAVAILABLE = "DriverUnavailable"
    GATEWAY_REJECTED = "GatewayRejected"  # the gateway's last verdict, until it judges anew
    SUSPENDED = "Suspended"  # spec.suspend: probes and status go on, routing is not written


class DegradedReason(enum.StrEnum):
    """Reasons of the ``Degraded`` condition."""

    BACKEND_UNHEALTHY = "BackendUnhealthy"
    NO_ACTIVE_BACKEND = "NoActiveBackend"
    NOT_ON_PREFERRED_BACKEND = "NotOnPreferredBackend"
    FAILBACK_PENDING = "FailbackPending"
    FAILBACK_IN_PROGRESS = "FailbackInProgress"
    ALL_BACKENDS_HEALTHY = "AllBackendsHealthy"
    DRILL = "Drill"  # spec.drill: a backend's probe results read as failures, on purpose


class ReconcilingReason(enum.StrEnum):
    """Reasons of the ``Reconciling`` condition."""

    AWAITING_FIRST_PROBES = "AwaitingFirstProbes"
    FAILBACK_IN_PROGRESS = "FailbackInProgress"
    RECONCILED = "Reconciled"  # False: nothing left to converge
    SUSPENDED = "Suspended"  # False: spec.suspend, the operator does not converge routing


class StalledReason(enum.StrEnum):
    """Reasons of the ``Stalled`` condition when False (when True it carries Ready's reason)."""

    NOT_STALLED = "NotStalled"


class DecisionReason(enum.StrEnum):
    """Why the policy decided what it did (shown in messages, never on the wire alone)."""

    AWAITING_FIRST_PROBES = "AwaitingFirstProbes"
    ALL_BACKENDS_UNHEALTHY = "AllBackendsUnhealthy"
    STEADY = "Steady"
    FAILBACK_PENDING = "FailbackPending"
    INITIAL = "Initial"
    ACTIVE_BACKEND_REMOVED = "ActiveBackendRemoved"
    ACTIVE_BACKEND_UNHEALTHY = "ActiveBackendUnhealthy"
    PREFERRED_BACKEND_RECOVERED = "PreferredBackendRecovered"
    FAILBACK_APPROVED = "FailbackApproved"


class Transition(enum.StrEnum):
    """Why traffic moves; the values are the Kubernetes Event reasons."""

    INITIAL = "Routed"
    FAILOVER = "FailedOver"
    FAILBACK = "FailedBack"
    REROUTE = "Rerouted"  # the active backend disappeared from spec
    FAILBACK_STEP = "FailbackStep"  # a staged failback gives the next share back
    FAILBACK_ABORTED = "FailbackAborted"  # a failed probe during a staged failback


class ProbeFailure(enum.StrEnum):
    """Why a probe failed, in classes an admin acts on; the values are the API's words.

    Shown in ``status.backends[].reason``, the ``reason`` label of
    ``modelroute_probe_failures_total`` and the failover Event. The set is closed and small so
    the metric label stays bounded; a new member is an API change (README, "What you see").
    """

    #: 401 or 403: the key is wrong, expired, or lacks access (check authSecretRef).
    AUTH_FAILED = "AuthFailed"
    #: 404, or the model (Azure: deployment) is not among those the backend serves.
    MODEL_NOT_SERVED = "ModelNotServed"
    #: 429: rate limit or exhausted quota; ``Retry-After`` delays the next probe.
    RATE_LIMITED = "RateLimited"
    #: 5xx (Anthropic's 529 too), connection refused or reset, DNS, TLS, timeout.
    UNAVAILABLE = "Unavailable"
    #: An answer that is not the dialect's: not JSON, an HTML page, a wrong shape, another 4xx.
    BAD_RESPONSE = "BadResponse"
    #: A healthy answer slower than ``latencyThresholdMs``.
    SLOW_RESPONSE = "SlowResponse"
    #: A Secret a probe needs (authSecretRef, caBundleSecretRef), or its key, is missing or
    #: unreadable (a CA key without a PEM certificate too): no request was sent.
    SECRET_MISSING = "SecretMissing"


class IncidentEvent(enum.StrEnum):
    """Event reasons of the incident controls (spec.suspend, spec.drill)."""

    SUSPENDED = "Suspended"
    RESUMED = "Resumed"
    DRILL_STARTED = "DrillStarted"
    DRILL_ENDED = "DrillEnded"


class EventType(enum.StrEnum):
    """Kubernetes Event types."""

    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True)
class PlannedEvent:
    """A Kubernetes Event to post on the route."""

    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class Problem:
    """Why routing cannot be done as asked: ``Ready=False`` with this reason and message.

    ``reason`` is an enum member: the core's :class:`ReadyReason`, or a driver's own reasons
    (each driver module defines the ones it reports).
    """

    reason: enum.StrEnum
    message: str


@dataclass(frozen=True)
class Verdict:
    """What the gateway said of the routing object: the ``RoutingAccepted`` condition.

    ``status`` is "True", "False" or "Unknown" (no gateway has answered for this generation);
    reason and message are the gateway's own where it gave them.
    """

    status: str
    reason: str
    message: str


class TrafficSplit(Mapping[str, int]):
    """How a route's traffic is shared: backend name -> weight, weights summing to 100.

    Backends with weight 0 are not stored, so a split read back from a routing object that
    lists every backend (most at 0) equals the one that was asked for. Immutable and hashable.
    """

    __slots__ = ("_weights",)

    def __init__(self, weights: Mapping[str, int]) -> None:
        kept = {name: int(weight) for name, weight in weights.items() if weight != 0}
        if any(weight < 0 or weight > 100 for weight in kept.values()):
            raise ValueError(f"weights must be within 0..100: {dict(weights)}")
        if sum(kept.values()) != 100:
            raise ValueError(f"weights must sum to 100: {dict(weights)}")
        self._weights = kept

    @classmethod
    def single(cls, backend: str) -> TrafficSplit:
        """All traffic to ``backend``."""
        return cls({backend: 100})

    def __getitem__(self, backend: str) -> int:
        return self._weights.get(backend, 0)

    def __contains__(self, backend: object) -> bool:
        return backend in self._weights

    def __iter__(self) -> Iterator[str]:
        return iter(self._weights)

    def __len__(self) -> int:
        return len(self._weights)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TrafficSplit):
            return self._weights == other._weights
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self._weights.items()))

    def __repr__(self) -> str:
        return f"TrafficSplit({self._weights!r})"

    def __str__(self) -> str:
        return ", ".join(f"{name} {weight}%" for name, weight in self._weights.items())

    @property
    def primary(self) -> str:
        """The backend with the most traffic (the first listed on a tie): the active one."""
        return max(self._weights, key=lambda name: self._weights[name])

    @property
    def is_single(self) -> bool:
        """True when one backend takes all traffic."""
        return len(self._weights) == 1
