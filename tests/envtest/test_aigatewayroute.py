"""End to end, AIGatewayRoute driver: the operator process, the real API server with the upstream
Envoy AI Gateway v1.1.0, Envoy Gateway v1.9.0 and Gateway API CRDs, three fake vendors on loopback
in their own dialects, and the AI Gateway controller played by the test (tests/harness/aigateway.py:
one unstamped ``Accepted`` condition, as v1.1 writes it).

The scenario is the chat-ai example of docs/ai-gateway.md (the contract's canonical L7 example),
adapted: the test namespace, probe endpoints on the fakes (openai: OpenAI dialect requiring its
key; claude: Anthropic dialect requiring its key as ``x-api-key`` with ``anthropic-version``;
inhouse: OpenAI dialect serving llama-3.1-70b-instruct), probes every 1 s with failureThreshold
2, an automatic failback after a short stabilization. The AIServiceBackends, the Envoy Gateway
Backends they reference, the BackendTLSPolicies and the BackendSecurityPolicies (on the same
Secrets as the probes) are the doc's. Every timing bound is the acceptance bound of the issue;
each test prints what it measured (``pytest -s``).
"""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from modelroute.kube.client import AIGATEWAYROUTES, AISERVICEBACKENDS
from tests.envtest.conftest import FAST_PROBE, operator_writes
from tests.envtest.test_chart import denied_requests, operator_args, operator_env
from tests.fakes.openai_backend import Fault
from tests.harness.aigateway import (
    ACCEPTED_MESSAGE,
    ACCEPTED_REASON,
    ANTHROPIC_KEY,
    CLAUDE_ID,
    LLAMA,
    OPENAI_KEY,
    ROUTE_NAME,
    WRONG_ANTHROPIC_KEY,
    AIGatewayScenario,
    Priorities,
    ai_gateway_scenario,
    ai_gateway_targets,
    contract_chat_ai,
    documented,
    set_key,
)
from tests.harness.apiserver import WRITE_VERBS, Cluster, Identity
from tests.harness.bounds import within
from tests.harness.helm import installed
from tests.harness.kube import GROUP, PLURAL, VERSION, create_namespace, wait_for
from tests.harness.operator import OperatorProcess, running_operator
from tests.harness.upstream import UpstreamCRD

DRIVERS = "Service,AIGatewayRoute"
STABILIZATION_SECONDS = 3
FAILBACK = {"mode": "Automatic", "stabilizationSeconds": STABILIZATION_SECONDS}
INTERVAL = FAST_PROBE["intervalSeconds"]
FAILOVER_BOUND = FAST_PROBE["failureThreshold"] * INTERVAL + 1.0  # floor 2 s + 1 s
# Failback: successThreshold probes, the stabilization, then one probe interval and a second
# for the write at most.
FAILBACK_BOUND = (FAST_PROBE["successThreshold"] + 1) * INTERVAL + STABILIZATION_SECONDS + 1.0
ON_OPENAI: Priorities = {"openai": 0, "claude": 1, "inhouse": 2}
ON_CLAUDE: Priorities = {"openai": 1, "claude": 0, "inhouse": 2}
ON_INHOUSE: Priorities = {"openai": 1, "claude": 2, "inhouse": 0}
ANTHROPIC_VERSION = "2023-06-01"  # the operator's default anthropic-version
SECRETS = (OPENAI_KEY, ANTHROPIC_KEY, WRONG_ANTHROPIC_KEY)


def figure(text: str) -> None:
    """A measured figure, printed so it can be quoted (pytest -s shows it)."""
    print(f"\n[figure] {text}", flush=True)


@pytest.fixture
def operator(
    request: pytest.FixtureRequest,
    crd: Cluster,
    upstream_crds: list[UpstreamCRD],
    namespace: str,
    operator_identity: Identity,
) -> Iterator[OperatorProcess]:
    """The operator, started after the upstream CRDs are served (kinds are resolved once at
    start-up), serving the Service and AIGatewayRoute drivers, watching only this namespace;
    logging at INFO, or at the level an indirect parameter names."""
    kinds = {c.kind for c in upstream_crds}
    assert {"AIGatewayRoute", "AIServiceBackend", "BackendSecurityPolicy", "Backend"} <= kinds
    level = getattr(request, "param", "INFO")
    with running_operator(
        operator_identity,
        crd.workdir,
        namespaces=[namespace],
        extra_args=["--routing-drivers", DRIVERS, "--log-level", level],
    ) as process:
        yield process


