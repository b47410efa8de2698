"""The AIGatewayRoute driver: one Envoy AI Gateway AIGatewayRoute per route, ordering every
backend by priority.

- What the AIGatewayRoute looks like for a split is pure, in ``aigatewayroute_object``: one rule
  matching ``x-ai-eg-model`` equal to ``spec.model``, every backend's AIServiceBackend with its
  ``modelNameOverride``, the active one at priority 0 and the others after it in preference
  order. The AI Gateway maps the model name and adds each vendor's key; the operator decides who
  is first, before users see errors.
- One backend at a time (``supports_weights`` False, ``failback.steps`` is InvalidSpec). Envoy
  priorities cannot express a share: Envoy moves load between priority levels by the health of
  their endpoints only (its overprovisioning factor), never by a configured percentage. A share
  would need two backends at priority 0 with ``weight``s, which would also make both the first
  choice of the gateway's own fallback; staged failback stays with the HTTPRoute driver.
- An AIGatewayRoute the operator did not create is never written (reason RouteConflict). The
  driver reads and writes ``aigatewayroutes`` only: the HTTPRoute the AI Gateway generates from
  the AIGatewayRoute (same name, owned by it) is the AI Gateway's, and ownership treats an object
  controlled by another kind as foreign, so the HTTPRoute driver never adopts it either.
- Each backend's AIServiceBackend is read (watched and cached). The driver does not put a backend
  first whose AIServiceBackend is missing (reason BackendRefMissing, naming every missing one);
  a missing one of another backend is no problem of the route's now: traffic goes to the active
  one, and the AI Gateway reports the unresolved reference in its own status.
- The controller's verdict is read back from ``status.conditions`` (``aigatewayroute_object``):
  a rejection is a problem (reason GatewayRejected) besides the verdict itself.
- Deletion needs nothing from the driver: the ownerReference lets Kubernetes garbage-collect the
  AIGatewayRoute with its ModelRoute (and the AI Gateway its HTTPRoute with that); under
  ``deletionPolicy: Retain`` there is none, so it stays (``ownership`` sets or removes it).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from modelroute.api.base import DNS_SUBDOMAIN_PATTERN
from modelroute.api.gateway import AIGatewayRouteSpec
from modelroute.api.models import ModelRouteSpec
from modelroute.core.types import Problem, RouteRef, TrafficSplit
from modelroute.kube.cache import ObjectCache, ObjectKey
from modelroute.kube.client import AIGATEWAYROUTES, AISERVICEBACKENDS, HTTPROUTES, ObjectKind
from modelroute.routing.aigatewayroute_object import (
    AIGatewayRouteReason,
    ai_gateway_route_patch,
    ai_service_backend_name,
    carried_split,
    desired_ai_gateway_route,
    gateway_verdict,
    route_name,
)
from modelroute.routing.base import DriverContext, DriverInfo, RoutingState
from modelroute.routing.ownership import ownership
from modelroute.routing.writer import ObjectWriter

# What the upstream AIGatewayRoute schema refuses in parentRefs (checked here so such a spec is
# InvalidSpec naming the field, never a 422 on every reconcile).
MAX_PARENTS = 16
_SECTION_NAME = re.compile(DNS_SUBDOMAIN_PATTERN)


def check_spec(spec: ModelRouteSpec) -> list[str]:
    """The AIGatewayRoute driver's rules: ``routing.aiGatewayRoute`` with its Gateways, no traffic
    split, and one AIServiceBackend per backend, no two backends on the same one. A backend's
    ``serviceRef`` or ``backendRef`` is ignored (a serviceRef still gives probes an address)."""
    found: list[str] = []
    wanted = spec.routing.ai_gateway_route
    if wanted is None:
        found.append(
            "spec.routing.aiGatewayRoute: required by the AIGatewayRoute routing driver "
            "(parentRefs: the Gateways the AIGatewayRoute attaches to)"
        )
    else:
        found.extend(_parent_problems(wanted))
    if spec.failback.steps:
        found.append(
            "spec.failback.steps: the AIGatewayRoute routing driver cannot split traffic (it "
            "puts one backend first by priority; staged failback needs a weighted driver such "
            "as HTTPRoute)"
        )
    seen: dict[str, int] = {}
    for index, backend in enumerate(spec.backends):
        where = f"spec.backends[{index}].aiServiceBackendRef"
        ref = backend.ai_service_backend_ref
        if ref is None:
            found.append(f"{where}: required by the AIGatewayRoute routing driver")
            continue
        # The priorities are read back by AIServiceBackend: two backends on one are one.
        if ref.name in seen:
            found.append(
                f"{where}.name: names the same AIServiceBackend as spec.backends[{seen[ref.name]}]"
            )
        seen.setdefault(ref.name, index)
    return found


def _parent_problems(wanted: AIGatewayRouteSpec) -> list[str]:
    found: list[str] = []
    where = "spec.routing.aiGatewayRoute.parentRefs"
    if len(wanted.parent_refs) > MAX_PARENTS:
        found.append(f"{where}: at most {MAX_PARENTS} for an AIGatewayRoute")
    for index, parent in enumerate(wanted.parent_refs):
        if parent.kind not in (None, "Gateway"):
            found.append(f"{where}[{index}].kind: an AIGatewayRoute attaches to Gateways only")
        if parent.section_name is not None and not _SECTION_NAME.match(parent.section_name):
            found.append(f"{where}[{index}].sectionName: must be a DNS subdomain (a listener)")
    return found


def read_back(route: RouteRef, spec: ModelRouteSpec, body: dict[str, Any]) -> RoutingState:
    """What an AIGatewayRoute of the route's own does: the backend it puts first and the AI
    Gateway controller's verdict."""
    verdict, problem = gateway_verdict(route, spec, body)
    return RoutingState(split=carried_split(route, spec, body), problem=problem, verdict=verdict)


