"""Tests for the AIGatewayRoute routing driver: the pure parts (desired object, diff, the backend
read back, the AI Gateway controller's verdict, spec checks), then the driver against a fake.

The fake (``tests.fakes.kube.FakeKube``) stands in for ``modelroute.kube.client.KubeClient``,
our own boundary: it stores AIGatewayRoutes and AIServiceBackends, fills in the defaults the
upstream AIGatewayRoute CRD's schema adds (and the generation), and queues watch events that a
test delivers to real ``ObjectCache``s.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from modelroute import routing
from modelroute.api.models import ModelRouteSpec
from modelroute.core.types import Problem, RouteRef, TrafficSplit, Verdict
from modelroute.kube.cache import ObjectCache, slim_object
from modelroute.kube.client import AIGATEWAYROUTES, AISERVICEBACKENDS, HTTPROUTES, ApiError
from modelroute.routing.aigatewayroute import DRIVER, AIGatewayRouteDriver, check_spec
from modelroute.routing.aigatewayroute_object import (
    AIGatewayRouteReason,
    ai_gateway_route_patch,
    carried_split,
    desired_ai_gateway_route,
    gateway_verdict,
)
from modelroute.routing.base import DriverContext, RoutingState
from modelroute.routing.httproute import HTTPRouteDriver
from modelroute.routing.ownership import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    ROUTE_LABEL,
    owner_reference,
    ownership,
)
from tests.fakes.kube import FakeKube, merge_patch

NS = "ai"
ROUTE = RouteRef(namespace=NS, name="chat-ai", uid="uid-chat-ai-2")
EARLIER_ROUTE = RouteRef(namespace=NS, name="chat-ai", uid="uid-chat-ai-1")
KEY = (NS, "chat-ai")
GATEWAY = {"name": "ai-gateway", "namespace": "gateway-system"}
WAITING = Verdict(
    "Unknown", "Pending", "waiting for the Envoy AI Gateway controller to accept the AIGatewayRoute"
)
CONTRACT = Path(__file__).resolve().parents[3] / "shared" / "design" / "modelroute-api.md"

# The contract's canonical chat-ai example (shared/design/modelroute-api.md), spec as written.
CHAT_AI: dict[str, Any] = {
    "model": "gpt-4o",
    "routing": {"driver": "AIGatewayRoute", "aiGatewayRoute": {"parentRefs": [GATEWAY]}},
    "backends": [
        {
            "name": "openai",
            "priority": 0,
            "aiServiceBackendRef": {"name": "openai"},
            "endpoint": "https://api.openai.com",
            "model": "gpt-4o",
            "authSecretRef": {"name": "openai-key", "key": "apiKey"},
        },
        {
            "name": "claude",
            "priority": 1,
            "provider": "Anthropic",
            "aiServiceBackendRef": {"name": "anthropic"},
            "endpoint": "https://api.anthropic.com",
            "model": "claude-sonnet-4-5",
            "authSecretRef": {"name": "anthropic-key", "key": "apiKey"},
        },
        {
            "name": "inhouse",
            "priority": 2,
            "aiServiceBackendRef": {"name": "llama"},
            "endpoint": "http://llama-vllm.ai.svc:8000",
            "model": "llama-3.1-70b-instruct",
        },
    ],
}
SPEC = ModelRouteSpec.model_validate(CHAT_AI)
SERVICE_BACKENDS = {"openai": "openai", "claude": "anthropic", "inhouse": "llama"}


def spec_with(**changes: Any) -> ModelRouteSpec:
    """The canonical spec with top-level fields (or ``aiGatewayRoute`` fields) replaced."""
    raw = copy.deepcopy(CHAT_AI)
    raw["routing"]["aiGatewayRoute"].update(changes.pop("ai_gateway_route", {}))
    raw.update(changes)
    return ModelRouteSpec.model_validate(raw)


def single(backend: str) -> TrafficSplit:
    return TrafficSplit.single(backend)


def ours(backend: str = "openai", spec: ModelRouteSpec = SPEC) -> dict[str, Any]:
    """What the operator writes to put ``backend`` first (its desired AIGatewayRoute)."""
    return desired_ai_gateway_route(ROUTE, spec, single(backend))


def as_stored(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` as the API server returns it after a create (defaults filled in)."""
    return FakeKube(default_kind=AIGATEWAYROUTES).seed(body)


def routed(backend: str, *, wrote: bool = False, verdict: Verdict | None = WAITING) -> RoutingState:
    """The state of our AIGatewayRoute putting ``backend`` first, no controller answer yet."""
    return RoutingState(split=single(backend), wrote=wrote, verdict=verdict)


def ranks(body: dict[str, Any]) -> list[tuple[str, int]]:
    return [(r["name"], r["priority"]) for r in body["spec"]["rules"][0]["backendRefs"]]


