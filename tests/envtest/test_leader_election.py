"""Two replicas with Lease-based leader election: one works, the other stands by and takes over."""

from __future__ import annotations

import time
from contextlib import ExitStack

from kubernetes import client

from tests.envtest.conftest import FAST_PROBE, operator_writes
from tests.fakes.openai_backend import Fault
from tests.harness.apiserver import Cluster
from tests.harness.kube import wait_for
from tests.harness.operator import OperatorProcess, running_operator
from tests.harness.scenario import canonical_scenario


def _leader(*processes: OperatorProcess) -> OperatorProcess:
    leaders = [p for p in processes if p.metric("modelroute_leader") == 1.0]
    assert len(leaders) == 1, f"expected one leader, got {len(leaders)}"
    return leaders[0]


def test_one_replica_leads_and_the_other_takes_over(crd: Cluster, namespace: str) -> None:
    identities = [crd.mint_user(f"modelroute-replica-{n}", ["system:masters"]) for n in "ab"]
    args = ["--leader-election", "--leader-election-namespace", namespace]
    with (
        ExitStack() as stack,
        canonical_scenario(crd, namespace, create_route=False, **FAST_PROBE) as sc,
    ):
        replicas = [
            stack.enter_context(running_operator(i, crd.workdir, [namespace], args))
            for i in identities
        ]
        sc.route["spec"]["failback"]["stabilizationSeconds"] = 1
        since = time.time()
        sc.create_route()
        wait_for(lambda: sc.routed_to() == "vendor-egress", 20, "initial route")
        leader = wait_for(lambda: _leader(*replicas), 10, "one leader")
        standby = next(p for p in replicas if p is not leader)
        lease = client.CoordinationV1Api(crd.api_client()).read_namespaced_lease(
            "modelroute-operator", namespace
        )
        assert lease.spec.holder_identity
        # The standby writes nothing but never fought for the Service or status either.
        writes = operator_writes(crd, standby.identity, namespace, since)
        assert [w for w in writes if not w.startswith(("create leases", "update leases"))] == []

        sc.vendor.set_fault(Fault.REFUSED)
        wait_for(lambda: sc.routed_to() == "llama-vllm", 10, "failover by the leader")
        sc.vendor.clear_fault()
        wait_for(lambda: sc.routed_to() == "vendor-egress", 20, "failback by the leader")

        # A graceful stop releases the Lease: the standby takes over without waiting for expiry.
        leader.stop()
        wait_for(lambda: standby.metric("modelroute_leader") == 1.0, 15, "takeover")
        sc.vendor.set_fault(Fault.REFUSED)
        wait_for(lambda: sc.routed_to() == "llama-vllm", 15, "failover by the new leader")
        # Routing is written first, status right after it.
        wait_for(lambda: sc.get_route()["status"]["failoverCount"] == 3, 5, "failoverCount 3")
