"""The AIGatewayRoute driver's pure part: the AIGatewayRoute for a split, the patch to get there,
and what an AIGatewayRoute says back (the backend its priorities send traffic to, and the Envoy
AI Gateway controller's verdict in its status).

- One rule matching the header ``x-ai-eg-model`` (which the AI Gateway fills in from the request
  body's ``model``) equal to ``spec.model``; ``backendRefs`` list every backend's
  AIServiceBackend in preference order, with ``modelNameOverride`` where the backend serves
  another name, and ``priority`` 0 for the active backend alone, the others 1, 2, ... after it in
  preference order. A switch rewrites priorities only; the gateway's own per-request fallback
  (Envoy priority levels, with a BackendTrafficPolicy's retries and passive health checks)
  still works as a second line behind the operator's probes.
- The API server fills in defaults (parentRef group and kind, header match type, backendRef
  priority 0 and weight 1, the rule's ``modelsOwnedBy``): the diff compares what they mean, so a
  round trip through the API server is never drift.
- The controller's verdict (Envoy AI Gateway v1.1: one condition, ``Accepted`` True or
  ``NotAccepted``, reasons ``ReconciliationSucceeded`` / ``ReconciliationFailed``) counts only
  when stamped with the object's current generation, or not stamped at all: v1.1 does not stamp
  its conditions, so after a write its previous answer stands until it answers again.
"""

from __future__ import annotations

import enum
from typing import Any

from modelroute.api.gateway import AIGatewayRouteSpec
from modelroute.api.models import Backend, ModelRouteSpec
from modelroute.core.types import Problem, RouteRef, TrafficSplit, Verdict
from modelroute.kube.client import AIGATEWAYROUTES
from modelroute.routing.ownership import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    ROUTE_LABEL,
    owner_references,
    owner_references_patch,
)

GATEWAY_GROUP = "gateway.networking.k8s.io"
MODEL_HEADER = "x-ai-eg-model"  # the model name the AI Gateway reads from the request body
MODELS_OWNED_BY = "Envoy AI Gateway"  # the CRD's default of a rule's modelsOwnedBy


class AIGatewayRouteReason(enum.StrEnum):
    """``Ready=False`` reasons this driver reports (the first two as the HTTPRoute driver's)."""

    ROUTE_CONFLICT = "RouteConflict"
    GATEWAY_REJECTED = "GatewayRejected"
    BACKEND_REF_MISSING = "BackendRefMissing"


def ai_gateway_route(spec: ModelRouteSpec) -> AIGatewayRouteSpec:
    """``spec.routing.aiGatewayRoute``: the driver's checks make sure it is there."""
    if spec.routing.ai_gateway_route is None:
        raise ValueError("the AIGatewayRoute routing driver needs spec.routing.aiGatewayRoute")
    return spec.routing.ai_gateway_route


def route_name(route: RouteRef, spec: ModelRouteSpec) -> str:
    """The AIGatewayRoute's name: ``aiGatewayRoute.name``, else the ModelRoute's."""
    return ai_gateway_route(spec).name or route.name


def client_model(spec: ModelRouteSpec) -> str:
    """The model name clients send: ``spec.model``, else the most preferred backend's."""
    return spec.model or spec.preference_order()[0].model


def ai_service_backend_name(backend: Backend) -> str:
    """The name of the backend's AIServiceBackend (in the route's namespace)."""
    if backend.ai_service_backend_ref is None:
        # The driver's checks reject this before routing; kept total for safety.
        raise ValueError(f"backend {backend.name!r} has no aiServiceBackendRef")
    return backend.ai_service_backend_ref.name


def priorities(spec: ModelRouteSpec, active: str) -> dict[str, int]:
    """Backend name -> priority: ``active`` 0, the others 1, 2, ... in preference order."""
    others = [b.name for b in spec.preference_order() if b.name != active]
    return {active: 0, **{name: rank for rank, name in enumerate(others, start=1)}}


def desired_ai_gateway_route(
    route: RouteRef, spec: ModelRouteSpec, split: TrafficSplit
) -> dict[str, Any]:
    """The AIGatewayRoute that sends the traffic of ``split`` (a single backend) first (pure)."""
    if not split.is_single:
        raise ValueError(f"the AIGatewayRoute driver cannot split traffic ({split})")
    backends = spec.preference_order()
    if split.primary not in {b.name for b in backends}:
        raise ValueError(f"the split names a backend the spec lacks: {split.primary!r}")
    model = client_model(spec)
    ranks = priorities(spec, split.primary)
    refs = []
    for backend in backends:
        ref: dict[str, Any] = {"name": ai_service_backend_name(backend)}
        if backend.model != model:
            ref["modelNameOverride"] = backend.model
        ref["priority"] = ranks[backend.name]
        refs.append(ref)
    header = {"type": "Exact", "name": MODEL_HEADER, "value": model}
    rule = {"matches": [{"headers": [header]}], "backendRefs": refs}
    parents = [p.to_wire() for p in ai_gateway_route(spec).parent_refs]
    return {
        "apiVersion": AIGATEWAYROUTES.api_version,
        "kind": AIGATEWAYROUTES.kind,
        "metadata": {
            "name": route_name(route, spec),
            "namespace": route.namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, ROUTE_LABEL: route.name},
            "ownerReferences": owner_references(route, spec),
        },
        "spec": {"parentRefs": parents, "rules": [rule]},
    }


# --- what the API server's defaults mean ----------------------------------------------------


