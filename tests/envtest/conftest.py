"""Fixtures for end-to-end tests: an operator process per test, the canonical scenario."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.apiserver import Cluster, Identity
from tests.harness.kube import wait_for
from tests.harness.operator import OperatorProcess, running_operator
from tests.harness.scenario import Scenario, canonical_scenario

# The acceptance settings: interval 1 s, failureThreshold 2 (failover floor 2 s).
FAST_PROBE = {
    "intervalSeconds": 1,
    "timeoutSeconds": 1,
    "failureThreshold": 2,
    "successThreshold": 2,
}
STABILIZATION_SECONDS = 3


@pytest.fixture
def operator(
    crd: Cluster, namespace: str, operator_identity: Identity
) -> Iterator[OperatorProcess]:
    """An operator process watching only this test's namespace."""
    with running_operator(operator_identity, crd.workdir, namespaces=[namespace]) as process:
        yield process


@pytest.fixture
def scenario(crd: Cluster, namespace: str, operator: OperatorProcess) -> Iterator[Scenario]:
    """The canonical example with fast probes and a short stabilization, routed to the vendor."""
    with canonical_scenario(crd, namespace, create_route=False, **FAST_PROBE) as sc:
        sc.route["spec"]["failback"]["stabilizationSeconds"] = STABILIZATION_SECONDS
        sc.create_route()
        wait_for(lambda: sc.routed_to() == "vendor-egress", 15, "initial route to the vendor")
        wait_for(lambda: (sc.condition("Ready") or {}).get("status") == "True", 10, "Ready=True")
        yield sc


def operator_writes(
    cluster: Cluster, identity: Identity, namespace: str, since: float
) -> list[str]:
    """The operator's writes in ``namespace`` since ``since``, as 'verb resource/name' lines."""
    from tests.harness.apiserver import WRITE_VERBS

    if cluster.audit_log is None:
        pytest.skip(
            "counting writes needs the local API server's audit log "
            "(not available with USE_EXISTING_CLUSTER=1)"
        )
    events = cluster.audit_events(username=identity.username, verbs=WRITE_VERBS, since=since)
    return [
        f"{e['verb']} {e['objectRef'].get('resource')}/{e['objectRef'].get('subresource', '')}"
        f"{e['objectRef'].get('name', '')}"
        for e in events
        if e.get("objectRef", {}).get("namespace") == namespace
    ]
