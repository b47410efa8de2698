"""Tests for the HTTPRoute routing driver: the pure parts (desired object, diff, split read back,
the gateway's verdict, spec checks), then the driver against a fake client.

The fake (``tests.fakes.kube.FakeKube``) stands in for ``modelroute.kube.client.KubeClient``,
our own boundary: it stores HTTPRoutes, fills in the defaults the upstream CRD's schema adds
(and the generation), rejects a Service backendRef without a port as the CRD's CEL rule does,
and queues watch events that a test delivers to a real ``ObjectCache``.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from modelroute import routing
from modelroute.api.models import ModelRouteSpec
from modelroute.core.types import Problem, RouteRef, TrafficSplit, Verdict
from modelroute.kube.cache import ObjectCache, slim_object
from modelroute.kube.client import HTTPROUTES, ApiError
from modelroute.routing.base import DriverContext, RoutingState
from modelroute.routing.httproute import DRIVER, HTTPRouteDriver, check_spec
from modelroute.routing.httproute_object import (
    HTTPRouteReason,
    carried_split,
    desired_http_route,
    gateway_verdict,
    http_route_patch,
)
from modelroute.routing.ownership import MANAGED_BY, MANAGED_BY_LABEL, ROUTE_LABEL, owner_reference
from tests.fakes.kube import FakeKube, merge_patch

NS = "ai"
ROUTE = RouteRef(namespace=NS, name="chat-gw", uid="uid-chat-gw-2")
EARLIER_ROUTE = RouteRef(namespace=NS, name="chat-gw", uid="uid-chat-gw-1")
KEY = (NS, "chat-gw")
GATEWAY = {"name": "ai-gateway", "namespace": "gateway-system"}
WAITING = Verdict("Unknown", "Pending", "waiting for a Gateway controller to accept the HTTPRoute")

# The contract's canonical L7 example (shared/design/modelroute-api.md), spec as written there.
CHAT_GW: dict[str, Any] = {
    "model": "gpt-4o",
    "routing": {
        "driver": "HTTPRoute",
        "httpRoute": {"parentRefs": [GATEWAY], "hostnames": ["llm.ai.example.com"]},
    },
    "backends": [
        {
            "name": "vendor",
            "priority": 0,
            "backendRef": {
                "group": "gateway.envoyproxy.io",
                "kind": "Backend",
                "name": "openai",
                "port": 443,
            },
            "endpoint": "https://api.openai.com",
            "model": "gpt-4o",
            "authSecretRef": {"name": "vendor-key", "key": "apiKey"},
        },
        {
            "name": "inhouse",
            "priority": 1,
            "backendRef": {
                "group": "inference.networking.k8s.io",
                "kind": "InferencePool",
                "name": "llama-pool",
            },
            "endpoint": "http://llama-vllm.ai.svc:8000",
            "model": "gpt-4o",
        },
    ],
    "failback": {"mode": "Automatic", "stabilizationSeconds": 60, "steps": [10, 50, 100]},
}
SPEC = ModelRouteSpec.model_validate(CHAT_GW)


def spec_with(
    http_route: dict[str, Any] | None = None, backends: list[dict[str, Any]] | None = None
) -> ModelRouteSpec:
    """The canonical spec with ``httpRoute`` fields replaced and/or other backends."""
    raw = copy.deepcopy(CHAT_GW)
    raw["routing"]["httpRoute"].update(http_route or {})
    if backends is not None:
        raw["backends"] = backends
    return ModelRouteSpec.model_validate(raw)


def service_backend(name: str, priority: int, service: str, port: int) -> dict[str, Any]:
    ref = {"name": service, "port": port}
    return {"name": name, "priority": priority, "serviceRef": ref, "model": "m"}


def single(backend: str) -> TrafficSplit:
    return TrafficSplit.single(backend)


def ours(split: TrafficSplit | str = "vendor", spec: ModelRouteSpec = SPEC) -> dict[str, Any]:
    """What the operator writes for ``split`` (its desired HTTPRoute)."""
    wanted = single(split) if isinstance(split, str) else split
    return desired_http_route(ROUTE, spec, wanted)


def as_stored(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` as the API server returns it after a create (defaults filled in)."""
    return FakeKube(default_kind=HTTPROUTES).seed(body)


def routed(backend: str, *, wrote: bool = False, verdict: Verdict | None = WAITING) -> RoutingState:
    """The state of our HTTPRoute sending all traffic to ``backend``, no gateway answer yet."""
    return RoutingState(split=single(backend), wrote=wrote, verdict=verdict)


# --- desired_http_route --------------------------------------------------------------------


def test_canonical_example_is_the_expected_http_route() -> None:
    assert ours("vendor") == {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": "chat-gw",
            "namespace": "ai",
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, ROUTE_LABEL: "chat-gw"},
            "ownerReferences": [
                {
                    "apiVersion": "modelroute.dev/v1alpha1",
                    "kind": "ModelRoute",
                    "name": "chat-gw",
                    "uid": ROUTE.uid,
                    "controller": True,
                }
            ],
        },
        "spec": {
            "parentRefs": [{"namespace": "gateway-system", "name": "ai-gateway"}],
            "hostnames": ["llm.ai.example.com"],
            "rules": [
                {
                    "name": "chat-gw",
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [
                        {
                            "group": "gateway.envoyproxy.io",
                            "kind": "Backend",
                            "name": "openai",
                            "port": 443,
                            "weight": 100,
                        },
                        {
                            "group": "inference.networking.k8s.io",
                            "kind": "InferencePool",
                            "name": "llama-pool",
                            "weight": 0,
                        },
                    ],
                }
            ],
        },
    }


