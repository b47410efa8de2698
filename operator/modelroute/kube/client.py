"""The only module that talks to the Kubernetes API (besides kopf's own watches).

A small async REST client (kube.transport over kube.http1), behind the :class:`KubeApi`
Protocol (our own boundary, which the tests' FakeKube implements). Credentials come from
``credentials``; requests in flight are bounded by ``lanes``, routing writes first. Every write
carries the field manager.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from modelroute.api.models import GROUP, KIND, PLURAL, VERSION
from modelroute.kube.credentials import Credentials
from modelroute.kube.lanes import MAX_IN_FLIGHT, ROUTING_EXTRA_IN_FLIGHT, Lanes
from modelroute.kube.transport import ApiError as ApiError  # defined there, raised by requests
from modelroute.kube.transport import Transport

MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class ObjectKind:
    """A namespaced resource type the operator reads, watches or writes."""

    group: str  # "" for the core API group
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        """``apiVersion`` of its objects, e.g. ``v1`` or ``gateway.networking.k8s.io/v1``."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str, name: str | None = None) -> str:
        """The REST path of the collection in ``namespace``, or of one object in it."""
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        path = f"{prefix}/namespaces/{_quoted(namespace)}/{self.plural}"
        return f"{path}/{_quoted(name)}" if name else path


@functools.lru_cache(maxsize=4096)
def _quoted(segment: str) -> str:
    # Names repeat (one per route, every request of a route): quoted once, not per request.
    return quote(segment)


SERVICES = ObjectKind("", "v1", "services", "Service")
SECRETS = ObjectKind("", "v1", "secrets", "Secret")
EVENTS = ObjectKind("", "v1", "events", "Event")
LEASES = ObjectKind("coordination.k8s.io", "v1", "leases", "Lease")
MODELROUTES = ObjectKind(GROUP, VERSION, PLURAL, KIND)
HTTPROUTES = ObjectKind("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute")
AIGATEWAYROUTES = ObjectKind(
    "aigateway.envoyproxy.io", "v1beta1", "aigatewayroutes", "AIGatewayRoute"
)
AISERVICEBACKENDS = ObjectKind(
    "aigateway.envoyproxy.io", "v1beta1", "aiservicebackends", "AIServiceBackend"
)


