"""The Service driver: one stable Service that mirrors the active backend's Service.

- Target Service with a selector: copy the selector and map ``spec.service.port`` to the
  target's ``targetPort`` for ``serviceRef.port``. One merge patch; the type stays ClusterIP so
  the ClusterIP never changes.
- Target Service without a selector: the stable Service becomes ExternalName
  ``<serviceRef.name>.<namespace>.svc.<cluster domain>``. This is DNS (a CNAME), so clients
  connect to the target on the port they know, ``spec.service.port``: the target must serve
  that port, and TLS/SNI and Host headers carry the stable name.
- A Service the operator did not create is never written (reason ServiceConflict).
- Weights are not supported: a Service sends all traffic to one backend.
- Deletion needs nothing from the driver: the ownerReference lets Kubernetes garbage-collect
  the Service with its ModelRoute.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from modelroute.api.models import GROUP, KIND, VERSION, Backend, ModelRouteSpec
from modelroute.core.types import Problem, ReadyReason, RouteRef, TrafficSplit
from modelroute.kube.cache import ObjectCache, ObjectKey
from modelroute.kube.client import SERVICES, ApiError, KubeApi, ObjectKind
from modelroute.routing.base import DriverContext, DriverInfo, RoutingState

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "modelroute-operator"
ROUTE_LABEL = "modelroute.dev/route"
BACKEND_ANNOTATION = "modelroute.dev/backend"


class ServiceReason(enum.StrEnum):
    """``Ready=False`` reasons this driver reports."""

    TARGET_SERVICE_MISSING = "TargetServiceMissing"
    TARGET_PORT_MISSING = "TargetPortMissing"
    EXTERNAL_NAME_PORT_MISMATCH = "ExternalNamePortMismatch"
    SERVICE_CONFLICT = "ServiceConflict"


def check_spec(spec: ModelRouteSpec) -> list[str]:
    """The Service driver's rules: every backend has a serviceRef, none is the stable Service."""
    found: list[str] = []
    for index, backend in enumerate(spec.backends):
        if backend.service_ref is None:
            found.append(
                f"spec.backends[{index}].serviceRef: required by the Service routing driver"
            )
        elif backend.service_ref.name == spec.service.name:
            found.append(
                f"spec.backends[{index}].serviceRef.name: must differ from "
                f"spec.service.name {spec.service.name!r} (the Service the operator manages)"
            )
    return found