@pytest.fixture
def ai(crd: Cluster, namespace: str, operator: OperatorProcess) -> Iterator[AIGatewayScenario]:
    """chat-ai with openai first, accepted by the played AI Gateway, Ready."""
    with ai_gateway_scenario(crd, namespace, probe=FAST_PROBE, failback=FAILBACK) as sc:
        sc.wait_routed_and_accepted(ON_OPENAI)
        yield sc


# --- helpers ----------------------------------------------------------------------------------


def contains(stored: Any, sent: Any) -> bool:
    """``stored`` has everything ``sent`` has (the API server may add defaults, never drop)."""
    if isinstance(sent, dict):
        return isinstance(stored, dict) and all(
            k in stored and contains(stored[k], v) for k, v in sent.items()
        )
    if isinstance(sent, list):
        return (
            isinstance(stored, list)
            and len(stored) == len(sent)
            and all(contains(a, b) for a, b in zip(stored, sent, strict=True))
        )
    return bool(stored == sent)


def expected_refs(first: str) -> list[dict[str, Any]]:
    """The AIGatewayRoute's backendRefs with ``first`` at priority 0, as the API server stores
    them (weight 1 defaulted), in preference order."""
    order = {"openai": ON_OPENAI, "claude": ON_CLAUDE, "inhouse": ON_INHOUSE}[first]
    return [
        {"name": "openai", "priority": order["openai"], "weight": 1},
        {
            "name": "anthropic",
            "modelNameOverride": "claude-sonnet-4-5",
            "priority": order["claude"],
            "weight": 1,
        },
        {"name": "llama", "modelNameOverride": LLAMA, "priority": order["inhouse"], "weight": 1},
    ]


def stored_refs(sc: AIGatewayScenario) -> list[dict[str, Any]]:
    body = sc.ai_gateway_route()
    assert body is not None, "no AIGatewayRoute"
    (rule,) = body["spec"]["rules"]
    refs: list[dict[str, Any]] = rule["backendRefs"]
    return refs


def timed(predicate: Callable[[], Any], since: float, timeout: float, what: str) -> float:
    """Seconds from ``since`` until ``predicate`` holds (polled every 20 ms)."""
    wait_for(predicate, timeout, what, interval=0.02)
    return time.monotonic() - since


def event_message(sc: AIGatewayScenario, reason: str, count: int = 1) -> str:
    """The message of the ``count``-th Event of ``reason`` (oldest first), once it is there."""
    wait_for(lambda: len(sc.events(reason)) >= count, 5, f"{count} {reason} Event(s)")
    events: list[Any] = sorted(
        sc.events(reason),
        key=lambda e: (e.metadata.creation_timestamp, int(e.metadata.resource_version)),
    )
    return str(events[count - 1].message)


def assert_probed_in_dialects(sc: AIGatewayScenario, anthropic_key: str = ANTHROPIC_KEY) -> None:
    """Each fake was last probed in its own dialect, with its own key (or none)."""
    assert sc.claude.backend is not None and sc.openai.backend is not None
    assert sc.inhouse.backend is not None
    claude = sc.claude.backend.last_headers
    assert claude.get("x-api-key") == anthropic_key
    assert claude.get("anthropic-version") == ANTHROPIC_VERSION
    assert "Authorization" not in claude, "the Anthropic key went as a Bearer token"
    assert sc.claude.backend.requests_by_path["/v1/models/claude-sonnet-4-5"] > 0
    assert sc.openai.backend.last_headers.get("Authorization") == f"Bearer {OPENAI_KEY}"
    assert "x-api-key" not in sc.openai.backend.last_headers
    assert "Authorization" not in sc.inhouse.backend.last_headers


