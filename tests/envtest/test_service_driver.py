"""The Service driver against the real API server: mirror, ExternalName, drift, deletion."""

from __future__ import annotations

from kubernetes import client

from tests.envtest.conftest import FAST_PROBE, STABILIZATION_SECONDS
from tests.fakes.openai_backend import Fault
from tests.harness.apiserver import Cluster
from tests.harness.kube import wait_for
from tests.harness.operator import OperatorProcess
from tests.harness.scenario import Scenario, canonical_scenario


def test_mirrors_selector_and_target_port(scenario: Scenario, operator: OperatorProcess) -> None:
    svc = scenario.stable_service()
    assert svc.spec.type == "ClusterIP"
    assert svc.spec.selector == {"app": "vendor-egress"}
    assert [(p.port, p.target_port) for p in svc.spec.ports] == [(80, 8080)]
    assert svc.metadata.owner_references[0].kind == "ModelRoute"
    assert svc.metadata.owner_references[0].controller is True
    assert svc.metadata.labels["app.kubernetes.io/managed-by"] == "modelroute-operator"
    managers = {m.manager for m in svc.metadata.managed_fields}
    assert managers == {"modelroute-operator"}
    scenario.vendor.set_fault(Fault.REFUSED)
    wait_for(lambda: scenario.routed_to() == "llama-vllm", 10, "failover")
    svc = scenario.stable_service()
    # The named targetPort of llama-vllm is mirrored as it is.
    assert [(p.port, p.target_port) for p in svc.spec.ports] == [(80, "http")]


def test_selectorless_target_becomes_external_name(
    crd: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    with canonical_scenario(crd, namespace, create_route=False, **FAST_PROBE) as sc:
        # Selector-less, and reached by DNS on the stable port 80, so it must expose 80 too.
        sc.core.patch_namespaced_service(
            "llama-vllm",
            namespace,
            {
                "spec": {
                    "selector": None,
                    "ports": [
                        {"name": "api", "port": 8000, "targetPort": 8000},
                        {"name": "http", "port": 80, "targetPort": 8000},
                    ],
                }
            },
        )
        sc.route["spec"]["failback"]["stabilizationSeconds"] = STABILIZATION_SECONDS
        sc.create_route()
        wait_for(lambda: sc.routed_to() == "vendor-egress", 15, "initial route")
        sc.vendor.set_fault(Fault.REFUSED)
        svc = wait_for(
            lambda: (s := sc.stable_service()) and s.spec.type == "ExternalName" and s,
            10,
            "ExternalName after failover",
        )
        assert svc.spec.external_name == f"llama-vllm.{namespace}.svc.cluster.local"
        assert not svc.spec.selector
        sc.vendor.clear_fault()
        back = wait_for(
            lambda: (s := sc.stable_service()) and s.spec.type == "ClusterIP" and s,
            20,
            "back to ClusterIP after failback",
        )
        assert back.spec.selector == {"app": "vendor-egress"}


def test_drift_on_the_owned_service_is_reverted(
    scenario: Scenario, operator: OperatorProcess
) -> None:
    sc = scenario
    sc.core.patch_namespaced_service(
        "chat-llm", sc.namespace, {"spec": {"selector": {"app": "hijacked"}}}
    )
    wait_for(lambda: sc.routed_to() == "vendor-egress", 10, "selector drift reverted")
    # Additions by others to fields we do not manage are left alone.
    sc.core.patch_namespaced_service(
        "chat-llm", sc.namespace, {"metadata": {"labels": {"team": "ml"}}}
    )
    wait_for(lambda: sc.stable_service().metadata.labels.get("team") == "ml", 5, "label kept")


def test_deleted_service_is_recreated(scenario: Scenario, operator: OperatorProcess) -> None:
    sc = scenario
    old_uid = sc.stable_service().metadata.uid
    sc.core.delete_namespaced_service("chat-llm", sc.namespace, _preload_content=False)
    svc = wait_for(
        lambda: (s := sc.stable_service()) and s.metadata.uid != old_uid and s,
        10,
        "the stable Service recreated",
    )
    assert svc.spec.selector == {"app": "vendor-egress"}


def test_target_selector_change_is_followed(scenario: Scenario, operator: OperatorProcess) -> None:
    sc = scenario
    sc.core.patch_namespaced_service(
        "vendor-egress", sc.namespace, {"spec": {"selector": {"app": "vendor-egress-v2"}}}
    )
    wait_for(
        lambda: sc.stable_service().spec.selector == {"app": "vendor-egress-v2"},
        10,
        "the new target selector mirrored",
    )
    assert isinstance(sc.stable_service(), client.V1Service)


def test_selectorless_target_without_the_stable_port_is_reported(
    crd: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    with canonical_scenario(crd, namespace, create_route=False, **FAST_PROBE) as sc:
        sc.core.patch_namespaced_service("vendor-egress", namespace, {"spec": {"selector": None}})
        sc.create_route()
        ready = wait_for(
            lambda: (
                (c := sc.condition("Ready")) and c["reason"] == "ExternalNamePortMismatch" and c
            ),
            15,
            "Ready=False ExternalNamePortMismatch",
        )
        assert ready["status"] == "False"
        assert "port 80" in ready["message"]
        assert sc.stable_service() is None
