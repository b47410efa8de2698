"""Bad input gets a clear error and disturbs nothing else."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from tests.envtest.conftest import FAST_PROBE, operator_writes
from tests.fakes.openai_backend import Fault
from tests.harness.apiserver import Cluster, Identity
from tests.harness.kube import wait_for
from tests.harness.operator import OperatorProcess
from tests.harness.scenario import Scenario, canonical_scenario


def _not_ready(sc: Scenario, reason: str) -> dict[str, Any]:
    return wait_for(
        lambda: (
            (c := sc.condition("Ready")) and c["status"] == "False" and c["reason"] == reason and c
        ),
        15,
        f"Ready=False reason {reason}",
    )


def test_duplicate_backend_names_are_invalid_spec_without_retry_loop(
    crd: Cluster, namespace: str, operator: OperatorProcess, operator_identity: Identity
) -> None:
    with canonical_scenario(crd, namespace, create_route=False, **FAST_PROBE) as sc:
        sc.route["spec"]["backends"][1]["name"] = "vendor"
        since = time.time()
        sc.create_route()
        ready = _not_ready(sc, "InvalidSpec")
        assert "spec.backends[1].name" in ready["message"]
        assert "duplicate" in ready["message"]
        assert sc.stable_service() is None
        time.sleep(3)
        # One status write and one Warning event, then nothing: no retry loop on a spec that
        # cannot work.
        assert sorted(operator_writes(crd, operator_identity, namespace, since)) == [
            "create events/",
            "patch modelroutes/statuschat",
        ]
        assert sc.inhouse.backend is not None and sc.inhouse.backend.requests_total == 0

        # Fixing the spec is picked up at once.
        sc.patch_route(
            {
                "spec": {
                    "backends": [
                        sc.route["spec"]["backends"][0],
                        {**sc.route["spec"]["backends"][1], "name": "inhouse"},
                    ]
                }
            }
        )
        wait_for(lambda: sc.routed_to() == "vendor-egress", 15, "routing after the fix")


def test_invalid_spec_writes_one_status_only(
    crd: Cluster, namespace: str, operator: OperatorProcess, operator_identity: Identity
) -> None:
    with canonical_scenario(crd, namespace, create_route=False, **FAST_PROBE) as sc:
        del sc.route["spec"]["backends"][0]["serviceRef"]
        since = time.time()
        sc.create_route()
        ready = _not_ready(sc, "InvalidSpec")
        assert "spec.backends[0].serviceRef" in ready["message"]
        time.sleep(3)
        assert sorted(operator_writes(crd, operator_identity, namespace, since)) == [
            "create events/",
            "patch modelroutes/statuschat",
        ]


def test_missing_target_service(crd: Cluster, namespace: str, operator: OperatorProcess) -> None:
    with canonical_scenario(crd, namespace, create_route=False, **FAST_PROBE) as sc:
        # _preload_content=False: kubernetes-client 37 mis-reads the delete response as a Service.
        sc.core.delete_namespaced_service("vendor-egress", namespace, _preload_content=False)
        sc.create_route()
        ready = _not_ready(sc, "TargetServiceMissing")
        assert f"{namespace}/vendor-egress" in ready["message"]
        assert sc.stable_service() is None
        wait_for(lambda: sc.events("TargetServiceMissing"), 5, "a warning event")


def test_missing_secret_makes_only_that_backend_unhealthy(
    crd: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    with canonical_scenario(crd, namespace, create_route=False, **FAST_PROBE) as sc:
        sc.core.delete_namespaced_secret("vendor-key", namespace)
        sc.create_route()
        wait_for(lambda: sc.routed_to() == "llama-vllm", 15, "routing to in-house")
        vendor = wait_for(
            lambda: (b := sc.backend_status("vendor")) and b.get("message") and b,
            10,
            "vendor status",
        )
        assert vendor["healthy"] is False
        assert vendor["message"] == f"Secret {namespace}/vendor-key not found"
        # Status follows the routing write: the write that records in-house healthy may come
        # after the one that recorded the vendor's missing Secret.
        wait_for(lambda: sc.backend_status("inhouse").get("healthy") is True, 10, "in-house")
        assert sc.vendor.backend is not None and sc.vendor.backend.requests_total == 0

        # Creating the Secret is picked up from the watch: the vendor becomes healthy.
        from tests.harness.scenario import create_vendor_secret

        create_vendor_secret(sc.core, namespace)
        wait_for(
            lambda: sc.backend_status("vendor").get("healthy") is True,
            15,
            "vendor healthy once the Secret exists",
        )


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.MALFORMED_JSON, "malformed JSON"),
        (Fault.WRONG_MODELS, "model gpt-4o not listed"),
        (Fault.HTML_PAGE, "HTML page instead of JSON"),
        (Fault.SERVER_ERROR, "500"),
        (Fault.RATE_LIMITED, "429"),
    ],
    ids=["malformed-json", "wrong-models", "html-page", "http-500", "rate-limited"],
)
def test_garbage_from_a_backend_is_a_failed_probe_with_a_useful_message(
    scenario: Scenario, operator: OperatorProcess, fault: Fault, expected: str
) -> None:
    sc = scenario
    sc.vendor.set_fault(fault)
    wait_for(lambda: sc.routed_to() == "llama-vllm", 10, "failover")
    vendor = wait_for(
        lambda: (b := sc.backend_status("vendor")) and b["healthy"] is False and b,
        5,
        "vendor unhealthy",
    )
    assert expected in vendor["message"]


def test_foreign_service_with_the_stable_name_is_never_written(
    crd: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    with canonical_scenario(crd, namespace, create_route=False, **FAST_PROBE) as sc:
        foreign = sc.core.create_namespaced_service(
            namespace,
            client.V1Service(
                metadata=client.V1ObjectMeta(name="chat-llm", labels={"owner": "someone-else"}),
                spec=client.V1ServiceSpec(
                    selector={"app": "other"}, ports=[client.V1ServicePort(port=80)]
                ),
            ),
        )
        sc.create_route()
        _not_ready(sc, "ServiceConflict")
        after = sc.stable_service()
        assert after.metadata.resource_version == foreign.metadata.resource_version
        assert after.spec.selector == {"app": "other"}


def test_a_service_route_without_spec_service_is_invalid_spec(
    crd: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    # The schema accepts it (L7 drivers need no stable Service); the Service driver does not.
    with canonical_scenario(crd, namespace, create_route=False, **FAST_PROBE) as sc:
        del sc.route["spec"]["service"]
        sc.create_route()
        ready = _not_ready(sc, "InvalidSpec")
        assert "spec.service: required by the Service routing driver" in ready["message"]
        assert sc.inhouse.backend is not None and sc.inhouse.backend.requests_total == 0