def fail_over_to_claude(sc: AIGatewayScenario) -> float:
    """openai refuses connections: seconds until the AIGatewayRoute puts claude first, in one
    patch; checks status, the Event and the Anthropic probes' headers."""
    mark = len(sc.watch.history)
    faulted = time.monotonic()  # before the switch: the stricter measurement
    sc.openai.set_fault(Fault.REFUSED)
    seen = sc.watch.wait_for(ON_CLAUDE, FAILOVER_BOUND + 5, after=mark)
    took = seen.at - faulted
    assert [s.priorities for s in sc.watch.history[mark:]] == [ON_CLAUDE], "not one patch"
    assert stored_refs(sc) == expected_refs("claude")
    wait_for(lambda: sc.active() == "claude", 5, "status.activeBackend=claude")
    openai = sc.backend_status("openai")
    assert (openai["healthy"], openai["reason"]) == (False, "Unavailable"), openai
    assert sc.backend_status("claude")["healthy"] is True
    wait_for(lambda: sc.traffic() == {"claude": 100}, 5, "status.traffic claude 100")
    assert sc.condition_is("Degraded", "True")
    message = event_message(sc, "FailedOver")
    assert "openai" in message and "claude" in message, message
    assert "Unavailable" in message, f"the FailedOver Event does not name the class: {message}"
    assert_probed_in_dialects(sc)
    return took


def fail_over_to_inhouse(sc: AIGatewayScenario) -> float:
    """claude (first now) is overloaded too: seconds until inhouse is first, with its
    modelNameOverride."""
    mark = len(sc.watch.history)
    faulted = time.monotonic()
    sc.claude.set_fault(Fault.OUTAGE)  # Anthropic's 529 overloaded_error
    seen = sc.watch.wait_for(ON_INHOUSE, FAILOVER_BOUND + 5, after=mark)
    took = seen.at - faulted
    assert [s.priorities for s in sc.watch.history[mark:]] == [ON_INHOUSE], "not one patch"
    refs = stored_refs(sc)
    assert refs == expected_refs("inhouse")
    assert refs[2] == {"name": "llama", "modelNameOverride": LLAMA, "priority": 0, "weight": 1}
    wait_for(lambda: sc.active() == "inhouse", 5, "status.activeBackend=inhouse")
    claude = sc.backend_status("claude")
    assert (claude["healthy"], claude["reason"]) == (False, "Unavailable"), claude
    wait_for(lambda: sc.traffic() == {"inhouse": 100}, 5, "status.traffic inhouse 100")
    message = event_message(sc, "FailedOver", 2)
    assert "claude" in message and "inhouse" in message and "Unavailable" in message, message
    return took


def fail_back_to_openai(sc: AIGatewayScenario) -> float:
    """openai recovers (claude still down): seconds until it is first again."""
    mark = len(sc.watch.history)
    cleared = time.monotonic()
    sc.openai.clear_fault()
    seen = sc.watch.wait_for(ON_OPENAI, FAILBACK_BOUND + 10, after=mark)
    took = seen.at - cleared
    assert [s.priorities for s in sc.watch.history[mark:]] == [ON_OPENAI], "not one patch"
    assert stored_refs(sc) == expected_refs("openai")
    wait_for(lambda: sc.active() == "openai", 5, "status.activeBackend=openai")
    wait_for(lambda: sc.traffic() == {"openai": 100}, 5, "status.traffic openai 100")
    message = event_message(sc, "FailedBack")
    assert "inhouse" in message and "openai" in message, message
    return took


def secret_forms(key: str) -> list[str]:
    """How a key could leak: as is, base64-encoded (a Secret's data), or its tail (masked)."""
    return [key, base64.b64encode(key.encode()).decode(), key[-10:]]


def assert_no_key_anywhere(sc: AIGatewayScenario, operator: OperatorProcess) -> list[str]:
    """No API key in any form in the operator's log, the route's status, the namespace's
    Events or /metrics; returns what was searched, for the figure."""
    events = [e.to_dict() for e in sc.core.list_namespaced_event(sc.namespace).items]
    status, metrics = operator.get("/metrics")
    assert status == 200
    places = {
        "operator log": operator.logs(),
        "ModelRoute": json.dumps(sc.get_route()),
        "Events": json.dumps(events, default=str),
        "/metrics": metrics,
    }
    assert places["operator log"], "no operator log to search"
    leaks = [
        f"{where}: {form[:6]}..."
        for key in SECRETS
        for form in secret_forms(key)
        for where, text in places.items()
        if form in text
    ]
    assert leaks == [], f"an API key leaked: {leaks}"
    return [f"{where} ({len(text)} chars)" for where, text in places.items()]


