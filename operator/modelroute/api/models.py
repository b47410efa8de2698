"""The ModelRoute API as pydantic models: the single source of the CRD schema.

Field names follow ``shared/design/modelroute-api.md``. Python attributes are snake_case and the
wire format is camelCase (aliases). Rules the API server can enforce live in the field
constraints (they become the CRD's OpenAPI schema, see ``crdgen``); rules it cannot enforce
(unique backend names, ``serviceRef`` present for the Service driver) live in ``validation``.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "modelroute.dev"
VERSION = "v1alpha1"
KIND = "ModelRoute"
PLURAL = "modelroutes"
SINGULAR = "modelroute"
SHORT_NAMES = ("mroute",)

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_1035_LABEL_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
HTTP_HEADER_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
URL_PATTERN = r"^https?://[^\s/?#]+(/[^\s]*)?$"

Port = Annotated[int, Field(ge=1, le=65535)]
DnsLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
ServiceName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_1035_LABEL_PATTERN)]


class _Model(BaseModel):
    """Base: camelCase on the wire, snake_case in Python, unknown fields ignored.

    Unknown fields are ignored rather than rejected so an older operator keeps working while a
    newer CRD adds fields; the API server's structural schema already prunes unknown input.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
        use_enum_values=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """Serialize to the camelCase JSON shape the API server stores."""
        return self.model_dump(by_alias=True, mode="json", exclude_none=True)


class ProbeType(enum.StrEnum):
    """How a backend's health is probed."""

    HTTP = "HTTP"
    OPENAI_MODELS = "OpenAIModels"
    OPENAI_CHAT = "OpenAIChat"
    TCP = "TCP"


class FailbackMode(enum.StrEnum):
    """What happens when a more preferred backend is healthy again."""

    AUTOMATIC = "Automatic"
    MANUAL = "Manual"


class ServiceSpec(_Model):
    """The stable Service that clients call; created and owned by the operator."""

    name: ServiceName = Field(description="Name of the stable Service clients call.")
    port: Port = Field(description="Port the stable Service exposes.")


class ServiceRef(_Model):
    """A Service in the route's namespace that serves one backend."""

    name: ServiceName = Field(description="Name of the backend's Service (same namespace).")
    port: Port = Field(description="Port of that Service to route to.")


class AuthSecretRef(_Model):
    """Where the probe's API key lives; the key is sent as ``<header>: <prefix><key>``."""

    name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)] = (
        Field(description="Secret name (same namespace).")
    )
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=SECRET_KEY_PATTERN)] = Field(
        description="Key inside the Secret's data."
    )
    header: Annotated[str, Field(min_length=1, max_length=128, pattern=HTTP_HEADER_PATTERN)] = (
        Field(default="Authorization", description="HTTP header carrying the key.")
    )
    prefix: Annotated[str, Field(max_length=64)] = Field(
        default="Bearer ", description="Text put before the key in the header value."
    )


_PROBE_FIELD_DOCS = {
    "type": "HTTP (GET path, 2xx/3xx), OpenAIModels (GET /v1/models lists the model), "
    "OpenAIChat (tiny chat completion), or TCP (connect).",
    "path": "Path for HTTP probes.",
    "interval_seconds": "Seconds between the starts of two probes.",
    "timeout_seconds": "Seconds before a probe counts as failed.",
    "failure_threshold": "Consecutive failures that make a healthy backend unhealthy.",
    "success_threshold": "Consecutive successes that make an unhealthy backend healthy.",
    "latency_threshold_ms": "A slower answer (milliseconds) counts as a failure.",
}


class ProbeSpec(_Model):
    """Route-level probe settings; every field has a default."""

    type: ProbeType = Field(default=ProbeType.OPENAI_MODELS, description=_PROBE_FIELD_DOCS["type"])
    path: Annotated[str, Field(max_length=2048, pattern=r"^/")] = Field(
        default="/", description=_PROBE_FIELD_DOCS["path"]
    )
    interval_seconds: Annotated[int, Field(ge=1, le=3600)] = Field(
        default=5, description=_PROBE_FIELD_DOCS["interval_seconds"]
    )
    timeout_seconds: Annotated[int, Field(ge=1, le=300)] = Field(
        default=2, description=_PROBE_FIELD_DOCS["timeout_seconds"]
    )
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = Field(
        default=3, description=_PROBE_FIELD_DOCS["failure_threshold"]
    )
    success_threshold: Annotated[int, Field(ge=1, le=100)] = Field(
        default=2, description=_PROBE_FIELD_DOCS["success_threshold"]
    )
    latency_threshold_ms: Annotated[int, Field(ge=1, le=600_000)] | None = Field(
        default=None, description=_PROBE_FIELD_DOCS["latency_threshold_ms"]
    )

    def overridden_by(self, override: ProbeOverride | None) -> ProbeSpec:
        """Return these settings with the fields the backend sets replaced."""
        if override is None:
            return self
        changes = override.model_dump(exclude_none=True)
        return self.model_copy(update=changes) if changes else self


