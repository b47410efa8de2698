"""End to end: the operator process, the real API server, fake backends on loopback."""

from __future__ import annotations

import threading
import time

from tests.envtest.conftest import STABILIZATION_SECONDS, operator_writes
from tests.fakes.openai_backend import Fault
from tests.harness.apiserver import Cluster, Identity
from tests.harness.kube import wait_for
from tests.harness.operator import OperatorProcess, running_operator
from tests.harness.scenario import VENDOR_KEY, Scenario


def test_vendor_outage_fails_over_and_back(scenario: Scenario, operator: OperatorProcess) -> None:
    sc = scenario
    cluster_ip = sc.stable_service().spec.cluster_ip

    sc.vendor.set_fault(Fault.REFUSED)
    # Acceptance: within failureThreshold x interval (2 s) + 1 s.
    wait_for(lambda: sc.routed_to() == "llama-vllm", 3.0, "failover to in-house within 2s+1s")

    status = wait_for(
        lambda: (s := sc.get_route().get("status", {})).get("activeBackend") == "inhouse" and s,
        5,
        "status.activeBackend=inhouse",
    )
    assert status["failoverCount"] == 1
    assert "lastFailoverTime" in status
    assert sc.condition("Degraded")["status"] == "True"
    assert sc.condition("Ready")["status"] == "True"
    assert sc.stable_service().spec.cluster_ip == cluster_ip
    failed_over = wait_for(lambda: sc.events("FailedOver"), 5, "a FailedOver event")
    assert "vendor" in failed_over[0].message and "inhouse" in failed_over[0].message
    assert failed_over[0].type == "Warning"
    assert operator.metric("modelroute_failovers_total", route="chat", backend="inhouse") == 1.0
    assert operator.metric("modelroute_backend_up", route="chat", backend="vendor") == 0.0
    assert operator.metric("modelroute_active_backend", route="chat", backend="inhouse") == 1.0

    sc.vendor.clear_fault()
    back_at = time.monotonic()
    wait_for(lambda: sc.routed_to() == "vendor-egress", 20, "failback to the vendor")
    assert time.monotonic() - back_at >= STABILIZATION_SECONDS, "failback before stabilization"
    failed_back = wait_for(lambda: sc.events("FailedBack"), 5, "a FailedBack event")
    assert "inhouse" in failed_back[0].message and "vendor" in failed_back[0].message
    wait_for(
        lambda: (sc.condition("Degraded") or {}).get("status") == "False",
        5,
        "Degraded=False after failback",
    )
    assert sc.stable_service().spec.cluster_ip == cluster_ip
    assert sc.get_route()["status"]["failoverCount"] == 2


def test_api_key_is_used_but_never_shown(scenario: Scenario, operator: OperatorProcess) -> None:
    sc = scenario
    assert sc.vendor.backend is not None
    assert sc.vendor.backend.last_headers.get("Authorization") == f"Bearer {VENDOR_KEY}"
    sc.vendor.set_fault(Fault.REFUSED)
    wait_for(lambda: sc.events("FailedOver"), 10, "a FailedOver event")
    assert VENDOR_KEY not in operator.logs()
    assert VENDOR_KEY not in str(sc.get_route())
    assert all(VENDOR_KEY not in (e.message or "") for e in sc.events())
    assert VENDOR_KEY not in operator.get("/metrics")[1]


def test_all_backends_down_keeps_routing_and_is_not_ready(
    scenario: Scenario, operator: OperatorProcess
) -> None:
    sc = scenario
    sc.vendor.set_fault(Fault.OUTAGE)
    sc.inhouse.set_fault(Fault.OUTAGE)
    ready = wait_for(
        lambda: (c := sc.condition("Ready")) and c["status"] == "False" and c, 10, "Ready=False"
    )
    assert ready["reason"] == "AllBackendsUnhealthy"
    assert "fail-static" in ready["message"]
    # Fail-static: the Service still points where it pointed (the vendor, both died at once,
    # or in-house if the vendor was noticed first); it is never emptied or deleted.
    assert sc.routed_to() in {"vendor-egress", "llama-vllm"}
    assert sc.get_route()["status"]["healthyBackends"] == "0/2"
    wait_for(lambda: sc.events("AllBackendsUnhealthy"), 5, "an AllBackendsUnhealthy event")