def wrong_anthropic_key(sc: AIGatewayScenario, operator: OperatorProcess) -> float:
    """The Anthropic key is rotated to a wrong one: seconds until claude is AuthFailed; only
    claude, and routing does not move."""
    mark = len(sc.watch.history)
    failovers = len(sc.events("FailedOver"))
    rotated = time.monotonic()
    set_key(sc.core, sc.namespace, "anthropic-key", WRONG_ANTHROPIC_KEY)
    took = timed(
        lambda: (
            (b := sc.backend_status("claude")).get("reason") == "AuthFailed"
            and b.get("healthy") is False
        ),
        rotated,
        15,
        "status.backends[claude] AuthFailed, unhealthy",
    )
    status = sc.get_route()["status"]
    by_name = {b["name"]: b for b in status["backends"]}
    assert by_name["claude"]["consecutiveFailures"] >= FAST_PROBE["failureThreshold"]
    for name in ("openai", "inhouse"):
        assert by_name[name]["healthy"] is True, by_name[name]
        assert by_name[name].get("reason") is None, by_name[name]
    assert status["activeBackend"] == "openai"
    assert sc.traffic() == {"openai": 100}
    assert sc.condition_is("Ready", "True")
    assert sc.condition_is("Degraded", "True")  # a backend is unhealthy
    assert sc.claude.backend is not None
    assert sc.claude.backend.last_headers.get("x-api-key") == WRONG_ANTHROPIC_KEY  # watched
    time.sleep(2 * INTERVAL)  # a few more failed probes: still nothing moves
    assert len(sc.watch.history) == mark, "routing moved on a wrong key of a standby"
    assert stored_refs(sc) == expected_refs("openai")
    assert len(sc.events("FailedOver")) == failovers
    assert_no_key_anywhere(sc, operator)
    return took


def restore_anthropic_key(sc: AIGatewayScenario) -> None:
    set_key(sc.core, sc.namespace, "anthropic-key", ANTHROPIC_KEY)
    wait_for(
        lambda: (
            (b := sc.backend_status("claude")).get("healthy") is True and b.get("reason") is None
        ),
        15,
        "claude healthy again with the right key",
    )


def steady_writes(
    cluster: Cluster, identity: Identity, sc: AIGatewayScenario, intervals: int = 10
) -> tuple[list[str], int]:
    """The operator's writes in the namespace over ``intervals`` probe intervals once settled,
    and the played AI Gateway's."""
    time.sleep(3)  # settled: the last probe results and the controller's answer are read
    since, gateway_writes = time.time(), sc.gateway.writes
    time.sleep(intervals * INTERVAL)
    return operator_writes(cluster, identity, sc.namespace, since), (
        sc.gateway.writes - gateway_writes
    )


# --- (a) ---------------------------------------------------------------------------------------


