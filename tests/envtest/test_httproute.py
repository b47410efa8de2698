"""End to end, HTTPRoute driver: the operator process, the real API server with the upstream CRDs
(Gateway API, Inference Extension, Envoy Gateway), fake backends on loopback, and the gateway
controller played by the test (tests/harness/gateway.py): it writes the HTTPRoute's
``status.parents[]`` through the status subresource, stamped with the generation it judged.

The scenario is the chat-gw example of docs/gateway.md (the contract's canonical L7 example),
adapted: the test namespace, probe endpoints on the fakes, probes every 1 s with
failureThreshold 2, a short stabilization, and ``failback.steps`` [10, 50, 100] held 2 s each.
Every timing bound is the acceptance bound of the issue; each test prints what it measured.
"""

from __future__ import annotations

import copy
import itertools
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from modelroute.kube.client import HTTPROUTES
from tests.envtest.conftest import FAST_PROBE, operator_writes
from tests.envtest.test_chart import denied_requests, operator_args, operator_env
from tests.fakes.openai_backend import Fault
from tests.harness.apiserver import REPO_ROOT, WRITE_VERBS, Cluster, Identity
from tests.harness.bounds import strict, within
from tests.harness.gateway import (
    CONTROLLER_NAME,
    HTTPROUTE,
    ROUTE_NAME,
    GatewayScenario,
    GatewayVerdict,
    doc_manifests,
    gateway_scenario,
)
from tests.harness.helm import CHART_DIR, installed
from tests.harness.kube import GROUP, PLURAL, VERSION, create_namespace, wait_for
from tests.harness.operator import OperatorProcess, running_operator
from tests.harness.upstream import UpstreamCRD
from tests.unit.test_health_lua import argo_health, kstatus

CONTRACT = REPO_ROOT.parent / "shared" / "design" / "modelroute-api.md"
STEPS, STEP_SECONDS, STABILIZATION_SECONDS = [10, 50, 100], 2, 3
FAILBACK = {
    "stabilizationSeconds": STABILIZATION_SECONDS,
    "steps": STEPS,
    "stepSeconds": STEP_SECONDS,
}
INTERVAL = FAST_PROBE["intervalSeconds"]
FAILOVER_BOUND = FAST_PROBE["failureThreshold"] * INTERVAL + 1.0  # floor 2 s + 1 s
VERDICT_BOUND = 1.0  # the gateway's verdict shows in the ModelRoute within a second
ON_VENDOR = {"vendor": 100, "inhouse": 0}
ON_INHOUSE = {"vendor": 0, "inhouse": 100}
REJECTION = (
    "NotAllowedByListeners",
    "no listener of Gateway gateway-system/ai-gateway allows routes from this namespace",
)


def figure(text: str) -> None:
    """A measured figure, printed so it can be quoted (pytest -s shows it)."""
    print(f"\n[figure] {text}", flush=True)


@pytest.fixture
def operator(
    crd: Cluster, upstream_crds: list[UpstreamCRD], namespace: str, operator_identity: Identity
) -> Iterator[OperatorProcess]:
    """The operator, started after the upstream CRDs are served (kinds are resolved once at
    start-up), serving the Service and HTTPRoute drivers, watching only this test's namespace."""
    assert any(c.kind == "HTTPRoute" for c in upstream_crds)
    with running_operator(
        operator_identity,
        crd.workdir,
        namespaces=[namespace],
        extra_args=["--routing-drivers", "Service,HTTPRoute"],
    ) as process:
        yield process


@pytest.fixture
def gw(crd: Cluster, namespace: str, operator: OperatorProcess) -> Iterator[GatewayScenario]:
    """chat-gw routed to the vendor, accepted by the played gateway, Ready."""
    with gateway_scenario(crd, namespace, probe=FAST_PROBE, failback=FAILBACK) as sc:
        sc.wait_routed_and_accepted()
        yield sc


