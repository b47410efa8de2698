"""End to end: the operator process, the real API server, fake backends on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.fakes.openai_backend import Fault
from tests.harness.apiserver import Cluster
from tests.harness.kube import wait_for
from tests.harness.operator import OperatorProcess, running_operator
from tests.harness.scenario import VENDOR_KEY, Scenario, canonical_scenario

FAST_PROBE = {
    "intervalSeconds": 1,
    "timeoutSeconds": 1,
    "failureThreshold": 2,
    "successThreshold": 2,
}


@pytest.fixture
def operator(crd: Cluster, namespace: str) -> Iterator[OperatorProcess]:
    """An operator process watching this test's namespace."""
    with running_operator(crd.admin, crd.workdir, namespaces=[namespace]) as process:
        yield process


@pytest.fixture
def scenario(crd: Cluster, namespace: str, operator: OperatorProcess) -> Iterator[Scenario]:
    """The canonical example, fast probes, 3 s stabilization, routed to the vendor."""
    with canonical_scenario(crd, namespace, **FAST_PROBE) as sc:
        sc.custom.patch_namespaced_custom_object(
            "modelroute.dev",
            "v1alpha1",
            namespace,
            "modelroutes",
            "chat",
            {"spec": {"failback": {"stabilizationSeconds": 3}}},
        )
        wait_for(lambda: sc.routed_to() == "vendor-egress", 15, "initial route to the vendor")
        yield sc


def test_vendor_outage_fails_over_and_back(scenario: Scenario, operator: OperatorProcess) -> None:
    sc = scenario
    cluster_ip = sc.stable_service().spec.cluster_ip
    wait_for(lambda: (sc.condition("Ready") or {}).get("status") == "True", 10, "Ready=True")

    outage_at = time.monotonic()
    sc.vendor.set_fault(Fault.REFUSED)
    wait_for(lambda: sc.routed_to() == "llama-vllm", 3.0, "failover to in-house within 2s+1s")

    status = wait_for(
        lambda: (
            sc.get_route().get("status", {}).get("activeBackend") == "inhouse"
            and sc.get_route()["status"]
        ),
        5,
        "status.activeBackend=inhouse",
    )
    assert status["failoverCount"] == 1
    assert sc.condition("Degraded")["status"] == "True"
    assert sc.condition("Ready")["status"] == "True"
    assert sc.stable_service().spec.cluster_ip == cluster_ip
    wait_for(lambda: sc.events("FailedOver"), 5, "a FailedOver event")
    assert "vendor" in sc.events("FailedOver")[0].message
    assert operator.metric("modelroute_failovers_total", route="chat", backend="inhouse") == 1.0

    sc.vendor.clear_fault()
    back_at = time.monotonic()
    wait_for(lambda: sc.routed_to() == "vendor-egress", 15, "failback to the vendor")
    assert time.monotonic() - back_at >= 3.0, "failback came before stabilizationSeconds"
    wait_for(lambda: sc.events("FailedBack"), 5, "a FailedBack event")
    assert sc.stable_service().spec.cluster_ip == cluster_ip
    assert time.monotonic() - outage_at > 3.0
    # The key is never shown: not in logs, status, events or metrics.
    assert VENDOR_KEY not in operator.logs()
    assert VENDOR_KEY not in str(sc.get_route())
    assert all(VENDOR_KEY not in (e.message or "") for e in sc.events())
    assert VENDOR_KEY not in operator.get("/metrics")[1]
