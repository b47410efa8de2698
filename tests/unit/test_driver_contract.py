"""The routing-driver contract (tests/drivers/contract.py) for every registered driver, on FakeKube.

The same cases run against the real API server in tests/envtest/test_driver_contract.py.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelroute import routing
from modelroute.api.models import GROUP, KIND, VERSION, ModelRouteSpec
from modelroute.core.types import RouteRef
from modelroute.kube.cache import ObjectKey
from modelroute.kube.client import MODELROUTES, KubeApi, ObjectKind
from tests.drivers.contract import ADAPTERS, CASES, Contract, adapter_for
from tests.fakes.kube import FakeKube

NS = "ai"


class FakeWorld:
    """FakeKube as the API server; other actors act on it directly (uncounted)."""

    def __init__(self, namespace: str = NS) -> None:
        self.fake = FakeKube()
        self._namespace = namespace

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def kube(self) -> KubeApi:
        return self.fake

    @property
    def field_manager(self) -> str | None:
        return None  # FakeKube keeps no managedFields of its own

    async def create_route(self, name: str, spec: ModelRouteSpec) -> RouteRef:
        """A stored ModelRoute (adoption reads whether a route still exists)."""
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        }
        created = self.fake.seed(body, kind=MODELROUTES, watched=False)
        return RouteRef(self.namespace, name, created["metadata"]["uid"])

    async def seed(self, kind: ObjectKind, body: dict[str, Any]) -> dict[str, Any]:
        return self.fake.seed(body, kind=kind)

    async def mutate(
        self, kind: ObjectKind, key: ObjectKey, patch: dict[str, Any]
    ) -> dict[str, Any]:
        return self.fake.mutate(key, patch, kind=kind)

    async def delete(self, kind: ObjectKind, key: ObjectKey) -> None:
        self.fake.delete(key, kind=kind)

    async def read(self, kind: ObjectKind, key: ObjectKey) -> dict[str, Any] | None:
        found = self.fake.store(kind).get(key)
        return copy.deepcopy(found) if found is not None else None


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("driver", routing.names())
async def test_driver_contract(driver: str, case: str) -> None:
    contract = await Contract.start(driver, FakeWorld())
    await CASES[case](contract)


def test_a_driver_without_an_adapter_fails_the_suite() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"'NoSuchDriver' is registered .* no contract"):
        adapter_for("NoSuchDriver", NS)


def test_every_adapter_belongs_to_a_registered_driver() -> None:
    assert set(ADAPTERS) <= set(routing.names())