def timed_wait(predicate: Callable[[], Any], since: float, bound: float, what: str) -> float:
    """Seconds from ``since`` until ``predicate`` holds (polled every 20 ms); fails past
    ``bound``, printing how long it took."""
    value = wait_for(predicate, bound + 0.5, what, interval=0.02)
    took = time.monotonic() - since
    assert value and took <= within(bound), f"{what}: took {took:.2f}s, bound {bound:.1f}s"
    return took


def carried(weights: dict[str, int]) -> dict[str, int]:
    """``weights`` as status.traffic lists them: backends with a share of the traffic only."""
    return {name: weight for name, weight in weights.items() if weight}


def fail_over(sc: GatewayScenario) -> float:
    """The vendor refuses connections: seconds until the HTTPRoute gives inhouse 100."""
    mark = len(sc.watch.history)
    faulted = time.monotonic()  # before the switch: the stricter measurement
    sc.vendor.set_fault(Fault.REFUSED)
    seen = sc.watch.wait_for(ON_INHOUSE, FAILOVER_BOUND + 5, after=mark)
    return seen.at - faulted


def reasons(sc: GatewayScenario, wanted: set[str]) -> list[str]:
    """The reasons of the route's Events among ``wanted``, oldest first."""
    events = sorted(
        sc.events(), key=lambda e: (e.metadata.creation_timestamp, int(e.metadata.resource_version))
    )
    return [e.reason for e in events if e.reason in wanted]


# --- (a) ---------------------------------------------------------------------------------------


def contract_chat_gw() -> dict[str, Any] | None:
    """The chat-gw ModelRoute of the contract's canonical L7 examples (None: no contract here)."""
    if not CONTRACT.exists():
        return None
    section = re.search(
        r"^## Canonical L7 examples.*?$(.*?)(?=^## |\Z)", CONTRACT.read_text(), re.M | re.S
    )
    assert section is not None, "the contract has no '## Canonical L7 examples' section"
    block = re.search(r"^```ya?ml\s*$(.*?)^```\s*$", section.group(1), re.M | re.S)
    assert block is not None
    docs = [d for d in yaml.safe_load_all(block.group(1)) if d]
    return next(d for d in docs if d["metadata"]["name"] == ROUTE_NAME)


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


def test_canonical_chat_gw_is_accepted_and_routed_by_a_valid_httproute(
    crd: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    (documented,) = [d for d in doc_manifests() if d["kind"] == "ModelRoute"]
    canonical = contract_chat_gw()
    if canonical is not None:
        assert documented == canonical, "docs/gateway.md's chat-gw is not the contract's"
    # No gateway answers at first: RoutingAccepted Unknown until one does.
    with gateway_scenario(
        crd, namespace, probe=FAST_PROBE, failback=FAILBACK, create_route=False, verdict=None
    ) as sc:
        # Adapted: the namespace, the probe endpoints, probe and failback timings; nothing else.
        undone = copy.deepcopy(sc.route)
        undone["metadata"]["namespace"] = documented["metadata"]["namespace"]
        for ours, theirs in zip(
            undone["spec"]["backends"], documented["spec"]["backends"], strict=True
        ):
            ours["endpoint"] = theirs["endpoint"]
        assert undone["spec"].pop("probe") == FAST_PROBE
        assert undone["spec"]["failback"]["steps"] == documented["spec"]["failback"]["steps"]
        undone["spec"]["failback"] = documented["spec"]["failback"]
        assert undone == documented
        created = sc.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, sc.route
        )  # accepted by the API server (the CRD's schema)
        assert contains(created["spec"], sc.route["spec"]), "the CRD pruned part of chat-gw"

        seen = sc.watch.wait_for(ON_VENDOR, 30)
        body = sc.http_route()
        assert body is not None
        rule_count = len(body["spec"]["rules"])
        (rule,) = body["spec"]["rules"]
        figure(
            f"(a) HTTPRoute {namespace}/{ROUTE_NAME} generation {seen.generation}: {rule_count} "
            f"rule {rule['name']!r}, weights {seen.weights}"
        )
        # As stored by the API server under the upstream HTTPRoute schema (v1.6.1): nothing
        # the operator wrote was pruned, and the defaults the schema adds are there.
        assert rule["name"] == ROUTE_NAME
        assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
        assert rule["backendRefs"] == [
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
        ]
        assert body["spec"]["hostnames"] == ["llm.ai.example.com"]
        assert body["spec"]["parentRefs"] == [
            {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "name": "ai-gateway",
                "namespace": "gateway-system",
            }
        ]
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
        assert "status" not in body or not body["status"].get("parents")

        pending = wait_for(
            lambda: (c := sc.condition("RoutingAccepted")) and c["status"] == "Unknown" and c,
            10,
            "RoutingAccepted Unknown while no gateway answered",
        )
        assert pending["reason"] == "Pending"
        wait_for(lambda: sc.traffic() == carried(ON_VENDOR), 10, "status.traffic vendor 100")

        # The played gateway accepts the route.
        written = sc.gateway.set_verdict(GatewayVerdict())
        assert written is not None
        took = timed_wait(
            lambda: sc.condition_is("RoutingAccepted", "True") and sc.condition_is("Ready", "True"),
            written,
            VERDICT_BOUND,
            "RoutingAccepted True and Ready True",
        )
        figure(f"(a) gateway accepted -> RoutingAccepted True, Ready True in {took:.2f}s")
        accepted = sc.condition("RoutingAccepted") or {}
        assert "Gateway gateway-system/ai-gateway" in accepted["message"]
        parents = (sc.http_route() or {})["status"]["parents"]
        assert [p["controllerName"] for p in parents] == [CONTROLLER_NAME]


