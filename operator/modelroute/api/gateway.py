"""Gateway API references as the ModelRoute spells them (HTTPRoute and AIGatewayRoute drivers).

Field names and patterns follow Gateway API v1 (ParentReference, BackendObjectReference,
HTTPRouteTimeouts), so what users write is what the operator copies into the HTTPRoute.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from modelroute.api.base import DNS_SUBDOMAIN_PATTERN, ApiModel, Port

GROUP_PATTERN = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
KIND_PATTERN = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"
HOSTNAME_PATTERN = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DURATION_PATTERN = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"

Group = Annotated[str, Field(max_length=253, pattern=GROUP_PATTERN)]
Kind = Annotated[str, Field(min_length=1, max_length=63, pattern=KIND_PATTERN)]
ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]
Namespace = Annotated[
    str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
]
Duration = Annotated[str, Field(max_length=32, pattern=DURATION_PATTERN)]


class ParentRef(ApiModel):
    """A Gateway (or a listener of it) the HTTPRoute attaches to: a Gateway API ParentReference."""

    group: Group | None = Field(default=None, description="Default gateway.networking.k8s.io.")
    kind: Kind | None = Field(default=None, description="Default Gateway.")
    namespace: Namespace | None = Field(default=None, description="Default: the route's.")
    name: ObjectName = Field(description="Name of the Gateway.")
    section_name: Annotated[str, Field(min_length=1, max_length=253)] | None = Field(
        default=None, description="Listener name."
    )
    port: Port | None = Field(default=None, description="Listener port.")


class BackendRef(ApiModel):
    """Anything a Gateway routes to: a Gateway API BackendObjectReference.

    E.g. an InferencePool (group inference.networking.k8s.io, no port) or an Envoy Gateway
    Backend (group gateway.envoyproxy.io) for an external vendor.
    """

    group: Group | None = Field(default=None, description="API group; unset or empty: core.")
    kind: Kind | None = Field(default=None, description="Default Service.")
    name: ObjectName = Field(description="Name of the backend object.")
    namespace: Namespace | None = Field(
        default=None,
        description="Default: the route's namespace. Another namespace needs a ReferenceGrant.",
    )
    port: Port | None = Field(default=None, description="Port; required for Services.")


class HTTPRouteTimeouts(ApiModel):
    """Gateway API HTTPRoute rule timeouts (durations such as 30s or 1m)."""

    request: Duration | None = Field(default=None, description="Whole request timeout.")
    backend_request: Duration | None = Field(
        default=None, description="Timeout of one request to the backend."
    )


class HTTPRouteSpec(ApiModel):
    """The HTTPRoute the operator creates and owns (routing.driver HTTPRoute)."""

    name: ObjectName | None = Field(default=None, description="Default: the ModelRoute's name.")
    parent_refs: Annotated[list[ParentRef], Field(min_length=1, max_length=32)] = Field(
        description="Gateways the HTTPRoute attaches to."
    )
    hostnames: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=253, pattern=HOSTNAME_PATTERN)]],
        Field(max_length=16),
    ] = Field(default_factory=list, description="Hostnames the route answers for.")
    path_prefix: Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^/")] = Field(
        default="/", description="Requests whose path starts with this are routed."
    )
    timeouts: HTTPRouteTimeouts | None = Field(default=None, description="Rule timeouts.")


class AIServiceBackendRef(ApiModel):
    """An Envoy AI Gateway AIServiceBackend in the route's namespace."""

    name: ObjectName = Field(description="Name of the AIServiceBackend.")


class AIGatewayRouteSpec(ApiModel):
    """The AIGatewayRoute the operator creates and owns (routing.driver AIGatewayRoute)."""

    name: ObjectName | None = Field(default=None, description="Default: the ModelRoute's name.")
    parent_refs: Annotated[list[ParentRef], Field(min_length=1, max_length=32)] = Field(
        description="Gateways the AIGatewayRoute attaches to."
    )