# --- desired_ai_gateway_route ---------------------------------------------------------------


def test_canonical_example_is_the_expected_ai_gateway_route() -> None:
    assert ours("openai") == {
        "apiVersion": "aigateway.envoyproxy.io/v1beta1",
        "kind": "AIGatewayRoute",
        "metadata": {
            "name": "chat-ai",
            "namespace": "ai",
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, ROUTE_LABEL: "chat-ai"},
            "ownerReferences": [
                {
                    "apiVersion": "modelroute.dev/v1alpha1",
                    "kind": "ModelRoute",
                    "name": "chat-ai",
                    "uid": ROUTE.uid,
                    "controller": True,
                }
            ],
        },
        "spec": {
            "parentRefs": [{"namespace": "gateway-system", "name": "ai-gateway"}],
            "rules": [
                {
                    "matches": [
                        {"headers": [{"type": "Exact", "name": "x-ai-eg-model", "value": "gpt-4o"}]}
                    ],
                    "backendRefs": [
                        {"name": "openai", "priority": 0},
                        {
                            "name": "anthropic",
                            "modelNameOverride": "claude-sonnet-4-5",
                            "priority": 1,
                        },
                        {
                            "name": "llama",
                            "modelNameOverride": "llama-3.1-70b-instruct",
                            "priority": 2,
                        },
                    ],
                }
            ],
        },
    }


def test_the_example_is_the_contracts() -> None:
    if not CONTRACT.exists():
        pytest.skip(f"contract {CONTRACT} not present (it lives outside the repository)")
    section = CONTRACT.read_text().split("## Canonical L7 examples", 1)[1]
    block = re.search(r"^```ya?ml\s*$(.*?)^```\s*$", section, re.M | re.S)
    assert block is not None
    docs = {d["metadata"]["name"]: d for d in yaml.safe_load_all(block.group(1))}
    assert ModelRouteSpec.model_validate(docs["chat-ai"]["spec"]) == SPEC


def test_the_guide_shows_this_route_and_what_the_driver_writes_for_it() -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "ai-gateway.md").read_text()
    blocks = re.findall(r"^```ya?ml\s*$(.*?)^```\s*$", guide, re.M | re.S)
    docs = [d for block in blocks for d in yaml.safe_load_all(block) if d]
    (route,) = [d for d in docs if d["kind"] == "ModelRoute"]
    assert ModelRouteSpec.model_validate(route["spec"]) == SPEC
    (written,) = [d for d in docs if d["kind"] == "AIGatewayRoute"]
    assert written["spec"] == ours("openai")["spec"]
    names = {d["metadata"]["name"] for d in docs if d["kind"] == "AIServiceBackend"}
    assert names == set(SERVICE_BACKENDS.values())


@pytest.mark.parametrize(
    ("active", "expected"),
    [
        pytest.param("openai", [("openai", 0), ("anthropic", 1), ("llama", 2)], id="openai"),
        pytest.param("claude", [("openai", 1), ("anthropic", 0), ("llama", 2)], id="claude"),
        pytest.param("inhouse", [("openai", 1), ("anthropic", 2), ("llama", 0)], id="inhouse"),
    ],
)
def test_the_active_backend_alone_is_priority_0(active: str, expected: list[Any]) -> None:
    body = ours(active)
    assert ranks(body) == expected  # the list stays in preference order: a switch is priorities
    assert body["spec"]["rules"][0]["matches"] == ours("openai")["spec"]["rules"][0]["matches"]


def test_model_defaults_to_the_most_preferred_backends() -> None:
    spec = spec_with(model=None)
    assert spec.model is None
    assert ours("claude", spec) == ours("claude")  # gpt-4o: openai's model
    # Another preference order: the in-house model is what clients send, the others are mapped.
    backends = copy.deepcopy(CHAT_AI["backends"])
    backends[0]["priority"], backends[2]["priority"] = 3, 0
    rule = ours("openai", spec_with(model=None, backends=backends))["spec"]["rules"][0]
    assert rule["matches"][0]["headers"][0]["value"] == "llama-3.1-70b-instruct"
    assert rule["backendRefs"] == [
        {"name": "llama", "priority": 1},
        {"name": "anthropic", "modelNameOverride": "claude-sonnet-4-5", "priority": 2},
        {"name": "openai", "modelNameOverride": "gpt-4o", "priority": 0},
    ]