# --- (b) ---------------------------------------------------------------------------------------


def test_vendor_outage_moves_all_weight_to_inhouse(gw: GatewayScenario) -> None:
    sc = gw
    took = fail_over(sc)
    figure(
        f"(b) failover: HTTPRoute weights {ON_VENDOR} -> {ON_INHOUSE} {took:.2f}s after the "
        f"vendor refused connections (bound {FAILOVER_BOUND:.0f}s = floor 2s + 1s)"
    )
    assert took <= within(FAILOVER_BOUND)
    # Failover is one step: nothing between 100/0 and 0/100.
    assert [s.weights for s in sc.watch.history] == [ON_VENDOR, ON_INHOUSE]
    wait_for(lambda: sc.traffic() == carried(ON_INHOUSE), 5, "status.traffic inhouse 100")
    status = sc.get_route()["status"]
    assert status["activeBackend"] == "inhouse"
    assert status["failoverCount"] == 1
    assert (sc.condition("Degraded") or {})["status"] == "True"
    failed_over = wait_for(lambda: sc.events("FailedOver"), 5, "a FailedOver Event")
    assert failed_over[0].type == "Warning"
    assert "vendor" in failed_over[0].message and "inhouse" in failed_over[0].message
    # The played gateway accepted the new generation: Ready stays True, routing accepted.
    wait_for(lambda: sc.condition_is("RoutingAccepted", "True"), 5, "RoutingAccepted True")
    assert sc.condition_is("Ready", "True")


# --- (c) ---------------------------------------------------------------------------------------


