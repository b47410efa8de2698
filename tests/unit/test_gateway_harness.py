"""The chat-gw harness (tests/harness/gateway.py) without an API server: what it reads from
docs/gateway.md, how it adapts the example, and the conditions the played gateway writes."""

from __future__ import annotations

from modelroute import routing
from modelroute.api.validation import parse_spec, problems
from tests.harness.gateway import (
    CONTROLLER_NAME,
    TARGET_KINDS,
    GatewayVerdict,
    HTTPRouteWatch,
    backend_names,
    chat_gw_route,
    doc_manifests,
    gateway_targets,
)


def test_docs_give_the_route_and_every_backend_ref_target() -> None:
    kinds = sorted(d["kind"] for d in doc_manifests())
    assert kinds == ["Backend", "BackendTLSPolicy", "InferencePool", "ModelRoute"]
    assert sorted(t["kind"] for t in gateway_targets("t-1")) == sorted(TARGET_KINDS)
    assert {t["metadata"]["namespace"] for t in gateway_targets("t-1")} == {"t-1"}
    (route,) = [d for d in doc_manifests() if d["kind"] == "ModelRoute"]
    refs = {(b["backendRef"]["kind"], b["backendRef"]["name"]) for b in route["spec"]["backends"]}
    targets = {(t["kind"], t["metadata"]["name"]) for t in gateway_targets("x")}
    assert refs == targets - {("BackendTLSPolicy", "openai-tls")}


def test_chat_gw_is_adapted_and_valid() -> None:
    route = chat_gw_route(
        "t-1",
        "http://127.0.0.1:1",
        "http://127.0.0.1:2",
        probe={"intervalSeconds": 1},
        failback={"stabilizationSeconds": 3, "stepSeconds": 2},
    )
    assert route["metadata"] == {"name": "chat-gw", "namespace": "t-1"}
    assert [b["endpoint"] for b in route["spec"]["backends"]] == [
        "http://127.0.0.1:1",
        "http://127.0.0.1:2",
    ]
    assert route["spec"]["failback"] == {
        "mode": "Automatic",
        "stabilizationSeconds": 3,
        "steps": [10, 50, 100],
        "stepSeconds": 2,
    }
    spec = parse_spec(route["spec"])
    assert problems(spec, routing.names()) == []
    assert routing.info("HTTPRoute").check(spec) == []
    assert backend_names(route) == {"openai": "vendor", "llama-pool": "inhouse"}
    # Fresh copies: adapting one never changes the next.
    assert chat_gw_route("t-2", "a", "b")["metadata"]["namespace"] == "t-2"
    assert "probe" not in chat_gw_route("t-2", "a", "b")["spec"]


def test_conditions_are_stamped_and_keep_their_transition_time() -> None:
    accepted = GatewayVerdict().conditions(3, [], "2026-01-01T00:00:00Z")
    assert [(c["type"], c["status"], c["observedGeneration"]) for c in accepted] == [
        ("Accepted", "True", 3),
        ("ResolvedRefs", "True", 3),
    ]
    again = GatewayVerdict().conditions(4, accepted, "2026-01-01T00:01:00Z")
    assert {c["lastTransitionTime"] for c in again} == {"2026-01-01T00:00:00Z"}
    assert {c["observedGeneration"] for c in again} == {4}
    rejected = GatewayVerdict.rejected("NotAllowedByListeners", "no").conditions(
        4, again, "2026-01-01T00:02:00Z"
    )
    by_type = {c["type"]: c for c in rejected}
    assert by_type["Accepted"]["status"] == "False"
    assert by_type["Accepted"]["reason"] == "NotAllowedByListeners"
    assert by_type["Accepted"]["lastTransitionTime"] == "2026-01-01T00:02:00Z"
    assert by_type["ResolvedRefs"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert CONTROLLER_NAME.count("/") == 1  # DOMAIN/PATH, as the schema's pattern wants


def test_weights_are_read_by_backend_name() -> None:
    watch = HTTPRouteWatch(cluster=None, namespace="t", names={"openai": "vendor"})  # type: ignore[arg-type]
    body = {"spec": {"rules": [{"backendRefs": [{"name": "openai", "weight": 10}, {"name": "x"}]}]}}
    assert watch.weights_of(body) == {"vendor": 10, "x": 1}
    assert watch.weights_of({"spec": {"rules": []}}) is None
