"""Who owns a routing object: the ownerReference the operator sets, and how to read it back.

Shared by every routing driver: an object is "owned" by the route whose uid its
ownerReference names, "adoptable" when the operator's labels name the route (an earlier route
object of the same name, e.g. recreated by GitOps), and "foreign" otherwise (never written).
"""

from __future__ import annotations

from typing import Any

from modelroute.api.models import GROUP, KIND, VERSION
from modelroute.core.types import RouteRef

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "modelroute-operator"
ROUTE_LABEL = "modelroute.dev/route"


def owner_reference(route: RouteRef) -> dict[str, Any]:
    """The ownerReference that makes the route own (and garbage-collect) the Service."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": route.name,
        "uid": route.uid,
        "controller": True,
    }


def ownership(route: RouteRef, obj: dict[str, Any]) -> str:
    """'owned', 'adoptable' (ours, from an earlier route object of the same name) or 'foreign'."""
    meta = obj.get("metadata", {})
    if any(ref.get("uid") == route.uid for ref in meta.get("ownerReferences") or []):
        return "owned"
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) == MANAGED_BY and labels.get(ROUTE_LABEL) == route.name:
        return "adoptable"
    return "foreign"
