"""Issue 13, scenario 6: the leader is killed (SIGKILL, no Lease release) during a failover.

Expectation: the standby takes the Lease once it has expired and completes the failover (the
routing write, status and one FailedOver Event) within the Lease duration plus the failover
floor (failureThreshold x interval) after the kill. Two moments: before the leader's routing
write (the standby must decide and switch) and right after it (the standby must write status
and the Event, and never switch back).
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack

import pytest

from tests.envtest.conftest import FAST_PROBE
from tests.fakes.openai_backend import Fault
from tests.faults.conftest import Sampler, record
from tests.harness.apiserver import Cluster
from tests.harness.kube import wait_for
from tests.harness.operator import OperatorProcess, running_operator
from tests.harness.scenario import canonical_scenario

pytestmark = pytest.mark.apiserver

LEASE_SECONDS = 15  # the default Lease duration (settings.leader_election_lease_seconds)
# The standby looks at the Lease every retry period (settings.leader_election_retry_seconds)
# and times expiry from when it saw the last renewal, as client-go does: takeover comes up to
# one retry period after the Lease duration.
RETRY_SECONDS = 2
FLOOR_SECONDS = FAST_PROBE["failureThreshold"] * FAST_PROBE["intervalSeconds"]


def _leader(replicas: list[OperatorProcess]) -> OperatorProcess | None:
    leaders = [p for p in replicas if p.metric("modelroute_leader") == 1.0]
    return leaders[0] if len(leaders) == 1 else None


@pytest.mark.parametrize("moment", ["before-routing-write", "after-switch"])
def test_leader_killed_during_a_failover(crd: Cluster, namespace: str, moment: str) -> None:
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
        sc.route["spec"]["failback"]["stabilizationSeconds"] = 60
        sc.create_route()
        wait_for(lambda: sc.routed_to() == "vendor-egress", 20, "initial route")
        leader = wait_for(lambda: _leader(replicas), 10, "one leader")
        standby = next(p for p in replicas if p is not leader)
        time.sleep(3)  # the initial status and Event are written
        with Sampler(sc.routed_to, 0.02) as routing:
            sc.vendor.set_fault(Fault.REFUSED)
            if moment == "before-routing-write":
                time.sleep(1.0)  # one failed probe: the leader has not decided yet
            else:
                wait_for(lambda: sc.routed_to() == "llama-vllm", 10, "the leader's switch", 0.01)
            killed_at = time.time()
            leader.kill()
            switched = wait_for(
                lambda: routing.first(lambda v: v == "llama-vllm"), 60, "the switch"
            )
            wait_for(
                lambda: sc.get_route().get("status", {}).get("activeBackend") == "inhouse",
                60,
                "status written by the new leader",
            )
            completed_at = time.time()
            wait_for(lambda: sc.events("FailedOver"), 10, "a FailedOver Event")
            # The standby takes over (after the dead leader's Lease expired) and must not
            # undo or repeat what the dead leader already wrote.
            wait_for(
                lambda: standby.metric("modelroute_leader") == 1.0, LEASE_SECONDS + 15, "takeover"
            )
            took_over_at = time.time()
            time.sleep(4)
        after = {v for t, v in routing.samples if t >= switched}
        assert after == {"llama-vllm"}, f"routing flapped: {after}"
        assert sc.get_route()["status"]["failoverCount"] == 1
        failed_over = len(sc.events("FailedOver"))
        took = completed_at - killed_at
        record(
            f"6-leader-killed-{moment}",
            lease_s=LEASE_SECONDS,
            floor_s=FLOOR_SECONDS,
            switch_after_kill_s=round(switched - killed_at, 2),
            takeover_after_kill_s=round(took_over_at - killed_at, 2),
            completed_after_kill_s=round(took, 2),
            failed_over_events=failed_over,
        )
        # The status poll adds up to its own period; the ceiling is generous for CI.
        assert took < LEASE_SECONDS + FLOOR_SECONDS + 10, f"completed {took:.1f}s after the kill"
        if os.environ.get("MODELROUTE_FAULT_STRICT") == "1":  # make faults
            bound = LEASE_SECONDS + RETRY_SECONDS + FLOOR_SECONDS
            assert switched - killed_at <= bound, f"switched {switched - killed_at:.1f}s after"
        assert failed_over <= 2
