"""The routing-driver contract: scenarios every registered driver must pass, on any API.

One suite, run twice: on ``FakeKube`` (tests/unit/test_driver_contract.py) and on the real API
server (tests/envtest/test_driver_contract.py). The scenarios here know nothing about Services,
HTTPRoutes or AIGatewayRoutes; what they need to know about a driver comes from its *adapter*
(:class:`DriverAdapter`): a valid spec, the objects it routes to, which backend a routing object
really sends traffic to (read from the object's content, not from the driver), a drift, a
foreign object of the same name and the reason the driver reports for it.

Every name in ``modelroute.routing.names()`` must have an adapter in :data:`ADAPTERS`: a driver
without one fails the suite (it is never skipped).

What plays the rest of the cluster is a :class:`World`: other actors that create, edit and
delete objects, and the truth to read back. The watch is played by :meth:`Contract.sync`, which
reads every object the route depends on back from the world and hands it to the driver's caches,
as the operator's watches would.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest

from modelroute import routing
from modelroute.api.models import GROUP, KIND, VERSION, ModelRouteSpec
from modelroute.core.types import RouteRef, TrafficSplit, Verdict
from modelroute.kube.cache import ObjectCache, ObjectKey, slim_object
from modelroute.kube.client import (
    AIGATEWAYROUTES,
    AISERVICEBACKENDS,
    HTTPROUTES,
    MODELROUTES,
    SERVICES,
    KubeApi,
    ObjectKind,
)
from modelroute.routing import aigatewayroute_object, httproute_object, ownership, service_object
from modelroute.routing.base import DriverContext, DriverInfo, RoutingDriver, RoutingState
from modelroute.routing.handover import Routed, moved, release
from modelroute.routing.service_object import stable

ROUTE_NAME = "chat"
# What another actor adds beside a drift: the driver must keep it (it does not manage it).
OTHERS_LABEL = ("example.com/team", "ml")
OTHERS_ANNOTATION = ("example.com/note", "added by another actor")


# --- what a driver's adapter tells the contract ----------------------------------------------


class DriverAdapter(Protocol):
    """What the contract needs to know about one driver (one adapter per registered driver)."""

    namespace: str

    @property
    def conflict_reason(self) -> str:
        """The ``Problem.reason`` the driver reports for a foreign object of its name."""
        ...

    @property
    def pending(self) -> Verdict | None:
        """The verdict the driver reports on its own object while no gateway has judged it
        (None: no gateway judges the driver's object, e.g. a Service)."""
        ...

    def spec(self) -> ModelRouteSpec:
        """A valid spec for the driver with at least two backends (preferred first)."""
        ...

    def targets(self) -> list[tuple[ObjectKind, dict[str, Any]]]:
        """The objects the backends route to, created before the route exists."""
        ...

    def key(self, spec: ModelRouteSpec) -> ObjectKey:
        """(namespace, name) of the routing object the driver creates for ``spec``."""
        ...

    def carried(self, body: dict[str, Any]) -> TrafficSplit | None:
        """The split ``body`` really sends traffic to, read from its content; None if none."""
        ...

    def marks(self, route: RouteRef) -> dict[str, str]:
        """Labels the driver puts on its routing object."""
        ...

    def drifts(self) -> dict[str, dict[str, Any]]:
        """Merge patches by which another actor edits fields the driver manages, by name.

        Applied one after another while the object routes to the most preferred backend; each
        must change something the driver writes (so one write reverts it).
        """
        ...

    def foreign(self, spec: ModelRouteSpec) -> dict[str, Any]:
        """An object of the routing object's kind and name that the route does not own."""
        ...

    def pinned(self, spec: ModelRouteSpec) -> ModelRouteSpec:
        """``spec`` naming its routing object explicitly (as it is named now), so a route of
        another name (a rename) reaches the same object."""
        ...

    def renamed(self, spec: ModelRouteSpec, name: str) -> ModelRouteSpec:
        """``spec`` routing through an object named ``name`` instead (a GitOps rename)."""
        ...


@dataclass
class ServiceAdapter:
    """The Service driver: the stable Service mirrors a selector target or is an ExternalName.

    The preferred backend's target has a selector (ClusterIP, selector and targetPort mirrored);
    the other one has none (ExternalName), so a switch flips the Service's type both ways.
    """

    namespace: str
    conflict_reason: str = service_object.ServiceReason.SERVICE_CONFLICT
    pending: Verdict | None = None
    selector: dict[str, str] = field(default_factory=lambda: {"app": "llama", "tier": "serving"})

    def spec(self) -> ModelRouteSpec:
        def backend(name: str, priority: int, target: str, port: int) -> dict[str, Any]:
            ref = {"name": target, "port": port}
            return {"name": name, "priority": priority, "serviceRef": ref, "model": "m"}

        return ModelRouteSpec.model_validate(
            {
                "service": {"name": "chat-llm", "port": 80},
                "routing": {"driver": "Service"},
                "backends": [
                    backend("inhouse", 0, "llama-vllm", 8000),
                    backend("vendor", 1, "vendor-egress", 8080),
                ],
            }
        )

    def targets(self) -> list[tuple[ObjectKind, dict[str, Any]]]:
        llama = self._service(
            "llama-vllm",
            {
                "selector": dict(self.selector),
                "ports": [
                    {"name": "http", "port": 8000, "targetPort": "http"},
                    {"name": "metrics", "port": 9090, "targetPort": 9091},
                ],
            },
        )
        # Selector-less (an egress in front of a vendor): reached by DNS on the stable port.
        vendor = self._service(
            "vendor-egress",
            {"ports": [{"name": "api", "port": 8080}, {"name": "http", "port": 80}]},
        )
        return [(SERVICES, llama), (SERVICES, vendor)]

    def key(self, spec: ModelRouteSpec) -> ObjectKey:
        return self.namespace, stable(spec).name

    def pinned(self, spec: ModelRouteSpec) -> ModelRouteSpec:
        return spec  # spec.service.name always names the Service

    def renamed(self, spec: ModelRouteSpec, name: str) -> ModelRouteSpec:
        assert spec.service is not None
        service = spec.service.model_copy(update={"name": name})
        return spec.model_copy(update={"service": service})

    def carried(self, body: dict[str, Any]) -> TrafficSplit | None:
        spec = body.get("spec", {})
        ports = [
            (p.get("protocol", "TCP"), p.get("port"), p.get("targetPort"))
            for p in spec.get("ports") or []
        ]
        if spec.get("type") == "ExternalName" and not spec.get("selector"):
            if spec.get("externalName") == f"vendor-egress.{self.namespace}.svc.cluster.local":
                return TrafficSplit.single("vendor")
        elif spec.get("selector") == self.selector and ports == [("TCP", 80, "http")]:
            return TrafficSplit.single("inhouse")
        return None

    def marks(self, route: RouteRef) -> dict[str, str]:
        return {ownership.MANAGED_BY_LABEL: ownership.MANAGED_BY, ownership.ROUTE_LABEL: route.name}

    def drifts(self) -> dict[str, dict[str, Any]]:
        return {
            "selector-changed": {"spec": {"selector": {"app": "hijacked"}}},
            "selector-key-added": {"spec": {"selector": {"canary": "true"}}},
            "target-port-changed": {"spec": {"ports": [{"port": 80, "targetPort": 9999}]}},
            "type-NodePort": {"spec": {"type": "NodePort"}},
            "backend-annotation": {
                "metadata": {"annotations": {service_object.BACKEND_ANNOTATION: "x"}}
            },
            "route-label-removed": {"metadata": {"labels": {ownership.ROUTE_LABEL: None}}},
            "owner-reference-removed": {"metadata": {"ownerReferences": None}},
        }

    def foreign(self, spec: ModelRouteSpec) -> dict[str, Any]:
        return self._service(
            stable(spec).name,
            {"selector": {"app": "someone-elses"}, "ports": [{"port": 80, "targetPort": 8080}]},
        )

    def _service(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        meta = {"name": name, "namespace": self.namespace}
        return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


ENVOY_BACKENDS = ObjectKind("gateway.envoyproxy.io", "v1alpha1", "backends", "Backend")
INFERENCE_POOLS = ObjectKind("inference.networking.k8s.io", "v1", "inferencepools", "InferencePool")


NO_GATEWAY_ANSWER = Verdict(
    "Unknown", "Pending", "waiting for a Gateway controller to accept the HTTPRoute"
)


@dataclass
class HTTPRouteAdapter:
    """The HTTPRoute driver: one rule whose backendRefs weight a Service, an Envoy Gateway
    Backend (an external vendor) and an InferencePool (no port; its namespace spelt out).

    No gateway controller runs in either world, so the verdict stays Pending throughout.
    """

    namespace: str
    conflict_reason: str = httproute_object.HTTPRouteReason.ROUTE_CONFLICT
    pending: Verdict | None = NO_GATEWAY_ANSWER
    gateway: dict[str, str] = field(
        default_factory=lambda: {
            "name": "ai-gateway",
            "namespace": "gateway-system",
            "sectionName": "https",
        }
    )

    def spec(self) -> ModelRouteSpec:
        http_route = {
            "parentRefs": [dict(self.gateway)],
            "hostnames": ["llm.ai.example.com"],
            "pathPrefix": "/v1",
            "timeouts": {"request": "60s", "backendRequest": "30s"},
        }
        return ModelRouteSpec.model_validate(
            {
                "model": "gpt-4o",
                "routing": {"driver": "HTTPRoute", "httpRoute": http_route},
                "backends": [
                    {
                        "name": "inhouse",
                        "priority": 0,
                        "serviceRef": {"name": "llama-vllm", "port": 8000},
                        "model": "gpt-4o",
                    },
                    {
                        "name": "vendor",
                        "priority": 1,
                        "backendRef": self._vendor_ref(),
                        "endpoint": "https://api.openai.com",
                        "model": "gpt-4o",
                    },
                    {
                        "name": "pool",
                        "priority": 2,
                        "backendRef": {**self._pool_ref(), "namespace": self.namespace},
                        "endpoint": "http://llama-pool-epp.ai.svc:8000",
                        "model": "gpt-4o",
                    },
                ],
            }
        )

    @staticmethod
    def _vendor_ref() -> dict[str, Any]:
        return {"group": "gateway.envoyproxy.io", "kind": "Backend", "name": "openai", "port": 443}

    @staticmethod
    def _pool_ref() -> dict[str, Any]:
        return {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "pool"}

    def targets(self) -> list[tuple[ObjectKind, dict[str, Any]]]:
        llama = {
            "selector": {"app": "llama"},
            "ports": [{"name": "http", "port": 8000, "targetPort": "http"}],
        }
        vendor = {"endpoints": [{"fqdn": {"hostname": "api.openai.com", "port": 443}}]}
        pool = {"selector": {"matchLabels": {"app": "llama"}}, "targetPorts": [{"number": 8000}]}
        return [
            (SERVICES, self._object(SERVICES, "llama-vllm", llama)),
            (ENVOY_BACKENDS, self._object(ENVOY_BACKENDS, "openai", vendor)),
            (INFERENCE_POOLS, self._object(INFERENCE_POOLS, "pool", pool)),
        ]

    def key(self, spec: ModelRouteSpec) -> ObjectKey:
        assert spec.routing.http_route is not None
        return self.namespace, spec.routing.http_route.name or ROUTE_NAME

    def pinned(self, spec: ModelRouteSpec) -> ModelRouteSpec:
        return with_routing(spec, httpRoute={"name": self.key(spec)[1]})

    def renamed(self, spec: ModelRouteSpec, name: str) -> ModelRouteSpec:
        return with_routing(spec, httpRoute={"name": name})

    def carried(self, body: dict[str, Any]) -> TrafficSplit | None:
        spec = body.get("spec", {})
        parents = [
            (p.get("group"), p.get("kind"), p.get("namespace"), p.get("name"), p.get("sectionName"))
            for p in spec.get("parentRefs") or []
        ]
        gw = self.gateway
        gateway = (
            "gateway.networking.k8s.io",
            "Gateway",
            gw["namespace"],
            gw["name"],
            gw["sectionName"],
        )
        rules = spec.get("rules") or []
        if parents != [gateway] or spec.get("hostnames") != ["llm.ai.example.com"]:
            return None
        if len(rules) != 1 or rules[0].get("matches") != [
            {"path": {"type": "PathPrefix", "value": "/v1"}}
        ]:
            return None
        targets = {
            ("", "Service", None, "llama-vllm", 8000): "inhouse",
            ("gateway.envoyproxy.io", "Backend", None, "openai", 443): "vendor",
            ("inference.networking.k8s.io", "InferencePool", self.namespace, "pool", None): "pool",
        }
        weights: dict[str, int] = {}
        for ref in rules[0].get("backendRefs") or []:
            where = (ref["group"], ref["kind"], ref.get("namespace"), ref["name"], ref.get("port"))
            if where not in targets or set(ref) - {*_REF_FIELDS, "weight"}:
                return None
            weights[targets[where]] = ref["weight"]
        try:
            return TrafficSplit(weights)
        except ValueError:
            return None

    def marks(self, route: RouteRef) -> dict[str, str]:
        return {ownership.MANAGED_BY_LABEL: ownership.MANAGED_BY, ownership.ROUTE_LABEL: route.name}

    def drifts(self) -> dict[str, dict[str, Any]]:
        moved = self._rule({"vendor": 100})
        filtered = self._rule({"inhouse": 100})
        header = {"set": [{"name": "x-hijacked", "value": "1"}]}
        filtered["filters"] = [{"type": "RequestHeaderModifier", "requestHeaderModifier": header}]
        untimed = self._rule({"inhouse": 100})
        del untimed["timeouts"]
        dropped = self._rule({"inhouse": 100})
        dropped["backendRefs"] = dropped["backendRefs"][:1]
        evil = [{"path": {"type": "PathPrefix", "value": "/evil"}}]
        unmatched = self._rule({"inhouse": 100})
        del unmatched["matches"]  # the API server defaults it to PathPrefix /
        return {
            "weights-moved": {"spec": {"rules": [moved]}},
            "filter-added": {"spec": {"rules": [filtered]}},
            "timeouts-removed": {"spec": {"rules": [untimed]}},
            "backends-dropped": {"spec": {"rules": [dropped]}},
            "rule-added": {"spec": {"rules": [self._rule({"inhouse": 100}), {}]}},
            "path-changed": {
                "spec": {"rules": [{**self._rule({"inhouse": 100}), "matches": evil}]}
            },
            "matches-removed": {"spec": {"rules": [unmatched]}},
            "hostnames-changed": {"spec": {"hostnames": ["evil.example.com"]}},
            "hostnames-removed": {"spec": {"hostnames": None}},
            "parent-changed": {"spec": {"parentRefs": [{"name": "other-gateway"}]}},
            "parent-section-removed": {
                "spec": {"parentRefs": [{"name": "ai-gateway", "namespace": "gateway-system"}]}
            },
            "route-label-removed": {"metadata": {"labels": {ownership.ROUTE_LABEL: None}}},
            "owner-reference-removed": {"metadata": {"ownerReferences": None}},
        }

    def _rule(self, weights: dict[str, int]) -> dict[str, Any]:
        """The rule as another actor would write it, with ``weights`` (others at 0)."""
        refs = {
            "inhouse": {"kind": "Service", "name": "llama-vllm", "port": 8000},
            "vendor": self._vendor_ref(),
            "pool": {**self._pool_ref(), "namespace": self.namespace},
        }
        return {
            "name": ROUTE_NAME,
            "matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
            "backendRefs": [{**ref, "weight": weights.get(n, 0)} for n, ref in refs.items()],
            "timeouts": {"request": "60s", "backendRequest": "30s"},
        }

    def foreign(self, spec: ModelRouteSpec) -> dict[str, Any]:
        return self._object(
            HTTPROUTES,
            self.key(spec)[1],
            {
                "parentRefs": [{"name": "someone-elses-gateway"}],
                "rules": [{"backendRefs": [{"name": "someone-elses", "port": 80}]}],
            },
        )

    def _object(self, kind: ObjectKind, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        meta = {"name": name, "namespace": self.namespace}
        return {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": meta, "spec": spec}


_REF_FIELDS = ("group", "kind", "namespace", "name", "port")


NO_AI_GATEWAY_ANSWER = Verdict(
    "Unknown",
    "Pending",
    "waiting for the Envoy AI Gateway controller to accept the AIGatewayRoute",
)
MODEL_HEADER = "x-ai-eg-model"
CLIENT_MODEL = "gpt-4o"


@dataclass
class AIGatewayRouteAdapter:
    """The AIGatewayRoute driver, shaped as the canonical chat-ai route: three vendors'
    AIServiceBackends (OpenAI, Anthropic, an in-house OpenAI-compatible server), two of them
    serving another model name than the one clients send (``modelNameOverride``).

    A routing object "sends traffic" to the one backend at priority 0 (weight 1, the default),
    with the others after it in preference order. No AI Gateway controller runs in either world,
    so the verdict stays Pending throughout.
    """

    namespace: str
    conflict_reason: str = aigatewayroute_object.AIGatewayRouteReason.ROUTE_CONFLICT
    pending: Verdict | None = NO_AI_GATEWAY_ANSWER
    gateway: dict[str, str] = field(
        default_factory=lambda: {
            "name": "ai-gateway",
            "namespace": "gateway-system",
            "sectionName": "https",
        }
    )
    # Backend name -> (AIServiceBackend, its API schema, the model it serves), preferred first.
    backends: dict[str, tuple[str, str, str]] = field(
        default_factory=lambda: {
            "openai": ("openai", "OpenAI", CLIENT_MODEL),
            "claude": ("anthropic", "Anthropic", "claude-sonnet-4-5"),
            "inhouse": ("llama", "OpenAI", "llama-3.1-70b-instruct"),
        }
    )

    def spec(self) -> ModelRouteSpec:
        endpoints = {
            "openai": "https://api.openai.com",
            "claude": "https://api.anthropic.com",
            "inhouse": f"http://llama-vllm.{self.namespace}.svc:8000",
        }
        backends = [
            {
                "name": name,
                "priority": priority,
                "provider": "Anthropic" if schema == "Anthropic" else "OpenAI",
                "aiServiceBackendRef": {"name": ref},
                "endpoint": endpoints[name],
                "model": model,
            }
            for priority, (name, (ref, schema, model)) in enumerate(self.backends.items())
        ]
        routing_spec = {
            "driver": "AIGatewayRoute",
            "aiGatewayRoute": {"parentRefs": [self.gateway]},
        }
        return ModelRouteSpec.model_validate(
            {"model": CLIENT_MODEL, "routing": routing_spec, "backends": backends}
        )

    def targets(self) -> list[tuple[ObjectKind, dict[str, Any]]]:
        found = []
        for ref, schema, _ in self.backends.values():
            envoy_backend = {"group": "gateway.envoyproxy.io", "kind": "Backend", "name": ref}
            spec = {"schema": {"name": schema}, "backendRef": envoy_backend}
            found.append((AISERVICEBACKENDS, self._object(AISERVICEBACKENDS, ref, spec)))
        return found

    def key(self, spec: ModelRouteSpec) -> ObjectKey:
        assert spec.routing.ai_gateway_route is not None
        return self.namespace, spec.routing.ai_gateway_route.name or ROUTE_NAME

    def pinned(self, spec: ModelRouteSpec) -> ModelRouteSpec:
        return with_routing(spec, aiGatewayRoute={"name": self.key(spec)[1]})

    def renamed(self, spec: ModelRouteSpec, name: str) -> ModelRouteSpec:
        return with_routing(spec, aiGatewayRoute={"name": name})

    def carried(self, body: dict[str, Any]) -> TrafficSplit | None:
        spec = body.get("spec", {})
        parents = [
            (p.get("group"), p.get("kind"), p.get("namespace"), p.get("name"), p.get("sectionName"))
            for p in spec.get("parentRefs") or []
        ]
        gw = self.gateway
        gateway = ("gateway.networking.k8s.io", "Gateway", gw["namespace"], gw["name"], "https")
        rules = spec.get("rules") or []
        if parents != [gateway] or "hostnames" in spec or len(rules) != 1:
            return None
        rule = rules[0]
        header = {"type": "Exact", "name": MODEL_HEADER, "value": CLIENT_MODEL}
        if rule.get("matches") != [{"headers": [header]}]:
            return None
        if set(rule) != {"matches", "backendRefs", "modelsOwnedBy"}:
            return None  # filters, timeouts, a name: not what the operator writes
        if rule["modelsOwnedBy"] != "Envoy AI Gateway":
            return None
        return self._first(rule["backendRefs"])

    def _first(self, refs: list[dict[str, Any]]) -> TrafficSplit | None:
        """The backend at priority 0, when the others follow in preference order (1, 2, ...)."""
        by_ref = {ref: (name, model) for name, (ref, _, model) in self.backends.items()}
        ranked: list[tuple[int, str]] = []
        for ref in refs:
            if ref.get("name") not in by_ref or ref.get("weight") != 1:
                return None
            if set(ref) - {"name", "modelNameOverride", "priority", "weight"}:
                return None
            name, model = by_ref[ref["name"]]
            if ref.get("modelNameOverride") != (None if model == CLIENT_MODEL else model):
                return None
            ranked.append((ref["priority"], name))
        ranked.sort()
        if [rank for rank, _ in ranked] != list(range(len(self.backends))):
            return None  # a backend missing or twice, or not exactly one first
        active = ranked[0][1]
        if [name for _, name in ranked[1:]] != [n for n in self.backends if n != active]:
            return None
        return TrafficSplit.single(active)

    def marks(self, route: RouteRef) -> dict[str, str]:
        return {ownership.MANAGED_BY_LABEL: ownership.MANAGED_BY, ownership.ROUTE_LABEL: route.name}

    def drifts(self) -> dict[str, dict[str, Any]]:
        def rule(first: str = "openai", **changes: Any) -> dict[str, Any]:
            return {**self._rule(first), **changes}

        unmapped, remapped, tied, starved, swapped, dropped = (rule() for _ in range(6))
        del unmapped["backendRefs"][1]["modelNameOverride"]
        remapped["backendRefs"][2]["modelNameOverride"] = "llama-3.1-8b-instruct"
        tied["backendRefs"][1]["priority"] = 0
        starved["backendRefs"][0]["weight"] = 0
        swapped["backendRefs"][1]["priority"], swapped["backendRefs"][2]["priority"] = 2, 1
        dropped["backendRefs"] = dropped["backendRefs"][:1]
        mini = [{"headers": [{"name": MODEL_HEADER, "value": "gpt-4o-mini"}]}]
        drifts = {
            "priority-moved": rule("claude"),
            "override-removed": unmapped,
            "override-changed": remapped,
            "two-first": tied,
            "active-weight-zero": starved,
            "fallbacks-reordered": swapped,
            "backends-dropped": dropped,
            "model-match-changed": rule(matches=mini),
            "timeouts-added": rule(timeouts={"request": "5s"}),
            "models-owned-by-changed": rule(modelsOwnedBy="someone"),
        }
        section_removed = {"name": "ai-gateway", "namespace": "gateway-system"}
        return {
            **{name: {"spec": {"rules": [changed]}} for name, changed in drifts.items()},
            "rule-added": {"spec": {"rules": [rule(), {}]}},
            "hostnames-added": {"spec": {"hostnames": ["evil.example.com"]}},
            "parent-changed": {"spec": {"parentRefs": [{"name": "other-gateway"}]}},
            "parent-section-removed": {"spec": {"parentRefs": [section_removed]}},
            "route-label-removed": {"metadata": {"labels": {ownership.ROUTE_LABEL: None}}},
            "owner-reference-removed": {"metadata": {"ownerReferences": None}},
        }

    def _rule(self, first: str) -> dict[str, Any]:
        """The rule as another actor would write it, ``first`` at priority 0 (defaults left out)."""
        others = iter(range(1, len(self.backends)))
        refs = []
        for name, (ref, _, model) in self.backends.items():
            entry: dict[str, Any] = {"name": ref}
            if model != CLIENT_MODEL:
                entry["modelNameOverride"] = model
            entry["priority"] = 0 if name == first else next(others)
            refs.append(entry)
        header = {"name": MODEL_HEADER, "value": CLIENT_MODEL}
        return {"matches": [{"headers": [header]}], "backendRefs": refs}

    def foreign(self, spec: ModelRouteSpec) -> dict[str, Any]:
        return self._object(
            AIGATEWAYROUTES,
            self.key(spec)[1],
            {
                "parentRefs": [{"name": "someone-elses-gateway"}],
                "rules": [{"backendRefs": [{"name": "someone-elses"}]}],
            },
        )

    def _object(self, kind: ObjectKind, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        meta = {"name": name, "namespace": self.namespace}
        return {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": meta, "spec": spec}


# Driver name -> adapter factory (given the namespace). A new driver adds its adapter here.
ADAPTERS: dict[str, Callable[[str], DriverAdapter]] = {
    "AIGatewayRoute": AIGatewayRouteAdapter,
    "HTTPRoute": HTTPRouteAdapter,
    "Service": ServiceAdapter,
}


def adapter_for(name: str, namespace: str) -> DriverAdapter:
    """The adapter of a registered driver; fails (never skips) when there is none."""
    factory = ADAPTERS.get(name)
    if factory is None:
        pytest.fail(
            f"routing driver {name!r} is registered (modelroute.routing.names()) but has no "
            "contract adapter: add one to ADAPTERS in tests/drivers/contract.py (a valid spec, "
            "its target objects, which backend a routing object sends traffic to, a drift, a "
            "foreign object of the same name and the reason it reports for that conflict)",
            pytrace=False,
        )
    return factory(namespace)


# --- the world around the driver ---------------------------------------------------------------


class World(Protocol):
    """The API the driver talks to, and the other actors and the truth around it."""

    @property
    def namespace(self) -> str:
        """The namespace the route and its objects live in."""
        ...

    @property
    def kube(self) -> KubeApi:
        """The client the driver is given (the contract counts its calls)."""
        ...

    @property
    def field_manager(self) -> str | None:
        """The manager the API records for the driver's writes; None if it records none."""
        ...

    async def create_route(self, name: str, spec: ModelRouteSpec) -> RouteRef:
        """The ModelRoute the routing object will belong to."""
        ...

    async def seed(self, kind: ObjectKind, body: dict[str, Any]) -> dict[str, Any]:
        """Another actor creates an object."""
        ...

    async def mutate(
        self, kind: ObjectKind, key: ObjectKey, patch: dict[str, Any]
    ) -> dict[str, Any]:
        """Another actor merge-patches an object."""
        ...

    async def delete(self, kind: ObjectKind, key: ObjectKey) -> None:
        """Another actor deletes an object."""
        ...

    async def read(self, kind: ObjectKind, key: ObjectKey) -> dict[str, Any] | None:
        """The object as it is now (not through the driver's client)."""
        ...


@dataclass(frozen=True)
class Call:
    """One write call the driver made through its client."""

    verb: str  # create, patch, patch_status, create_event, create_lease, replace_lease
    resource: str  # the plural, e.g. services
    key: ObjectKey
    ok: bool  # False when the API server refused it (e.g. 409 on a create)

    def __str__(self) -> str:
        refused = "" if self.ok else " (refused)"
        return f"{self.verb} {self.resource} {self.key[0]}/{self.key[1]}{refused}"


class CountingKube:
    """A ``KubeApi`` that records every write the driver attempts, then passes it on."""

    def __init__(self, inner: KubeApi) -> None:
        self._inner = inner
        self.calls: list[Call] = []  # since the last reset
        self.history: list[Call] = []  # since the start

    def reset(self) -> None:
        """Forget the writes so far (``history`` keeps them)."""
        self.calls.clear()

    async def _write(self, verb: str, resource: str, key: ObjectKey, send: Awaitable[Any]) -> Any:
        try:
            result = await send
        except Exception:
            self._record(Call(verb, resource, key, ok=False))
            raise
        self._record(Call(verb, resource, key, ok=True))
        return result

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        self.history.append(call)

    async def get_object(
        self, kind: ObjectKind, namespace: str, name: str
    ) -> dict[str, Any] | None:
        return await self._inner.get_object(kind, namespace, name)

    async def api_resources(self, group_version: str) -> set[str] | None:
        return await self._inner.api_resources(group_version)

    async def api_ready(self) -> None:
        await self._inner.api_ready()

    async def create_object(
        self, kind: ObjectKind, namespace: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        key = (namespace, body["metadata"]["name"])
        send = self._inner.create_object(kind, namespace, body)
        result: dict[str, Any] = await self._write("create", kind.plural, key, send)
        return result

    async def patch_object(
        self, kind: ObjectKind, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        send = self._inner.patch_object(kind, namespace, name, patch)
        result: dict[str, Any] = await self._write("patch", kind.plural, (namespace, name), send)
        return result

    async def delete_object(
        self,
        kind: ObjectKind,
        namespace: str,
        name: str,
        uid: str,
        resource_version: str | None = None,
    ) -> None:
        send = self._inner.delete_object(kind, namespace, name, uid, resource_version)
        await self._write("delete", kind.plural, (namespace, name), send)

    async def patch_route_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        send = self._inner.patch_route_status(namespace, name, status)
        result: dict[str, Any] = await self._write(
            "patch_status", "modelroutes", (namespace, name), send
        )
        return result

    async def create_event(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        send = self._inner.create_event(namespace, body)
        result: dict[str, Any] = await self._write("create", "events", (namespace, ""), send)
        return result

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._inner.get_lease(namespace, name)

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        key = (namespace, body["metadata"]["name"])
        send = self._inner.create_lease(namespace, body)
        result: dict[str, Any] = await self._write("create", "leases", key, send)
        return result

    async def replace_lease(
        self, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        send = self._inner.replace_lease(namespace, name, body)
        result: dict[str, Any] = await self._write("update", "leases", (namespace, name), send)
        return result


# --- one driver, one route, in one world ----------------------------------------------------


@dataclass
class Contract:
    """A driver wired as the operator wires it: watch-fed caches, subscribed to its dependencies."""

    name: str
    info: DriverInfo
    adapter: DriverAdapter
    world: World
    route: RouteRef
    spec: ModelRouteSpec
    kube: CountingKube
    caches: dict[ObjectKind, ObjectCache]
    driver: RoutingDriver

    @classmethod
    async def start(cls, name: str, world: World) -> Contract:
        """Seed the targets, create the route, build the driver and let the watch list all."""
        info = routing.info(name)
        adapter = adapter_for(name, world.namespace)
        spec = adapter.spec()
        assert spec.routing.driver == name, f"the {name} adapter's spec asks for another driver"
        problems = routing.spec_problems(spec)
        assert problems == [], f"the {name} adapter's spec is not valid: {problems}"
        assert len(spec.backends) >= 2, f"the {name} adapter's spec needs two backends"
        for kind, body in adapter.targets():
            await world.seed(kind, body)
        route = await world.create_route(ROUTE_NAME, spec)
        kube = CountingKube(world.kube)
        caches = {
            kind: ObjectCache(functools.partial(kube.get_object, kind), slim_object)
            for kind in info.watched_kinds
        }
        driver = info.create(DriverContext(kube=kube, caches=caches))
        contract = cls(name, info, adapter, world, route, spec, kube, caches, driver)
        contract.subscribe()
        await contract.sync()
        return contract

    # The operator's side of things.

    def subscribe(self) -> None:
        """Subscribe the caches to the driver's dependencies, as the route worker does."""
        wanted = self.driver.dependencies(self.route, self.spec)
        for kind, cache in self.caches.items():
            cache.subscribe(self.route.key, wanted.get(kind, set()))

    async def sync(self) -> None:
        """The watch catches up: every object the route depends on, as it is now."""
        wanted = self.driver.dependencies(self.route, self.spec)
        for kind, keys in wanted.items():
            cache = self.caches.get(kind)
            if cache is None:
                continue  # not watched: the operator would not see it (the dependencies case)
            for key in keys:
                body = await self.world.read(kind, key)
                if body is None:
                    cache.observe("DELETED", {"metadata": {"namespace": key[0], "name": key[1]}})
                else:
                    cache.observe("MODIFIED", body)

    async def apply(self, split: TrafficSplit) -> RoutingState:
        return await self.driver.apply(self.route, self.spec, split)

    async def observe(self) -> RoutingState:
        return await self.driver.observe(self.route, self.spec)

    # What the contract looks at.

    @property
    def key(self) -> ObjectKey:
        """The routing object's (namespace, name)."""
        return self.adapter.key(self.spec)

    def state(self, split: TrafficSplit, wrote: bool = False) -> RoutingState:
        """What the driver reports for its own object carrying ``split``: with the verdict no
        gateway has given yet (there is no gateway controller in either world)."""
        return RoutingState(split=split, wrote=wrote, verdict=self.adapter.pending)

    def single(self, index: int) -> TrafficSplit:
        """All traffic to the ``index``-th backend in preference order."""
        return TrafficSplit.single(self.spec.preference_order()[index].name)

    def writes(self, *, refused: bool = False) -> list[Call]:
        """The driver's writes since the last reset (with ``refused``: attempts too)."""
        return [c for c in self.kube.calls if c.ok or refused]

    async def truth(self) -> dict[str, Any] | None:
        """The routing object as the API has it now."""
        return await self.world.read(self.info.kind, self.key)

    async def routed(self, split: TrafficSplit) -> dict[str, Any]:
        """Assert the routing object exists and sends traffic as ``split`` says; return it."""
        body = await self.truth()
        assert body is not None, f"{self.info.kind.kind} {self.key} does not exist"
        assert self.adapter.carried(body) == split, f"the routing object does not carry {split}"
        return body

    def one_write(self, verb: str, what: str = "") -> None:
        """Assert the driver made exactly one write since the last reset: ``verb`` its object."""
        expected = [Call(verb, self.info.kind.plural, self.key, ok=True)]
        made = [str(c) for c in self.kube.calls]
        assert self.writes(refused=True) == expected, f"{what}: one {verb} expected, made {made}"

    def no_write(self, what: str = "") -> None:
        """Assert the driver attempted no write at all since the last reset."""
        made = [str(c) for c in self.kube.calls]
        assert self.kube.calls == [], f"{what}: no write expected, made {made}"

    def owned(self, body: dict[str, Any], what: str = "") -> None:
        """Assert ``body`` is owned by the route (controller ownerReference) and marked."""
        refs = body["metadata"].get("ownerReferences") or []
        ours = [r for r in refs if r.get("uid") == self.route.uid]
        assert len(ours) == 1, f"{what}: no single ownerReference to the route: {refs}"
        ref = ours[0]
        identity = (ref.get("apiVersion"), ref.get("kind"), ref.get("name"))
        assert identity == (f"{GROUP}/{VERSION}", KIND, self.route.name), f"{what}: {ref}"
        assert ref.get("controller") is True, f"{what}: not the controller reference: {ref}"
        labels = body["metadata"].get("labels") or {}
        marks = self.adapter.marks(self.route)
        assert {k: labels.get(k) for k in marks} == marks, f"{what}: labels {labels}"


CaseFn = Callable[[Contract], Awaitable[None]]
CASES: dict[str, CaseFn] = {}


def case(name: str) -> Callable[[CaseFn], CaseFn]:
    """Register a contract case under ``name`` (the test id)."""

    def register(fn: CaseFn) -> CaseFn:
        CASES[name] = fn
        return fn

    return register


# --- the cases ---------------------------------------------------------------------------------


@case("dependencies")
async def dependencies(c: Contract) -> None:
    """The routing object's own key is a dependency, under the driver's kind; only watched kinds."""
    deps = c.driver.dependencies(c.route, c.spec)
    assert c.key in deps.get(c.info.kind, set()), f"{c.key} not in dependencies {deps}"
    unwatched = set(deps) - set(c.info.watched_kinds)
    assert not unwatched, f"dependencies on kinds the driver does not declare: {unwatched}"
    assert c.driver.dependencies(c.route, c.spec) == deps  # pure
    c.no_write()


@case("create")
async def create(c: Contract) -> None:
    """Nothing yet: observe says so; the first apply creates the object, owned by the route."""
    assert await c.observe() == RoutingState()
    first = c.single(0)
    assert await c.apply(first) == c.state(first, wrote=True)
    c.one_write("create")
    body = await c.routed(first)
    c.owned(body)
    if c.world.field_manager is not None:
        managers = {m.get("manager") for m in body["metadata"].get("managedFields") or []}
        assert managers == {c.world.field_manager}
    assert await c.observe() == c.state(first)
    await c.sync()  # the watch echo of its own create
    assert await c.observe() == c.state(first)


@case("no-op")
async def no_op(c: Contract) -> None:
    """Applying the split the object already carries writes nothing, before and after the echo."""
    first = c.single(0)
    await c.apply(first)
    version = (await c.routed(first))["metadata"]["resourceVersion"]
    c.kube.reset()
    for _ in range(2):
        assert await c.apply(first) == c.state(first)
    await c.sync()
    assert await c.apply(first) == c.state(first)
    c.no_write()
    assert (await c.routed(first))["metadata"]["resourceVersion"] == version


@case("switch")
async def switch(c: Contract) -> None:
    """Another backend's split is one write, and back again another; observe agrees each time."""
    first, second = c.single(0), c.single(1)
    await c.apply(first)
    await c.sync()
    for now in (second, first):
        c.kube.reset()
        assert await c.apply(now) == c.state(now, wrote=True)
        c.one_write("patch")
        c.owned(await c.routed(now))
        assert await c.observe() == c.state(now)
        await c.sync()
        assert await c.observe() == c.state(now)
        c.kube.reset()
        assert await c.apply(now) == c.state(now)
        c.no_write()


@case("drift")
async def drift(c: Contract) -> None:
    """Another actor edits a managed field: one write reverts it, the actor's own labels stay."""
    first = c.single(0)
    await c.apply(first)
    await c.sync()
    before = await c.routed(first)
    drifts = c.adapter.drifts()
    assert drifts, f"the {c.name} adapter names no drift"
    for name, patch in drifts.items():
        label, annotation = OTHERS_LABEL, OTHERS_ANNOTATION
        others = {"metadata": {"labels": dict([label]), "annotations": dict([annotation])}}
        drifted = await c.world.mutate(c.info.kind, c.key, merged(patch, others))
        assert any(_at(drifted, p) != _at(before, p) for p in leaf_paths(patch)), name
        await c.sync()
        c.kube.reset()
        assert await c.apply(first) == c.state(first, wrote=True), name
        c.one_write("patch", name)
        after = await c.routed(first)
        for path in leaf_paths(patch):
            assert _at(after, path) == _at(before, path), f"{name}: {'.'.join(path)} not reverted"
        assert (after["metadata"].get("labels") or {}).get(label[0]) == label[1], name
        assert (after["metadata"].get("annotations") or {}).get(annotation[0]) == annotation[1]
        c.owned(after, name)
        await c.sync()
        c.kube.reset()
        assert await c.apply(first) == c.state(first), name
        c.no_write(name)


@case("others-additions")
async def others_additions(c: Contract) -> None:
    """Labels and annotations another actor adds are not drift: no write."""
    first = c.single(0)
    await c.apply(first)
    label, annotation = OTHERS_LABEL, OTHERS_ANNOTATION
    others = {"metadata": {"labels": dict([label]), "annotations": dict([annotation])}}
    await c.world.mutate(c.info.kind, c.key, others)
    await c.sync()
    c.kube.reset()
    assert await c.apply(first) == c.state(first)
    c.no_write()


@case("deletion")
async def deletion(c: Contract) -> None:
    """The object is deleted: observe says nothing is routed, the next apply recreates it."""
    first = c.single(0)
    await c.apply(first)
    await c.sync()
    old = await c.routed(first)
    await c.world.delete(c.info.kind, c.key)
    await c.sync()
    assert await c.observe() == RoutingState()
    c.kube.reset()
    assert await c.apply(first) == c.state(first, wrote=True)
    c.one_write("create")
    new = await c.routed(first)
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    c.owned(new)


async def _conflicted(c: Contract, state: RoutingState, what: str) -> None:
    assert state.problem is not None, f"{what}: no problem reported for a foreign object"
    assert state.problem.reason == c.adapter.conflict_reason, f"{what}: {state.problem}"
    assert (state.split, state.wrote) == (None, False), f"{what}: {state}"


@case("conflict")
async def conflict(c: Contract) -> None:
    """A foreign object of that name is never written; apply and observe report the conflict."""
    await c.world.seed(c.info.kind, c.adapter.foreign(c.spec))
    await c.sync()
    before = await c.truth()
    assert before is not None
    c.kube.reset()
    for index in range(2):
        await _conflicted(c, await c.apply(c.single(index)), f"apply #{index}")
    await _conflicted(c, await c.observe(), "observe")
    c.no_write()
    assert await c.truth() == before


@case("conflict-watch-lagging")
async def conflict_watch_lagging(c: Contract) -> None:
    """The foreign object appears before the watch says so: still never written."""
    assert await c.caches[c.info.kind].get(c.key) is None  # seen missing
    await c.world.seed(c.info.kind, c.adapter.foreign(c.spec))
    before = await c.truth()
    c.kube.reset()
    await _conflicted(c, await c.apply(c.single(0)), "apply")
    assert c.writes() == [], [str(w) for w in c.kube.calls]  # a refused create at most
    await _conflicted(c, await c.observe(), "observe")
    await c.sync()
    await _conflicted(c, await c.apply(c.single(1)), "apply after the watch")
    assert c.writes() == [], [str(w) for w in c.kube.calls]
    assert await c.truth() == before


@case("finalize")
async def finalize(c: Contract) -> None:
    """The route is deleted: the object is left to the garbage collector (its ownerReference)."""
    first = c.single(0)
    await c.apply(first)
    await c.sync()
    before = await c.routed(first)
    c.kube.reset()
    await c.driver.finalize(c.route, c.spec)
    c.no_write()
    after = await c.truth()
    assert after is not None, "finalize deleted the routing object"
    assert after == before, "finalize changed the routing object"
    c.owned(after)


@case("weights")
async def weights(c: Contract) -> None:
    """A weighted split is carried (supports_weights) or refused before any write."""
    names = [b.name for b in c.spec.preference_order()]
    weighted = TrafficSplit({names[0]: 90, names[1]: 10})
    if c.info.supports_weights:
        assert await c.apply(weighted) == c.state(weighted, wrote=True)
        c.one_write("create")
        await c.routed(weighted)
        assert await c.observe() == c.state(weighted)
        await c.sync()
        c.kube.reset()
        assert await c.apply(weighted) == c.state(weighted)
        c.no_write()
        return
    for existing in (False, True):
        if existing:
            await c.apply(c.single(0))
            await c.sync()
        before = await c.truth()
        c.kube.reset()
        with pytest.raises(ValueError):
            await c.apply(weighted)
        c.no_write()
        assert await c.truth() == before


def _route_references(c: Contract, body: dict[str, Any]) -> list[dict[str, Any]]:
    refs = body["metadata"].get("ownerReferences") or []
    return [r for r in refs if (r.get("apiVersion"), r.get("kind")) == (f"{GROUP}/{VERSION}", KIND)]


def retained(c: Contract, body: dict[str, Any], what: str = "") -> None:
    """Assert ``body`` carries no ModelRoute ownerReference (no garbage collection takes it
    with a route) and still carries the route's marks (recognisably the operator's)."""
    assert _route_references(c, body) == [], f"{what}: {body['metadata'].get('ownerReferences')}"
    labels = body["metadata"].get("labels") or {}
    marks = c.adapter.marks(c.route)
    assert {k: labels.get(k) for k in marks} == marks, f"{what}: labels {labels}"


@case("retain")
async def retain(c: Contract) -> None:
    """deletionPolicy Retain: the route's ownerReference goes in one write (a route switching
    to Retain), none comes back on later writes, finalize leaves the object; back to Delete
    restores it in one write."""
    first, second = c.single(0), c.single(1)
    await c.apply(first)
    await c.sync()
    c.spec = with_routing(c.spec, deletionPolicy="Retain")
    c.kube.reset()
    assert await c.apply(first) == c.state(first, wrote=True)
    c.one_write("patch", "Delete -> Retain")
    retained(c, await c.routed(first), "Delete -> Retain")
    await c.sync()
    c.kube.reset()
    assert await c.apply(first) == c.state(first)
    assert await c.observe() == c.state(first)
    c.no_write("steady under Retain")
    assert await c.apply(second) == c.state(second, wrote=True)
    c.one_write("patch", "a switch under Retain")
    retained(c, await c.routed(second), "a switch under Retain")
    await c.sync()
    c.kube.reset()
    await c.driver.finalize(c.route, c.spec)
    c.no_write("finalize under Retain")
    retained(c, await c.routed(second), "after finalize")
    c.spec = with_routing(c.spec, deletionPolicy="Delete")
    assert await c.apply(second) == c.state(second, wrote=True)
    c.one_write("patch", "Retain -> Delete")
    c.owned(await c.routed(second), "Retain -> Delete")


@case("retain-create")
async def retain_create(c: Contract) -> None:
    """A route created with Retain creates its object without an ownerReference."""
    c.spec = with_routing(c.spec, deletionPolicy="Retain")
    first = c.single(0)
    assert await c.apply(first) == c.state(first, wrote=True)
    c.one_write("create")
    retained(c, await c.routed(first))


@case("adopt")
async def adopt(c: Contract) -> None:
    """An object another route retained is a conflict for a renamed route, until it asks to
    adopt it and that route is gone: then one patch makes the same object its own, still
    carrying the split it carried."""
    c.spec = with_routing(c.adapter.pinned(c.spec), deletionPolicy="Retain")
    first = c.single(0)
    await c.apply(first)
    await c.sync()
    before = await c.routed(first)
    renamed_spec = c.adapter.pinned(c.spec)
    renamed = await c.world.create_route(f"{ROUTE_NAME}-renamed", renamed_spec)
    driver = c.info.create(DriverContext(kube=c.kube, caches=c.caches))
    adopting = with_routing(renamed_spec, adopt=True, deletionPolicy="Delete")
    c.kube.reset()
    await _conflicted(c, await driver.apply(renamed, renamed_spec, first), "without adopt")
    await _conflicted(c, await driver.apply(renamed, adopting, first), "its route still there")
    assert c.writes() == [], [str(w) for w in c.kube.calls]
    await c.world.delete(MODELROUTES, c.route.key)
    await _conflicted(c, await driver.apply(renamed, renamed_spec, first), "gone, no adopt")
    c.kube.reset()
    assert await driver.observe(renamed, adopting) == c.state(first)
    assert await driver.apply(renamed, adopting, first) == c.state(first, wrote=True)
    c.one_write("patch", "adoption")
    after = await c.routed(first)
    assert after["metadata"]["uid"] == before["metadata"]["uid"], "adopted by recreating it"
    adopter = dataclasses.replace(c, route=renamed, spec=adopting)
    adopter.owned(after, "adopted")
    await c.sync()
    c.kube.reset()
    assert await driver.apply(renamed, adopting, first) == c.state(first)
    c.no_write("steady after adoption")


@case("observe-only")
async def observe_only(c: Contract) -> None:
    """What a suspended route does (spec.suspend): only observe. It never writes, whatever
    another actor does to the object, and reports what the object carries."""
    first, second = c.single(0), c.single(1)
    await c.apply(first)
    await c.sync()
    c.kube.reset()
    assert await c.observe() == c.state(first)
    drift = next(iter(c.adapter.drifts().values()))
    await c.world.mutate(c.info.kind, c.key, drift)
    await c.sync()
    await c.observe()
    await c.world.delete(c.info.kind, c.key)
    await c.sync()
    assert await c.observe() == RoutingState()
    c.no_write("observe")
    assert await c.truth() is None
    await c.apply(second)  # resuming: one write, at once
    c.one_write("create", "resume")
    await c.routed(second)


@case("handover")
async def handover(c: Contract) -> None:
    """A spec that routes through another object releases the previous one (routing.handover,
    driver-agnostic through DriverInfo.object_name): under Delete one delete, under Retain one
    patch dropping the route's ownerReference; nothing while the object is the same one, and
    nothing for an object the route does not own."""
    first = c.single(0)
    await c.apply(first)
    await c.sync()
    old_key, old = c.key, Routed(c.info, c.spec)
    assert not moved(c.route, old, old), "the same spec moved to another object"
    c.kube.reset()
    await release(c.kube, c.route, old, old)
    c.no_write("the same object")
    new_spec = c.adapter.renamed(c.spec, "renamed-llm")
    assert c.adapter.key(new_spec) != old_key and moved(c.route, old, Routed(c.info, new_spec))
    retaining = with_routing(new_spec, deletionPolicy="Retain")
    await release(c.kube, c.route, old, Routed(c.info, retaining))
    assert [str(w) for w in c.writes()] == [str(Call("patch", c.info.kind.plural, old_key, True))]
    retained(c, await c.routed(first), "released under Retain")
    c.kube.reset()
    await release(c.kube, c.route, old, Routed(c.info, new_spec))
    c.no_write("not owned any more (retained): never touched")
    assert old.spec is not None
    c.spec = old.spec
    await c.sync()
    await c.apply(first)  # owned again (Delete)
    await c.sync()
    c.kube.reset()
    await release(c.kube, c.route, old, Routed(c.info, new_spec))
    assert [str(w) for w in c.writes()] == [str(Call("delete", c.info.kind.plural, old_key, True))]
    assert await c.truth() is None, "the previous object is still there"


def with_routing(spec: ModelRouteSpec, **routing_fields: Any) -> ModelRouteSpec:
    """``spec`` with ``spec.routing`` fields (wire names) set; maps are merged."""
    wire = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    wire["routing"] = merged(wire.get("routing", {}), routing_fields)
    return ModelRouteSpec.model_validate(wire)


# --- helpers ----------------------------------------------------------------------------------


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` merged into a copy of ``base`` (maps merged, everything else replaced)."""
    result = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def leaf_paths(patch: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The paths a merge patch sets or removes (lists and scalars are leaves)."""
    for key, value in patch.items():
        if isinstance(value, dict) and value:
            yield from leaf_paths(value, (*prefix, key))
        else:
            yield (*prefix, key)


_MISSING = object()


def _at(body: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(body, dict) or part not in body:
            return _MISSING
        body = body[part]
    return body
