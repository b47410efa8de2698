"""The routing-driver contract (tests/drivers/contract.py) for every registered driver, on the
real API server.

The driver gets a real ``KubeClient`` (the operator's identity and field manager) and real
``ObjectCache``s; other actors use an admin client with a field manager of their own. The watch
is played by reading objects back (``Contract.sync``). Every write the driver attempted is
counted by the contract and checked against the API server's audit log.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from modelroute import routing
from modelroute.api.models import GROUP, KIND, VERSION, ModelRouteSpec
from modelroute.core.types import RouteRef
from modelroute.kube.cache import ObjectKey
from modelroute.kube.client import MODELROUTES, KubeApi, KubeClient, ObjectKind
from modelroute.kube.credentials import load_credentials
from tests.drivers.contract import CASES, Contract
from tests.envtest.conftest import operator_writes
from tests.harness.apiserver import Cluster, Identity
from tests.harness.kube import wait_for

FIELD_MANAGER = "modelroute-operator"


class ApiWorld:
    """The real API server: the driver as the operator's identity, others as the admin."""

    def __init__(self, namespace: str, driver: KubeClient, admin: KubeClient) -> None:
        self._namespace = namespace
        self._driver = driver
        self.admin = admin

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def kube(self) -> KubeApi:
        return self._driver

    @property
    def field_manager(self) -> str | None:
        return FIELD_MANAGER

    async def create_route(self, name: str, spec: ModelRouteSpec) -> RouteRef:
        """A real ModelRoute (so the CRD validates the adapter's spec and the uid is real)."""
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        }
        created = await self.admin.create_object(MODELROUTES, self.namespace, body)
        return RouteRef(self.namespace, name, created["metadata"]["uid"])

    async def seed(self, kind: ObjectKind, body: dict[str, Any]) -> dict[str, Any]:
        return await self.admin.create_object(kind, self.namespace, body)

    async def mutate(
        self, kind: ObjectKind, key: ObjectKey, patch: dict[str, Any]
    ) -> dict[str, Any]:
        return await self.admin.patch_object(kind, key[0], key[1], patch)

    async def delete(self, kind: ObjectKind, key: ObjectKey) -> None:
        await self.admin.request("DELETE", kind.path(*key))

    async def read(self, kind: ObjectKind, key: ObjectKey) -> dict[str, Any] | None:
        return await self.admin.get_object(kind, *key)


@pytest.fixture
async def world(
    crd: Cluster, namespace: str, operator_identity: Identity
) -> AsyncIterator[ApiWorld]:
    driver = KubeClient(
        load_credentials(str(operator_identity.kubeconfig)), field_manager=FIELD_MANAGER
    )
    admin = KubeClient(load_credentials(str(crd.kubeconfig)), field_manager="another-actor")
    try:
        yield ApiWorld(namespace, driver, admin)
    finally:
        await driver.close()
        await admin.close()


def audited(cluster: Cluster, identity: Identity, namespace: str, since: float) -> list[str]:
    """The driver identity's writes in the audit log, as 'verb resource' (names vary by verb)."""
    return sorted(
        line.split("/")[0] for line in operator_writes(cluster, identity, namespace, since)
    )


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("driver", routing.names())
async def test_driver_contract(
    driver: str,
    case: str,
    world: ApiWorld,
    crd: Cluster,
    operator_identity: Identity,
    request: pytest.FixtureRequest,
) -> None:
    if any(kind.group for kind in routing.info(driver).watched_kinds):
        request.getfixturevalue("upstream_crds")  # Gateway API, AI Gateway, ...
    since = time.time()
    contract = await Contract.start(driver, world)
    await CASES[case](contract)
    # The audit log saw exactly the writes the contract counted (refused ones included).
    counted = sorted(f"{c.verb} {c.resource}" for c in contract.kube.history)
    wait_for(
        lambda: audited(crd, operator_identity, world.namespace, since) == counted,
        5,
        f"the audit log to show the driver's writes {counted}: "
        f"{audited(crd, operator_identity, world.namespace, since)}",
    )