def owner_reference(route: RouteRef) -> dict[str, Any]:
    """The ownerReference that makes the route own (and garbage-collect) the Service."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": route.name,
        "uid": route.uid,
        "controller": True,
    }


def ownership(route: RouteRef, service: dict[str, Any]) -> str:
    """'owned', 'adoptable' (ours, from an earlier route object of the same name) or 'foreign'."""
    meta = service.get("metadata", {})
    if any(ref.get("uid") == route.uid for ref in meta.get("ownerReferences") or []):
        return "owned"
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) == MANAGED_BY and labels.get(ROUTE_LABEL) == route.name:
        return "adoptable"
    return "foreign"


def _target_port(target: dict[str, Any], port: int) -> dict[str, Any] | None:
    for entry in target.get("spec", {}).get("ports") or []:
        if entry.get("port") == port:
            return dict(entry)
    return None


def desired_service(
    route: RouteRef,
    spec: ModelRouteSpec,
    backend: Backend,
    target: dict[str, Any],
    cluster_domain: str,
) -> dict[str, Any] | Problem:
    """The stable Service that sends traffic to ``backend`` (pure), or why it cannot."""
    ref = backend.service_ref
    if ref is None:  # validation reports this before routing; kept total for safety
        return Problem(ReadyReason.INVALID_SPEC, f"backend {backend.name} has no serviceRef")
    selector = target.get("spec", {}).get("selector") or {}
    if selector:
        port = _target_port(target, ref.port)
        if port is None:
            return Problem(
                ServiceReason.TARGET_PORT_MISSING,
                f"Service {route.namespace}/{ref.name} has no port {ref.port} "
                f"(backend {backend.name})",
            )
        spec_part: dict[str, Any] = {
            "type": "ClusterIP",
            "selector": dict(selector),
            "ports": [
                {
                    "protocol": port.get("protocol", "TCP"),
                    "port": spec.service.port,
                    "targetPort": port.get("targetPort", port["port"]),
                }
            ],
        }
    else:
        # ExternalName is DNS: clients reach the target on spec.service.port. A target that
        # declares ports but not that one would take the traffic nowhere while looking routed.
        declared = [p.get("port") for p in target.get("spec", {}).get("ports") or []]
        if declared and spec.service.port not in declared:
            return Problem(
                ServiceReason.EXTERNAL_NAME_PORT_MISMATCH,
                f"Service {route.namespace}/{ref.name} has no selector, so traffic would "
                f"reach it by DNS on port {spec.service.port}, which it does not expose "
                f"(ports: {', '.join(str(p) for p in declared)}); expose port "
                f"{spec.service.port} on it or give it a selector",
            )
        spec_part = {
            "type": "ExternalName",
            "externalName": f"{ref.name}.{route.namespace}.svc.{cluster_domain}",
            "ports": [{"protocol": "TCP", "port": spec.service.port, "targetPort": ref.port}],
        }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": spec.service.name,
            "namespace": route.namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, ROUTE_LABEL: route.name},
            "annotations": {BACKEND_ANNOTATION: backend.name},
            "ownerReferences": [owner_reference(route)],
        },
        "spec": spec_part,
    }


def _normalized_ports(ports: list[dict[str, Any]] | None) -> list[tuple[Any, ...]]:
    # The API server fills in protocol and targetPort defaults; compare what they mean.
    return [
        (p.get("protocol", "TCP"), p.get("port"), p.get("targetPort", p.get("port")))
        for p in ports or []
    ]


def service_patch(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON merge patch that turns ``current`` into ``desired``; None when nothing differs.

    Only fields the operator manages are compared, so other controllers' additions (extra
    labels, annotations, status) never cause a write.
    """
    meta, want_meta = current.get("metadata", {}), desired["metadata"]
    spec, want = current.get("spec", {}), desired["spec"]
    patch_meta: dict[str, Any] = {}
    for field in ("labels", "annotations"):
        have = meta.get(field) or {}
        changed = {k: v for k, v in want_meta[field].items() if have.get(k) != v}
        if changed:
            patch_meta[field] = changed
    owners = meta.get("ownerReferences") or []
    if not any(o.get("uid") == want_meta["ownerReferences"][0]["uid"] for o in owners):
        patch_meta["ownerReferences"] = want_meta["ownerReferences"]
    patch_spec: dict[str, Any] = {}
    if spec.get("type", "ClusterIP") != want["type"]:
        patch_spec["type"] = want["type"]
    want_selector = want.get("selector") or {}
    have_selector = spec.get("selector") or {}
    if have_selector != want_selector:
        # Merge patch merges maps: name the keys to remove explicitly with null.
        removed: dict[str, Any] = {k: None for k in have_selector if k not in want_selector}
        patch_spec["selector"] = {**removed, **want_selector} if want_selector else None
    if spec.get("externalName") != want.get("externalName"):
        patch_spec["externalName"] = want.get("externalName")
    if _normalized_ports(spec.get("ports")) != _normalized_ports(want["ports"]):
        patch_spec["ports"] = want["ports"]
    if patch_spec.get("type") == "ExternalName":
        # An ExternalName Service has no cluster IP; release it explicitly.
        patch_spec.update(clusterIP=None, clusterIPs=None)
    patch: dict[str, Any] = {}
    if patch_meta:
        patch["metadata"] = patch_meta
    if patch_spec:
        patch["spec"] = patch_spec
    return patch or None


