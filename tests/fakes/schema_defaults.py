"""What upstream CRDs' schemas add to the objects the fake API server stores (``FakeKube``).

A real API server fills in an object's schema defaults on every write (and enforces the schema's
rules); the fake does the same for the routing objects the drivers write, so a driver's diff is
tested against what it will really read back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelroute.kube.client import AIGATEWAYROUTES, HTTPROUTES, ApiError, ObjectKind


def httproute_defaults(spec: dict[str, Any]) -> None:
    """What the upstream HTTPRoute CRD's schema defaults add, and the CEL rule it enforces on
    backendRefs (a Service needs a port)."""
    for parent in spec.get("parentRefs") or []:
        parent.setdefault("group", "gateway.networking.k8s.io")
        parent.setdefault("kind", "Gateway")
    for r, rule in enumerate(spec.setdefault("rules", [{}])):
        for match in rule.setdefault("matches", [{}]):
            path = match.setdefault("path", {})
            path.setdefault("type", "PathPrefix")
            path.setdefault("value", "/")
        for b, ref in enumerate(rule.get("backendRefs") or []):
            ref.setdefault("group", "")
            ref.setdefault("kind", "Service")
            ref.setdefault("weight", 1)
            if ref["group"] == "" and ref["kind"] == "Service" and "port" not in ref:
                where = f"spec.rules[{r}].backendRefs[{b}]"
                raise ApiError(422, "Invalid", f"{where}: Must have port for Service reference")


def aigatewayroute_defaults(spec: dict[str, Any]) -> None:
    """What the upstream AIGatewayRoute CRD's (v1beta1) schema defaults add."""
    for parent in spec.get("parentRefs") or []:
        parent.setdefault("group", "gateway.networking.k8s.io")
        parent.setdefault("kind", "Gateway")
    for rule in spec.get("rules") or []:
        rule.setdefault("modelsOwnedBy", "Envoy AI Gateway")
        for match in rule.get("matches") or []:
            for header in match.get("headers") or []:
                header.setdefault("type", "Exact")
        for ref in rule.get("backendRefs") or []:
            ref.setdefault("priority", 0)
            ref.setdefault("weight", 1)


# Kind -> what its CRD's schema adds to (or refuses in) a spec, in place.
SCHEMA_DEFAULTS: dict[ObjectKind, Callable[[dict[str, Any]], None]] = {
    HTTPROUTES: httproute_defaults,
    AIGATEWAYROUTES: aigatewayroute_defaults,
}
