"""The HTTPRoute driver: one Gateway API HTTPRoute per route, weighting every backend.

- What the HTTPRoute looks like for a split is pure, in ``httproute_object``: one rule named
  after the ModelRoute, a PathPrefix match, and every backend as a backendRef in preference
  order with its weight (the active one 100, the others 0; a staged failback shares 100).
- An HTTPRoute the operator did not create is never written (reason RouteConflict).
- The gateway's verdict is read back from ``status.parents[]`` (``httproute_object``): a
  rejection is a problem (reason GatewayRejected) besides the verdict itself.
- Deletion needs nothing from the driver: the ownerReference lets Kubernetes garbage-collect
  the HTTPRoute with its ModelRoute; under ``deletionPolicy: Retain`` there is none, so it stays
  (``ownership`` sets or removes the reference, the same for every driver).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from modelroute.api.base import DNS_SUBDOMAIN_PATTERN
from modelroute.api.gateway import HTTPRouteSpec
from modelroute.api.models import ModelRouteSpec
from modelroute.core.types import Problem, RouteRef, TrafficSplit
from modelroute.kube.cache import ObjectCache, ObjectKey
from modelroute.kube.client import HTTPROUTES, ObjectKind
from modelroute.routing.base import DriverContext, DriverInfo, RoutingState
from modelroute.routing.httproute_object import (
    GATEWAY_GROUP,
    HTTPRouteReason,
    RefKey,
    backend_key,
    backend_ref,
    carried_split,
    desired_http_route,
    gateway_verdict,
    http_route_patch,
    route_name,
)
from modelroute.routing.ownership import ownership
from modelroute.routing.writer import ObjectWriter

# What the upstream CRD's CEL rules refuse in a path match (checked here so a spec that breaks
# them is InvalidSpec naming the field, never a 422 on every reconcile).
_PATH_CHARACTERS = re.compile(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+$")
_PATH_FORBIDDEN = ("//", "/./", "/../", "%2f", "%2F", "#")
_SECTION_NAME = re.compile(DNS_SUBDOMAIN_PATTERN)
_DURATION_UNITS_MS = {"h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}


def check_spec(spec: ModelRouteSpec) -> list[str]:
    """The HTTPRoute driver's rules: ``routing.httpRoute`` with its Gateways, exactly one
    routing target per backend (a Service one with a port), no two backends on the same
    target, and nothing the upstream HTTPRoute schema would refuse."""
    found: list[str] = []
    wanted = spec.routing.http_route
    if wanted is None:
        found.append(
            "spec.routing.httpRoute: required by the HTTPRoute routing driver (parentRefs: "
            "the Gateways the HTTPRoute attaches to)"
        )
    else:
        found.extend(_path_problems(wanted.path_prefix))
        found.extend(_parent_problems(wanted))
        found.extend(_timeout_problems(wanted))
    found.extend(_backend_problems(spec))
    return found


def _backend_problems(spec: ModelRouteSpec) -> list[str]:
    found: list[str] = []
    seen: dict[RefKey, int] = {}
    for index, backend in enumerate(spec.backends):
        where = f"spec.backends[{index}]"
        ref = backend.backend_ref
        if ref is not None and backend.service_ref is not None:
            found.append(f"{where}.backendRef: set either serviceRef or backendRef, not both")
            continue
        if ref is None and backend.service_ref is None:
            found.append(
                f"{where}.backendRef: required by the HTTPRoute routing driver when the "
                "backend has no serviceRef"
            )
            continue
        if ref is not None and not ref.group and ref.kind in (None, "Service") and not ref.port:
            found.append(f"{where}.backendRef.port: required for a Service backendRef")
            continue
        # The split is read back by target: two backends on one target could not be told apart.
        key = backend_key(backend_ref(backend), namespace="")
        field = "backendRef" if ref is not None else "serviceRef"
        if key in seen:
            found.append(
                f"{where}.{field}: routes to the same target as spec.backends[{seen[key]}]"
            )
        seen.setdefault(key, index)
    return found


def _path_problems(path: str) -> list[str]:
    bad = [part for part in _PATH_FORBIDDEN if part in path]
    bad += [f"a trailing {end}" for end in ("/..", "/.") if path.endswith(end)]
    if not _PATH_CHARACTERS.match(path):
        bad.append("characters outside a URL path")
    if not bad:
        return []
    return [
        f"spec.routing.httpRoute.pathPrefix: {path!r} has {', '.join(bad)} (a Gateway refuses it)"
    ]


def _parent_problems(wanted: HTTPRouteSpec) -> list[str]:
    found: list[str] = []
    same_parent: dict[tuple[Any, ...], list[int]] = {}
    for index, parent in enumerate(wanted.parent_refs):
        where = f"spec.routing.httpRoute.parentRefs[{index}]"
        if parent.section_name is not None and not _SECTION_NAME.match(parent.section_name):
            found.append(f"{where}.sectionName: must be a DNS subdomain (a listener name)")
        # As the CEL rule compares them: after defaulting, an unset namespace equal to "".
        identity = (
            GATEWAY_GROUP if parent.group is None else parent.group,
            parent.kind or "Gateway",
            parent.namespace or "",
            parent.name,
        )
        same_parent.setdefault(identity, []).append(index)
    for indexes in same_parent.values():
        sections = [wanted.parent_refs[i].section_name for i in indexes]
        if len(indexes) > 1 and (None in sections or len(set(sections)) < len(sections)):
            found.append(
                f"spec.routing.httpRoute.parentRefs[{indexes[-1]}].sectionName: must be set "
                f"and unique when parentRefs names one Gateway more than once "
                f"(parentRefs[{', '.join(map(str, indexes))}])"
            )
    return found


def _milliseconds(duration: str) -> int:
    # The pattern (api.gateway.DURATION_PATTERN) already holds: only units to add up.
    return sum(int(n) * _DURATION_UNITS_MS[u] for n, u in re.findall(r"(\d+)(ms|h|m|s)", duration))


def _timeout_problems(wanted: HTTPRouteSpec) -> list[str]:
    timeouts = wanted.timeouts
    if timeouts is None or timeouts.request is None or timeouts.backend_request is None:
        return []
    request = _milliseconds(timeouts.request)
    if request != 0 and _milliseconds(timeouts.backend_request) > request:
        return [
            "spec.routing.httpRoute.timeouts.backendRequest: must not be longer than "
            f"timeouts.request ({timeouts.backend_request} > {timeouts.request})"
        ]
    return []


def read_back(route: RouteRef, spec: ModelRouteSpec, body: dict[str, Any]) -> RoutingState:
    """What an HTTPRoute of the route's own does: the split it carries and the gateway's verdict."""
    verdict, problem = gateway_verdict(route, spec, body)
    return RoutingState(split=carried_split(route, spec, body), problem=problem, verdict=verdict)


class HTTPRouteDriver:
    """Routing by one weighted HTTPRoute per route (see the module docstring)."""

    def __init__(self, context: DriverContext) -> None:
        self._routes: ObjectCache = context.cache(HTTPROUTES)
        self._writer = ObjectWriter(context.kube, self._routes, HTTPROUTES)

    def dependencies(
        self, route: RouteRef, spec: ModelRouteSpec
    ) -> Mapping[ObjectKind, set[ObjectKey]]:
        """The HTTPRoute: its spec can drift, and its status carries the gateway's verdict."""
        return {HTTPROUTES: {(route.namespace, route_name(route, spec))}}

    async def observe(self, route: RouteRef, spec: ModelRouteSpec) -> RoutingState:
        """The split the HTTPRoute's weights carry and the gateway's verdict, if it is ours."""
        current = await self._routes.get(
            (route.namespace, route_name(route, spec)), confirm_miss=False
        )
        if current is None:
            return RoutingState()
        if ownership(route, current, adopt=spec.routing.adopt) == "foreign":
            return RoutingState(problem=self._conflict(route, spec))
        return read_back(route, spec, current)

    async def apply(
        self, route: RouteRef, spec: ModelRouteSpec, split: TrafficSplit
    ) -> RoutingState:
        """Create or patch the HTTPRoute so its weights carry ``split``."""
        desired = desired_http_route(route, spec, split)
        current = await self._routes.get(
            (route.namespace, route_name(route, spec)), confirm_miss=False
        )
        written = await self._writer.ensure(
            route, current, desired, http_route_patch, adopt=spec.routing.adopt
        )
        if written is None:
            return RoutingState(problem=self._conflict(route, spec))
        return dataclasses.replace(read_back(route, spec, written[0]), wrote=written[1])

    async def finalize(self, route: RouteRef, spec: ModelRouteSpec) -> None:
        """Nothing to do: the ownerReference makes Kubernetes delete the HTTPRoute with the route.

        Deleting it here too would race the garbage collector for no gain, and a route that is
        deleted while the gateway still routes through the HTTPRoute must not break it early.
        """

    @staticmethod
    def _conflict(route: RouteRef, spec: ModelRouteSpec) -> Problem:
        return Problem(
            HTTPRouteReason.ROUTE_CONFLICT,
            f"HTTPRoute {route.namespace}/{route_name(route, spec)} exists and is not managed by "
            "this ModelRoute; the operator never writes an HTTPRoute it did not create",
        )


DRIVER = DriverInfo(
    name="HTTPRoute",
    kind=HTTPROUTES,
    create=HTTPRouteDriver,
    check=check_spec,
    supports_weights=True,
    object_name=route_name,
    name_field="spec.routing.httpRoute.name",
)