def weights(body: dict[str, Any]) -> list[tuple[str, int]]:
    return [(r["name"], r["weight"]) for r in body["spec"]["rules"][0]["backendRefs"]]


@pytest.mark.parametrize(
    ("split", "expected"),
    [
        pytest.param(single("vendor"), [("openai", 100), ("llama-pool", 0)], id="vendor"),
        pytest.param(single("inhouse"), [("openai", 0), ("llama-pool", 100)], id="inhouse"),
        pytest.param(
            TrafficSplit({"vendor": 50, "inhouse": 50}),
            [("openai", 50), ("llama-pool", 50)],
            id="staged-failback",
        ),
    ],
)
def test_weights_follow_the_split(split: TrafficSplit, expected: list[tuple[str, int]]) -> None:
    assert weights(ours(split)) == expected


def test_service_ref_backends_in_preference_order() -> None:
    spec = spec_with(
        backends=[
            service_backend("spare", 2, "spare-vllm", 9000),
            service_backend("vendor", 0, "vendor-egress", 8080),
            service_backend("inhouse", 1, "llama-vllm", 8000),
        ]
    )
    refs = ours("inhouse", spec)["spec"]["rules"][0]["backendRefs"]
    assert refs == [
        {"kind": "Service", "name": "vendor-egress", "port": 8080, "weight": 0},
        {"kind": "Service", "name": "llama-vllm", "port": 8000, "weight": 100},
        {"kind": "Service", "name": "spare-vllm", "port": 9000, "weight": 0},
    ]


def test_backend_ref_fields_are_copied_as_given() -> None:
    ref = {"group": "", "kind": "Service", "name": "egress", "namespace": "edge", "port": 8080}
    backend = {"name": "x", "priority": 0, "backendRef": ref, "model": "m"}
    body = ours("x", spec_with(backends=[{**backend, "endpoint": "http://x.example"}]))
    assert body["spec"]["rules"][0]["backendRefs"] == [{**ref, "weight": 100}]


def test_defaults_name_path_no_hostnames_no_timeouts() -> None:
    spec = ModelRouteSpec.model_validate(
        {**CHAT_GW, "routing": {"driver": "HTTPRoute", "httpRoute": {"parentRefs": [GATEWAY]}}}
    )
    body = ours("vendor", spec)
    assert body["metadata"]["name"] == "chat-gw"  # the ModelRoute's name
    assert "hostnames" not in body["spec"]
    rule = body["spec"]["rules"][0]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert "timeouts" not in rule
    assert set(rule) == {"name", "matches", "backendRefs"}  # no header match on the model


def test_explicit_name_path_and_hostnames() -> None:
    spec = spec_with(
        {"name": "llm", "pathPrefix": "/v1", "hostnames": ["a.example.com", "*.b.example.com"]}
    )
    body = ours("vendor", spec)
    assert body["metadata"]["name"] == "llm"
    assert body["metadata"]["labels"][ROUTE_LABEL] == "chat-gw"
    assert body["spec"]["rules"][0]["name"] == "chat-gw"  # the rule is named after the route
    assert body["spec"]["hostnames"] == ["a.example.com", "*.b.example.com"]
    assert body["spec"]["rules"][0]["matches"][0]["path"] == {"type": "PathPrefix", "value": "/v1"}


def test_parent_ref_fields_are_copied_as_given() -> None:
    parent = {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "namespace": "gw",
        "name": "edge",
        "sectionName": "https",
        "port": 443,
    }
    assert ours("vendor", spec_with({"parentRefs": [parent]}))["spec"]["parentRefs"] == [parent]


@pytest.mark.parametrize(
    ("timeouts", "expected"),
    [
        pytest.param({"request": "60s"}, {"request": "60s"}, id="request"),
        pytest.param({"backendRequest": "1m"}, {"backendRequest": "1m"}, id="backend-request"),
        pytest.param(
            {"request": "2m", "backendRequest": "30s"},
            {"request": "2m", "backendRequest": "30s"},
            id="both",
        ),
        pytest.param({}, None, id="empty"),
    ],
)
def test_timeouts(timeouts: dict[str, str], expected: dict[str, str] | None) -> None:
    rule = ours("vendor", spec_with({"timeouts": timeouts}))["spec"]["rules"][0]
    assert rule.get("timeouts") == expected


def test_a_split_naming_an_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="nope"):
        ours(single("nope"))


# --- http_route_patch ----------------------------------------------------------------------


def with_changes(body: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    change(changed)
    return changed


def _set(*path: str | int, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        node: Any = body
        for part in path[:-1]:
            node = node[part] if isinstance(part, int) else node.setdefault(part, {})
        node[path[-1]] = value

    return change


def _del(*path: str | int) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        node: Any = body
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]

    return change


RULE = ("spec", "rules", 0)
SPLITS = [single("vendor"), single("inhouse"), TrafficSplit({"vendor": 10, "inhouse": 90})]


@pytest.mark.parametrize("split", SPLITS, ids=str)
def test_patch_none_after_api_server_defaults(split: TrafficSplit) -> None:
    desired = ours(split)
    stored = as_stored(desired)
    # The server filled in what the operator left out: the diff must not see it as drift.
    assert stored["spec"]["parentRefs"][0]["group"] == "gateway.networking.k8s.io"
    assert stored["spec"]["parentRefs"][0]["kind"] == "Gateway"
    assert http_route_patch(stored, desired) is None
    assert http_route_patch(slim_object(stored), desired) is None


def test_patch_none_against_a_hand_defaulted_service_ref_route() -> None:
    spec = spec_with(backends=[service_backend("a", 0, "svc-a", 80)])
    desired = ours("a", spec)
    stored = copy.deepcopy(desired)
    stored["spec"]["rules"][0]["backendRefs"] = [
        {"group": "", "kind": "Service", "name": "svc-a", "port": 80, "weight": 100}
    ]
    stored["spec"]["parentRefs"] = [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", **GATEWAY}
    ]
    assert http_route_patch(stored, desired) is None


NO_WRITE_CHANGES = [
    pytest.param(lambda body: None, id="identical"),
    pytest.param(_set("metadata", "labels", "team", value="ml"), id="extra-label"),
    pytest.param(_set("metadata", "annotations", "note", value="hi"), id="extra-annotation"),
    pytest.param(_set("metadata", "resourceVersion", value="42"), id="resourceVersion"),
    pytest.param(_set("metadata", "generation", value=7), id="generation"),
    pytest.param(_set("status", "parents", value=[]), id="status"),
    pytest.param(_set("spec", "useDefaultGateways", value="All"), id="unrelated-spec-field"),
    pytest.param(
        lambda body: body["metadata"]["ownerReferences"].append(
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "other"}
        ),
        id="extra-owner-reference",
    ),
    pytest.param(_del(*RULE, "matches"), id="matches-left-to-the-default"),  # path "/"
    pytest.param(_set(*RULE, "matches", 0, "path", value={}), id="path-left-to-the-default"),
]