class KubeApi(Protocol):
    """The calls the operator makes to the API server: our own boundary.

    :class:`KubeClient` is the real one; tests use ``tests.fakes.kube.FakeKube``, which mypy
    checks against this Protocol. Reads answer ``None`` for a missing object; failures raise
    :class:`ApiError`. Writes of routing objects are sent before any other queued request.
    """

    async def get_object(
        self, kind: ObjectKind, namespace: str, name: str
    ) -> dict[str, Any] | None:
        """One object, or None if it does not exist."""
        ...

    async def api_resources(self, group_version: str) -> set[str] | None:
        """Discovery: the resources (plurals) ``group_version`` serves, e.g. ``v1`` or
        ``gateway.networking.k8s.io/v1``; None when the API server does not serve it."""
        ...

    async def api_ready(self) -> None:
        """Raise :class:`ApiError` while the API server says it is not ready (``/readyz``)."""
        ...

    async def create_object(
        self, kind: ObjectKind, namespace: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Create a routing object (urgent)."""
        ...

    async def patch_object(
        self, kind: ObjectKind, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        """JSON-merge-patch a routing object (urgent)."""
        ...

    async def delete_object(
        self,
        kind: ObjectKind,
        namespace: str,
        name: str,
        uid: str,
        resource_version: str | None = None,
    ) -> None:
        """Delete a routing object the operator no longer routes through, only while it is the
        object of uid ``uid`` (and, when given, at ``resource_version``: unchanged since it was
        read); one already gone is no error."""
        ...

    async def patch_route_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch ``status`` of a ModelRoute through the status subresource."""
        ...

    async def create_event(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a core/v1 Event."""
        ...

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A coordination.k8s.io/v1 Lease, or None if it does not exist."""
        ...

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a Lease (409 if another replica created it first)."""
        ...

    async def replace_lease(
        self, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Replace a Lease; with metadata.resourceVersion set, 409 if it changed meanwhile."""
        ...


class KubeClient:
    """Async JSON client for the few calls the operator makes (implements :class:`KubeApi`)."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        field_manager: str,
        timeout_seconds: float = 30.0,
        max_in_flight: int = MAX_IN_FLIGHT,
        routing_extra_in_flight: int = ROUTING_EXTRA_IN_FLIGHT,
    ) -> None:
        """``max_in_flight`` requests at once, ``routing_extra_in_flight`` more of the urgent
        ones (:class:`Lanes`); a connection kept for each."""
        self.lanes = Lanes(max_in_flight, routing_extra_in_flight)
        self._transport = Transport(
            credentials, field_manager, timeout_seconds, self.lanes.capacity
        )

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._transport.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        urgent: bool = False,
        first: bool = False,
    ) -> dict[str, Any] | None:
        """Send one request; ``None`` for 404 on reads, :class:`ApiError` for other failures.

        ``urgent`` requests (routing writes) are sent before any other request still waiting
        for one of the in-flight slots; ``first`` ones (the Lease) ahead of those too.
        ``path`` (and its query) must be URL-quoted already, as :meth:`ObjectKind.path` and
        :func:`urllib.parse.urlencode` make it: it is sent as is."""
        await self.lanes.acquire(urgent, first=first)
        try:
            return await self._transport.send(method, path, body, content_type)
        finally:
            self.lanes.release(urgent)

    # --- typed helpers -------------------------------------------------------------------

    async def get_object(
        self, kind: ObjectKind, namespace: str, name: str
    ) -> dict[str, Any] | None:
        """One object, or None if it does not exist."""
        return await self.request("GET", kind.path(namespace, name))

    async def api_resources(self, group_version: str) -> set[str] | None:
        """Discovery: the resources (plurals) ``group_version`` serves, e.g. ``v1`` or
        ``gateway.networking.k8s.io/v1``; None when the API server does not serve it (404)."""
        prefix = "/apis" if "/" in group_version else "/api"
        found = await self.request("GET", f"{prefix}/{group_version}")
        if found is None:
            return None
        # Subresources (services/status) are listed as "<plural>/<sub>": keep the plurals.
        return {
            str(r["name"]) for r in found.get("resources") or [] if "/" not in r.get("name", "/")
        }

    async def api_ready(self) -> None:
        """Raise :class:`ApiError` while the API server says it is not ready (``/readyz``).

        Why: a kube-apiserver that has just started answers before it has loaded its CRDs,
        and discovery then finds a CRD group missing (404), which makes its driver
        unavailable until the operator restarts. An answer it may not give (401, 403: RBAC on
        non-resource URLs) or a server without the endpoint (404) counts as ready."""
        try:
            await self.request("GET", "/readyz")  # a 404 on a read is None: ready
        except ApiError as exc:
            if exc.status not in (401, 403):
                raise

    async def create_object(
        self, kind: ObjectKind, namespace: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Create a routing object (urgent)."""
        return await self.request("POST", kind.path(namespace), body, urgent=True) or {}

    async def patch_object(
        self, kind: ObjectKind, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        """JSON-merge-patch a routing object (urgent)."""
        path = kind.path(namespace, name)
        return await self.request("PATCH", path, patch, content_type=MERGE_PATCH, urgent=True) or {}

    async def delete_object(
        self,
        kind: ObjectKind,
        namespace: str,
        name: str,
        uid: str,
        resource_version: str | None = None,
    ) -> None:
        """Delete a routing object the operator no longer routes through, only while it is the
        object of uid ``uid`` (and, when given, at ``resource_version``; both preconditions);
        one already gone is no error."""
        preconditions = {"uid": uid}
        if resource_version:
            preconditions["resourceVersion"] = resource_version
        options = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": preconditions}
        try:
            await self.request("DELETE", kind.path(namespace, name), options)
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def patch_route_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch ``status`` of a ModelRoute through the status subresource."""
        path = MODELROUTES.path(namespace, name) + "/status"
        return await self.request("PATCH", path, {"status": status}, content_type=MERGE_PATCH) or {}

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A coordination.k8s.io/v1 Lease, or None if it does not exist (urgent: see
        :meth:`replace_lease`)."""
        return await self.request("GET", LEASES.path(namespace, name), urgent=True, first=True)

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a Lease (409 if another replica created it first)."""
        return (
            await self.request("POST", LEASES.path(namespace), body, urgent=True, first=True) or {}
        )

    async def replace_lease(
        self, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Replace a Lease; with metadata.resourceVersion set, 409 if it changed meanwhile.
        Urgent: a renewal queued behind a mass failover's statuses and Events would miss the
        renew deadline, and the leader would step down in the middle of the failover."""
        path = LEASES.path(namespace, name)
        return await self.request("PUT", path, body, urgent=True, first=True) or {}

    async def create_event(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a core/v1 Event."""
        return await self.request("POST", EVENTS.path(namespace), body) or {}
