"""The routing-driver protocol: how a route's traffic split reaches a routing object.

A driver owns one kind of routing object (a Service; next a Gateway API HTTPRoute, an Envoy AI
Gateway AIGatewayRoute). Adding a driver means adding one module to this package that defines
``DRIVER``: the registry in ``routing/__init__.py`` finds it, the CRD's ``spec.routing.driver``
enum, the operator's watches and caches, and the chart's RBAC all follow from that entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from modelroute.api.models import ModelRouteSpec
from modelroute.core.types import Problem, RouteRef, TrafficSplit, Verdict
from modelroute.kube.cache import ObjectCache, ObjectKey
from modelroute.kube.client import KubeApi, ObjectKind


@dataclass(frozen=True)
class RoutingState:
    """What the routing object does now (after an observe, or after an apply)."""

    split: TrafficSplit | None = None  # the split it carries; None if none of ours yet
    problem: Problem | None = None  # why it cannot carry what was asked
    wrote: bool = False  # the call changed the routing object
    # The gateway's verdict, for drivers whose object a gateway accepts or rejects (None: the
    # driver has no such verdict, e.g. a Service).
    verdict: Verdict | None = None


@dataclass(frozen=True)
class DriverContext:
    """What a driver may use: the API client and the watch-fed caches of the kinds it declared."""

    kube: KubeApi
    caches: Mapping[ObjectKind, ObjectCache]
    cluster_domain: str = "cluster.local"

    def cache(self, kind: ObjectKind) -> ObjectCache:
        """The cache of ``kind``; KeyError means the driver did not declare that kind."""
        return self.caches[kind]


class RoutingDriver(Protocol):
    """Makes a route's routing object carry a traffic split, writing only when it differs."""

    def dependencies(
        self, route: RouteRef, spec: ModelRouteSpec
    ) -> Mapping[ObjectKind, set[ObjectKey]]:
        """Objects, by kind, whose changes should wake this route (drift, deletion, targets)."""
        ...

    async def observe(self, route: RouteRef, spec: ModelRouteSpec) -> RoutingState:
        """The split the routing object carries now (from the cache, no write)."""
        ...

    async def apply(
        self, route: RouteRef, spec: ModelRouteSpec, split: TrafficSplit
    ) -> RoutingState:
        """Make the routing object carry ``split``; no write when it already does."""
        ...

    async def finalize(self, route: RouteRef, spec: ModelRouteSpec) -> None:
        """The route is gone: leave its routing object as the route's deletion policy says."""
        ...


SpecCheck = Callable[[ModelRouteSpec], list[str]]


@dataclass(frozen=True)
class DriverInfo:
    """Registry entry of one driver module: everything the rest of the operator needs to know."""

    name: str  # the value of spec.routing.driver
    kind: ObjectKind  # the routing object it creates and owns
    create: Callable[[DriverContext], RoutingDriver]
    check: SpecCheck  # driver-specific spec rules, each message naming its field
    supports_weights: bool = False  # False: only single-backend splits
    # Further kinds it reads (and so watches and caches), besides its own routing object.
    reads: tuple[ObjectKind, ...] = field(default=())
    # The name of the route's routing object (of ``kind``, in the route's namespace): when a
    # spec change moves routing to another object, the previous one is released (handover).
    object_name: Callable[[RouteRef, ModelRouteSpec], str] | None = None
    # The spec field that names it (for messages), e.g. "spec.routing.httpRoute.name".
    name_field: str = ""
    # Kinds of the objects a gateway generates from its routing object, named like it (the
    # Envoy AI Gateway's HTTPRoute of an AIGatewayRoute): a handover never deletes them.
    generates: tuple[ObjectKind, ...] = field(default=())

    @property
    def watched_kinds(self) -> tuple[ObjectKind, ...]:
        """Its routing object's kind and every kind it reads."""
        return (self.kind, *(k for k in self.reads if k != self.kind))