def test_recovery_is_a_staged_failback_10_50_100(gw: GatewayScenario) -> None:
    sc = gw
    fail_over(sc)
    mark = len(sc.watch.history)
    cleared = time.monotonic()
    sc.vendor.clear_fault()

    first = sc.watch.wait_for({"vendor": 10, "inhouse": 90}, 30, after=mark)
    # While the first step is held: status says so.
    wait_for(
        lambda: sc.traffic() == {"vendor": 10, "inhouse": 90}, STEP_SECONDS, "status.traffic 10/90"
    )
    degraded = sc.condition("Degraded") or {}
    assert (degraded.get("status"), degraded.get("reason")) == ("True", "FailbackInProgress")
    # kstatus: Reconciling while the ramp runs (Flux InProgress, Argo CD Progressing).
    reconciling = sc.condition("Reconciling") or {}
    assert (reconciling.get("status"), reconciling.get("reason")) == ("True", "FailbackInProgress")
    assert (kstatus(sc.get_route())[0], argo_health(sc.get_route())["status"]) == (
        "InProgress",
        "Progressing",
    )
    sc.watch.wait_for(ON_VENDOR, 30, after=mark)

    ramp = sc.watch.history[mark:]
    assert [s.weights["vendor"] for s in ramp] == STEPS, [s.weights for s in ramp]
    holds = [later.at - earlier.at for earlier, later in itertools.pairwise(ramp)]
    figure(
        f"(c) vendor recovered -> first step after {first.at - cleared:.2f}s (stabilization "
        f"{STABILIZATION_SECONDS}s + successThreshold); weights "
        + " -> ".join(f"{s.weights['vendor']}/{s.weights['inhouse']}" for s in ramp)
        + "; held "
        + ", ".join(f"{s.weights['vendor']}: {h:.3f}s" for s, h in zip(ramp, holds, strict=False))
        + f" (each >= {STEP_SECONDS}s)"
    )
    # Each weight as a watch of the HTTPRoute (as a gateway) saw it: on for stepSeconds at least
    # (the quiet-machine margin is 15 to 35 ms). Exact under make faults; in make test a loaded
    # machine delays one write or its watch event more than the next: 0.5 s of slack, far
    # from a skipped or rushed step.
    floor = STEP_SECONDS if strict() else STEP_SECONDS - 0.5
    assert all(hold >= floor for hold in holds), (
        f"a step was held less than {floor}s on the HTTPRoute: {holds}"
    )
    assert first.at - cleared >= STABILIZATION_SECONDS

    wanted = {"FailedOver", "FailbackStep", "FailedBack", "FailbackAborted"}
    wait_for(lambda: "FailedBack" in reasons(sc, wanted), 5, "a FailedBack Event")
    assert reasons(sc, wanted) == ["FailedOver", "FailbackStep", "FailbackStep", "FailedBack"]
    steps = sorted(
        (e for e in sc.events("FailbackStep")), key=lambda e: e.metadata.creation_timestamp
    )
    assert "10% of traffic to vendor" in steps[0].message
    assert "50% of traffic to vendor" in steps[1].message
    wait_for(lambda: sc.traffic() == carried(ON_VENDOR), 5, "status.traffic vendor 100")
    wait_for(lambda: sc.condition_is("Degraded", "False"), 5, "Degraded False")
    assert sc.get_route()["status"]["failoverCount"] == 2
    assert sc.condition_is("Reconciling", "False", "Reconciled")
    assert kstatus(sc.get_route())[0] == "Current"


# --- after a staged failback: the stored status, and an operator restart ----------------------


def test_a_restart_after_a_staged_failback_changes_nothing(
    gw: GatewayScenario, crd: Cluster, operator: OperatorProcess, operator_identity: Identity
) -> None:
    sc = gw
    fail_over(sc)
    mark = len(sc.watch.history)
    sc.vendor.clear_fault()
    sc.watch.wait_for(ON_VENDOR, 30, after=mark)
    wait_for(lambda: sc.events("FailedBack"), 5, "a FailedBack Event")
    wait_for(lambda: sc.condition_is("Degraded", "False"), 5, "Degraded False")
    time.sleep(1)
    before = sc.get_route()["status"]
    operator.stop()
    with running_operator(
        operator_identity,
        crd.workdir,
        namespaces=[sc.namespace],
        extra_args=["--routing-drivers", "Service,HTTPRoute"],
    ):
        time.sleep(5)
    after = sc.get_route()["status"]
    moves = reasons(sc, {"FailedOver", "FailbackStep", "FailedBack"})
    figure(
        f"after the ramp: status.failback {before.get('failback')}; after a restart: Events "
        f"{moves}, failoverCount {before['failoverCount']} -> {after['failoverCount']}"
    )
    assert moves == ["FailedOver", "FailbackStep", "FailbackStep", "FailedBack"]
    assert after["failoverCount"] == before["failoverCount"]
    assert [s.weights for s in sc.watch.history[mark:]][-1] == ON_VENDOR
    assert before.get("failback") is None and after.get("failback") is None


