"""Issue 13, scenario 7 end to end: a team trusts its in-house server's private CA itself.

The real API server and the real operator process, started without ``--ca-bundle``: nothing
cluster-wide trusts the CA.  Two routes in one namespace probe the same TLS backend (a loopback
server whose certificate a throw-away private CA signed).  The first names a Secret of its
namespace in ``caBundleSecretRef``; the second does not.  Status shows, in turn: the untrusted
certificate classified; the missing Secret classified and naming the field; the backend healthy
once the Secret exists; unhealthy again when the Secret is rotated to a CA that did not sign it,
and again with a value that is no PEM; healthy after the right CA is put back.  All the while
the second route's probe of the same URL stays untrusted, and nothing restarts.
"""

from __future__ import annotations

import base64
import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.faults import servers
from tests.faults.conftest import record
from tests.faults.servers import raw_server_thread
from tests.harness.apiserver import Cluster, Identity
from tests.harness.kube import GROUP, PLURAL, VERSION, wait_for
from tests.harness.operator import running_operator
from tests.harness.scenario import Scenario, canonical_scenario

pytestmark = pytest.mark.apiserver

FAST_PROBE = {"intervalSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 2}
UNTRUSTED = "TLS certificate verification failed: unable to get local issuer certificate"
# A changed message that decides nothing is written after 1 s, not the default 30.
DEFER = ["--status-defer-seconds=1"]
WAIT_S = 30  # a shared 2-core machine: generous, never a timing assertion


def _status(sc: Scenario, route: str, backend: str) -> dict[str, Any]:
    body = sc.custom.get_namespaced_custom_object(GROUP, VERSION, sc.namespace, PLURAL, route)
    for entry in (body.get("status") or {}).get("backends", []):
        if entry["name"] == backend:
            return dict(entry)
    return {}


def _until(sc: Scenario, route: str, check: Callable[[dict[str, Any]], bool], what: str) -> float:
    """Wait for the route's vendor status to pass ``check``; the seconds it took."""
    started = time.monotonic()
    try:
        wait_for(lambda: check(_status(sc, route, "vendor")), WAIT_S, f"{route}: {what}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last status {_status(sc, route, 'vendor')}") from None
    return time.monotonic() - started


def _untrusted(entry: dict[str, Any]) -> bool:
    return (entry.get("healthy"), entry.get("reason"), entry.get("message")) == (
        False,
        "Unavailable",
        UNTRUSTED,
    )


def _put_ca(sc: Scenario, pem: str) -> None:
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name="vendor-ca"),
        data={"ca.crt": base64.b64encode(pem.encode()).decode()},
    )
    try:
        sc.core.replace_namespaced_secret("vendor-ca", sc.namespace, secret)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        sc.core.create_namespaced_secret(sc.namespace, secret)


def _second_route(sc: Scenario) -> dict[str, Any]:
    """The same backends under another name and Service, without caBundleSecretRef."""
    other = copy.deepcopy(sc.route)
    other["metadata"] = {"name": "chat-other", "namespace": sc.namespace}
    other["spec"]["service"]["name"] = "chat-other-llm"
    return other


def test_a_ca_from_the_routes_own_secret_is_trusted_and_rotated_without_restart(
    crd: Cluster, namespace: str, operator_identity: Identity, tmp_path: Path
) -> None:
    (tmp_path / "vendor").mkdir()
    (tmp_path / "wrong").mkdir()
    vendor_ca = servers.make_private_ca(tmp_path / "vendor")
    wrong_ca = servers.make_private_ca(tmp_path / "wrong")
    with (
        raw_server_thread(servers.models_ok, vendor_ca.server_context()) as tls_vendor,
        canonical_scenario(crd, namespace, create_route=False, **FAST_PROBE) as sc,
        running_operator(operator_identity, crd.workdir, [namespace], DEFER) as operator,
    ):
        sc.route["spec"]["backends"][0]["endpoint"] = tls_vendor.url("localhost")
        sc.route["spec"]["failback"]["stabilizationSeconds"] = 2
        other = _second_route(sc)
        sc.create_route()
        sc.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, other)
        _until(sc, "chat", _untrusted, "untrusted certificate")
        wait_for(lambda: sc.routed_to() == "llama-vllm", WAIT_S, "failed over to in-house")

        vendor, inhouse = sc.route["spec"]["backends"]
        trusting = vendor | {"caBundleSecretRef": {"name": "vendor-ca"}}  # key: ca.crt
        sc.patch_route({"spec": {"backends": [trusting, inhouse]}})
        _until(
            sc,
            "chat",
            lambda b: (
                b.get("reason") == "SecretMissing"
                and b.get("message") == f"caBundleSecretRef: Secret {namespace}/vendor-ca not found"
            ),
            "missing Secret named",
        )

        _put_ca(sc, vendor_ca.ca_cert.read_text())
        trusted_s = _until(sc, "chat", lambda b: b.get("healthy") is True, "trusted via Secret")
        wait_for(lambda: sc.routed_to() == "vendor-egress", WAIT_S, "failback to the vendor")
        assert _untrusted(_status(sc, "chat-other", "vendor"))

        _put_ca(sc, wrong_ca.ca_cert.read_text())
        rotated_s = _until(sc, "chat", _untrusted, "untrusted again after a wrong rotation")
        _put_ca(sc, "not a certificate\n")
        _until(
            sc,
            "chat",
            lambda b: (
                b.get("reason") == "SecretMissing"
                and b.get("message")
                == f"caBundleSecretRef: key 'ca.crt' of Secret {namespace}/vendor-ca holds no PEM "
                "certificate"
            ),
            "a value that is no PEM, named",
        )
        _put_ca(sc, vendor_ca.ca_cert.read_text())
        _until(sc, "chat", lambda b: b.get("healthy") is True, "trusted again")

        assert _untrusted(_status(sc, "chat-other", "vendor"))
        assert operator.returncode is None  # no crash, no restart
        # The CA material is in no log line, status or Event.
        body = "".join(vendor_ca.ca_cert.read_text().splitlines()[1:3])
        seen = operator.logs() + str(sc.get_route()) + str(sc.events())
        assert body not in seen and "BEGIN CERTIFICATE" not in seen
    record(
        "caBundleSecretRef",
        secret_created_to_healthy_s=round(trusted_s, 1),
        wrong_rotation_to_unhealthy_s=round(rotated_s, 1),
        probe_interval_s=1,
    )