def test_canonical_chat_ai_is_accepted_and_routed_by_a_valid_aigatewayroute(
    crd: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    (doc_route,) = documented("ModelRoute")
    canonical = contract_chat_ai()
    if canonical is not None:
        assert doc_route == canonical, "docs/ai-gateway.md's chat-ai is not the contract's"
    # The doc's AIServiceBackends are the ones chat-ai names, speaking the backends' dialects,
    # each on an Envoy Gateway Backend of the doc; its BackendSecurityPolicies use the Secrets
    # the route's probes use.
    schemas = {
        b["metadata"]["name"]: b["spec"]["schema"]["name"] for b in documented("AIServiceBackend")
    }
    assert schemas == {"openai": "OpenAI", "anthropic": "Anthropic", "llama": "OpenAI"}
    providers = {
        b["aiServiceBackendRef"]["name"]: b.get("provider", "OpenAI")
        for b in doc_route["spec"]["backends"]
    }
    assert providers == schemas
    backends = {b["metadata"]["name"] for b in documented("Backend")}
    refs = {b["spec"]["backendRef"]["name"] for b in documented("AIServiceBackend")}
    assert refs <= backends
    policies = {
        p["spec"]["targetRefs"][0]["name"]: p["spec"].get(
            "apiKey", p["spec"].get("anthropicAPIKey")
        )
        for p in documented("BackendSecurityPolicy")
    }
    auth = {
        b["aiServiceBackendRef"]["name"]: b["authSecretRef"]["name"]
        for b in doc_route["spec"]["backends"]
        if "authSecretRef" in b
    }
    assert {name: p["secretRef"]["name"] for name, p in policies.items()} == auth

    # No AI Gateway answers at first: RoutingAccepted Unknown until it does.
    with ai_gateway_scenario(
        crd, namespace, probe=FAST_PROBE, failback=FAILBACK, create_route=False, accept=False
    ) as sc:
        # Adapted: the namespace, the probe endpoints, probe and failback; nothing else.
        undone = copy.deepcopy(sc.route)
        undone["metadata"]["namespace"] = doc_route["metadata"]["namespace"]
        for ours, theirs in zip(
            undone["spec"]["backends"], doc_route["spec"]["backends"], strict=True
        ):
            ours["endpoint"] = theirs["endpoint"]
        assert undone["spec"].pop("probe") == FAST_PROBE
        assert undone["spec"].pop("failback") == FAILBACK
        assert undone == doc_route
        # The doc's AI Gateway objects, as stored under the upstream schemas: nothing pruned.
        sent = {(t["kind"], t["metadata"]["name"]) for t in sc.targets}
        assert sent == {
            ("Backend", "openai"),
            ("Backend", "anthropic"),
            ("Backend", "llama"),
            ("BackendTLSPolicy", "openai-tls"),
            ("BackendTLSPolicy", "anthropic-tls"),
            ("AIServiceBackend", "openai"),
            ("AIServiceBackend", "anthropic"),
            ("AIServiceBackend", "llama"),
            ("BackendSecurityPolicy", "openai-key"),
            ("BackendSecurityPolicy", "anthropic-key"),
        }
        for stored, body in zip(sc.targets, ai_gateway_targets(namespace), strict=True):
            assert contains(stored["spec"], body["spec"]), (stored["kind"], stored["spec"])

        created: dict[str, Any] = sc.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, sc.route
        )  # accepted by the API server (the ModelRoute CRD's schema)
        assert contains(created["spec"], sc.route["spec"]), "the CRD pruned part of chat-ai"
        started = time.monotonic()

        seen = sc.watch.wait_for(ON_OPENAI, 30)
        stored_route = sc.ai_gateway_route()
        assert stored_route is not None
        body = stored_route
        figure(
            f"(a) AIGatewayRoute {namespace}/{ROUTE_NAME} generation {seen.generation} written "
            f"{seen.at - started:.2f}s after the ModelRoute was created: priorities "
            f"{seen.priorities}"
        )
        # As stored under the upstream AIGatewayRoute schema (v1.1.0): nothing the operator
        # wrote was pruned, and the defaults the schema adds are there.
        header = {"type": "Exact", "name": "x-ai-eg-model", "value": "gpt-4o"}
        assert body["spec"] == {
            "parentRefs": [
                {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "name": "ai-gateway",
                    "namespace": "gateway-system",
                }
            ],
            "rules": [
                {
                    "matches": [{"headers": [header]}],
                    "backendRefs": expected_refs("openai"),
                    "modelsOwnedBy": "Envoy AI Gateway",
                }
            ],
        }
        # What docs/ai-gateway.md says the operator writes for this route.
        (doc_written,) = documented("AIGatewayRoute")
        assert body["apiVersion"] == doc_written["apiVersion"]
        assert contains(body["spec"], doc_written["spec"])
        route = sc.get_route()
        assert body["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "modelroute.dev/v1alpha1",
                "kind": "ModelRoute",
                "name": ROUTE_NAME,
                "uid": route["metadata"]["uid"],
                "controller": True,
            }
        ]
        managers = {m["manager"] for m in body["metadata"]["managedFields"]}
        assert managers == {"modelroute-operator"}, managers
        assert not (body.get("status") or {}).get("conditions")

        pending = wait_for(
            lambda: (c := sc.condition("RoutingAccepted")) and c["status"] == "Unknown" and c,
            10,
            "RoutingAccepted Unknown while no AI Gateway answered",
        )
        assert isinstance(pending, dict) and pending["reason"] == "Pending"
        wait_for(lambda: sc.traffic() == {"openai": 100}, 10, "status.traffic openai 100")
        wait_for(
            lambda: all(sc.backend_status(n).get("healthy") for n in ON_OPENAI),
            10,
            "every backend healthy",
        )
        status = sc.get_route()["status"]
        assert status["activeBackend"] == "openai"
        claude = sc.backend_status("claude")
        assert CLAUDE_ID in claude["message"], claude  # the alias resolved by /v1/models/{id}
        assert_probed_in_dialects(sc)

        # The played AI Gateway accepts the route (v1.1: unstamped).
        answered = time.monotonic()
        sc.gateway.answer()
        took = timed(
            lambda: sc.condition_is("RoutingAccepted", "True") and sc.condition_is("Ready", "True"),
            answered,
            5,
            "RoutingAccepted True and Ready True",
        )
        accepted = sc.condition("RoutingAccepted") or {}
        figure(
            f"(a) AI Gateway accepted -> RoutingAccepted True ({accepted.get('message')!r}), "
            f"Ready True in {took:.2f}s"
        )
        conditions = (sc.ai_gateway_route() or {})["status"]["conditions"]
        assert [(c["type"], c["reason"], c["message"]) for c in conditions] == [
            ("Accepted", ACCEPTED_REASON, ACCEPTED_MESSAGE)
        ]
        assert sc.watch.errors == [] and sc.gateway.errors == []


