"""The ModelRoute API as pydantic models: the single source of the CRD schema.

Field names follow ``shared/design/modelroute-api.md``. Python attributes are snake_case and the
wire format is camelCase (aliases). Rules the API server can enforce live in the field
constraints (they become the CRD's OpenAPI schema, see ``crdgen``); rules it cannot enforce
(unique backend names, ``serviceRef`` present for the Service driver) live in ``validation``.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

from pydantic import Field

from modelroute.api.base import (
    DNS_SUBDOMAIN_PATTERN,
    HTTP_HEADER_PATTERN,
    SECRET_KEY_PATTERN,
    URL_PATTERN,
    ApiModel,
    DnsLabel,
    Port,
    ServiceName,
)
from modelroute.api.gateway import (
    AIGatewayRouteSpec,
    AIServiceBackendRef,
    BackendRef,
    HTTPRouteSpec,
)
from modelroute.api.probe import DeepProbeSpec as DeepProbeSpec
from modelroute.api.probe import DeepProbeType as DeepProbeType
from modelroute.api.probe import ProbeOverride as ProbeOverride
from modelroute.api.probe import ProbeSpec as ProbeSpec
from modelroute.api.probe import ProbeType as ProbeType
from modelroute.api.trust import CaBundleSecretRef as CaBundleSecretRef

GROUP = "modelroute.dev"
VERSION = "v1alpha1"
KIND = "ModelRoute"
PLURAL = "modelroutes"
SINGULAR = "modelroute"
SHORT_NAMES = ("mroute",)


class FailbackMode(enum.StrEnum):
    """What happens when a more preferred backend is healthy again."""

    AUTOMATIC = "Automatic"
    MANUAL = "Manual"


class ServiceSpec(ApiModel):
    """The stable Service that clients call; created and owned by the operator."""

    name: ServiceName = Field(description="Name of the stable Service clients call.")
    port: Port = Field(description="Port the stable Service exposes.")


class ServiceRef(ApiModel):
    """A Service in the route's namespace that serves one backend."""

    name: ServiceName = Field(description="Name of the backend's Service (same namespace).")
    port: Port = Field(description="Port of that Service to route to.")


class Provider(enum.StrEnum):
    """The API dialect a backend speaks: probe paths, auth and version headers, bodies."""

    OPENAI = "OpenAI"
    AZURE_OPENAI = "AzureOpenAI"
    ANTHROPIC = "Anthropic"


# How each provider expects its key: (header, prefix).
AUTH_DEFAULTS = {
    Provider.OPENAI: ("Authorization", "Bearer "),
    Provider.AZURE_OPENAI: ("api-key", ""),
    Provider.ANTHROPIC: ("x-api-key", ""),
}


class AuthSecretRef(ApiModel):
    """Where the probe's API key lives; the key is sent as ``<header>: <prefix><key>``.

    ``header`` and ``prefix`` default by the backend's provider: OpenAI ``Authorization:
    Bearer <key>``, Azure OpenAI ``api-key: <key>``, Anthropic ``x-api-key: <key>``.
    """

    name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)] = (
        Field(description="Secret name (same namespace).")
    )
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=SECRET_KEY_PATTERN)] = Field(
        description="Key inside the Secret's data."
    )
    header: (
        Annotated[str, Field(min_length=1, max_length=128, pattern=HTTP_HEADER_PATTERN)] | None
    ) = Field(
        default=None,
        description="HTTP header carrying the key; default by provider (OpenAI Authorization, "
        "AzureOpenAI api-key, Anthropic x-api-key).",
    )
    prefix: Annotated[str, Field(max_length=64)] | None = Field(
        default=None,
        description='Text put before the key; default by provider (OpenAI "Bearer ", others none).',
    )

    def for_provider(self, provider: Provider) -> AuthSecretRef:
        """This reference with the provider's header and prefix where none is set."""
        header, prefix = AUTH_DEFAULTS[provider]
        return self.model_copy(
            update={
                "header": self.header if self.header is not None else header,
                "prefix": self.prefix if self.prefix is not None else prefix,
            }
        )