def test_name_and_parent_refs_as_given() -> None:
    parent: dict[str, Any] = {"group": "gateway.networking.k8s.io", "kind": "Gateway"}
    parent |= {"name": "edge", "namespace": "gw", "sectionName": "https", "port": 443}
    body = ours("openai", spec_with(ai_gateway_route={"name": "llm", "parentRefs": [parent]}))
    assert body["metadata"]["name"] == "llm"
    assert body["metadata"]["labels"][ROUTE_LABEL] == "chat-ai"
    assert body["spec"]["parentRefs"] == [parent]
    assert "hostnames" not in body["spec"] and "name" not in body["spec"]["rules"][0]


def test_only_a_single_backend_of_the_spec_is_put_first() -> None:
    with pytest.raises(ValueError, match="cannot split traffic"):
        desired_ai_gateway_route(ROUTE, SPEC, TrafficSplit({"openai": 90, "claude": 10}))
    with pytest.raises(ValueError, match="nope"):
        ours("nope")


# --- ai_gateway_route_patch ------------------------------------------------------------------


def changed(body: dict[str, Any], change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    out = copy.deepcopy(body)
    change(out)
    return out


def rule_of(body: dict[str, Any]) -> dict[str, Any]:
    rule: dict[str, Any] = body["spec"]["rules"][0]
    return rule


@pytest.mark.parametrize("active", ["openai", "claude", "inhouse"])
def test_no_patch_after_api_server_defaults(active: str) -> None:
    desired = ours(active)
    stored = as_stored(desired)
    # The server filled in what the operator left out: the diff must not see it as drift.
    assert stored["spec"]["parentRefs"][0]["kind"] == "Gateway"
    assert rule_of(stored)["modelsOwnedBy"] == "Envoy AI Gateway"
    assert {r["weight"] for r in rule_of(stored)["backendRefs"]} == {1}
    assert ai_gateway_route_patch(stored, desired) is None
    assert ai_gateway_route_patch(slim_object(stored), desired) is None


NO_WRITE_CHANGES = [
    pytest.param(lambda b: b["metadata"]["labels"].update(team="ml"), id="extra-label"),
    pytest.param(lambda b: b["metadata"].update(annotations={"note": "x"}), id="annotation"),
    pytest.param(lambda b: b.update(status={"conditions": []}), id="status"),
    pytest.param(lambda b: b["spec"].update(llmRequestCosts=[{}]), id="llm-request-costs"),
    pytest.param(lambda b: rule_of(b)["backendRefs"][0].pop("priority"), id="priority-0-left-out"),
    pytest.param(lambda b: rule_of(b)["matches"][0]["headers"][0].pop("type"), id="type-left-out"),
]


@pytest.mark.parametrize("change", NO_WRITE_CHANGES)
def test_no_patch_when_only_others_fields_or_defaults_differ(change: Callable[..., Any]) -> None:
    desired = ours("openai")
    assert ai_gateway_route_patch(changed(as_stored(desired), change), desired) is None


RULES = {"spec": {"rules": ours("openai")["spec"]["rules"]}}
CHANGES = [
    pytest.param(
        lambda b: b["metadata"].pop("labels"),
        {"metadata": {"labels": {MANAGED_BY_LABEL: MANAGED_BY, ROUTE_LABEL: "chat-ai"}}},
        id="labels-removed",
    ),
    pytest.param(
        lambda b: b["metadata"].pop("ownerReferences"),
        {"metadata": {"ownerReferences": [owner_reference(ROUTE)]}},
        id="owner-reference-removed",
    ),
    pytest.param(
        lambda b: b["spec"].update(parentRefs=[{"name": "other"}]),
        {"spec": {"parentRefs": [GATEWAY]}},
        id="parent-refs-changed",
    ),
    pytest.param(
        lambda b: b["spec"].update(hostnames=["evil.example.com"]),
        {"spec": {"hostnames": None}},
        id="hostnames-added",
    ),
    pytest.param(
        lambda b: b["spec"].update(rules=ours("claude")["spec"]["rules"]),
        RULES,
        id="priorities-moved",
    ),
    pytest.param(
        lambda b: rule_of(b)["backendRefs"][1].pop("modelNameOverride"),
        RULES,
        id="override-removed",
    ),
    pytest.param(lambda b: rule_of(b)["backendRefs"][0].update(weight=0), RULES, id="weight-0"),
    pytest.param(lambda b: rule_of(b).update(modelsOwnedBy="x"), RULES, id="models-owned-by"),
    pytest.param(lambda b: rule_of(b).update(timeouts={"request": "1s"}), RULES, id="timeouts"),
    pytest.param(
        lambda b: rule_of(b)["matches"][0]["headers"][0].update(value="gpt-4o-mini"),
        RULES,
        id="model-match-changed",
    ),
    pytest.param(lambda b: b["spec"]["rules"].append({}), RULES, id="rule-added"),
    pytest.param(lambda b: b["spec"].pop("rules"), RULES, id="rules-removed"),
]


@pytest.mark.parametrize(("change", "expected"), CHANGES)
def test_patch_reverts_each_managed_field(
    change: Callable[..., Any], expected: dict[str, Any]
) -> None:
    desired = ours("openai")
    current = changed(as_stored(desired), change)
    patch = ai_gateway_route_patch(current, desired)
    assert patch == expected
    assert ai_gateway_route_patch(as_stored(merge_patch(current, patch)), desired) is None


def test_patch_adopts_the_route_of_an_earlier_route_object() -> None:
    current = as_stored(desired_ai_gateway_route(EARLIER_ROUTE, SPEC, single("openai")))
    assert ai_gateway_route_patch(current, ours("openai")) == {
        "metadata": {"ownerReferences": [owner_reference(ROUTE)]}
    }


# --- carried_split ---------------------------------------------------------------------------


@pytest.mark.parametrize("active", ["openai", "claude", "inhouse"])
def test_the_backend_at_priority_0_is_read_back(active: str) -> None:
    assert carried_split(ROUTE, SPEC, ours(active)) == single(active)
    assert carried_split(ROUTE, SPEC, as_stored(ours(active))) == single(active)


NO_SPLIT_CHANGES = [
    pytest.param(lambda b: rule_of(b)["backendRefs"][1].update(priority=0), id="two-first"),
    pytest.param(lambda b: rule_of(b)["backendRefs"][0].update(priority=3), id="none-first"),
    pytest.param(lambda b: rule_of(b)["backendRefs"][0].update(weight=0), id="first-weight-0"),
    pytest.param(lambda b: rule_of(b)["backendRefs"][1].pop("priority"), id="default-0-twice"),
    pytest.param(lambda b: rule_of(b)["backendRefs"][0].update(name="x"), id="unknown-entry"),
    pytest.param(lambda b: rule_of(b)["backendRefs"][0].update(namespace="edge"), id="other-ns"),
    pytest.param(
        lambda b: rule_of(b)["backendRefs"][0].update(
            group="inference.networking.k8s.io", kind="InferencePool"
        ),
        id="inference-pool",
    ),
    pytest.param(
        lambda b: rule_of(b)["backendRefs"].append(dict(rule_of(b)["backendRefs"][1])),
        id="listed-twice",
    ),
    pytest.param(lambda b: b["spec"]["rules"].append({}), id="two-rules"),
    pytest.param(lambda b: b["spec"].pop("rules"), id="no-rules"),
]


@pytest.mark.parametrize("change", NO_SPLIT_CHANGES)
def test_no_split_unless_one_backend_of_ours_is_first(change: Callable[..., Any]) -> None:
    assert carried_split(ROUTE, SPEC, changed(ours("openai"), change)) is None


def test_the_route_namespace_spelt_out_is_ours() -> None:
    body = changed(ours("claude"), lambda b: rule_of(b)["backendRefs"][1].update(namespace=NS))
    assert carried_split(ROUTE, SPEC, body) == single("claude")


# --- gateway_verdict -------------------------------------------------------------------------


def condition(
    kind: str, status: str, reason: str, message: str = "", generation: int | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "status": status, "reason": reason, "message": message}
    if generation is not None:
        out["observedGeneration"] = generation
    return out


# What Envoy AI Gateway v1.1 writes: one condition, never stamped with a generation.
ACCEPTED = condition("Accepted", "True", "ReconciliationSucceeded", "AI Gateway Route reconciled")
NOT_ACCEPTED = condition("NotAccepted", "False", "ReconciliationFailed", "gateway x not found")
REJECTION = (
    Verdict("False", "ReconciliationFailed", "gateway x not found"),
    Problem(
        AIGatewayRouteReason.GATEWAY_REJECTED,
        "the Envoy AI Gateway did not accept AIGatewayRoute ai/chat-ai: gateway x not found",
    ),
)


def judged(conditions: list[dict[str, Any]], generation: int = 2) -> tuple[Verdict, Any]:
    body = ours("openai")
    body["metadata"]["generation"] = generation
    body["status"] = {"conditions": conditions}
    return gateway_verdict(ROUTE, SPEC, body)


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        pytest.param([], (WAITING, None), id="no-answer"),
        pytest.param(
            [ACCEPTED], (Verdict("True", "Accepted", "AI Gateway Route reconciled"), None), id="ok"
        ),
        pytest.param([{**ACCEPTED, "observedGeneration": 2}], judged([ACCEPTED]), id="stamped"),
        pytest.param([{**ACCEPTED, "observedGeneration": 1}], (WAITING, None), id="stale"),
        pytest.param([{**NOT_ACCEPTED, "observedGeneration": 1}], (WAITING, None), id="stale-no"),
        pytest.param([NOT_ACCEPTED], REJECTION, id="not-accepted"),
        pytest.param([{**NOT_ACCEPTED, "status": "True"}], REJECTION, id="not-accepted-true"),
        pytest.param(
            [condition("Accepted", "False", "ReconciliationFailed", "gateway x not found")],
            REJECTION,
            id="accepted-false",
        ),
        pytest.param(
            [condition("Accepted", "Unknown", "Pending")], (WAITING, None), id="accepted-unknown"
        ),
        pytest.param(
            [ACCEPTED, condition("ResolvedRefs", "False", "BackendNotFound", "llama not found")],
            (Verdict("False", "BackendNotFound", "llama not found"), None),
            id="unresolved-refs-are-no-problem",
        ),
    ],
)
def test_gateway_verdict(conditions: list[dict[str, Any]], expected: Any) -> None:
    assert judged(conditions) == expected