# --- (d) ---------------------------------------------------------------------------------------


def test_a_failed_probe_during_the_ramp_returns_all_traffic_at_once(gw: GatewayScenario) -> None:
    sc = gw
    fail_over(sc)
    mark = len(sc.watch.history)
    sc.vendor.clear_fault()
    at_50 = sc.watch.wait_for({"vendor": 50, "inhouse": 50}, 30, after=mark)
    faulted = time.monotonic()
    sc.vendor.set_fault(Fault.REFUSED)
    index = sc.watch.history.index(at_50)
    back = sc.watch.wait_for(ON_INHOUSE, 10, after=index)
    took = back.at - faulted
    # "At once": the first failed probe (within one interval) aborts; no failureThreshold, no
    # step hold. Bound: one probe interval + 0.5 s for the probe and the write.
    bound = INTERVAL + 0.5
    figure(
        f"(d) fault set {faulted - at_50.at:.2f}s after weight 50 appeared; vendor weight "
        f"50 -> 0 {took:.2f}s after the fault (bound {bound:.1f}s: one probe interval + 0.5s)"
    )
    assert took <= within(bound)
    assert [s.weights["vendor"] for s in sc.watch.history[mark:]] == [10, 50, 0]
    aborted = wait_for(lambda: sc.events("FailbackAborted"), 5, "a FailbackAborted Event")
    assert aborted[0].type == "Warning"
    assert "failed a probe during the staged failback" in aborted[0].message
    wait_for(lambda: sc.traffic() == carried(ON_INHOUSE), 5, "status.traffic inhouse 100")
    status = sc.get_route()["status"]
    assert status["failbackAborted"]["backend"] == "vendor"
    assert status["activeBackend"] == "inhouse"
    assert "FailedBack" not in reasons(sc, {"FailedBack"})
    # The vendor stays down: the weights stay put (no new ramp, no flapping).
    time.sleep(3)
    assert sc.watch.history[-1].weights == ON_INHOUSE and sc.watch.history[-1] is back


# --- (e) ---------------------------------------------------------------------------------------


def probe_requests(sc: GatewayScenario) -> tuple[int, int]:
    """Requests each fake backend has answered (every probe is one)."""
    assert sc.vendor.backend is not None and sc.inhouse.backend is not None
    return sc.vendor.backend.requests_total, sc.inhouse.backend.requests_total


def test_gateway_verdict_shows_within_a_second_without_a_probe(gw: GatewayScenario) -> None:
    sc = gw
    # Slow the probes down so none lands while the verdict changes: the new probe loops probe
    # at once (a few loops started together make no bunch) or within their 1 s jitter, then
    # wait 30 s. Their first probes may land before this test reads a count, so wait for
    # probes to stop (the old loops gone, the new ones past their first) rather than for one.
    generation = sc.get_route()["metadata"]["generation"]
    sc.patch_route({"spec": {"probe": {"intervalSeconds": 30}}})
    wait_for(
        lambda: sc.get_route().get("status", {}).get("observedGeneration") == generation + 1,
        10,
        "the new generation observed",
    )
    last, since = probe_requests(sc), time.monotonic()

    def no_probe_for_two_intervals() -> bool:
        nonlocal last, since
        if (now := probe_requests(sc)) != last:
            last, since = now, time.monotonic()
        return time.monotonic() - since >= 2 * INTERVAL

    wait_for(no_probe_for_two_intervals, 10, "no probe for two intervals of the old loops")
    assert sc.condition_is("Ready", "True") and sc.condition_is("RoutingAccepted", "True")
    probes = probe_requests(sc)
    window = time.monotonic()

    reason, message = REJECTION
    written = sc.gateway.set_verdict(GatewayVerdict.rejected(reason, message))
    assert written is not None
    rejected_in = timed_wait(
        lambda: sc.condition_is("Ready", "False", "GatewayRejected"),
        written,
        VERDICT_BOUND,
        "Ready False, reason GatewayRejected",
    )
    ready = sc.condition("Ready") or {}
    accepted = sc.condition("RoutingAccepted") or {}
    assert message in ready["message"], ready
    assert (accepted["status"], accepted["reason"]) == ("False", reason), accepted
    assert message in accepted["message"]
    wait_for(lambda: sc.events("GatewayRejected"), 5, "a GatewayRejected Event")

    written = sc.gateway.set_verdict(GatewayVerdict())
    assert written is not None
    accepted_in = timed_wait(
        lambda: sc.condition_is("RoutingAccepted", "True") and sc.condition_is("Ready", "True"),
        written,
        VERDICT_BOUND,
        "RoutingAccepted True and Ready True",
    )
    elapsed = time.monotonic() - window
    figure(
        f"(e) gateway verdict -> ModelRoute: rejection (Accepted False, {reason}) -> Ready False "
        f"GatewayRejected in {rejected_in:.2f}s; acceptance -> RoutingAccepted True, Ready True "
        f"in {accepted_in:.2f}s (bound {VERDICT_BOUND:.0f}s each; probe interval 30s)"
    )
    assert probe_requests(sc) == probes, f"a probe landed in the {elapsed:.1f}s window"
    # Neither verdict moved traffic.
    assert sc.watch.history[-1].weights == ON_VENDOR


