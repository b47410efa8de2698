"""Who owns a routing object: the ownerReference the operator sets, and how to read it back.

Shared by every routing driver: an object is "owned" by the route whose uid its
ownerReference names, "adoptable" when the operator's labels name the route (an earlier route
object of the same name, e.g. recreated by GitOps, or the route's own object under
``deletionPolicy: Retain``, which carries no ownerReference), "retained" when the labels name
another route and no ModelRoute owns it (left behind by a route with ``deletionPolicy:
Retain``: a route with ``spec.routing.adopt`` may take it over once that route is gone, see
``writer``), and "foreign" otherwise (never written).

``spec.routing.deletionPolicy`` is carried out here too, the same way for every driver: with
``Delete`` the object's controller ownerReference names the route (the garbage collector
deletes it with the route); with ``Retain`` it has none (and a route that switches to Retain
has its ownerReference removed), so it outlives the route, pointing where it last pointed.
An object another kind controls is foreign whatever its labels: the Envoy AI Gateway copies an
AIGatewayRoute's labels (ours) onto the HTTPRoute it generates and controls, which the HTTPRoute
driver must never adopt.
"""

from __future__ import annotations

from typing import Any

from modelroute.api.models import GROUP, KIND, VERSION, DeletionPolicy, ModelRouteSpec
from modelroute.core.types import RouteRef

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "modelroute-operator"
ROUTE_LABEL = "modelroute.dev/route"
# The Envoy AI Gateway marks the HTTPRoute it generates from an AIGatewayRoute with this
# annotation (Envoy Gateway passes ``gateway.envoyproxy.io/`` annotations on to the xDS route
# metadata, where the AI Gateway's extension server looks for ``ai-gateway-generated``).
GENERATED_ANNOTATION = "gateway.envoyproxy.io/ai-gateway-generated"


def owner_reference(route: RouteRef) -> dict[str, Any]:
    """The ownerReference that makes the route own (and garbage-collect) the Service."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": route.name,
        "uid": route.uid,
        "controller": True,
    }


def owner_references(route: RouteRef, spec: ModelRouteSpec) -> list[dict[str, Any]]:
    """The ownerReferences a routing object of ``route`` carries under its deletion policy."""
    if spec.routing.deletion_policy is DeletionPolicy.RETAIN:
        return []
    return [owner_reference(route)]


def owner_references_patch(
    meta: dict[str, Any], desired_meta: dict[str, Any]
) -> list[dict[str, Any]] | None:
    """The ``metadata.ownerReferences`` to merge-patch so ``meta`` follows ``desired_meta``'s
    (built by :func:`owner_references`); None when nothing needs to change.

    Under Delete the route's reference is added when missing (others' references are left
    alone while it is there). Under Retain every reference to a ModelRoute is removed (owners
    of other kinds are kept), so no garbage collection deletes the object with a route.
    """
    have = meta.get("ownerReferences") or []
    want = desired_meta["ownerReferences"]
    if want:
        return None if any(o.get("uid") == want[0]["uid"] for o in have) else want
    kept = [o for o in have if not _is_model_route(o)]
    return kept if len(kept) != len(have) else None


def ownership(route: RouteRef, obj: dict[str, Any], *, adopt: bool = False) -> str:
    """'owned', 'adoptable' (ours, from an earlier route object of the same name, or our own
    retained one), 'retained' (``adopt`` only: left by another route with deletionPolicy
    Retain) or 'foreign'."""
    meta = obj.get("metadata", {})
    refs = meta.get("ownerReferences") or []
    if any(ref.get("uid") == route.uid for ref in refs):
        return "owned"
    if any(_controller_of_another_kind(ref) for ref in refs):
        return "foreign"
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
        return "foreign"
    if labels.get(ROUTE_LABEL) == route.name:
        return "adoptable"
    # Another route's object: only one it no longer owns (Retain), and only when asked to.
    if adopt and labels.get(ROUTE_LABEL) and not any(_is_model_route(ref) for ref in refs):
        return "retained"
    return "foreign"


def made_by_operator(obj: dict[str, Any]) -> bool:
    """True for an object this operator created (its managed-by label)."""
    return (obj.get("metadata", {}).get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY


def generated_by_a_gateway(obj: dict[str, Any]) -> bool:
    """True for an object a gateway generated (and so manages), whoever's labels it carries."""
    annotations = obj.get("metadata", {}).get("annotations") or {}
    return str(annotations.get(GENERATED_ANNOTATION, "")).lower() == "true"


def retained_by(obj: dict[str, Any]) -> str:
    """The name of the route a retained object was created for (its route label)."""
    return str((obj.get("metadata", {}).get("labels") or {}).get(ROUTE_LABEL, ""))


def _is_model_route(ref: dict[str, Any]) -> bool:
    group = str(ref.get("apiVersion", "")).partition("/")[0]
    return (group, ref.get("kind")) == (GROUP, KIND)


def _controller_of_another_kind(ref: dict[str, Any]) -> bool:
    # A controller reference to a ModelRoute (an earlier route object) leaves it adoptable.
    group = str(ref.get("apiVersion", "")).partition("/")[0]
    return bool(ref.get("controller")) and (group, ref.get("kind")) != (GROUP, KIND)