def _defaulted_parents(refs: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [{"group": GATEWAY_GROUP, "kind": "Gateway", **ref} for ref in refs or []]


def _defaulted_match(match: dict[str, Any]) -> dict[str, Any]:
    if "headers" not in match:
        return match
    return {**match, "headers": [{"type": "Exact", **h} for h in match["headers"]]}


def _defaulted_rules(rules: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """``rules`` as the API server stores them: every schema default filled in."""
    out = []
    for rule in rules or []:
        defaulted = {"modelsOwnedBy": MODELS_OWNED_BY, **rule}
        if "matches" in rule:
            defaulted["matches"] = [_defaulted_match(m) for m in rule["matches"]]
        if "backendRefs" in rule:
            defaulted["backendRefs"] = [
                {"priority": 0, "weight": 1, **ref} for ref in rule["backendRefs"]
            ]
        out.append(defaulted)
    return out


def ai_gateway_route_patch(
    current: dict[str, Any], desired: dict[str, Any]
) -> dict[str, Any] | None:
    """The JSON merge patch that turns ``current`` into ``desired``; None when nothing differs.

    Compared: the operator's labels, its ownerReference, and the spec's parentRefs, hostnames
    (it sets none: any is drift, since they narrow which requests match) and rules. Other
    labels, annotations, ``llmRequestCosts`` and status are other actors' and never cause a
    write. The lists are replaced wholesale: a merge patch cannot edit a list.
    """
    meta, want_meta = current.get("metadata", {}), desired["metadata"]
    spec, want = current.get("spec", {}), desired["spec"]
    patch_meta: dict[str, Any] = {}
    labels = meta.get("labels") or {}
    changed = {k: v for k, v in want_meta["labels"].items() if labels.get(k) != v}
    if changed:
        patch_meta["labels"] = changed
    owners = owner_references_patch(meta, want_meta)
    if owners is not None:
        patch_meta["ownerReferences"] = owners
    patch_spec: dict[str, Any] = {}
    if _defaulted_parents(spec.get("parentRefs")) != _defaulted_parents(want["parentRefs"]):
        patch_spec["parentRefs"] = want["parentRefs"]
    if "hostnames" in spec:
        patch_spec["hostnames"] = None
    if _defaulted_rules(spec.get("rules")) != _defaulted_rules(want["rules"]):
        patch_spec["rules"] = want["rules"]
    patch: dict[str, Any] = {}
    if patch_meta:
        patch["metadata"] = patch_meta
    if patch_spec:
        patch["spec"] = patch_spec
    return patch or None


def carried_split(
    route: RouteRef, spec: ModelRouteSpec, body: dict[str, Any]
) -> TrafficSplit | None:
    """All traffic to the one backend ``body`` puts first (priority 0, weight not 0); None when
    it names no such backend of this spec (not one rule, a backendRef that is no backend's,
    several backends first, or none)."""
    rules = body.get("spec", {}).get("rules") or []
    if len(rules) != 1:
        return None  # traffic would also depend on matches the operator did not write
    names = {ai_service_backend_name(b): b.name for b in spec.backends}
    seen: set[str] = set()
    first: list[str] = []
    for ref in rules[0].get("backendRefs") or []:
        # An AIServiceBackend of the route's namespace (group and kind set: an InferencePool).
        local = (ref.get("namespace") or route.namespace) == route.namespace
        plain = local and not ref.get("group") and not ref.get("kind")
        name = names.get(ref.get("name", "")) if plain else None
        if name is None or name in seen:
            return None
        seen.add(name)
        if ref.get("priority", 0) == 0 and ref.get("weight", 1) != 0:
            first.append(name)
    return TrafficSplit.single(first[0]) if len(first) == 1 else None


# --- the AI Gateway controller's verdict ----------------------------------------------------

WAITING = "waiting for the Envoy AI Gateway controller to accept the AIGatewayRoute"


def _current(condition: dict[str, Any], generation: Any) -> bool:
    # Stamped with an older generation: it judged an older spec. Unstamped (v1.1 never stamps)
    # or an object without a generation: it cannot be told stale, so it counts.
    observed = condition.get("observedGeneration")
    return observed is None or generation is None or observed == generation


def gateway_verdict(
    route: RouteRef, spec: ModelRouteSpec, body: dict[str, Any]
) -> tuple[Verdict, Problem | None]:
    """What the Envoy AI Gateway controller said of ``body``, and the problem a rejection is.

    ``NotAccepted`` (whatever its status: v1.1 sets it False) or ``Accepted`` False: False with
    the controller's reason, and a problem (GatewayRejected). ``Accepted`` True: True, unless a
    ``ResolvedRefs`` False (later versions) says some AIServiceBackends got no traffic: then
    False with that reason but no problem, since the others serve and the driver itself checks
    the active one's AIServiceBackend (BackendRefMissing). Nothing current: Unknown, Pending.
    """
    generation = body.get("metadata", {}).get("generation")
    conditions = {
        c.get("type"): c
        for c in body.get("status", {}).get("conditions") or []
        if _current(c, generation)
    }
    accepted = conditions.get("Accepted") or {}
    refused = conditions.get("NotAccepted")
    if refused is None and accepted.get("status") == "False":
        refused = accepted
    if refused is not None:
        reason = refused.get("reason") or "NotAccepted"
        message = refused.get("message") or reason
        where = f"AIGatewayRoute {route.namespace}/{route_name(route, spec)}"
        problem = Problem(
            AIGatewayRouteReason.GATEWAY_REJECTED,
            f"the Envoy AI Gateway did not accept {where}: {message}",
        )
        return Verdict("False", reason, message), problem
    if accepted.get("status") != "True":
        return Verdict("Unknown", "Pending", WAITING), None
    unresolved = conditions.get("ResolvedRefs") or {}
    if unresolved.get("status") == "False":
        reason = unresolved.get("reason") or "ResolvedRefs"
        return Verdict("False", reason, unresolved.get("message") or reason), None
    message = accepted.get("message") or "accepted by the Envoy AI Gateway controller"
    return Verdict("True", "Accepted", message), None