# --- (f) ---------------------------------------------------------------------------------------


def test_steady_state_writes_nothing(
    gw: GatewayScenario, crd: Cluster, operator_identity: Identity
) -> None:
    sc = gw
    intervals = 10
    time.sleep(3)  # settled: the played gateway's last answer has been read
    since, gateway_writes = time.time(), sc.gateway.writes
    time.sleep(intervals * INTERVAL)
    writes = operator_writes(crd, operator_identity, sc.namespace, since)
    figure(
        f"(f) healthy steady state: {len(writes)} operator writes over {intervals} probe "
        f"intervals ({sc.gateway.writes - gateway_writes} by the played gateway)"
    )
    assert writes == []
    assert sc.gateway.writes == gateway_writes

    fail_over(sc)  # a dead vendor is a steady state too
    time.sleep(3)
    since = time.time()
    time.sleep(intervals * INTERVAL)
    writes = operator_writes(crd, operator_identity, sc.namespace, since)
    figure(
        f"(f) vendor down, after failover: {len(writes)} operator writes over {intervals} intervals"
    )
    assert writes == []
    assert sc.watch.history[-1].weights == ON_INHOUSE


# --- (g) ---------------------------------------------------------------------------------------

CHART_VALUES = Path(CHART_DIR) / "values.yaml"
HTTPROUTE_VALUES = {"routing": {"drivers": ["Service", "HTTPRoute"]}}


def forbidden(call: Callable[..., Any], *args: Any) -> bool:
    try:
        call(*args)
    except client.ApiException as exc:
        return exc.status == 403
    return False


def writes_outside(cluster: Cluster, identity: Identity, since: float) -> list[str]:
    """Writes of ``identity`` other than those the HTTPRoute scenario needs."""
    allowed = {
        ("create", "httproutes", ""),
        ("patch", "httproutes", ""),
        ("patch", "modelroutes", "status"),
        ("create", "events", ""),
        ("create", "leases", ""),
        ("update", "leases", ""),
    }
    found = []
    for event in cluster.audit_events(username=identity.username, verbs=WRITE_VERBS, since=since):
        ref = event.get("objectRef", {})
        if (event["verb"], ref.get("resource", ""), ref.get("subresource", "")) not in allowed:
            found.append(f"{event['verb']} {event['requestURI']}")
    return found


