"""The Service driver: one stable Service that mirrors the active backend's Service.

- What the stable Service looks like for a backend is pure, in ``service_object``: it mirrors
  a target with a selector (one merge patch, the ClusterIP never changes), or becomes an
  ExternalName DNS alias of a selector-less target (TLS/SNI and Host headers then carry the
  stable name).
- A Service the operator did not create is never written (reason ServiceConflict).
- Weights are not supported: a Service sends all traffic to one backend.
- Deletion needs nothing from the driver: the ownerReference lets Kubernetes garbage-collect
  the Service with its ModelRoute; under ``deletionPolicy: Retain`` there is none, so it stays
  (``ownership`` sets or removes the reference, the same for every driver).
"""

from __future__ import annotations

from collections.abc import Mapping

from modelroute.api.models import ModelRouteSpec
from modelroute.core.types import Problem, RouteRef, TrafficSplit
from modelroute.kube.cache import ObjectCache, ObjectKey
from modelroute.kube.client import SERVICES, ObjectKind
from modelroute.routing.base import DriverContext, DriverInfo, RoutingState
from modelroute.routing.ownership import ownership
from modelroute.routing.service_object import (
    BACKEND_ANNOTATION,
    ServiceReason,
    desired_service,
    service_patch,
    stable,
)
from modelroute.routing.writer import ObjectWriter


def check_spec(spec: ModelRouteSpec) -> list[str]:
    """The Service driver's rules: a stable Service, a serviceRef per backend, none of them the
    stable Service itself, and no traffic split (a Service sends all traffic to one backend)."""
    found: list[str] = []
    if spec.service is None:
        found.append("spec.service: required by the Service routing driver")
    if spec.failback.steps:
        found.append(
            "spec.failback.steps: the Service routing driver cannot split traffic (staged "
            "failback needs a weighted driver such as HTTPRoute)"
        )
    for index, backend in enumerate(spec.backends):
        if backend.service_ref is None:
            found.append(
                f"spec.backends[{index}].serviceRef: required by the Service routing driver"
            )
        elif spec.service is not None and backend.service_ref.name == spec.service.name:
            found.append(
                f"spec.backends[{index}].serviceRef.name: must differ from "
                f"spec.service.name {spec.service.name!r} (the Service the operator manages)"
            )
    return found


class ServiceDriver:
    """Routing by one stable Service per route (see the module docstring)."""

    def __init__(self, context: DriverContext) -> None:
        self._services: ObjectCache = context.cache(SERVICES)
        self._writer = ObjectWriter(context.kube, self._services, SERVICES)
        self._cluster_domain = context.cluster_domain

    def dependencies(
        self, route: RouteRef, spec: ModelRouteSpec
    ) -> Mapping[ObjectKind, set[ObjectKey]]:
        """The stable Service and every backend's target Service."""
        keys = {(route.namespace, stable(spec).name)}
        keys.update((route.namespace, b.service_ref.name) for b in spec.backends if b.service_ref)
        return {SERVICES: keys}

    async def observe(self, route: RouteRef, spec: ModelRouteSpec) -> RoutingState:
        """The backend named on the stable Service, if the operator owns it."""
        current = await self._services.get((route.namespace, stable(spec).name), confirm_miss=False)
        if current is None:
            return RoutingState()
        if ownership(route, current, adopt=spec.routing.adopt) == "foreign":
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
        current = await self._services.get((route.namespace, stable(spec).name), confirm_miss=False)
        written = await self._writer.ensure(
            route, current, desired, service_patch, adopt=spec.routing.adopt
        )
        if written is None:
            return RoutingState(problem=self._conflict(route, spec))
        return RoutingState(split=split, wrote=written[1])

    async def finalize(self, route: RouteRef, spec: ModelRouteSpec) -> None:
        """Nothing to do: the ownerReference makes Kubernetes delete the Service with the route.

        Deleting it here too would race the garbage collector for no gain, and a route that is
        deleted while another process still routes through the Service must not break it early.
        """

    @staticmethod
    def _conflict(route: RouteRef, spec: ModelRouteSpec) -> Problem:
        return Problem(
            ServiceReason.SERVICE_CONFLICT,
            f"Service {route.namespace}/{stable(spec).name} exists and is not managed by this "
            "ModelRoute; the operator never writes a Service it did not create",
        )


DRIVER = DriverInfo(
    name="Service",
    kind=SERVICES,
    create=ServiceDriver,
    check=check_spec,
    supports_weights=False,
    object_name=lambda route, spec: stable(spec).name,
    name_field="spec.service.name",
)
