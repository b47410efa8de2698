"""Who owns a routing object: the ownerReference the operator sets, and how to read it back.

Shared by every routing driver: an object is "owned" by the route whose uid its
ownerReference names, "adoptable" when the operator's labels name the route (an earlier route
object of the same name, e.g. recreated by GitOps), and "foreign" otherwise (never written).
An object another kind controls is foreign whatever its labels: the Envoy AI Gateway copies an
AIGatewayRoute's labels (ours) onto the HTTPRoute it generates and controls, which the HTTPRoute
driver must never adopt.
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
    if any(_controller_of_another_kind(ref) for ref in meta.get("ownerReferences") or []):
        return "foreign"
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) == MANAGED_BY and labels.get(ROUTE_LABEL) == route.name:
        return "adoptable"
    return "foreign"


def _controller_of_another_kind(ref: dict[str, Any]) -> bool:
    # A controller reference to a ModelRoute (an earlier route object) leaves it adoptable.
    group = str(ref.get("apiVersion", "")).partition("/")[0]
    return bool(ref.get("controller")) and (group, ref.get("kind")) != (GROUP, KIND)
