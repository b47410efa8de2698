"""Deep probes end to end: a vendor that lists its model but cannot generate loses the traffic."""

from __future__ import annotations

from tests.fakes.openai_backend import Fault
from tests.harness.kube import wait_for
from tests.harness.operator import OperatorProcess
from tests.harness.scenario import Scenario

DEEP = {"intervalSeconds": 30, "timeoutSeconds": 1}


def test_deep_probe_moves_traffic_off_a_backend_that_cannot_generate(
    scenario: Scenario, operator: OperatorProcess
) -> None:
    sc = scenario
    # The models list still shows the model: the cheap probe passes and changes nothing.
    sc.vendor.set_fault(Fault.CANNOT_GENERATE)
    sc.patch_route({"spec": {"probe": {"deep": DEEP}}})
    # The deep probe runs when it is first subscribed (then every 30 s).
    wait_for(lambda: sc.routed_to() == "llama-vllm", 8, "failover on the failed deep probe")
    vendor = wait_for(
        lambda: (b := sc.backend_status("vendor")).get("deepProbeFailure") and b,
        5,
        "status.backends[vendor].deepProbeFailure",
    )
    assert vendor["healthy"] is False
    assert "deep probe passes" in vendor["message"] or "deep probe failed" in vendor["message"]
    wait_for(lambda: sc.events("FailedOver"), 5, "a FailedOver event")
    status = sc.get_route()["status"]
    # Two backends: a probe a second each, and a deep probe every 30 s each (9 tokens each).
    assert status["probeCost"] == {
        "requestsPerDay": 2 * 86_400 + 2 * 2_880,
        "estimatedTokensPerDay": 2 * 2_880 * 9,
    }
    # The spec change restarted the target's probe loops (and its series): the failed deep
    # probe may decide before the new cheap loop's first probe is counted.
    for kind in ("deep", "cheap"):
        wait_for(
            lambda k=kind: (operator.metric("modelroute_probe_requests_total", kind=k) or 0) >= 1,
            5,
            f"{kind} probes counted",
        )
    assert operator.metric("modelroute_probe_duration_seconds_count") is not None
    assert operator.metric("modelroute_probe_duration_seconds_count", route="chat") is None

    # Generating works again: the failed deep probe is retried every second, passes, and
    # traffic comes back after the stabilization window.
    sc.vendor.clear_fault()
    wait_for(lambda: sc.routed_to() == "vendor-egress", 15, "failback once a deep probe passes")
    assert "deepProbeFailure" not in sc.backend_status("vendor")