# --- check_spec ------------------------------------------------------------------------------


def with_backend(index: int, **fields: Any) -> list[dict[str, Any]]:
    backends = copy.deepcopy(CHAT_AI["backends"])
    backends[index].update(fields)
    return [{k: v for k, v in b.items() if v is not None} for b in backends]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(SPEC, [], id="canonical"),
        pytest.param(
            spec_with(routing={"driver": "AIGatewayRoute"}),
            [
                "spec.routing.aiGatewayRoute: required by the AIGatewayRoute routing driver "
                "(parentRefs: the Gateways the AIGatewayRoute attaches to)"
            ],
            id="no-ai-gateway-route",
        ),
        pytest.param(
            spec_with(backends=with_backend(1, aiServiceBackendRef=None)),
            ["spec.backends[1].aiServiceBackendRef: required by the AIGatewayRoute routing driver"],
            id="no-ai-service-backend-ref",
        ),
        pytest.param(
            spec_with(backends=with_backend(2, aiServiceBackendRef={"name": "openai"})),
            [
                "spec.backends[2].aiServiceBackendRef.name: names the same AIServiceBackend as "
                "spec.backends[0]"
            ],
            id="same-ai-service-backend",
        ),
        pytest.param(
            spec_with(failback={"steps": [50, 100]}),
            [
                "spec.failback.steps: the AIGatewayRoute routing driver cannot split traffic (it "
                "puts one backend first by priority; staged failback needs a weighted driver "
                "such as HTTPRoute)"
            ],
            id="steps",
        ),
        pytest.param(
            spec_with(ai_gateway_route={"parentRefs": [{**GATEWAY, "kind": "ListenerSet"}]}),
            [
                "spec.routing.aiGatewayRoute.parentRefs[0].kind: an AIGatewayRoute attaches to "
                "Gateways only"
            ],
            id="parent-kind",
        ),
        pytest.param(
            spec_with(ai_gateway_route={"parentRefs": [{**GATEWAY, "sectionName": "HTTPS"}]}),
            [
                "spec.routing.aiGatewayRoute.parentRefs[0].sectionName: must be a DNS subdomain "
                "(a listener)"
            ],
            id="section-name",
        ),
        pytest.param(
            spec_with(ai_gateway_route={"parentRefs": [{"name": f"g{i}"} for i in range(17)]}),
            ["spec.routing.aiGatewayRoute.parentRefs: at most 16 for an AIGatewayRoute"],
            id="too-many-parents",
        ),
        pytest.param(
            spec_with(
                backends=with_backend(
                    2,
                    endpoint=None,
                    serviceRef={"name": "llama-vllm", "port": 8000},
                    backendRef={"name": "ignored", "port": 1},
                )
            ),
            [],
            id="service-ref-and-backend-ref-are-ignored",
        ),
    ],
)
def test_check_spec(spec: ModelRouteSpec, expected: list[str]) -> None:
    assert check_spec(spec) == expected