class ServiceDriver:
    """Routing by one stable Service per route (see the module docstring)."""

    def __init__(self, context: DriverContext) -> None:
        self._kube: KubeApi = context.kube
        self._services: ObjectCache = context.cache(SERVICES)
        self._cluster_domain = context.cluster_domain

    def dependencies(
        self, route: RouteRef, spec: ModelRouteSpec
    ) -> Mapping[ObjectKind, set[ObjectKey]]:
        """The stable Service and every backend's target Service."""
        keys = {(route.namespace, spec.service.name)}
        keys.update((route.namespace, b.service_ref.name) for b in spec.backends if b.service_ref)
        return {SERVICES: keys}

    async def observe(self, route: RouteRef, spec: ModelRouteSpec) -> RoutingState:
        """The backend named on the stable Service, if the operator owns it."""
        current = await self._services.get((route.namespace, spec.service.name))
        if current is None:
            return RoutingState()
        if ownership(route, current) == "foreign":
            return RoutingState(problem=self._conflict(route, spec))
        annotations = current.get("metadata", {}).get("annotations") or {}
        backend = annotations.get(BACKEND_ANNOTATION)
        return RoutingState(split=TrafficSplit.single(backend) if backend else None)

    async def apply(
        self, route: RouteRef, spec: ModelRouteSpec, split: TrafficSplit
    ) -> RoutingState:
        """Create or patch the stable Service so it sends all traffic to the split's backend."""
        if not split.is_single:
            # The registry says supports_weights=False, so plans never ask for this.
            raise ValueError(f"the Service driver cannot split traffic ({split})")
        backend = next(b for b in spec.backends if b.name == split.primary)
        ref = backend.service_ref
        target = await self._services.get((route.namespace, ref.name)) if ref else None
        if ref is not None and target is None:
            return RoutingState(
                problem=Problem(
                    ServiceReason.TARGET_SERVICE_MISSING,
                    f"Service {route.namespace}/{ref.name} of backend {backend.name} "
                    "does not exist",
                )
            )
        desired = desired_service(route, spec, backend, target or {}, self._cluster_domain)
        if isinstance(desired, Problem):
            return RoutingState(problem=desired)
        current = await self._services.get((route.namespace, spec.service.name))
        if current is None:
            current = await self._create(route, desired)
            if current is None:
                return RoutingState(split=split, wrote=True)
        if ownership(route, current) == "foreign":
            return RoutingState(problem=self._conflict(route, spec))
        patch = service_patch(current, desired)
        if patch is None:
            return RoutingState(split=split)
        updated = await self._kube.patch_object(SERVICES, route.namespace, spec.service.name, patch)
        self._services.put(updated)
        return RoutingState(split=split, wrote=True)

    async def finalize(self, route: RouteRef, spec: ModelRouteSpec) -> None:
        """Nothing to do: the ownerReference makes Kubernetes delete the Service with the route.

        Deleting it here too would race the garbage collector for no gain, and a route that is
        deleted while another process still routes through the Service must not break it early.
        """

    async def _create(self, route: RouteRef, desired: dict[str, Any]) -> dict[str, Any] | None:
        """Create the Service: None when created, else the one that already exists (to diff)."""
        try:
            created = await self._kube.create_object(SERVICES, route.namespace, desired)
        except ApiError as exc:
            if exc.status != 409:
                raise
            # Created meanwhile (or the cache had not seen it yet): diff against the real one.
            name = desired["metadata"]["name"]
            existing = await self._kube.get_object(SERVICES, route.namespace, name)
            if existing is None:
                raise
            self._services.put(existing)
            return existing
        self._services.put(created)
        return None

    @staticmethod
    def _conflict(route: RouteRef, spec: ModelRouteSpec) -> Problem:
        return Problem(
            ServiceReason.SERVICE_CONFLICT,
            f"Service {route.namespace}/{spec.service.name} exists and is not managed by this "
            "ModelRoute; the operator never writes a Service it did not create",
        )


DRIVER = DriverInfo(
    name="Service",
    kind=SERVICES,
    create=ServiceDriver,
    check=check_spec,
    supports_weights=False,
)