def test_chat_gw_as_the_chart_service_account_under_only_its_rbac(
    crd: Cluster, upstream_crds: list[UpstreamCRD]
) -> None:
    defaults = yaml.safe_load(CHART_VALUES.read_text())
    if "drivers" not in (defaults.get("routing") or {}):
        pytest.fail(
            "charts/modelroute-operator/values.yaml has no routing.drivers yet (another change "
            "adds it, with httproutes RBAC only when HTTPRoute is listed): this test installs the "
            f"chart with {HTTPROUTE_VALUES} and cannot run without it"
        )
    release_ns, routes_ns = create_namespace(crd, "mr-system"), create_namespace(crd, "ai")
    values = {
        **HTTPROUTE_VALUES,
        "watchNamespaces": [routes_ns],
        "leaderElection": {"enabled": True},
    }
    with installed(crd, "mr-gw", release_ns, values) as release:
        args, env = operator_args(release), operator_env(release)
        assert "--routing-drivers=Service,HTTPRoute" in args, args
        rules = [r for o in release.objects if o["kind"] == "Role" for r in o["rules"]]
        httproute_rules = [r for r in rules if HTTPROUTES.plural in r["resources"]]
        assert [sorted(r["verbs"]) for r in httproute_rules] == [
            ["create", "delete", "get", "list", "patch", "watch"]  # delete: handover
        ]
        identity = crd.mint_service_account(
            release_ns, release.only("ServiceAccount")["metadata"]["name"]
        )
        started = time.time() - 1
        with (
            running_operator(identity, crd.workdir, extra_args=args, env=env) as operator,
            gateway_scenario(crd, routes_ns, probe=FAST_PROBE, failback=FAILBACK) as sc,
        ):
            sc.wait_routed_and_accepted()
            took = fail_over(sc)
            wait_for(lambda: sc.events("FailedOver"), 5, "a FailedOver Event")
            mark = len(sc.watch.history)
            sc.vendor.clear_fault()
            sc.watch.wait_for(ON_VENDOR, 30, after=mark)
            ramp = [s.weights["vendor"] for s in sc.watch.history[mark:]]
            assert ramp == STEPS
            wait_for(lambda: sc.events("FailedBack"), 5, "a FailedBack Event")
            assert len(sc.events("FailbackStep")) == 2

            written = sc.gateway.set_verdict(GatewayVerdict.rejected(*REJECTION))
            assert written is not None
            rejected_in = timed_wait(
                lambda: sc.condition_is("Ready", "False", "GatewayRejected"),
                written,
                VERDICT_BOUND,
                "Ready False, reason GatewayRejected",
            )
            written = sc.gateway.set_verdict(GatewayVerdict())
            assert written is not None
            accepted_in = timed_wait(
                lambda: sc.condition_is("Ready", "True"), written, VERDICT_BOUND, "Ready True"
            )
            figure(
                f"(g) as the chart's ServiceAccount: failover {took:.2f}s, ramp {ramp}, "
                f"rejection shown in {rejected_in:.2f}s, acceptance in {accepted_in:.2f}s"
            )

            assert denied_requests(crd, identity, started) == []
            logs = operator.logs()
            assert " 403 " not in logs and "Forbidden" not in logs
            if crd.audit_log is not None:
                assert writes_outside(crd, identity, started) == []

            # Outside the chart's RBAC: the gateway's status, deleting outside the watched
            # namespace (inside it, delete is granted: a driver switch releases the old object),
            # the backendRefs' kinds.
            custom = client.CustomObjectsApi(crd.api_client(identity))
            group, version, plural = HTTPROUTE
            verdict = {"status": {"parents": []}}
            assert forbidden(
                custom.patch_namespaced_custom_object_status,
                group, version, routes_ns, plural, ROUTE_NAME, verdict,
            )  # fmt: skip
            assert forbidden(
                custom.delete_namespaced_custom_object,
                group,
                version,
                release_ns,
                plural,
                ROUTE_NAME,
            )
            assert forbidden(
                custom.list_namespaced_custom_object,
                "gateway.envoyproxy.io", "v1alpha1", routes_ns, "backends",
            )  # fmt: skip
            assert forbidden(
                custom.list_namespaced_custom_object,
                "inference.networking.k8s.io", "v1", routes_ns, "inferencepools",
            )  # fmt: skip
            assert forbidden(
                custom.list_namespaced_custom_object, group, version, release_ns, plural
            )  # only the watched namespace