def test_a_backend_needs_somewhere_to_probe() -> None:
    spec = spec_with(backends=with_backend(2, endpoint=None))
    assert [p.split(":")[0] for p in routing.spec_problems(spec)] == ["spec.backends[2].endpoint"]


# --- ownership: the HTTPRoute the AI Gateway generates ----------------------------------------


def generated_http_route() -> dict[str, Any]:
    """The HTTPRoute the AI Gateway makes of our AIGatewayRoute: same name, our labels copied,
    controlled by the AIGatewayRoute."""
    aigw_owner: dict[str, Any] = {"apiVersion": "aigateway.envoyproxy.io/v1beta1"}
    aigw_owner |= {"kind": "AIGatewayRoute", "name": "chat-ai", "uid": "uid-aigw"}
    aigw_owner["controller"] = True
    meta: dict[str, Any] = {"name": "chat-ai", "namespace": NS, "ownerReferences": [aigw_owner]}
    meta["labels"] = {MANAGED_BY_LABEL: MANAGED_BY, ROUTE_LABEL: "chat-ai"}
    spec = {"parentRefs": [GATEWAY], "rules": [{"backendRefs": [{"name": "openai", "port": 443}]}]}
    return {"metadata": meta, "spec": spec}


def test_an_object_another_kind_controls_is_foreign_whatever_its_labels() -> None:
    assert ownership(ROUTE, generated_http_route()) == "foreign"
    earlier = changed(
        generated_http_route(),
        lambda b: b["metadata"].update(ownerReferences=[owner_reference(EARLIER_ROUTE)]),
    )
    assert ownership(ROUTE, earlier) == "adoptable"


