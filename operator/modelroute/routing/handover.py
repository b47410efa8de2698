"""A spec change that moves a route's routing to another object releases the previous one.

Switching ``spec.routing.driver`` (Service -> HTTPRoute, say) or renaming the routing object
(``spec.service.name``, ``spec.routing.httpRoute.name``...) leaves the old object behind: it
still carries the route's ownerReference, so it would only go with the route itself, and until
then it keeps routing clients that still call it. Once the new object carries the traffic, the
previous one is released, the same way for every driver (each names its object through
``DriverInfo.object_name``):

- ``deletionPolicy: Delete``: deleted, only while it is the object the route owns (its
  ownerReference names the route; the delete has a uid precondition);
- ``deletionPolicy: Retain``: kept, pointing where it last pointed, with the route's
  ownerReference dropped (as when the route is deleted under Retain);
- an object the route does not own (foreign, or already retained) is never touched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from modelroute.api.models import DeletionPolicy, ModelRouteSpec
from modelroute.core.types import RouteRef
from modelroute.kube.client import KubeApi
from modelroute.routing.base import DriverInfo
from modelroute.routing.ownership import owner_references_patch, ownership

logger = logging.getLogger("modelroute.routing.handover")


@dataclass(frozen=True)
class Routed:
    """A route's routing object as one spec of it names it: its driver and that spec."""

    info: DriverInfo
    spec: ModelRouteSpec

    def key(self, route: RouteRef) -> tuple[str, str] | None:
        """(kind plural with group, name) of the routing object; None when the driver does not
        name it."""
        if self.info.object_name is None:
            return None
        return (self.info.kind.path(route.namespace), self.info.object_name(route, self.spec))


def moved(route: RouteRef, old: Routed, new: Routed) -> bool:
    """True when ``new`` routes through another object than ``old`` did."""
    before = old.key(route)
    return before is not None and before != new.key(route)


async def release(kube: KubeApi, route: RouteRef, old: Routed, new: Routed) -> None:
    """Release ``old``'s routing object under ``new``'s deletion policy (see the module doc).
    Raises the API's failures: the caller tries again on its next reconcile."""
    name = old.info.object_name(route, old.spec) if old.info.object_name else None
    if name is None or not moved(route, old, new):
        return
    kind = old.info.kind
    current = await kube.get_object(kind, route.namespace, name)
    if current is None or ownership(route, current) != "owned":
        return  # gone already, or not ours to release
    meta = current.get("metadata", {})
    extra = {"namespace": route.namespace, "route": route.name, "object": f"{kind.plural}/{name}"}
    if new.spec.routing.deletion_policy is DeletionPolicy.RETAIN:
        kept = owner_references_patch(meta, {"ownerReferences": []})
        if kept is not None:
            patch = {
                "metadata": {
                    "ownerReferences": kept,
                    "resourceVersion": meta.get("resourceVersion"),
                }
            }
            await kube.patch_object(kind, route.namespace, name, patch)
        logger.info("previous routing object retained, without its ownerReference", extra=extra)
        return
    await kube.delete_object(kind, route.namespace, name, str(meta.get("uid", "")))
    logger.info("previous routing object deleted: the route routes through another", extra=extra)
