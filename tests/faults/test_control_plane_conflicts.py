"""Issue 13, scenario 4: another writer changes the operator's Service at the moment of a switch.

The operator merge-patches only the fields it owns (no resourceVersion precondition), so a
concurrent writer never makes it lose a switch; the other writer's read-modify-write with a
stale resourceVersion gets 409 Conflict from the API server and must re-read. The operator's
patch can be refused too (kube-apiserver 1.20, Services): it re-reads and patches again
at once. Expectation: the operator's final state is right and the other writer's unrelated
fields (a label, an annotation) survive, also when the other writer reverts the selector at the
same moment.
"""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from tests.fakes.openai_backend import Fault
from tests.faults.conftest import Background, Sampler, audit_writes, record
from tests.harness.apiserver import Cluster, Identity
from tests.harness.kube import wait_for
from tests.harness.operator import OperatorProcess
from tests.harness.scenario import Scenario

pytestmark = pytest.mark.apiserver


class OtherWriter(Background):
    """Read-modify-replace loops on the stable Service (as kubectl edit or another controller
    would), each adding its own annotation; counts the 409s the API server answers."""

    def __init__(self, sc: Scenario) -> None:
        super().__init__()
        self._sc = sc
        self._name = sc.route["spec"]["service"]["name"]
        self._core = client.CoreV1Api(sc.cluster.api_client())
        self.conflicts = 0
        self.updates = 0

    def step(self) -> None:
        """One read-modify-replace; a 409 is counted (the next round reads again)."""
        svc = self._core.read_namespaced_service(self._name, self._sc.namespace)
        # The time between read and replace is where the operator's patch lands.
        time.sleep(0.03)
        svc.metadata.annotations = {
            **(svc.metadata.annotations or {}),
            "other.example.com/touched": str(self.updates),
        }
        try:
            self._core.replace_namespaced_service(self._name, self._sc.namespace, svc)
            self.updates += 1
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            self.conflicts += 1


def test_another_writer_at_the_moment_of_the_switch(
    scenario: Scenario, operator: OperatorProcess, operator_identity: Identity, crd: Cluster
) -> None:
    sc = scenario
    name = sc.route["spec"]["service"]["name"]
    sc.core.patch_namespaced_service(
        name, sc.namespace, {"metadata": {"labels": {"team.example.com/owner": "payments"}}}
    )
    time.sleep(1)
    # A copy read before the switch: replacing it afterwards must be refused (409), never
    # silently move traffic back to the vendor.
    stale = sc.core.read_namespaced_service(name, sc.namespace)
    since = time.time()
    with OtherWriter(sc) as other, Sampler(sc.routed_to, 0.05) as routing:
        sc.vendor.set_fault(Fault.REFUSED)
        wait_for(lambda: sc.routed_to() == "llama-vllm", 15, "failover under a busy writer")
        # Keep writing past the switch, so some replaces are based on the pre-switch object.
        time.sleep(2)
    stale.metadata.annotations = {**(stale.metadata.annotations or {}), "other.example.com/x": "1"}
    with pytest.raises(client.ApiException) as refused:
        sc.core.replace_namespaced_service(name, sc.namespace, stale)
    assert refused.value.status == 409
    switched_at = routing.first(lambda v: v == "llama-vllm")
    assert switched_at is not None
    after = [v for t, v in routing.samples if t >= switched_at]
    assert set(after) == {"llama-vllm"}, f"a stale replace moved traffic back: {set(after)}"
    svc = sc.stable_service()
    assert svc is not None and svc.spec.selector == {"app": "llama-vllm"}
    assert svc.metadata.labels.get("team.example.com/owner") == "payments"
    assert "other.example.com/touched" in (svc.metadata.annotations or {})
    wait_for(
        lambda: sc.get_route().get("status", {}).get("activeBackend") == "inhouse", 10, "status"
    )
    writes = [e["verb"] for e in audit_writes(crd, operator_identity, sc.namespace, since)]
    patches = [
        e
        for e in audit_writes(crd, operator_identity, sc.namespace, since)
        if e["objectRef"]["resource"] == "services"
    ]
    # kube-apiserver 1.20 refuses a Service merge patch (409) when the other writer's update
    # lands between its read and its write; the operator then reads again and patches once more
    # at once. Exactly one accepted write; at most one refused before it (a second 409 in a row
    # would need another update within the same few milliseconds).
    codes = [e["responseStatus"]["code"] for e in patches]
    assert codes in ([200], [409, 200]), f"the operator's Service writes answered {codes}"

    # A last-writer-wins writer puts the old selector back at once (a stale copy), adding a
    # field of its own: the operator puts its selector back and keeps the other field.
    reverted_at = time.time()
    sc.core.patch_namespaced_service(
        name,
        sc.namespace,
        {
            "metadata": {"annotations": {"other.example.com/stale": "yes"}},
            "spec": {"selector": {"app": "vendor-egress"}},
        },
    )
    wait_for(lambda: sc.routed_to() == "llama-vllm", 15, "the reverted selector corrected")
    corrected = time.time() - reverted_at
    svc = sc.stable_service()
    assert svc is not None
    assert svc.metadata.annotations.get("other.example.com/stale") == "yes"
    assert svc.metadata.labels.get("team.example.com/owner") == "payments"
    time.sleep(2)
    assert len(sc.events("FailedOver")) == 1
    record(
        "4-conflicting-writer",
        other_writer_updates=other.updates,
        other_writer_conflicts_409=other.conflicts,
        operator_service_writes_at_switch=codes.count(200),
        operator_service_patches_refused_409=codes.count(409),
        operator_writes=len(writes),
        revert_corrected_s=round(corrected, 2),
    )
