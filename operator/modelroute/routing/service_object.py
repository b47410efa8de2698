"""The Service driver's pure part: the stable Service for a backend, and the patch to get there.

- Target Service with a selector: copy the selector and map ``stable(spec).port`` to the
  target's ``targetPort`` for ``serviceRef.port``. The type stays ClusterIP so the ClusterIP
  never changes.
- Target Service without a selector: ExternalName ``<serviceRef.name>.<namespace>.svc.<domain>``
  (DNS: clients connect to the target on ``stable(spec).port``, which it must serve).
"""

from __future__ import annotations

import enum
from typing import Any

from modelroute.api.models import Backend, ModelRouteSpec, ServiceSpec
from modelroute.core.types import Problem, ReadyReason, RouteRef
from modelroute.routing.ownership import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    ROUTE_LABEL,
    owner_references,
    owner_references_patch,
)

BACKEND_ANNOTATION = "modelroute.dev/backend"


def stable(spec: ModelRouteSpec) -> ServiceSpec:
    """``spec.service``: the Service driver's checks make sure it is there."""
    if spec.service is None:
        raise ValueError("the Service routing driver needs spec.service")
    return spec.service


class ServiceReason(enum.StrEnum):
    """``Ready=False`` reasons this driver reports."""

    TARGET_SERVICE_MISSING = "TargetServiceMissing"
    TARGET_PORT_MISSING = "TargetPortMissing"
    EXTERNAL_NAME_PORT_MISMATCH = "ExternalNamePortMismatch"
    SERVICE_CONFLICT = "ServiceConflict"


def _target_port(target: dict[str, Any], port: int) -> dict[str, Any] | None:
    for entry in target.get("spec", {}).get("ports") or []:
        if entry.get("port") == port:
            return dict(entry)
    return None


def desired_service(
    route: RouteRef,
    spec: ModelRouteSpec,
    backend: Backend,
    target: dict[str, Any],
    cluster_domain: str,
) -> dict[str, Any] | Problem:
    """The stable Service that sends traffic to ``backend`` (pure), or why it cannot."""
    ref = backend.service_ref
    if ref is None:  # validation reports this before routing; kept total for safety
        return Problem(ReadyReason.INVALID_SPEC, f"backend {backend.name} has no serviceRef")
    where = f"Service {route.namespace}/{ref.name}"
    if target.get("spec", {}).get("selector"):
        spec_part = _selector_spec(where, spec, backend, target)
    else:
        dns_name = f"{ref.name}.{route.namespace}.svc.{cluster_domain}"
        spec_part = _external_name_spec(where, spec, ref.port, target, dns_name)
    if isinstance(spec_part, Problem):
        return spec_part
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": stable(spec).name,
            "namespace": route.namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, ROUTE_LABEL: route.name},
            "annotations": {BACKEND_ANNOTATION: backend.name},
            "ownerReferences": owner_references(route, spec),
        },
        "spec": spec_part,
    }


def _selector_spec(
    where: str, spec: ModelRouteSpec, backend: Backend, target: dict[str, Any]
) -> dict[str, Any] | Problem:
    """Mirror the target's selector; map the stable port to the target's targetPort."""
    assert backend.service_ref is not None
    port = _target_port(target, backend.service_ref.port)
    if port is None:
        return Problem(
            ServiceReason.TARGET_PORT_MISSING,
            f"{where} has no port {backend.service_ref.port} (backend {backend.name})",
        )
    return {
        "type": "ClusterIP",
        "selector": dict(target["spec"]["selector"]),
        "ports": [
            {
                "protocol": port.get("protocol", "TCP"),
                "port": stable(spec).port,
                "targetPort": port.get("targetPort", port["port"]),
            }
        ],
    }


def _external_name_spec(
    where: str, spec: ModelRouteSpec, target_port: int, target: dict[str, Any], dns_name: str
) -> dict[str, Any] | Problem:
    """A DNS alias of a selector-less target, which must serve the stable port itself."""
    # ExternalName is DNS: clients reach the target on stable(spec).port. A target that
    # declares ports but not that one would take the traffic nowhere while looking routed.
    port = stable(spec).port
    declared = [p.get("port") for p in target.get("spec", {}).get("ports") or []]
    if declared and port not in declared:
        return Problem(
            ServiceReason.EXTERNAL_NAME_PORT_MISMATCH,
            f"{where} has no selector, so traffic would reach it by DNS on port {port}, which "
            f"it does not expose (ports: {', '.join(str(p) for p in declared)}); expose port "
            f"{port} on it or give it a selector",
        )
    return {
        "type": "ExternalName",
        "externalName": dns_name,
        "ports": [{"protocol": "TCP", "port": port, "targetPort": target_port}],
    }


def _normalized_ports(ports: list[dict[str, Any]] | None) -> list[tuple[Any, ...]]:
    # The API server fills in protocol and targetPort defaults; compare what they mean.
    return [
        (p.get("protocol", "TCP"), p.get("port"), p.get("targetPort", p.get("port")))
        for p in ports or []
    ]


def service_patch(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON merge patch that turns ``current`` into ``desired``; None when nothing differs.

    Only fields the operator manages are compared, so other controllers' additions (extra
    labels, annotations, status) never cause a write.
    """
    meta, want_meta = current.get("metadata", {}), desired["metadata"]
    spec, want = current.get("spec", {}), desired["spec"]
    patch_meta: dict[str, Any] = {}
    for field in ("labels", "annotations"):
        have = meta.get(field) or {}
        changed = {k: v for k, v in want_meta[field].items() if have.get(k) != v}
        if changed:
            patch_meta[field] = changed
    owners = owner_references_patch(meta, want_meta)
    if owners is not None:
        patch_meta["ownerReferences"] = owners
    patch_spec: dict[str, Any] = {}
    if spec.get("type", "ClusterIP") != want["type"]:
        patch_spec["type"] = want["type"]
    want_selector = want.get("selector") or {}
    have_selector = spec.get("selector") or {}
    if have_selector != want_selector:
        # Merge patch merges maps: name the keys to remove explicitly with null.
        removed: dict[str, Any] = {k: None for k in have_selector if k not in want_selector}
        patch_spec["selector"] = {**removed, **want_selector} if want_selector else None
    if spec.get("externalName") != want.get("externalName"):
        patch_spec["externalName"] = want.get("externalName")
    if _normalized_ports(spec.get("ports")) != _normalized_ports(want["ports"]):
        patch_spec["ports"] = want["ports"]
    if patch_spec.get("type") == "ExternalName":
        # An ExternalName Service has no cluster IP; release it explicitly.
        patch_spec.update(clusterIP=None, clusterIPs=None)
    patch: dict[str, Any] = {}
    if patch_meta:
        patch["metadata"] = patch_meta
    if patch_spec:
        patch["spec"] = patch_spec
    return patch or None
