"""Issue 13, scenario 7 end to end: transport faults as the admin sees them in status.

The real API server and the real operator process: one route whose preferred backend is a TLS
vendor behind a private CA and whose second backend accepts connections but never answers.
Status names each failure's class and message, the healthy in-house backend carries the
traffic meanwhile, and the same operator started with ``--ca-bundle`` trusts the vendor.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.faults import servers
from tests.faults.servers import PrivateCA, raw_server_thread
from tests.harness.apiserver import Cluster, Identity
from tests.harness.kube import wait_for
from tests.harness.operator import running_operator
from tests.harness.scenario import Scenario, canonical_scenario

pytestmark = pytest.mark.apiserver

FAST_PROBE = {"intervalSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 2}


def _failing(sc: Scenario, backend: str) -> dict[str, Any]:
    return wait_for(
        lambda: (
            (b := sc.backend_status(backend))
            and b.get("healthy") is False
            and b.get("reason")
            and b
        ),
        15,
        f"{backend} unhealthy with a reason",
    )


def test_transport_faults_are_classified_in_status_and_a_private_ca_can_be_trusted(
    crd: Cluster, namespace: str, operator_identity: Identity, tmp_path: Path
) -> None:
    ca: PrivateCA = servers.make_private_ca(tmp_path)
    with (
        raw_server_thread(servers.models_ok, ca.server_context()) as tls_vendor,
        raw_server_thread(servers.never_answers) as silent,
        canonical_scenario(crd, namespace, create_route=False, **FAST_PROBE) as sc,
    ):
        backends = sc.route["spec"]["backends"]
        backends[0]["endpoint"] = tls_vendor.url("localhost")
        hung = copy.deepcopy(backends[1]) | {"name": "hung", "endpoint": silent.url()}
        backends.insert(1, hung)
        backends[1]["priority"], backends[2]["priority"] = 1, 2
        sc.route["spec"]["failback"]["stabilizationSeconds"] = 2
        with running_operator(operator_identity, crd.workdir, namespaces=[namespace]):
            sc.create_route()
            vendor = _failing(sc, "vendor")
            assert vendor["reason"] == "Unavailable"
            assert vendor["message"] == (
                "TLS certificate verification failed: unable to get local issuer certificate"
            )
            stuck = _failing(sc, "hung")
            assert (stuck["reason"], stuck["message"]) == ("Unavailable", "timeout after 1s")
            # Neither disturbs the healthy backend, which carries the traffic.
            wait_for(lambda: sc.routed_to() == "llama-vllm", 15, "routed to in-house")
            assert sc.backend_status("inhouse")["healthy"] is True

        trust = ["--ca-bundle", str(ca.ca_cert)]
        with running_operator(operator_identity, crd.workdir, [namespace], extra_args=trust):
            wait_for(lambda: sc.backend_status("vendor").get("healthy") is True, 20, "trusted")
            wait_for(lambda: sc.routed_to() == "vendor-egress", 30, "failback to the vendor")
            assert sc.backend_status("hung")["message"] == "timeout after 1s"
