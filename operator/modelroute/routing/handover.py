"""A spec change that moves a route's routing to another object releases the previous one.

Switching ``spec.routing.driver`` (Service -> HTTPRoute, say) or renaming the routing object
(``spec.service.name``, ``spec.routing.httpRoute.name``...) leaves the old object behind: it
still carries the route's ownerReference, so it would only go with the route itself, and until
then it keeps routing clients that still call it. Once the new object carries the traffic, the
previous one is released, the same way for every driver (each names its object through
``DriverInfo.object_name``):

- ``deletionPolicy: Delete``: deleted, only while it is the object the route owns (its
  ownerReference names the route; the delete has uid and resourceVersion preconditions, so an
  object changed since it was read is not deleted: the 409 is decided again, once, on a fresh
  read of the same object, so a label or annotation written meanwhile is no failure);
- ``deletionPolicy: Retain``: kept, pointing where it last pointed, with the route's
  ownerReference dropped (as when the route is deleted under Retain);
- an object the route does not own (foreign, or already retained) is never touched;
- an object a gateway generates (``DriverInfo.generates``: the Envoy AI Gateway writes its
  HTTPRoute under the AIGatewayRoute's name, updating in place one that exists) is never
  deleted: under either policy only the route's ownerReference goes, and when the new routing
  object generates it, an ownerReference to that object takes its place, so it goes with it.

The other way round, the new object's name can be taken by an object the previous one generates
(AIGatewayRoute -> HTTPRoute under one name): the driver reports RouteConflict, and
:func:`explain` says why and which field to change; traffic stays on the previous object.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from modelroute import routing
from modelroute.api.models import DeletionPolicy, ModelRouteSpec
from modelroute.api.status import RoutingObjectRef
from modelroute.core.types import Problem, RouteRef
from modelroute.kube.client import ApiError, KubeApi, ObjectKind
from modelroute.routing.base import DriverInfo, RoutingState
from modelroute.routing.ownership import (
    generated_by_a_gateway,
    owner_references_patch,
    ownership,
)

logger = logging.getLogger("modelroute.routing.handover")

# Every driver's reason for a routing object it may not write (another's, or a gateway's).
ROUTE_CONFLICT = "RouteConflict"


@dataclass(frozen=True)
class Routed:
    """A route's routing object as one spec of it names it: its driver and that spec; or, read
    back from ``status.previousRouting`` after a restart, its driver and its name (no spec)."""

    info: DriverInfo
    spec: ModelRouteSpec | None
    named: str | None = None  # the name as recorded, when there is no spec

    def name(self, route: RouteRef) -> str | None:
        """The routing object's name; None when the driver does not name it."""
        if self.named is not None:
            return self.named
        if self.info.object_name is None or self.spec is None:
            return None
        return self.info.object_name(route, self.spec)

    def ref(self, route: RouteRef) -> RoutingObjectRef | None:
        """The routing object as ``status.previousRouting`` records it."""
        name, kind = self.name(route), self.info.kind
        return (
            None
            if name is None
            else RoutingObjectRef(api_version=kind.api_version, kind=kind.kind, name=name)
        )

    @classmethod
    def recorded(cls, ref: RoutingObjectRef) -> Routed | None:
        """The routing object ``ref`` (from the status) names; None for a kind no driver
        routes through (a driver removed since)."""
        for name in routing.names():
            info = routing.info(name)
            if (info.kind.api_version, info.kind.kind) == (ref.api_version, ref.kind):
                return cls(info, None, ref.name)
        return None

    def key(self, route: RouteRef) -> tuple[str, str] | None:
        """(kind plural with group, name) of the routing object; None when the driver does not
        name it."""
        name = self.name(route)
        return None if name is None else (self.info.kind.path(route.namespace), name)

    def generated(self, route: RouteRef) -> set[tuple[str, str]]:
        """Keys (as :meth:`key`) of the objects a gateway generates from the routing object."""
        name = self.name(route)
        if name is None:
            return set()
        return {(kind.path(route.namespace), name) for kind in self.info.generates}


def moved(route: RouteRef, old: Routed, new: Routed) -> bool:
    """True when ``new`` routes through another object than ``old`` did."""
    before = old.key(route)
    return before is not None and before != new.key(route)