@pytest.mark.parametrize("change", NO_WRITE_CHANGES)
def test_patch_none_when_only_others_fields_differ(
    change: Callable[[dict[str, Any]], None],
) -> None:
    desired = ours("vendor")
    assert http_route_patch(with_changes(as_stored(desired), change), desired) is None


def weighted_rule(**weight: int) -> dict[str, Any]:
    rule = copy.deepcopy(ours("vendor")["spec"]["rules"][0])
    for ref in rule["backendRefs"]:
        ref["weight"] = weight.get(ref["name"].replace("-", "_"), 0)
    return rule


CHANGES = [
    pytest.param(
        _set("metadata", "labels", ROUTE_LABEL, value="other"),
        {"metadata": {"labels": {ROUTE_LABEL: "chat-gw"}}},
        id="route-label-changed",
    ),
    pytest.param(
        _del("metadata", "labels"),
        {"metadata": {"labels": {MANAGED_BY_LABEL: MANAGED_BY, ROUTE_LABEL: "chat-gw"}}},
        id="labels-removed",
    ),
    pytest.param(
        _del("metadata", "ownerReferences"),
        {"metadata": {"ownerReferences": [owner_reference(ROUTE)]}},
        id="owner-reference-removed",
    ),
    pytest.param(
        _set("spec", "parentRefs", value=[{"name": "other"}]),
        {"spec": {"parentRefs": [GATEWAY]}},
        id="parent-refs-changed",
    ),
    pytest.param(
        _set("spec", "parentRefs", 0, "sectionName", value="http"),
        {"spec": {"parentRefs": [GATEWAY]}},
        id="parent-section-added",
    ),
    pytest.param(
        _set("spec", "parentRefs", 0, "kind", value="ListenerSet"),
        {"spec": {"parentRefs": [GATEWAY]}},
        id="parent-kind-changed",
    ),
    pytest.param(
        _set("spec", "hostnames", value=["evil.example.com"]),
        {"spec": {"hostnames": ["llm.ai.example.com"]}},
        id="hostnames-changed",
    ),
    pytest.param(
        _del("spec", "hostnames"),
        {"spec": {"hostnames": ["llm.ai.example.com"]}},
        id="hostnames-removed",
    ),
    pytest.param(
        _set("spec", "rules", value=[weighted_rule(llama_pool=100)]),
        {"spec": {"rules": [weighted_rule(openai=100)]}},
        id="weights-moved",
    ),
    pytest.param(
        _del(*RULE, "backendRefs", 1, "weight"),  # the server's default is 1, not 0
        {"spec": {"rules": [weighted_rule(openai=100)]}},
        id="weight-removed",
    ),
    pytest.param(
        _set(*RULE, "filters", value=[{"type": "RequestHeaderModifier"}]),
        {"spec": {"rules": [weighted_rule(openai=100)]}},
        id="filter-added",
    ),
    pytest.param(
        _set(*RULE, "matches", 0, "path", "value", value="/evil"),
        {"spec": {"rules": [weighted_rule(openai=100)]}},
        id="path-changed",
    ),
    pytest.param(
        _set(*RULE, "name", value="other"),
        {"spec": {"rules": [weighted_rule(openai=100)]}},
        id="rule-renamed",
    ),
    pytest.param(
        _set(*RULE, "timeouts", value={"request": "1s"}),
        {"spec": {"rules": [weighted_rule(openai=100)]}},
        id="timeouts-added",
    ),
    pytest.param(
        lambda body: body["spec"]["rules"].append({"backendRefs": [{"name": "x", "port": 1}]}),
        {"spec": {"rules": [weighted_rule(openai=100)]}},
        id="rule-added",
    ),
    pytest.param(
        _del("spec", "rules"),  # the server's default: one rule matching "/", no backends
        {"spec": {"rules": [weighted_rule(openai=100)]}},
        id="rules-removed",
    ),
]


@pytest.mark.parametrize(("change", "expected"), CHANGES)
def test_patch_reverts_each_managed_field(
    change: Callable[[dict[str, Any]], None], expected: dict[str, Any]
) -> None:
    desired = ours("vendor")
    current = with_changes(as_stored(desired), change)
    patch = http_route_patch(current, desired)
    assert patch == expected
    assert http_route_patch(as_stored(merge_patch(current, patch)), desired) is None