async def test_the_httproute_driver_never_adopts_the_generated_http_route() -> None:
    kube = FakeKube(default_kind=HTTPROUTES)
    kube.seed(generated_http_route())
    cache = ObjectCache(functools.partial(kube.get_object, HTTPROUTES), slim_object)
    driver = HTTPRouteDriver(DriverContext(kube=kube, caches={HTTPROUTES: cache}))
    spec = ModelRouteSpec.model_validate(
        {
            "routing": {"driver": "HTTPRoute", "httpRoute": {"parentRefs": [GATEWAY]}},
            "backends": [
                {"name": "a", "priority": 0, "serviceRef": {"name": "a", "port": 80}, "model": "m"}
            ],
        }
    )
    state = await driver.apply(ROUTE, spec, single("a"))
    assert state.problem is not None and state.problem.reason == "RouteConflict"
    assert kube.writes == 0


# --- AIGatewayRouteDriver against the fake ------------------------------------------------------


class World(NamedTuple):
    kube: FakeKube
    routes: ObjectCache
    backends: ObjectCache
    driver: AIGatewayRouteDriver

    async def apply(self, backend: str | TrafficSplit) -> RoutingState:
        split = single(backend) if isinstance(backend, str) else backend
        return await self.driver.apply(ROUTE, SPEC, split)

    async def observe(self) -> RoutingState:
        return await self.driver.observe(ROUTE, SPEC)

    def route(self) -> dict[str, Any]:
        return self.kube.store()[KEY]

    def deliver(self) -> set[tuple[str, str]]:
        """The watch catches up; the routes the events woke."""
        woken: set[tuple[str, str]] = set()
        for event, body in self.kube.events:
            # Each cache keeps only the keys routes subscribed to: the other one ignores it.
            for cache in (self.routes, self.backends):
                woken |= cache.observe(event, copy.deepcopy(body))
        self.kube.events.clear()
        return woken

    def seed_backend(self, name: str) -> None:
        spec = {"schema": {"name": "OpenAI"}, "backendRef": {"name": name, "kind": "Backend"}}
        body = {"metadata": {"name": name, "namespace": NS}, "spec": spec}
        self.kube.seed(body, kind=AISERVICEBACKENDS)

    def controller_says(self, *conditions: dict[str, Any]) -> None:
        self.kube.mutate(KEY, {"status": {"conditions": list(conditions)}})
        self.deliver()


def make_world(*backends: str) -> World:
    kube = FakeKube(default_kind=AIGATEWAYROUTES)
    kube.serve(AISERVICEBACKENDS)
    routes = ObjectCache(functools.partial(kube.get_object, AIGATEWAYROUTES), slim_object)
    refs = ObjectCache(functools.partial(kube.get_object, AISERVICEBACKENDS), slim_object)
    caches = {AIGATEWAYROUTES: routes, AISERVICEBACKENDS: refs}
    driver = AIGatewayRouteDriver(DriverContext(kube=kube, caches=caches))
    deps = driver.dependencies(ROUTE, SPEC)
    for kind, cache in caches.items():
        cache.subscribe(ROUTE.key, deps[kind])
    world = World(kube, routes, refs, driver)
    for name in backends:
        world.seed_backend(name)
    world.deliver()
    kube.calls.clear()
    return world


@pytest.fixture
def world() -> World:
    return make_world(*SERVICE_BACKENDS.values())


def test_registry_entry(world: World) -> None:
    assert routing.info("AIGatewayRoute") is DRIVER
    assert (DRIVER.kind.group, DRIVER.kind.version, DRIVER.kind.plural) == (
        "aigateway.envoyproxy.io",
        "v1beta1",
        "aigatewayroutes",
    )
    assert (AISERVICEBACKENDS.group, AISERVICEBACKENDS.plural) == (
        DRIVER.kind.group,
        "aiservicebackends",
    )
    assert not DRIVER.supports_weights
    assert DRIVER.watched_kinds == (AIGATEWAYROUTES, AISERVICEBACKENDS)
    assert DRIVER.check is check_spec
    caches = {AIGATEWAYROUTES: world.routes, AISERVICEBACKENDS: world.backends}
    context = DriverContext(kube=world.kube, caches=caches)
    assert isinstance(routing.create("AIGatewayRoute", context), AIGatewayRouteDriver)