def explain(
    route: RouteRef, now: Routed, previous: Iterable[Routed], state: RoutingState
) -> RoutingState:
    """``state`` with a RouteConflict on an object that a previous routing object generates
    told as such (the conflict never clears by itself: that object is the gateway's)."""
    key = now.key(route)
    if state.problem is None or str(state.problem.reason) != ROUTE_CONFLICT or key is None:
        return state
    source = next((p for p in previous if key in p.generated(route)), None)
    if source is None:
        return state
    ns, field = route.namespace, now.info.name_field or "the routing object's name"
    message = (
        f"{now.info.kind.kind} {ns}/{now.name(route)} is generated by {source.info.kind.kind} "
        f"{ns}/{source.name(route)} that this route routed through before; set {field} to "
        f"another name (traffic stays on the {source.info.kind.kind} until then)"
    )
    return dataclasses.replace(state, problem=Problem(state.problem.reason, message))


async def release(kube: KubeApi, route: RouteRef, old: Routed, new: Routed) -> None:
    """Release ``old``'s routing object under ``new``'s deletion policy (see the module doc).
    Raises the API's failures: the caller tries again on its next reconcile. A write refused
    because the object changed since it was read (409) is decided again, once, on a fresh read
    of the same object (same uid): a label or status written meanwhile is no failure."""
    name = old.name(route)
    if name is None or not moved(route, old, new):
        return
    current = await kube.get_object(old.info.kind, route.namespace, name)
    try:
        await _release_as_read(kube, route, old, new, current)
    except ApiError as exc:
        if exc.status != 409 or current is None:
            raise
        uid = current.get("metadata", {}).get("uid")
        fresh = await kube.get_object(old.info.kind, route.namespace, name)
        if fresh is None or fresh.get("metadata", {}).get("uid") == uid:
            await _release_as_read(kube, route, old, new, fresh)
        else:  # deleted and made again meanwhile, by someone else: not the object we had
            what = f"{old.info.kind.plural}/{name}"
            extra = {"namespace": route.namespace, "route": route.name, "object": what}
            logger.info(
                "previous routing object was recreated by someone else: left alone", extra=extra
            )


async def _release_as_read(
    kube: KubeApi, route: RouteRef, old: Routed, new: Routed, current: dict[str, Any] | None
) -> None:
    """Release ``current``, ``old``'s routing object as read; each write holds only while the
    object is still as read (uid and resourceVersion)."""
    if current is None or ownership(route, current) != "owned":
        return  # gone already, or not ours to release
    kind, name = old.info.kind, str(old.name(route))
    meta = current.get("metadata", {})
    extra = {"namespace": route.namespace, "route": route.name, "object": f"{kind.plural}/{name}"}
    generated = old.key(route) in new.generated(route)
    if generated or generated_by_a_gateway(current):
        heir = await _generator(kube, route, new) if generated else None
        await _disown(kube, kind, route.namespace, name, meta, heir)
        logger.info("previous routing object is a gateway's now: kept, not ours", extra=extra)
        return
    # ``new`` is the current object, always with its spec (a missing one keeps, never deletes).
    if new.spec is None or new.spec.routing.deletion_policy is DeletionPolicy.RETAIN:
        await _disown(kube, kind, route.namespace, name, meta, None)
        logger.info("previous routing object retained, without its ownerReference", extra=extra)
        return
    await kube.delete_object(
        kind, route.namespace, name, str(meta.get("uid", "")), meta.get("resourceVersion")
    )
    logger.info("previous routing object deleted: the route routes through another", extra=extra)


async def _generator(kube: KubeApi, route: RouteRef, new: Routed) -> dict[str, Any] | None:
    """The ownerReference to ``new``'s routing object, which generates the released one."""
    name = new.name(route)
    body = await kube.get_object(new.info.kind, route.namespace, name) if name else None
    uid = (body or {}).get("metadata", {}).get("uid")
    if not uid:
        return None
    kind = new.info.kind
    # A controller: ownership then takes the object for the gateway's (foreign), never adoptable.
    ref = {"apiVersion": kind.api_version, "kind": kind.kind, "name": name, "uid": uid}
    return {**ref, "controller": True}


async def _disown(
    kube: KubeApi,
    kind: ObjectKind,
    namespace: str,
    name: str,
    meta: dict[str, Any],
    heir: dict[str, Any] | None,
) -> None:
    """Drop the route's ownerReference (every ModelRoute's) and, when no other controller is
    left, make ``heir`` the controller; the patch holds only while the object is as read."""
    have = meta.get("ownerReferences") or []
    kept = owner_references_patch(meta, {"ownerReferences": []})
    refs = list(have if kept is None else kept)
    if heir is not None and not any(o.get("controller") for o in refs):
        refs.append(heir)
    if refs == have:
        return
    patch = {"metadata": {"ownerReferences": refs, "resourceVersion": meta.get("resourceVersion")}}
    await kube.patch_object(kind, namespace, name, patch)