def test_patch_removes_hostnames_no_longer_wanted() -> None:
    current = as_stored(ours("vendor"))
    desired = ours("vendor", spec_with({"hostnames": []}))
    assert http_route_patch(current, desired) == {"spec": {"hostnames": None}}
    assert "hostnames" not in merge_patch(current, {"spec": {"hostnames": None}})["spec"]


def test_patch_of_a_switch_replaces_only_the_rules() -> None:
    current = as_stored(ours("vendor"))
    desired = ours("inhouse")
    assert http_route_patch(current, desired) == {"spec": {"rules": desired["spec"]["rules"]}}


def test_patch_adopts_the_route_of_an_earlier_route_object() -> None:
    current = as_stored(desired_http_route(EARLIER_ROUTE, SPEC, single("vendor")))
    assert http_route_patch(current, ours("vendor")) == {
        "metadata": {"ownerReferences": [owner_reference(ROUTE)]}
    }


# --- carried_split ---------------------------------------------------------------------------


@pytest.mark.parametrize("split", SPLITS, ids=str)
def test_split_is_read_back_from_the_weights(split: TrafficSplit) -> None:
    assert carried_split(ROUTE, SPEC, ours(split)) == split
    assert carried_split(ROUTE, SPEC, as_stored(ours(split))) == split


def test_split_maps_service_refs_and_default_namespaces() -> None:
    pool = {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "pool"}
    spec = spec_with(
        backends=[
            service_backend("a", 0, "svc-a", 80),
            {
                "name": "b",
                "priority": 1,
                "backendRef": {**pool, "namespace": NS},
                "endpoint": "http://b.example",
                "model": "m",
            },
        ]
    )
    body = {
        "spec": {
            "rules": [
                {
                    "backendRefs": [
                        {"group": "", "kind": "Service", "name": "svc-a", "port": 80, "weight": 10},
                        {**pool, "weight": 90},  # namespace left to the default: the route's
                    ]
                }
            ]
        }
    }
    assert carried_split(ROUTE, spec, body) == TrafficSplit({"a": 10, "b": 90})


NO_SPLIT_CHANGES = [
    pytest.param(_set("spec", "rules", value=[weighted_rule()]), id="all-weights-0"),
    pytest.param(
        lambda body: [ref.pop("weight") for ref in body["spec"]["rules"][0]["backendRefs"]],
        id="weights-unset-default-1",
    ),
    pytest.param(_set("spec", "rules", value=[weighted_rule(openai=60)]), id="not-100"),
    pytest.param(_set(*RULE, "backendRefs", 1, "name", value="other"), id="unknown-entry"),
    pytest.param(_set(*RULE, "backendRefs", 1, "port", value=8000), id="other-port"),
    pytest.param(_set(*RULE, "backendRefs", 1, "namespace", value="edge"), id="other-namespace"),
    pytest.param(
        lambda body: body["spec"]["rules"][0]["backendRefs"].append(
            dict(body["spec"]["rules"][0]["backendRefs"][0], weight=0)
        ),
        id="backend-listed-twice",
    ),
    pytest.param(
        lambda body: body["spec"]["rules"].append(copy.deepcopy(body["spec"]["rules"][0])),
        id="two-rules",
    ),
    pytest.param(_del("spec", "rules"), id="no-rules"),
]


@pytest.mark.parametrize("change", NO_SPLIT_CHANGES)
def test_no_split_when_the_weights_name_none(change: Callable[[dict[str, Any]], None]) -> None:
    assert carried_split(ROUTE, SPEC, with_changes(ours("vendor"), change)) is None


# --- gateway_verdict -------------------------------------------------------------------------


def condition(
    kind: str, status: str, reason: str, generation: int | None = 1, message: str = ""
) -> dict[str, Any]:
    out = {"type": kind, "status": status, "reason": reason, "message": message}
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def accepted(generation: int | None = 1) -> list[dict[str, Any]]:
    return [
        condition("Accepted", "True", "Accepted", generation, "Accepted"),
        condition("ResolvedRefs", "True", "ResolvedRefs", generation, "Resolved"),
    ]


def parent(ref: dict[str, Any], conditions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"parentRef": ref, "controllerName": "example.com/gw", "conditions": conditions}


def judged(
    parents: list[dict[str, Any]], generation: int = 1, spec: ModelRouteSpec = SPEC
) -> tuple[Verdict, Problem | None]:
    body = ours("vendor", spec)
    body["metadata"]["generation"] = generation
    body["status"] = {"parents": parents}
    return gateway_verdict(ROUTE, spec, body)


# How a gateway echoes our parentRef, defaults spelt out.
ECHO = {"group": "gateway.networking.k8s.io", "kind": "Gateway", **GATEWAY}
SECOND = {"name": "edge", "sectionName": "https"}  # in the route's namespace
TWO_PARENTS = spec_with({"parentRefs": [GATEWAY, SECOND]})


def test_verdict_without_status_is_pending() -> None:
    assert gateway_verdict(ROUTE, SPEC, ours("vendor")) == (WAITING, None)
    assert judged([]) == (WAITING, None)


def test_verdict_of_an_older_generation_is_pending() -> None:
    assert judged([parent(ECHO, accepted(generation=1))], generation=2) == (WAITING, None)
    rejected = [condition("Accepted", "False", "NotAllowedByListeners", 1, "no")]
    assert judged([parent(ECHO, rejected)], generation=2) == (WAITING, None)


def test_verdict_accepted_and_resolved() -> None:
    verdict = Verdict("True", "Accepted", "accepted by Gateway gateway-system/ai-gateway")
    assert judged([parent(ECHO, accepted())]) == (verdict, None)
    # As the spec spells the parent (defaults left out), and unstamped conditions, count too.
    assert judged([parent(GATEWAY, accepted(generation=None))]) == (verdict, None)