def test_dependencies_are_the_route_and_every_ai_service_backend(world: World) -> None:
    assert world.driver.dependencies(ROUTE, SPEC) == {
        AIGATEWAYROUTES: {KEY},
        AISERVICEBACKENDS: {(NS, "openai"), (NS, "anthropic"), (NS, "llama")},
    }
    named = spec_with(ai_gateway_route={"name": "llm"})
    assert world.driver.dependencies(ROUTE, named)[AIGATEWAYROUTES] == {(NS, "llm")}


@pytest.mark.parametrize("watch_caught_up", [True, False], ids=["watched", "watch-lagging"])
async def test_creates_once_then_no_writes(world: World, watch_caught_up: bool) -> None:
    assert await world.apply("openai") == routed("openai", wrote=True)
    assert world.kube.calls == ["get", "create"]  # the cache miss, then the create
    assert world.route()["metadata"]["ownerReferences"] == [owner_reference(ROUTE)]
    if watch_caught_up:
        world.deliver()
    world.kube.calls.clear()
    for _ in range(3):
        assert await world.apply("openai") == routed("openai")
    assert world.kube.calls == []  # no write, and no read either: the caches answer


async def test_failover_is_one_patch_of_the_priorities(world: World) -> None:
    await world.apply("openai")
    world.deliver()
    for active, expected in [
        ("claude", [("openai", 1), ("anthropic", 0), ("llama", 2)]),
        ("inhouse", [("openai", 1), ("anthropic", 2), ("llama", 0)]),
        ("openai", [("openai", 0), ("anthropic", 1), ("llama", 2)]),
    ]:
        world.kube.calls.clear()
        assert await world.apply(active) == routed(active, wrote=True)
        assert world.kube.calls == ["patch"]
        assert ranks(world.route()) == expected
        assert await world.observe() == routed(active)


@pytest.mark.parametrize(
    "drift",
    [
        pytest.param({"spec": {"rules": ours("claude")["spec"]["rules"]}}, id="priorities"),
        pytest.param({"spec": {"hostnames": ["evil.example.com"]}}, id="hostnames"),
        pytest.param({"spec": {"parentRefs": [{"name": "other"}]}}, id="parent-refs"),
        pytest.param({"metadata": {"ownerReferences": None}}, id="owner-reference-removed"),
    ],
)
async def test_drift_is_reverted_with_one_patch(world: World, drift: dict[str, Any]) -> None:
    await world.apply("openai")
    world.deliver()
    desired = copy.deepcopy(world.route())
    world.kube.mutate(KEY, drift)  # someone else edits the AIGatewayRoute
    assert world.deliver() == {ROUTE.key}
    world.kube.calls.clear()
    assert await world.apply("openai") == routed("openai", wrote=True)
    assert world.kube.calls == ["patch"]
    assert world.route()["spec"] == desired["spec"]
    assert world.route()["metadata"]["ownerReferences"] == [owner_reference(ROUTE)]


async def test_recreated_after_deletion_and_when_gone_before_the_watch_said_so(
    world: World,
) -> None:
    await world.apply("openai")
    world.deliver()
    world.kube.delete(KEY)
    world.deliver()
    assert await world.observe() == RoutingState()
    world.kube.calls.clear()
    assert await world.apply("openai") == routed("openai", wrote=True)
    assert world.kube.calls == ["create"]
    world.deliver()
    world.kube.delete(KEY)  # the watch has not delivered this deletion
    world.kube.calls.clear()
    assert await world.apply("claude") == routed("claude", wrote=True)
    assert world.kube.calls == ["patch", "create"]  # the 404, then the create
    assert carried_split(ROUTE, SPEC, world.route()) == single("claude")


async def test_a_foreign_ai_gateway_route_is_never_written(world: World) -> None:
    spec = {"parentRefs": [{"name": "theirs"}], "rules": [{"backendRefs": [{"name": "x"}]}]}
    world.kube.seed({"metadata": {"name": "chat-ai", "namespace": NS}, "spec": spec})
    before = copy.deepcopy(world.route())
    world.kube.calls.clear()
    for backend in ("openai", "claude"):
        state = await world.apply(backend)
        assert state.problem is not None
        assert state.problem.reason == AIGatewayRouteReason.ROUTE_CONFLICT
        assert str(state.problem.reason) == "RouteConflict"  # the HTTPRoute driver's word
        assert "AIGatewayRoute ai/chat-ai exists and is not managed" in state.problem.message
        assert (state.split, state.wrote, state.verdict) == (None, False, None)
    observed = await world.observe()
    assert observed.problem is not None and observed.problem.reason == "RouteConflict"
    assert world.kube.writes == 0
    assert world.route() == before