# --- (b) ---------------------------------------------------------------------------------------


def test_openai_outage_puts_claude_first(ai: AIGatewayScenario) -> None:
    sc = ai
    took = fail_over_to_claude(sc)
    message = event_message(sc, "FailedOver")
    figure(
        f"(b) failover: AIGatewayRoute priority 0 openai -> claude {took:.2f}s after OpenAI "
        f"refused connections (bound {FAILOVER_BOUND:.0f}s = floor 2s + 1s); FailedOver: "
        f"{message!r}"
    )
    assert took <= within(FAILOVER_BOUND)
    status = sc.get_route()["status"]
    assert status["failoverCount"] == 1
    # The AI Gateway's unstamped answer stands: routing accepted, Ready.
    assert sc.condition_is("RoutingAccepted", "True") and sc.condition_is("Ready", "True")
    assert sc.watch.errors == [] and sc.gateway.errors == []


# --- (c) ---------------------------------------------------------------------------------------


def test_both_vendors_down_puts_inhouse_first_then_fails_back_to_openai(
    ai: AIGatewayScenario,
) -> None:
    sc = ai
    mark = len(sc.watch.history)
    to_claude = fail_over_to_claude(sc)
    to_inhouse = fail_over_to_inhouse(sc)
    assert sc.condition_is("Ready", "True")  # inhouse serves
    back = fail_back_to_openai(sc)
    figure(
        f"(c) openai down -> claude first in {to_claude:.2f}s; claude down too -> inhouse first "
        f"(modelNameOverride {LLAMA}) in {to_inhouse:.2f}s (bound {FAILOVER_BOUND:.0f}s each); "
        f"openai recovered -> openai first again after {back:.2f}s (stabilization "
        f"{STABILIZATION_SECONDS}s + successThreshold {FAST_PROBE['successThreshold']}; bound "
        f"{FAILBACK_BOUND:.0f}s)"
    )
    assert to_claude <= within(FAILOVER_BOUND) and to_inhouse <= within(FAILOVER_BOUND)
    assert STABILIZATION_SECONDS <= back <= within(FAILBACK_BOUND)
    assert [s.priorities for s in sc.watch.history[mark:]] == [ON_CLAUDE, ON_INHOUSE, ON_OPENAI]
    status = sc.get_route()["status"]
    assert status["failoverCount"] == 3
    assert sc.condition_is("Degraded", "True")  # claude is still down

    sc.claude.clear_fault()
    wait_for(lambda: sc.condition_is("Degraded", "False"), 10, "Degraded False")
    assert [s.priorities for s in sc.watch.history[mark:]][-1] == ON_OPENAI
    assert len(sc.watch.history) == mark + 3  # claude's recovery moved nothing
    reasons = [e.reason for e in sc.events() if e.reason in {"FailedOver", "FailedBack"}]
    assert sorted(reasons) == ["FailedBack", "FailedOver", "FailedOver"]