@pytest.mark.parametrize(
    ("conditions", "reason", "message"),
    [
        pytest.param(
            [
                condition("Accepted", "False", "NotAllowedByListeners", 1, "no listener fits"),
                condition("ResolvedRefs", "True", "ResolvedRefs", 1),
            ],
            "NotAllowedByListeners",
            "Gateway gateway-system/ai-gateway: no listener fits",
            id="not-allowed-by-listeners",
        ),
        pytest.param(
            [
                condition("Accepted", "True", "Accepted", 1),
                condition("ResolvedRefs", "False", "RefNotPermitted", 1, "no ReferenceGrant"),
            ],
            "RefNotPermitted",
            "Gateway gateway-system/ai-gateway: no ReferenceGrant",
            id="ref-not-permitted",
        ),
        pytest.param(
            [condition("ResolvedRefs", "False", "BackendNotFound", 1)],
            "BackendNotFound",
            "Gateway gateway-system/ai-gateway: BackendNotFound",
            id="no-message-names-the-reason",
        ),
    ],
)
def test_verdict_rejected(conditions: list[dict[str, Any]], reason: str, message: str) -> None:
    verdict, problem = judged([parent(ECHO, conditions)])
    assert verdict == Verdict("False", reason, message)
    assert problem == Problem(HTTPRouteReason.GATEWAY_REJECTED, message)
    assert problem.reason == "GatewayRejected"


@pytest.mark.parametrize(
    "other",
    [
        pytest.param({"name": "ai-gateway"}, id="other-namespace"),  # defaults to the route's
        pytest.param({**GATEWAY, "sectionName": "http"}, id="other-section"),
        pytest.param({**GATEWAY, "port": 8443}, id="other-port"),
        pytest.param({**GATEWAY, "kind": "ListenerSet"}, id="other-kind"),
        pytest.param({**GATEWAY, "group": "example.com"}, id="other-group"),
        pytest.param({"name": "edge", "namespace": "gateway-system"}, id="other-gateway"),
    ],
)
def test_verdict_ignores_parents_that_are_not_ours(other: dict[str, Any]) -> None:
    rejected = [condition("Accepted", "False", "NotAllowedByListeners", 1, "not you")]
    assert judged([parent(other, rejected)]) == (WAITING, None)
    verdict, _ = judged([parent(other, rejected), parent(ECHO, accepted())])
    assert verdict.status == "True"


def test_verdict_accepted_but_refs_not_resolved_yet_is_pending() -> None:
    assert judged([parent(ECHO, accepted()[:1])]) == (WAITING, None)


def test_verdict_two_parents_one_rejects() -> None:
    rejected = [condition("Accepted", "False", "NoMatchingListenerHostname", 1, "no host")]
    verdict, problem = judged(
        [parent(ECHO, accepted()), parent(SECOND, rejected)], spec=TWO_PARENTS
    )
    message = "Gateway ai/edge listener https: no host"
    assert verdict == Verdict("False", "NoMatchingListenerHostname", message)
    assert problem == Problem(HTTPRouteReason.GATEWAY_REJECTED, message)


def test_verdict_two_parents_both_accept() -> None:
    both = [parent(ECHO, accepted()), parent({**SECOND, "namespace": NS}, accepted())]
    assert judged(both, spec=TWO_PARENTS) == (
        Verdict(
            "True",
            "Accepted",
            "accepted by Gateway gateway-system/ai-gateway, Gateway ai/edge listener https",
        ),
        None,
    )


def test_verdict_two_parents_one_answered_is_pending_naming_the_other() -> None:
    verdict, problem = judged([parent(ECHO, accepted())], spec=TWO_PARENTS)
    assert (verdict.status, verdict.reason, problem) == ("Unknown", "Pending", None)
    assert verdict.message == (
        "waiting for a Gateway controller to accept the HTTPRoute "
        "(no answer yet from Gateway ai/edge listener https)"
    )


# --- check_spec ------------------------------------------------------------------------------