class ProbeOverride(_Model):
    """Per-backend probe settings: the fields set here replace the route-level ones."""

    type: ProbeType | None = Field(default=None, description=_PROBE_FIELD_DOCS["type"])
    path: Annotated[str, Field(max_length=2048, pattern=r"^/")] | None = Field(
        default=None, description=_PROBE_FIELD_DOCS["path"]
    )
    interval_seconds: Annotated[int, Field(ge=1, le=3600)] | None = Field(
        default=None, description=_PROBE_FIELD_DOCS["interval_seconds"]
    )
    timeout_seconds: Annotated[int, Field(ge=1, le=300)] | None = Field(
        default=None, description=_PROBE_FIELD_DOCS["timeout_seconds"]
    )
    failure_threshold: Annotated[int, Field(ge=1, le=100)] | None = Field(
        default=None, description=_PROBE_FIELD_DOCS["failure_threshold"]
    )
    success_threshold: Annotated[int, Field(ge=1, le=100)] | None = Field(
        default=None, description=_PROBE_FIELD_DOCS["success_threshold"]
    )
    latency_threshold_ms: Annotated[int, Field(ge=1, le=600_000)] | None = Field(
        default=None, description=_PROBE_FIELD_DOCS["latency_threshold_ms"]
    )


class Backend(_Model):
    """One place the route can send traffic to."""

    name: DnsLabel = Field(description="Unique name of the backend within the route.")
    priority: Annotated[int, Field(ge=0, le=1000)] = Field(
        description="Lower is preferred; ties are broken by list order."
    )
    service_ref: ServiceRef | None = Field(
        default=None, description="The Service the route points at when this backend is active."
    )
    model: Annotated[str, Field(min_length=1, max_length=256)] = Field(
        description="Model id served by this backend (used by OpenAI probes)."
    )
    endpoint: Annotated[str, Field(max_length=2048, pattern=URL_PATTERN)] | None = Field(
        default=None,
        description="Base URL probes use; default http://<serviceRef.name>.<namespace>.svc:<port>.",
    )
    auth_secret_ref: AuthSecretRef | None = Field(
        default=None, description="Secret holding the API key sent with probes."
    )
    probe: ProbeOverride | None = Field(
        default=None, description="Overrides of the route-level probe for this backend."
    )

    def probe_url(self, namespace: str) -> str:
        """Base URL the prober uses for this backend (no trailing slash)."""
        if self.endpoint:
            return self.endpoint.rstrip("/")
        if self.service_ref is None:
            raise ValueError(f"backend {self.name!r} has neither endpoint nor serviceRef")
        return f"http://{self.service_ref.name}.{namespace}.svc:{self.service_ref.port}"


class FailbackSpec(_Model):
    """Failback behaviour once a more preferred backend is healthy again."""

    mode: FailbackMode = Field(
        default=FailbackMode.AUTOMATIC,
        description="Automatic: move back after stabilizationSeconds. Manual: wait for an admin "
        "(annotate the route with modelroute.dev/approve-failback).",
    )
    stabilization_seconds: Annotated[int, Field(ge=0, le=86_400)] = Field(
        default=60,
        description="Seconds a more preferred backend must stay healthy before failback.",
    )


class RoutingSpec(_Model):
    """Which routing object is pointed at the active backend."""

    # A plain string here: the allowed names come from the driver registry (modelroute.routing),
    # which crdgen writes into the CRD as an enum, so adding a driver is adding one module.
    driver: Annotated[str, Field(min_length=1, max_length=63)] = Field(
        default="Service", description="Routing driver that points traffic at the active backend."
    )


class ModelRouteSpec(_Model):
    """Desired state of a ModelRoute."""

    service: ServiceSpec = Field(description="The stable Service clients call.")
    backends: Annotated[list[Backend], Field(min_length=1, max_length=16)] = Field(
        description="Backends in order of preference (see priority)."
    )
    probe: ProbeSpec = Field(default_factory=ProbeSpec, description="Route-level probe settings.")
    failback: FailbackSpec = Field(default_factory=FailbackSpec, description="Failback policy.")
    routing: RoutingSpec = Field(default_factory=RoutingSpec, description="Routing driver.")

    def effective_probe(self, backend: Backend) -> ProbeSpec:
        """The probe settings that apply to ``backend``."""
        return self.probe.overridden_by(backend.probe)

    def preference_order(self) -> list[Backend]:
        """Backends sorted by priority, ties kept in list order (sort is stable)."""
        return sorted(self.backends, key=lambda b: b.priority)


class ConditionStatus(enum.StrEnum):
    """Kubernetes condition status."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(_Model):
    """A Kubernetes-style condition (metav1.Condition shape)."""

    type: str = Field(description="Condition type, e.g. Ready or Degraded.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase machine-readable reason.")
    message: str = Field(default="", description="Human-readable details.")
    last_transition_time: datetime = Field(description="When status last changed.")
    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation the condition was computed from."
    )


class BackendStatus(_Model):
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


class TrafficWeight(_Model):
    """One backend's share of the route's traffic, as the routing object carries it now."""

    backend: str = Field(description="Backend name.")
    weight: int = Field(description="Percentage of the traffic (0-100).")


class ModelRouteStatus(_Model):
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
    conditions: list[Condition] = Field(default_factory=list, description="Ready and Degraded.")