# --- (d) ---------------------------------------------------------------------------------------


# At DEBUG the operator (and kopf) log the most: the strictest place to look for a key.
@pytest.mark.parametrize("operator", ["DEBUG"], indirect=True)
def test_a_wrong_anthropic_key_is_auth_failed_on_claude_only_and_leaks_nowhere(
    ai: AIGatewayScenario, operator: OperatorProcess
) -> None:
    sc = ai
    took = wrong_anthropic_key(sc, operator)
    searched = assert_no_key_anywhere(sc, operator)
    claude = sc.backend_status("claude")
    figure(
        f"(d) Anthropic key rotated to a wrong one -> status.backends[claude] AuthFailed in "
        f"{took:.2f}s ({claude['message']!r}); openai, inhouse healthy; AIGatewayRoute "
        f"unchanged; no key in: {', '.join(searched)}"
    )
    restore_anthropic_key(sc)
    assert len(sc.watch.history) == 1 and stored_refs(sc) == expected_refs("openai")


# --- (e) ---------------------------------------------------------------------------------------


def test_steady_state_writes_nothing(
    ai: AIGatewayScenario, crd: Cluster, operator_identity: Identity
) -> None:
    sc = ai
    intervals = 10
    writes, gateway = steady_writes(crd, operator_identity, sc, intervals)
    figure(
        f"(e) healthy steady state: {len(writes)} operator writes over {intervals} probe "
        f"intervals ({gateway} by the played AI Gateway)"
    )
    assert writes == []
    assert gateway == 0

    fail_over_to_claude(sc)  # a dead vendor is a steady state too
    writes, gateway = steady_writes(crd, operator_identity, sc, intervals)
    figure(
        f"(e) openai down, claude first: {len(writes)} operator writes over {intervals} "
        f"intervals ({gateway} by the played AI Gateway)"
    )
    assert writes == []
    assert sc.watch.history[-1].priorities == ON_CLAUDE


# --- (f) ---------------------------------------------------------------------------------------

CHART_VALUES = {"routing": {"drivers": DRIVERS.split(",")}}
ALLOWED_WRITES = {
    ("create", "aigatewayroutes", ""),
    ("patch", "aigatewayroutes", ""),
    ("patch", "modelroutes", "status"),
    ("create", "events", ""),
    ("create", "leases", ""),
    ("update", "leases", ""),
}


def forbidden(call: Callable[..., Any], *args: Any) -> bool:
    try:
        call(*args)
    except client.ApiException as exc:
        return bool(exc.status == 403)
    return False


def writes_outside(cluster: Cluster, identity: Identity, since: float) -> list[str]:
    """Writes of ``identity`` other than those the chat-ai scenario needs."""
    found = []
    for event in cluster.audit_events(username=identity.username, verbs=WRITE_VERBS, since=since):
        ref = event.get("objectRef", {})
        if (
            event["verb"],
            ref.get("resource", ""),
            ref.get("subresource", ""),
        ) not in ALLOWED_WRITES:
            found.append(f"{event['verb']} {event['requestURI']}")
    return found


def requests_outside_its_kinds(cluster: Cluster, identity: Identity, since: float) -> list[str]:
    """Requests of ``identity`` to the AI Gateway's, Envoy Gateway's or Gateway API's kinds
    other than aigatewayroutes and aiservicebackends (discovery of the groups aside)."""
    found = []
    for event in cluster.audit_events(username=identity.username, since=since):
        ref = event.get("objectRef") or {}
        group = ref.get("apiGroup", "")
        gateway = group.endswith("envoyproxy.io") or group == "gateway.networking.k8s.io"
        if gateway and ref.get("resource") not in (
            AIGATEWAYROUTES.plural,
            AISERVICEBACKENDS.plural,
        ):
            found.append(f"{event['verb']} {event['requestURI']}")
    return found