def pool_backend(backend: str, priority: int, **ref: Any) -> dict[str, Any]:
    backend_ref = {"name": "pool", **ref}
    return {
        "name": backend,
        "priority": priority,
        "backendRef": backend_ref,
        "endpoint": "http://x.example",
        "model": "m",
    }


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(SPEC, [], id="canonical-example"),
        pytest.param(spec_with(backends=[service_backend("a", 0, "s", 80)]), [], id="service-ref"),
        pytest.param(
            ModelRouteSpec.model_validate({**CHAT_GW, "routing": {"driver": "HTTPRoute"}}),
            [
                "spec.routing.httpRoute: required by the HTTPRoute routing driver (parentRefs: "
                "the Gateways the HTTPRoute attaches to)"
            ],
            id="http-route-missing",
        ),
        pytest.param(
            spec_with(
                backends=[
                    {**service_backend("a", 0, "s", 80), "backendRef": {"name": "b", "port": 1}}
                ]
            ),
            ["spec.backends[0].backendRef: set either serviceRef or backendRef, not both"],
            id="both-refs",
        ),
        pytest.param(
            spec_with(
                backends=[
                    {"name": "a", "priority": 0, "model": "m", "endpoint": "http://a.example"}
                ]
            ),
            [
                "spec.backends[0].backendRef: required by the HTTPRoute routing driver when the "
                "backend has no serviceRef"
            ],
            id="no-ref",
        ),
        pytest.param(
            spec_with(backends=[pool_backend("a", 0)]),
            ["spec.backends[0].backendRef.port: required for a Service backendRef"],
            id="kind-unset-no-port",
        ),
        pytest.param(
            spec_with(backends=[pool_backend("a", 0, group="", kind="Service")]),
            ["spec.backends[0].backendRef.port: required for a Service backendRef"],
            id="core-service-no-port",
        ),
        pytest.param(
            spec_with(backends=[pool_backend("a", 0, group="example.com", kind="Service")]),
            [],
            id="other-groups-service-needs-no-port",
        ),
        pytest.param(
            spec_with(
                backends=[
                    service_backend("a", 0, "s", 80),
                    pool_backend("b", 1, name="s", kind="Service", port=80),
                ]
            ),
            ["spec.backends[1].backendRef: routes to the same target as spec.backends[0]"],
            id="same-target-twice",
        ),
        pytest.param(
            spec_with({"pathPrefix": "/v1//chat"}),
            ["spec.routing.httpRoute.pathPrefix: '/v1//chat' has // (a Gateway refuses it)"],
            id="path-double-slash",
        ),
        pytest.param(
            spec_with({"pathPrefix": "/v1/.."}),
            [
                "spec.routing.httpRoute.pathPrefix: '/v1/..' has a trailing /.. (a Gateway "
                "refuses it)"
            ],
            id="path-dot-dot",
        ),
        pytest.param(
            spec_with({"pathPrefix": "/a b"}),
            [
                "spec.routing.httpRoute.pathPrefix: '/a b' has characters outside a URL path "
                "(a Gateway refuses it)"
            ],
            id="path-space",
        ),
        pytest.param(
            spec_with({"parentRefs": [{**GATEWAY, "sectionName": "HTTPS"}]}),
            [
                "spec.routing.httpRoute.parentRefs[0].sectionName: must be a DNS subdomain (a "
                "listener name)"
            ],
            id="section-name-pattern",
        ),
        pytest.param(
            spec_with({"parentRefs": [GATEWAY, {**GATEWAY, "sectionName": "https"}]}),
            [
                "spec.routing.httpRoute.parentRefs[1].sectionName: must be set and unique when "
                "parentRefs names one Gateway more than once (parentRefs[0, 1])"
            ],
            id="same-gateway-twice",
        ),
        pytest.param(
            spec_with({"parentRefs": [GATEWAY, {**GATEWAY, "kind": "Gateway", "port": 443}]}),
            [
                "spec.routing.httpRoute.parentRefs[1].sectionName: must be set and unique when "
                "parentRefs names one Gateway more than once (parentRefs[0, 1])"
            ],
            id="same-gateway-twice-defaults-spelt-out",
        ),
        pytest.param(
            spec_with(
                {"parentRefs": [{**GATEWAY, "sectionName": "a"}, {**GATEWAY, "sectionName": "b"}]}
            ),
            [],
            id="same-gateway-two-listeners",
        ),
        pytest.param(
            spec_with({"timeouts": {"request": "30s", "backendRequest": "1m"}}),
            [
                "spec.routing.httpRoute.timeouts.backendRequest: must not be longer than "
                "timeouts.request (1m > 30s)"
            ],
            id="backend-request-longer",
        ),
        pytest.param(
            spec_with({"timeouts": {"request": "1m30s", "backendRequest": "90000ms"}}),
            [],
            id="backend-request-equal",
        ),
        pytest.param(
            spec_with({"timeouts": {"request": "0s", "backendRequest": "1h"}}),
            [],
            id="request-0s-is-no-limit",
        ),
    ],
)
def test_check_spec(spec: ModelRouteSpec, expected: list[str]) -> None:
    assert check_spec(spec) == expected


def test_general_endpoint_rule_is_not_repeated() -> None:
    spec = spec_with(
        backends=[
            {"name": "a", "priority": 0, "model": "m", "backendRef": {"name": "p", "port": 1}}
        ]
    )
    found = routing.spec_problems(spec)
    assert [p.split(":")[0] for p in found] == ["spec.backends[0].endpoint"]


# --- HTTPRouteDriver against the fake ----------------------------------------------------------


class World(NamedTuple):
    kube: FakeKube
    cache: ObjectCache
    driver: HTTPRouteDriver

    async def apply(self, split: TrafficSplit | str, spec: ModelRouteSpec = SPEC) -> RoutingState:
        wanted = single(split) if isinstance(split, str) else split
        return await self.driver.apply(ROUTE, spec, wanted)

    async def observe(self) -> RoutingState:
        return await self.driver.observe(ROUTE, SPEC)

    def route(self) -> dict[str, Any]:
        return self.kube.services[KEY]

    def gateway_says(self, conditions: list[dict[str, Any]], ref: dict[str, Any] = ECHO) -> None:
        """A gateway controller writes its answer for the current generation; the watch sees it."""
        generation = self.route()["metadata"]["generation"]
        stamped = [{**c, "observedGeneration": generation} for c in conditions]
        self.kube.mutate(KEY, {"status": {"parents": [parent(ref, stamped)]}})
        self.kube.deliver(self.cache)


@pytest.fixture
def world() -> World:
    kube = FakeKube(default_kind=HTTPROUTES)
    cache = ObjectCache(functools.partial(kube.get_object, HTTPROUTES), slim_object)
    driver = HTTPRouteDriver(DriverContext(kube=kube, caches={HTTPROUTES: cache}))
    cache.subscribe(ROUTE.key, driver.dependencies(ROUTE, SPEC)[HTTPROUTES])
    return World(kube, cache, driver)


def test_registry_entry(world: World) -> None:
    assert routing.info("HTTPRoute") is DRIVER
    assert (DRIVER.kind.group, DRIVER.kind.version, DRIVER.kind.plural) == (
        "gateway.networking.k8s.io",
        "v1",
        "httproutes",
    )
    assert DRIVER.supports_weights
    assert DRIVER.watched_kinds == (HTTPROUTES,)
    assert DRIVER.check is check_spec
    context = DriverContext(kube=world.kube, caches={HTTPROUTES: world.cache})
    assert isinstance(routing.create("HTTPRoute", context), HTTPRouteDriver)


