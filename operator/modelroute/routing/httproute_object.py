"""The HTTPRoute driver's pure part: the HTTPRoute for a split, the patch to get there, and what
an HTTPRoute says back (the split its weights carry, and the gateway's verdict in its status).

- One rule, named after the ModelRoute: a PathPrefix match and ``backendRefs`` listing every
  backend in preference order, each weighted from the split (most at 0), so a switch rewrites
  weights only and the gateway keeps every backend resolved.
- The API server fills in defaults (parentRef group and kind, backendRef group, kind and
  weight, path match type and value): the diff compares what they mean, so a round trip
  through the API server is never drift.
- The verdict counts only the conditions a Gateway stamped with the object's current
  generation: after a write, an older answer is no answer.
"""

from __future__ import annotations

import enum
from typing import Any

from modelroute.api.gateway import HTTPRouteSpec
from modelroute.api.models import Backend, ModelRouteSpec
from modelroute.core.types import Problem, RouteRef, TrafficSplit, Verdict
from modelroute.routing.ownership import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    ROUTE_LABEL,
    owner_references,
    owner_references_patch,
)

GATEWAY_GROUP = "gateway.networking.k8s.io"
DEFAULT_PATH = {"type": "PathPrefix", "value": "/"}
# A Gateway API ParentReference or BackendObjectReference with every default filled in:
# (group, kind, namespace, name, sectionName, port); backendRefs leave sectionName None.
RefKey = tuple[str, str, str, str, str | None, int | None]


class HTTPRouteReason(enum.StrEnum):
    """``Ready=False`` reasons this driver reports."""

    ROUTE_CONFLICT = "RouteConflict"
    GATEWAY_REJECTED = "GatewayRejected"


def http_route(spec: ModelRouteSpec) -> HTTPRouteSpec:
    """``spec.routing.httpRoute``: the HTTPRoute driver's checks make sure it is there."""
    if spec.routing.http_route is None:
        raise ValueError("the HTTPRoute routing driver needs spec.routing.httpRoute")
    return spec.routing.http_route


def route_name(route: RouteRef, spec: ModelRouteSpec) -> str:
    """The HTTPRoute's name: ``httpRoute.name``, else the ModelRoute's."""
    return http_route(spec).name or route.name


def backend_ref(backend: Backend) -> dict[str, Any]:
    """The backend as a Gateway API BackendObjectReference (unset fields left out)."""
    if backend.backend_ref is not None:
        return backend.backend_ref.to_wire()
    if backend.service_ref is not None:
        ref = backend.service_ref
        return {"kind": "Service", "name": ref.name, "port": ref.port}
    # The driver's checks reject this before routing; kept total for safety.
    raise ValueError(f"backend {backend.name!r} has neither backendRef nor serviceRef")


def desired_http_route(
    route: RouteRef, spec: ModelRouteSpec, split: TrafficSplit
) -> dict[str, Any]:
    """The HTTPRoute that sends traffic as ``split`` says (pure)."""
    backends = spec.preference_order()
    unknown = set(split) - {b.name for b in backends}
    if unknown:
        raise ValueError(f"the split names backends the spec lacks: {sorted(unknown)}")
    wanted = http_route(spec)
    rule: dict[str, Any] = {
        "name": route.name,
        "matches": [{"path": {"type": "PathPrefix", "value": wanted.path_prefix}}],
        "backendRefs": [{**backend_ref(b), "weight": split[b.name]} for b in backends],
    }
    timeouts = wanted.timeouts.to_wire() if wanted.timeouts is not None else {}
    if timeouts:
        rule["timeouts"] = timeouts
    route_spec: dict[str, Any] = {"parentRefs": [p.to_wire() for p in wanted.parent_refs]}
    if wanted.hostnames:
        route_spec["hostnames"] = list(wanted.hostnames)
    route_spec["rules"] = [rule]
    return {
        "apiVersion": f"{GATEWAY_GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": route_name(route, spec),
            "namespace": route.namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, ROUTE_LABEL: route.name},
            "ownerReferences": owner_references(route, spec),
        },
        "spec": route_spec,
    }


# --- what the API server's defaults mean ----------------------------------------------------


def parent_key(ref: dict[str, Any], namespace: str) -> RefKey:
    """A ParentReference with its defaults (the route's namespace when unset)."""
    return (
        ref.get("group", GATEWAY_GROUP),
        ref.get("kind", "Gateway"),
        ref.get("namespace") or namespace,
        ref.get("name", ""),
        ref.get("sectionName") or None,
        ref.get("port"),
    )


def backend_key(ref: dict[str, Any], namespace: str) -> RefKey:
    """A BackendObjectReference with its defaults (the route's namespace when unset)."""
    return (
        ref.get("group", ""),
        ref.get("kind", "Service"),
        ref.get("namespace") or namespace,
        ref.get("name", ""),
        None,
        ref.get("port"),
    )


def _defaulted_match(match: dict[str, Any]) -> dict[str, Any]:
    out = dict(match)
    out["path"] = {**DEFAULT_PATH, **(match.get("path") or {})}
    for field in ("headers", "queryParams"):
        if field in match:
            out[field] = [{"type": "Exact", **entry} for entry in match[field]]
    return out