def test_chat_ai_as_the_chart_service_account_under_only_its_rbac(
    crd: Cluster, upstream_crds: list[UpstreamCRD]
) -> None:
    release_ns, routes_ns = create_namespace(crd, "mr-system"), create_namespace(crd, "ai")
    values = {**CHART_VALUES, "watchNamespaces": [routes_ns], "leaderElection": {"enabled": True}}
    with installed(crd, "mr-ai", release_ns, values) as release:
        args, env = operator_args(release), operator_env(release)
        assert f"--routing-drivers={DRIVERS}" in args, args
        rules = [r for o in release.objects if o["kind"] == "Role" for r in o["rules"]]
        granted = {
            (group, resource): sorted(rule["verbs"])
            for rule in rules
            for group in rule["apiGroups"]
            for resource in rule["resources"]
            if group.endswith("envoyproxy.io") or group == "gateway.networking.k8s.io"
        }
        assert granted == {
            (AIGATEWAYROUTES.group, AIGATEWAYROUTES.plural): [
                "create",
                "delete",  # a driver switch releases the route's previous object
                "get",
                "list",
                "patch",
                "watch",
            ],
            (AISERVICEBACKENDS.group, AISERVICEBACKENDS.plural): ["get", "list", "watch"],
        }, granted
        identity = crd.mint_service_account(
            release_ns, release.only("ServiceAccount")["metadata"]["name"]
        )
        started = time.time() - 1
        with (
            running_operator(identity, crd.workdir, extra_args=args, env=env) as operator,
            ai_gateway_scenario(crd, routes_ns, probe=FAST_PROBE, failback=FAILBACK) as sc,
        ):
            sc.wait_routed_and_accepted(ON_OPENAI)
            assert stored_refs(sc) == expected_refs("openai")
            assert_probed_in_dialects(sc)
            to_claude = fail_over_to_claude(sc)
            to_inhouse = fail_over_to_inhouse(sc)
            back = fail_back_to_openai(sc)
            sc.claude.clear_fault()
            wait_for(lambda: sc.condition_is("Degraded", "False"), 10, "Degraded False")
            auth_failed = wrong_anthropic_key(sc, operator)
            restore_anthropic_key(sc)
            writes, gateway = steady_writes(crd, identity, sc)
            figure(
                f"(f) as the chart's ServiceAccount: failover to claude {to_claude:.2f}s, to "
                f"inhouse {to_inhouse:.2f}s, failback to openai {back:.2f}s, AuthFailed "
                f"{auth_failed:.2f}s after the key rotation, {len(writes)} writes in 10 "
                f"intervals of steady state"
            )
            assert to_claude <= within(FAILOVER_BOUND) and to_inhouse <= within(FAILOVER_BOUND)
            assert STABILIZATION_SECONDS <= back <= within(FAILBACK_BOUND)
            assert writes == [] and gateway == 0

            assert denied_requests(crd, identity, started) == []
            assert writes_outside(crd, identity, started) == []
            assert requests_outside_its_kinds(crd, identity, started) == []
            assert " 403 " not in operator.logs() and "Forbidden" not in operator.logs()

            # Outside the chart's RBAC, for the same identity.
            api = crd.api_client(identity)
            core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
            group, version = AISERVICEBACKENDS.group, AISERVICEBACKENDS.version
            assert forbidden(
                custom.patch_namespaced_custom_object,
                group, version, routes_ns, AISERVICEBACKENDS.plural, "anthropic",
                {"spec": {"schema": {"name": "OpenAI"}}},
            )  # fmt: skip
            assert forbidden(
                custom.list_namespaced_custom_object,
                group, version, routes_ns, "backendsecuritypolicies",
            )  # fmt: skip
            assert forbidden(  # granted in the watched namespace only (handover)
                custom.delete_namespaced_custom_object,
                group, version, release_ns, AIGATEWAYROUTES.plural, ROUTE_NAME,
            )  # fmt: skip
            assert forbidden(
                custom.list_namespaced_custom_object,
                "gateway.networking.k8s.io", "v1", routes_ns, "httproutes",
            )  # fmt: skip
            assert forbidden(
                core.patch_namespaced_secret, "anthropic-key", routes_ns, {"data": {"apiKey": ""}}
            )