def test_steady_state_writes_nothing(
    scenario: Scenario, operator: OperatorProcess, operator_identity: Identity
) -> None:
    sc = scenario
    # Healthy steady state: settle (successThreshold probes), then 10 probe intervals.
    time.sleep(3)
    since = time.time()
    time.sleep(10)
    assert operator_writes(sc.cluster, operator_identity, sc.namespace, since) == []
    # A dead vendor is a steady state too: after the failover, 10 more intervals, no writes.
    sc.vendor.set_fault(Fault.REFUSED)
    wait_for(lambda: sc.routed_to() == "llama-vllm", 10, "failover")
    time.sleep(3)
    since = time.time()
    time.sleep(10)
    assert operator_writes(sc.cluster, operator_identity, sc.namespace, since) == []
    assert sc.vendor.backend is not None and sc.inhouse.backend is not None
    assert sc.inhouse.backend.requests_total >= 10  # probing went on all along


def test_restart_during_failover_does_not_flap(
    crd: Cluster, scenario: Scenario, operator: OperatorProcess, operator_identity: Identity
) -> None:
    sc = scenario
    sc.vendor.set_fault(Fault.REFUSED)
    wait_for(lambda: sc.routed_to() == "llama-vllm", 10, "failover")
    wait_for(
        lambda: sc.get_route().get("status", {}).get("activeBackend") == "inhouse",
        5,
        "status written",
    )
    operator.kill()  # a crash: no clean shutdown

    seen: set[str | None] = set()
    stop = threading.Event()

    def watch_routing() -> None:
        while not stop.is_set():
            seen.add(sc.routed_to())
            time.sleep(0.05)

    watcher = threading.Thread(target=watch_routing, daemon=True)
    watcher.start()
    since = time.time()
    try:
        with running_operator(operator_identity, crd.workdir, namespaces=[sc.namespace]):
            time.sleep(5)
    finally:
        stop.set()
        watcher.join()
    assert seen == {"llama-vllm"}, f"routing flapped after restart: {seen}"
    assert [
        w
        for w in operator_writes(crd, operator_identity, sc.namespace, since)
        if w.startswith("patch services")
    ] == []
    assert sc.get_route()["status"]["failoverCount"] == 1


def test_manual_failback_waits_for_the_admin(scenario: Scenario, operator: OperatorProcess) -> None:
    sc = scenario
    sc.patch_route({"spec": {"failback": {"mode": "Manual", "stabilizationSeconds": 1}}})
    sc.vendor.set_fault(Fault.REFUSED)
    wait_for(lambda: sc.routed_to() == "llama-vllm", 10, "failover")
    sc.vendor.clear_fault()
    degraded = wait_for(
        lambda: (c := sc.condition("Degraded")) and c["reason"] == "FailbackPending" and c,
        15,
        "FailbackPending",
    )
    assert "approve-failback" in degraded["message"]
    time.sleep(2)
    assert sc.routed_to() == "llama-vllm"
    sc.patch_route({"metadata": {"annotations": {"modelroute.dev/approve-failback": "1"}}})
    wait_for(lambda: sc.routed_to() == "vendor-egress", 10, "approved failback")
    # Routing is written first; status (with the approval recorded) right after it.
    wait_for(
        lambda: sc.get_route()["status"].get("failbackApproval") == "1", 5, "approval recorded"
    )
    wait_for(lambda: sc.events("FailedBack"), 5, "a FailedBack event")


def test_deleting_the_route_stops_its_probes(scenario: Scenario, operator: OperatorProcess) -> None:
    sc = scenario
    sc.custom.delete_namespaced_custom_object(
        "modelroute.dev", "v1alpha1", sc.namespace, "modelroutes", "chat"
    )
    time.sleep(2)
    assert sc.inhouse.backend is not None
    count = sc.inhouse.backend.requests_total
    time.sleep(3)
    assert sc.inhouse.backend.requests_total == count, "probes went on after deletion"
    assert operator.metric("modelroute_backend_up", route="chat", backend="vendor") is None


def test_operator_is_live_and_stops_within_seconds(
    scenario: Scenario, operator: OperatorProcess
) -> None:
    status, body = operator.get("/healthz", operator.health_port)
    assert (status, body.strip()) == (200, "ok")
    assert operator.get("/readyz", operator.health_port)[0] == 200
    took = operator.stop()
    assert took < 10, f"shutdown took {took:.1f}s"
    assert operator.returncode == 0