def _defaulted_rules(rules: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """``rules`` as the API server stores them: every schema default filled in."""
    out = []
    for rule in [{}] if rules is None else rules:
        defaulted = dict(rule)
        # Defaults apply to absent fields only: an explicit empty list stays empty.
        defaulted["matches"] = [_defaulted_match(m) for m in rule.get("matches", [{}])]
        if "backendRefs" in rule:
            defaulted["backendRefs"] = [
                {"group": "", "kind": "Service", "weight": 1, **ref} for ref in rule["backendRefs"]
            ]
        out.append(defaulted)
    return out


def _defaulted_parents(refs: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [{"group": GATEWAY_GROUP, "kind": "Gateway", **ref} for ref in refs or []]


def http_route_patch(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON merge patch that turns ``current`` into ``desired``; None when nothing differs.

    Only fields the operator manages are compared (its labels, its ownerReference, and the
    spec's parentRefs, hostnames and rules), so other actors' labels, annotations and status
    never cause a write. The lists are replaced wholesale: a merge patch cannot edit a list.
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
    if (spec.get("hostnames") or []) != want.get("hostnames", []):
        # No hostnames is "any hostname": remove the field rather than write an empty list.
        patch_spec["hostnames"] = want.get("hostnames")
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
    """The split ``body``'s weights carry, by backend name; None when they name no split of
    this spec (no single rule, a backendRef that is no backend's, or weights not summing to
    100, e.g. all 0 or the API server's default of 1)."""
    rules = body.get("spec", {}).get("rules") or []
    if len(rules) != 1:
        return None  # traffic would also depend on matches the operator did not write
    names = {backend_key(backend_ref(b), route.namespace): b.name for b in spec.backends}
    weights: dict[str, int] = {}
    for ref in rules[0].get("backendRefs") or []:
        name = names.get(backend_key(ref, route.namespace))
        if name is None or name in weights:
            return None
        weights[name] = ref.get("weight", 1)
    try:
        return TrafficSplit(weights)
    except ValueError:
        return None


# --- the gateway's verdict ---------------------------------------------------------------------

WAITING = "waiting for a Gateway controller to accept the HTTPRoute"
# The conditions a Gateway sets on each parent it judged: both True means it routes the rule.
JUDGED = ("Accepted", "ResolvedRefs")


def describe_parent(key: RefKey) -> str:
    """A parent as a message names it, e.g. ``Gateway gateway-system/ai-gateway``."""
    _, kind, namespace, name, section, port = key
    where = f"{kind} {namespace}/{name}"
    if section:
        where += f" listener {section}"
    if port is not None:
        where += f" port {port}"
    return where


def _current(condition: dict[str, Any], generation: Any) -> bool:
    # A condition stamped with an older generation judged an older spec: not an answer yet.
    # One without a stamp (or an object without a generation) cannot be told stale: it counts.
    observed = condition.get("observedGeneration")
    return observed is None or generation is None or observed == generation


def gateway_verdict(
    route: RouteRef, spec: ModelRouteSpec, body: dict[str, Any]
) -> tuple[Verdict, Problem | None]:
    """What the Gateways named in ``spec`` said of ``body``'s current generation, and the
    problem a rejection is (``status.parents[]`` of other parents are ignored).

    Any ``Accepted`` or ``ResolvedRefs`` False: False with that reason, naming the Gateway.
    Every parent answered both True: True. Otherwise Unknown (reason Pending)."""
    ours = [parent_key(p.to_wire(), route.namespace) for p in http_route(spec).parent_refs]
    generation = body.get("metadata", {}).get("generation")
    rejections: list[tuple[str, str]] = []
    accepted: set[RefKey] = set()
    for entry in body.get("status", {}).get("parents") or []:
        key = parent_key(entry.get("parentRef") or {}, route.namespace)
        if key not in ours:
            continue  # a parent the spec no longer names: its answer is not about us now
        conditions = {
            c.get("type"): c for c in entry.get("conditions") or [] if _current(c, generation)
        }
        for kind in JUDGED:
            said = conditions.get(kind) or {}
            if said.get("status") == "False":
                reason = said.get("reason") or kind
                rejections.append(
                    (reason, f"{describe_parent(key)}: {said.get('message') or reason}")
                )
        if all((conditions.get(kind) or {}).get("status") == "True" for kind in JUDGED):
            accepted.add(key)
    if rejections:
        message = "; ".join(text for _, text in rejections)
        problem = Problem(HTTPRouteReason.GATEWAY_REJECTED, message)
        return Verdict("False", rejections[0][0], message), problem
    waiting = [describe_parent(key) for key in ours if key not in accepted]
    if not waiting:
        return Verdict(
            "True", "Accepted", f"accepted by {', '.join(map(describe_parent, ours))}"
        ), None
    if accepted:
        return Verdict(
            "Unknown", "Pending", f"{WAITING} (no answer yet from {', '.join(waiting)})"
        ), None
    return Verdict("Unknown", "Pending", WAITING), None
