"""The routing-driver protocol: how a route's traffic is pointed at one backend.

A driver owns one kind of routing object (a Service today; Gateway API HTTPRoute next). Adding
a driver means adding one module to this package that defines ``DRIVER``: the registry in
``drivers/__init__.py`` finds it, and the CRD's ``spec.routing.driver`` enum follows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from modelroute.cache import ObjectCache, ObjectKey
from modelroute.kube import KubeClient
from modelroute.models import Backend, ModelRouteSpec


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


@dataclass(frozen=True)
class RoutingProblem:
    """Why routing cannot be done as asked (becomes Ready=False with this reason)."""

    reason: str
    message: str


@dataclass(frozen=True)
class RoutingState:
    """What the routing object does now."""

    backend: str | None = None  # backend the routing object points at, None if none yet
    problem: RoutingProblem | None = None
    wrote: bool = False  # the last call changed the routing object


@dataclass(frozen=True)
class DriverContext:
    """What a driver may use: the API client and the caches the watches feed."""

    kube: KubeClient
    services: ObjectCache
    cluster_domain: str = "cluster.local"


class RoutingDriver(Protocol):
    """Points a route's routing object at a backend, writing only when something differs."""

    def dependencies(self, route: RouteRef, spec: ModelRouteSpec) -> set[ObjectKey]:
        """Services whose changes should wake this route (drift, deletion, target changes)."""
        ...

    async def observe(self, route: RouteRef, spec: ModelRouteSpec) -> RoutingState:
        """Which backend the routing object points at now (from the cache, no write)."""
        ...

    async def apply(self, route: RouteRef, spec: ModelRouteSpec, backend: Backend) -> RoutingState:
        """Make the routing object point at ``backend``; no write when it already does."""
        ...


@dataclass(frozen=True)
class DriverInfo:
    """Registry entry of one driver module."""

    name: str
    create: Callable[[DriverContext], RoutingDriver]