async def test_adopts_the_route_of_an_earlier_route_object(world: World) -> None:
    world.kube.seed(desired_ai_gateway_route(EARLIER_ROUTE, SPEC, single("openai")))
    world.deliver()
    world.kube.calls.clear()
    assert await world.apply("openai") == routed("openai", wrote=True)
    assert world.kube.calls == ["patch"]
    assert world.route()["metadata"]["ownerReferences"] == [owner_reference(ROUTE)]


async def test_a_missing_active_ai_service_backend_is_never_put_first() -> None:
    world = make_world("llama")  # openai and anthropic are missing
    state = await world.apply("openai")
    assert state == RoutingState(
        problem=Problem(
            AIGatewayRouteReason.BACKEND_REF_MISSING,
            "AIServiceBackend ai/openai of backend openai does not exist; "
            "AIServiceBackend ai/anthropic of backend claude does not exist",
        )
    )
    assert state.problem is not None and state.problem.reason == "BackendRefMissing"
    assert world.kube.writes == 0
    # A fallback's missing AIServiceBackend does not keep traffic from the active one.
    assert await world.apply("inhouse") == routed("inhouse", wrote=True)
    assert await world.observe() == routed("inhouse")
    # The AIServiceBackend appears: the watch wakes the route, and the next apply puts it first.
    world.seed_backend("openai")
    assert world.deliver() == {ROUTE.key}
    assert await world.apply("openai") == routed("openai", wrote=True)


async def test_a_missing_active_ai_service_backend_leaves_the_route_as_it_is() -> None:
    world = make_world("openai", "llama")
    await world.apply("openai")
    world.deliver()
    world.kube.calls.clear()
    state = await world.apply("claude")
    missing = "AIServiceBackend ai/anthropic of backend claude does not exist"
    problem = Problem(AIGatewayRouteReason.BACKEND_REF_MISSING, missing)
    assert state == RoutingState(split=single("openai"), problem=problem, verdict=WAITING)
    assert world.kube.calls == []
    assert ranks(world.route())[0] == ("openai", 0)


async def test_observe_reports_a_missing_ai_service_backend_of_the_backend_put_first(
    world: World,
) -> None:
    await world.apply("claude")
    world.deliver()
    world.kube.delete((NS, "anthropic"), kind=AISERVICEBACKENDS)
    assert world.deliver() == {ROUTE.key}
    observed = await world.observe()
    assert observed.split == single("claude")
    assert observed.problem is not None
    assert observed.problem.message == (
        "AIServiceBackend ai/anthropic of backend claude does not exist"
    )


async def test_the_controllers_verdict_is_read_back(world: World) -> None:
    await world.apply("openai")
    world.deliver()
    world.controller_says(ACCEPTED)
    accepted = Verdict("True", "Accepted", "AI Gateway Route reconciled")
    assert await world.observe() == routed("openai", verdict=accepted)
    world.kube.calls.clear()
    assert await world.apply("openai") == routed("openai", verdict=accepted)
    world.controller_says(NOT_ACCEPTED)
    verdict, problem = REJECTION
    expected = RoutingState(split=single("openai"), problem=problem, verdict=verdict)
    assert await world.observe() == expected
    assert await world.apply("openai") == expected
    assert world.kube.writes == 0  # a rejection is not drift: rewriting would change nothing


async def test_weights_are_refused_before_any_call(world: World) -> None:
    with pytest.raises(ValueError, match="cannot split traffic"):
        await world.apply(TrafficSplit({"openai": 50, "claude": 50}))
    assert world.kube.calls == []


async def test_create_conflict_diffs_against_the_existing_one(world: World) -> None:
    assert await world.routes.get(KEY) is None  # seen missing
    world.kube.seed(ours("claude"), watched=False)  # appears before the watch says so
    world.kube.calls.clear()
    assert await world.apply("openai") == routed("openai", wrote=True)
    assert world.kube.calls == ["create", "get", "patch"]


async def test_create_error_other_than_conflict_propagates(world: World) -> None:
    world.kube.fail_next_create = ApiError(403, "Forbidden", "aigatewayroutes is forbidden")
    with pytest.raises(ApiError) as raised:
        await world.apply("openai")
    assert raised.value.status == 403


async def test_finalize_leaves_the_route_to_the_garbage_collector(world: World) -> None:
    await world.apply("openai")
    before = copy.deepcopy(world.route())
    world.kube.calls.clear()
    await world.driver.finalize(ROUTE, SPEC)
    assert world.kube.calls == []
    assert world.route() == before