def test_dependencies_are_the_http_route(world: World) -> None:
    assert world.driver.dependencies(ROUTE, SPEC) == {HTTPROUTES: {KEY}}
    named = spec_with({"name": "llm"})
    assert world.driver.dependencies(ROUTE, named) == {HTTPROUTES: {(NS, "llm")}}


@pytest.mark.parametrize("watch_caught_up", [True, False], ids=["watched", "watch-lagging"])
async def test_creates_once_then_no_writes(world: World, watch_caught_up: bool) -> None:
    assert await world.apply("vendor") == routed("vendor", wrote=True)
    assert world.kube.calls == ["get", "create"]  # the cache miss, then the create
    stored = world.route()
    assert stored["metadata"]["ownerReferences"] == [owner_reference(ROUTE)]
    assert stored["metadata"]["generation"] == 1
    assert http_route_patch(stored, ours("vendor")) is None
    if watch_caught_up:
        world.kube.deliver(world.cache)
    world.kube.calls.clear()
    for _ in range(3):
        assert await world.apply("vendor") == routed("vendor")
    assert world.kube.calls == []  # no write, and no read either: the cache answers


async def test_switch_is_one_patch_of_the_rules(world: World) -> None:
    await world.apply("vendor")
    world.kube.deliver(world.cache)
    world.kube.calls.clear()
    assert await world.apply("inhouse") == routed("inhouse", wrote=True)
    assert world.kube.calls == ["patch"]
    assert weights(world.route()) == [("openai", 0), ("llama-pool", 100)]
    assert world.route()["metadata"]["generation"] == 2
    assert await world.observe() == routed("inhouse")


async def test_staged_failback_shares_the_weights(world: World) -> None:
    await world.apply("inhouse")
    for share in (10, 50):
        split = TrafficSplit({"vendor": share, "inhouse": 100 - share})
        assert await world.apply(split) == RoutingState(split=split, wrote=True, verdict=WAITING)
        assert weights(world.route()) == [("openai", share), ("llama-pool", 100 - share)]
        world.kube.deliver(world.cache)
        assert await world.observe() == RoutingState(split=split, verdict=WAITING)
    assert await world.apply("vendor") == routed("vendor", wrote=True)


DRIFTS = [
    pytest.param({"spec": {"rules": [weighted_rule(llama_pool=100)]}}, id="weights"),
    pytest.param({"spec": {"hostnames": ["evil.example.com"]}}, id="hostnames"),
    pytest.param({"spec": {"parentRefs": [{"name": "other"}]}}, id="parent-refs"),
    pytest.param({"metadata": {"labels": {ROUTE_LABEL: None}}}, id="route-label-removed"),
    pytest.param({"metadata": {"ownerReferences": None}}, id="owner-reference-removed"),
]


@pytest.mark.parametrize("drift", DRIFTS)
async def test_drift_is_reverted_with_one_patch(world: World, drift: dict[str, Any]) -> None:
    await world.apply("vendor")
    world.kube.deliver(world.cache)
    desired = copy.deepcopy(world.route())
    world.kube.mutate(KEY, drift)  # someone else edits the HTTPRoute
    woken = [world.cache.observe(t, b) for t, b in world.kube.events]
    world.kube.events.clear()
    assert woken == [{ROUTE.key}]
    world.kube.calls.clear()
    assert await world.apply("vendor") == routed("vendor", wrote=True)
    assert world.kube.calls == ["patch"]
    reverted = world.route()
    assert reverted["metadata"]["labels"] == desired["metadata"]["labels"]
    assert reverted["metadata"]["ownerReferences"] == desired["metadata"]["ownerReferences"]
    assert reverted["spec"] == desired["spec"]
    world.kube.deliver(world.cache)
    world.kube.calls.clear()
    await world.apply("vendor")
    assert world.kube.calls == []


async def test_additions_by_others_cause_no_write(world: World) -> None:
    await world.apply("vendor")
    world.kube.mutate(KEY, {"metadata": {"labels": {"team": "ml"}, "annotations": {"note": "x"}}})
    world.kube.deliver(world.cache)
    world.kube.calls.clear()
    assert await world.apply("vendor") == routed("vendor")
    assert world.kube.calls == []
    assert world.route()["metadata"]["labels"]["team"] == "ml"


async def test_recreated_after_deletion(world: World) -> None:
    await world.apply("vendor")
    world.kube.deliver(world.cache)
    world.kube.delete(KEY)
    world.kube.deliver(world.cache)  # the cache sees DELETED
    assert await world.observe() == RoutingState()
    world.kube.calls.clear()
    assert await world.apply("vendor") == routed("vendor", wrote=True)
    assert world.kube.calls == ["create"]
    assert KEY in world.kube.services


async def test_deleted_before_the_watch_said_so_is_recreated(world: World) -> None:
    await world.apply("vendor")
    world.kube.deliver(world.cache)
    world.kube.delete(KEY)  # the watch has not delivered the deletion
    world.kube.calls.clear()
    assert await world.apply("inhouse") == routed("inhouse", wrote=True)
    assert world.kube.calls == ["patch", "create"]  # the 404, then the create
    assert weights(world.route()) == [("openai", 0), ("llama-pool", 100)]
    world.kube.deliver(world.cache)
    world.kube.calls.clear()
    assert await world.apply("inhouse") == routed("inhouse")
    assert world.kube.calls == []