class Backend(ApiModel):
    """One place the route can send traffic to."""

    name: DnsLabel = Field(description="Unique name of the backend within the route.")
    priority: Annotated[int, Field(ge=0, le=1000)] = Field(
        description="Lower is preferred; ties are broken by list order."
    )
    service_ref: ServiceRef | None = Field(
        default=None, description="The Service the route points at when this backend is active."
    )
    ai_service_backend_ref: AIServiceBackendRef | None = Field(
        default=None,
        description="AIGatewayRoute driver: the Envoy AI Gateway AIServiceBackend (same "
        "namespace) this backend's traffic goes to.",
    )
    provider: Provider = Field(
        default=Provider.OPENAI,
        description="API dialect probes speak: OpenAI, AzureOpenAI or Anthropic.",
    )
    provider_version: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        default=None,
        description="Azure's api-version (default 2024-10-21) or Anthropic's anthropic-version "
        "(default 2023-06-01) for probes.",
    )
    backend_ref: BackendRef | None = Field(
        default=None,
        description="HTTPRoute driver: any Gateway API backend (InferencePool, Envoy Gateway "
        "Backend, Service) the HTTPRoute sends this backend's traffic to.",
    )
    model: Annotated[str, Field(min_length=1, max_length=256)] = Field(
        description="Model id served by this backend (used by Models and Chat probes); for "
        "AzureOpenAI the deployment name."
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
    ca_bundle_secret_ref: CaBundleSecretRef | None = Field(
        default=None,
        description="Private CA certificates (PEM, in a Secret of the route's namespace) that "
        "probes of this https endpoint trust besides the system store and --ca-bundle.",
    )

    def secret_names(self) -> set[str]:
        """The Secrets (same namespace) this backend's probes read: API key, CA bundle."""
        refs = (self.auth_secret_ref, self.ca_bundle_secret_ref)
        return {ref.name for ref in refs if ref is not None}

    def probe_url(self, namespace: str) -> str:
        """Base URL the prober uses for this backend (no trailing slash)."""
        if self.endpoint:
            return self.endpoint.rstrip("/")
        if self.service_ref is None:
            raise ValueError(f"backend {self.name!r} has neither endpoint nor serviceRef")
        return f"http://{self.service_ref.name}.{namespace}.svc:{self.service_ref.port}"


class FailbackSpec(ApiModel):
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
    steps: Annotated[list[Annotated[int, Field(ge=1, le=100)]], Field(max_length=10)] | None = (
        Field(
            default=None,
            description="Weighted drivers: percentages of traffic given back to the recovered "
            "backend in turn, e.g. [10, 50, 100] (increasing; 100 is implied at the end).",
        )
    )
    step_seconds: Annotated[int, Field(ge=1, le=3600)] = Field(
        default=30, description="Seconds each step is held while the backend stays healthy."
    )


class DeletionPolicy(enum.StrEnum):
    """What happens to the routing object when its ModelRoute is deleted."""

    DELETE = "Delete"
    RETAIN = "Retain"


class DrillSpec(ApiModel):
    """A failover drill (game day): one backend's probe results read as failures for a while."""

    backend: DnsLabel = Field(
        description="The backend whose probe results read as failures during the drill."
    )
    until: datetime = Field(
        description="When the drill ends by itself (RFC 3339, e.g. 2026-12-01T15:00:00Z); "
        "after it the backend's real probe results count again and failback follows the "
        "normal rules (successThreshold, stabilizationSeconds, steps, Manual approval)."
    )


class RoutingSpec(ApiModel):
    """Which routing object is pointed at the active backend."""

    # A plain string here: the allowed names come from the driver registry (modelroute.routing),
    # which crdgen writes into the CRD as an enum, so adding a driver is adding one module.
    driver: Annotated[str, Field(min_length=1, max_length=63)] = Field(
        default="Service", description="Routing driver that points traffic at the active backend."
    )
    http_route: HTTPRouteSpec | None = Field(
        default=None, description="The HTTPRoute of the HTTPRoute driver."
    )
    ai_gateway_route: AIGatewayRouteSpec | None = Field(
        default=None, description="The AIGatewayRoute of the AIGatewayRoute driver."
    )
    deletion_policy: DeletionPolicy = Field(
        default=DeletionPolicy.DELETE,
        description="Delete: the routing object is garbage-collected with the ModelRoute "
        "(ownerReference). Retain: it carries no ownerReference, so it stays, pointing where "
        "it last pointed, when the ModelRoute is deleted (a GitOps rename must not drop "
        "traffic); another ModelRoute may then take it over with adopt.",
    )
    adopt: bool = Field(
        default=False,
        description="Take over an existing routing object of the same name that this operator "
        "created for another ModelRoute which no longer exists (one left by deletionPolicy "
        "Retain). Without it such an object is a conflict and is never written.",
    )


class ModelRouteSpec(ApiModel):
    """Desired state of a ModelRoute."""

    service: ServiceSpec | None = Field(
        default=None,
        description="The stable Service clients call; required by the Service driver (L7 "
        "drivers need none: clients call the Gateway).",
    )
    model: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        default=None,
        description="The model name clients send; L7 drivers match on it. Default: the most "
        "preferred backend's model.",
    )
    backends: Annotated[list[Backend], Field(min_length=1, max_length=16)] = Field(
        description="Backends in order of preference (see priority)."
    )
    probe: ProbeSpec = Field(default_factory=ProbeSpec, description="Route-level probe settings.")
    failback: FailbackSpec = Field(default_factory=FailbackSpec, description="Failback policy.")
    routing: RoutingSpec = Field(default_factory=RoutingSpec, description="Routing driver.")
    suspend: bool = Field(
        default=False,
        description="Incident control: probes and status go on, but routing is never written "
        "(Ready=False, reason Suspended). Setting it back to false routes at once to the "
        "current decision.",
    )
    drill: DrillSpec | None = Field(
        default=None,
        description="Incident control: a failover drill. Until drill.until the named backend's "
        "probe results read as failures, so the real failover (and later the failback) runs "
        "on a healthy system; status, Events and metrics say it is a drill.",
    )

    def effective_probe(self, backend: Backend) -> ProbeSpec:
        """The probe settings that apply to ``backend``."""
        return self.probe.overridden_by(backend.probe)

    def preference_order(self) -> list[Backend]:
        """Backends sorted by priority, ties kept in list order (sort is stable)."""
        return sorted(self.backends, key=lambda b: b.priority)
