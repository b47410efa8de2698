"""The operator in a Pod authenticates with its ServiceAccount token, read by the `kubernetes`
package's own in-cluster loader, against the real API server.

Every other test runs the operator from a kubeconfig. In a Pod the loader reads the token file
and stores ``bearer <token>``; the operator's client once sent that as
``Authorization: Bearer bearer <token>``, which the API server refuses with 401.
"""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes import client
from kubernetes.config.incluster_config import (
    SERVICE_HOST_ENV_NAME,
    SERVICE_PORT_ENV_NAME,
    InClusterConfigLoader,
)

from modelroute.kube.client import SERVICES, ApiError, KubeClient
from modelroute.kube.credentials import credentials_from_configuration
from modelroute.kube.stream import WatchClient
from tests.harness.apiserver import Cluster


def pod_files(crd: Cluster, tmp_path: Path) -> InClusterConfigLoader:
    """What a Pod of the operator has: a ServiceAccount token file, the cluster's CA and the
    service environment variables, for the package's in-cluster loader."""
    identity = crd.mint_service_account("modelroute-in-cluster", "operator")
    kubeconfig = yaml.safe_load(identity.kubeconfig.read_text())
    (tmp_path / "token").write_text(kubeconfig["users"][0]["user"]["token"])
    (tmp_path / "ca.crt").write_bytes(base64.b64decode(crd.ca_data or ""))
    server = urlsplit(crd.server)
    return InClusterConfigLoader(
        token_filename=str(tmp_path / "token"),
        cert_filename=str(tmp_path / "ca.crt"),
        environ={SERVICE_HOST_ENV_NAME: server.hostname, SERVICE_PORT_ENV_NAME: str(server.port)},
    )


async def test_the_service_account_token_from_the_in_cluster_loader_authenticates(
    crd: Cluster, tmp_path: Path
) -> None:
    if not crd.is_local:
        pytest.skip("the token is minted with the harness's own API server")
    configuration = client.Configuration()
    pod_files(crd, tmp_path).load_and_set(configuration)
    credentials = credentials_from_configuration(configuration)
    assert credentials.server == crd.server
    kube = KubeClient(credentials, field_manager="modelroute-test")
    watches = WatchClient(credentials, request_timeout_s=30, idle_timeout_s=30)
    try:
        # Discovery is open to every authenticated identity: a wrong header gets 401.
        resources = await kube.api_resources("v1")
        assert resources is not None and "services" in resources
        # This ServiceAccount has no RBAC: authenticated, then forbidden (403), not 401.
        with pytest.raises(ApiError) as forbidden:
            await watches.list_page(SERVICES, "default", limit=1)
        assert forbidden.value.status == 403
    finally:
        await kube.close()
        await watches.close()