def foreign_route() -> dict[str, Any]:
    spec = {
        "parentRefs": [{"name": "theirs"}],
        "rules": [{"backendRefs": [{"name": "x", "port": 80}]}],
    }
    return {"metadata": {"name": "chat-gw", "namespace": NS}, "spec": spec}


async def test_foreign_http_route_is_never_written(world: World) -> None:
    world.kube.seed(foreign_route())
    before = copy.deepcopy(world.route())
    world.kube.calls.clear()
    for split in ("vendor", "inhouse"):
        state = await world.apply(split)
        assert state.problem is not None
        assert state.problem.reason == "RouteConflict"
        assert "ai/chat-gw" in state.problem.message
        assert (state.split, state.wrote, state.verdict) == (None, False, None)
    observed = await world.observe()
    assert observed == RoutingState(problem=observed.problem)
    assert observed.problem is not None
    assert observed.problem.reason == HTTPRouteReason.ROUTE_CONFLICT
    assert world.kube.writes == 0
    assert world.route() == before


async def test_adopts_the_http_route_of_an_earlier_route_object(world: World) -> None:
    world.kube.seed(desired_http_route(EARLIER_ROUTE, SPEC, single("vendor")))
    world.kube.calls.clear()
    assert await world.apply("vendor") == routed("vendor", wrote=True)
    assert world.kube.calls == ["get", "patch"]
    assert world.route()["metadata"]["ownerReferences"] == [owner_reference(ROUTE)]


@pytest.mark.parametrize(
    ("existing", "expected", "expected_calls"),
    [
        pytest.param(ours("vendor"), routed("vendor"), ["create", "get"], id="same"),
        pytest.param(
            ours("inhouse"),
            routed("vendor", wrote=True),
            ["create", "get", "patch"],
            id="ours-other-split",
        ),
        pytest.param(foreign_route(), "RouteConflict", ["create", "get"], id="foreign"),
    ],
)
async def test_create_conflict_diffs_against_existing(
    world: World,
    existing: dict[str, Any],
    expected: RoutingState | str,
    expected_calls: list[str],
) -> None:
    assert await world.cache.get(KEY) is None  # seen missing
    world.kube.seed(existing, watched=False)  # appears before the watch says so
    world.kube.calls.clear()
    state = await world.apply("vendor")
    if isinstance(expected, str):
        assert state.problem is not None
        assert (state.split, state.wrote, state.problem.reason) == (None, False, expected)
    else:
        assert state == expected
        assert weights(world.route())[0] == ("openai", 100)
    assert world.kube.calls == expected_calls
    world.kube.calls.clear()
    await world.apply("vendor")  # the existing one went into the cache
    assert "create" not in world.kube.calls
    assert "get" not in world.kube.calls


async def test_create_error_other_than_conflict_propagates(world: World) -> None:
    world.kube.fail_next_create = ApiError(403, "Forbidden", "httproutes is forbidden")
    with pytest.raises(ApiError) as raised:
        await world.apply("vendor")
    assert raised.value.status == 403
    assert await world.cache.get(KEY) is None


async def test_observe(world: World) -> None:
    assert await world.observe() == RoutingState()
    await world.apply("inhouse")
    assert await world.observe() == routed("inhouse")


async def test_gateway_acceptance_is_read_back(world: World) -> None:
    await world.apply("vendor")
    world.kube.deliver(world.cache)
    world.gateway_says(accepted())
    verdict = Verdict("True", "Accepted", "accepted by Gateway gateway-system/ai-gateway")
    assert await world.observe() == routed("vendor", verdict=verdict)
    world.kube.calls.clear()
    assert await world.apply("vendor") == routed("vendor", verdict=verdict)  # no write
    assert world.kube.calls == []
    # A write makes a new generation: the earlier answer no longer counts.
    assert await world.apply("inhouse") == routed("inhouse", wrote=True)


async def test_gateway_rejection_is_a_problem(world: World) -> None:
    await world.apply("vendor")
    world.kube.deliver(world.cache)
    cross = condition("ResolvedRefs", "False", "RefNotPermitted", message="needs a ReferenceGrant")
    world.gateway_says([condition("Accepted", "True", "Accepted"), cross])
    message = "Gateway gateway-system/ai-gateway: needs a ReferenceGrant"
    problem = Problem(HTTPRouteReason.GATEWAY_REJECTED, message)
    verdict = Verdict("False", "RefNotPermitted", message)
    expected = RoutingState(split=single("vendor"), problem=problem, verdict=verdict)
    assert await world.observe() == expected
    world.kube.calls.clear()
    assert await world.apply("vendor") == expected
    assert world.kube.calls == []  # a rejection is not drift: rewriting would change nothing


async def test_a_status_change_wakes_the_route(world: World) -> None:
    await world.apply("vendor")
    world.kube.deliver(world.cache)
    world.kube.mutate(KEY, {"status": {"parents": [parent(ECHO, accepted())]}})
    assert [world.cache.observe(t, b) for t, b in world.kube.events] == [{ROUTE.key}]
    assert world.route()["metadata"]["generation"] == 1  # status is not spec


async def test_finalize_leaves_the_route_to_the_garbage_collector(world: World) -> None:
    await world.apply("vendor")
    before = copy.deepcopy(world.route())
    world.kube.calls.clear()
    await world.driver.finalize(ROUTE, SPEC)
    assert world.kube.calls == []
    assert world.route() == before


async def test_a_service_backend_ref_without_port_is_refused_by_the_api(world: World) -> None:
    # check_spec stops this spec first; the fake, like the CRD, refuses the object anyway.
    spec = spec_with(backends=[pool_backend("a", 0)])
    with pytest.raises(ApiError) as raised:
        await world.apply("a", spec)
    assert raised.value.status == 422