class AIGatewayRouteDriver:
    """Routing by one prioritized AIGatewayRoute per route (see the module docstring)."""

    def __init__(self, context: DriverContext) -> None:
        self._routes: ObjectCache = context.cache(AIGATEWAYROUTES)
        self._writer = ObjectWriter(context.kube, self._routes, AIGATEWAYROUTES)
        self._backends: ObjectCache = context.cache(AISERVICEBACKENDS)

    def dependencies(
        self, route: RouteRef, spec: ModelRouteSpec
    ) -> Mapping[ObjectKind, set[ObjectKey]]:
        """The AIGatewayRoute (its spec can drift, its status carries the verdict) and every
        backend's AIServiceBackend (one created later wakes the route)."""
        refs = [b.ai_service_backend_ref for b in spec.backends]
        return {
            AIGATEWAYROUTES: {(route.namespace, route_name(route, spec))},
            AISERVICEBACKENDS: {(route.namespace, r.name) for r in refs if r is not None},
        }

    async def observe(self, route: RouteRef, spec: ModelRouteSpec) -> RoutingState:
        """The backend the AIGatewayRoute puts first and the verdict, if it is ours."""
        current = await self._routes.get(
            (route.namespace, route_name(route, spec)), confirm_miss=False
        )
        if current is None:
            return RoutingState()
        if ownership(route, current, adopt=spec.routing.adopt) == "foreign":
            return RoutingState(problem=self._conflict(route, spec))
        state = read_back(route, spec, current)
        missing = await self._missing(route, spec, state.split.primary) if state.split else None
        return state if missing is None else dataclasses.replace(state, problem=missing)

    async def apply(
        self, route: RouteRef, spec: ModelRouteSpec, split: TrafficSplit
    ) -> RoutingState:
        """Create or patch the AIGatewayRoute so it puts the split's backend first."""
        desired = desired_ai_gateway_route(route, spec, split)  # ValueError before any write
        current = await self._routes.get(
            (route.namespace, route_name(route, spec)), confirm_miss=False
        )
        if current is not None and ownership(route, current, adopt=spec.routing.adopt) == "foreign":
            return RoutingState(problem=self._conflict(route, spec))
        missing = await self._missing(route, spec, split.primary)
        if missing is not None:
            # Never put first what the gateway cannot resolve: it stays where it is.
            now = read_back(route, spec, current) if current is not None else RoutingState()
            return dataclasses.replace(now, problem=missing)
        written = await self._writer.ensure(
            route, current, desired, ai_gateway_route_patch, adopt=spec.routing.adopt
        )
        if written is None:
            return RoutingState(problem=self._conflict(route, spec))
        return dataclasses.replace(read_back(route, spec, written[0]), wrote=written[1])

    async def finalize(self, route: RouteRef, spec: ModelRouteSpec) -> None:
        """Nothing to do: the ownerReference makes Kubernetes delete the AIGatewayRoute with the
        route.

        Deleting it here too would race the garbage collector for no gain, and a route that is
        deleted while the gateway still routes through the AIGatewayRoute must not break it early.
        """

    async def _missing(self, route: RouteRef, spec: ModelRouteSpec, active: str) -> Problem | None:
        """BackendRefMissing when the active backend's AIServiceBackend does not exist, naming
        every backend whose AIServiceBackend does not (the active one first)."""
        gone: dict[str, str] = {}  # backend -> its AIServiceBackend, in preference order
        for backend in spec.preference_order():
            name = ai_service_backend_name(backend)
            if await self._backends.get((route.namespace, name)) is None:
                gone[backend.name] = name
        if active not in gone:
            return None
        order = [active, *(backend for backend in gone if backend != active)]
        return Problem(
            AIGatewayRouteReason.BACKEND_REF_MISSING,
            "; ".join(
                f"AIServiceBackend {route.namespace}/{gone[b]} of backend {b} does not exist"
                for b in order
            ),
        )

    @staticmethod
    def _conflict(route: RouteRef, spec: ModelRouteSpec) -> Problem:
        return Problem(
            AIGatewayRouteReason.ROUTE_CONFLICT,
            f"AIGatewayRoute {route.namespace}/{route_name(route, spec)} exists and is not "
            "managed by this ModelRoute; the operator never writes an AIGatewayRoute it did not "
            "create",
        )


DRIVER = DriverInfo(
    name="AIGatewayRoute",
    kind=AIGATEWAYROUTES,
    create=AIGatewayRouteDriver,
    check=check_spec,
    supports_weights=False,
    reads=(AISERVICEBACKENDS,),
    object_name=route_name,
    name_field="spec.routing.aiGatewayRoute.name",
    # The AI Gateway's HTTPRoute of the same name (it updates one that exists in place).
    generates=(HTTPROUTES,),
)
