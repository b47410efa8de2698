"""The routing-driver contract (tests/drivers/contract.py) for every registered driver, on FakeKube.

The same cases run against the real API server in tests/envtest/test_driver_contract.py.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelroute import routing
from modelroute.api.models import GROUP, KIND, VERSION, ModelRouteSpec
from modelroute.core.types import RouteRef, TrafficSplit
from modelroute.kube.cache import ObjectKey
from modelroute.kube.client import MODELROUTES, ApiError, KubeApi, ObjectKind
from tests.drivers.contract import (
    ADAPTERS,
    CASES,
    OTHERS_LABEL,
    Contract,
    adapter_for,
    leaf_paths,
    merged,
)
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


# Another writer's label, set by the change that lands under a refused patch.
OTHERS = {"metadata": {"labels": dict([OTHERS_LABEL])}}


async def _on_first(driver: str) -> tuple[FakeWorld, Contract, TrafficSplit]:
    """A driver whose object carries its first backend, seen by the watch; and the split that
    switches to the second."""
    world = FakeWorld()
    c = await Contract.start(driver, world)
    await c.apply(c.single(0))
    await c.sync()
    return world, c, c.single(1)


def _made(c: Contract) -> list[tuple[str, bool]]:
    """The driver's write attempts since the last reset: (verb, accepted)."""
    return [(call.verb, call.ok) for call in c.kube.calls]


def _keeps_others_label(body: dict[str, Any]) -> bool:
    return (body["metadata"].get("labels") or {}).get(OTHERS_LABEL[0]) == OTHERS_LABEL[1]


@pytest.mark.parametrize("driver", routing.names())
async def test_a_patch_refused_with_409_is_diffed_again_on_a_fresh_read(driver: str) -> None:
    """Another writer's update lands between the API server's read and write of a switch: the
    patch is refused (409), read again and diffed at once. Whatever the other writer changed
    in a managed field (the watch has not shown it yet) ends as the switch wants it, their
    label stays, and afterwards nothing is written."""
    world, c, second = await _on_first(driver)
    for name, drift in c.adapter.drifts().items():
        await c.apply(c.single(0))
        await c.sync()
        world.fake.patch_conflicts = [merged(drift, OTHERS)]
        c.kube.reset()
        state = await c.apply(second)
        made = _made(c)
        # A second patch only when the other writer's change did not already make it so (if
        # one were wrongly skipped, the write after the watch's echo below would show it).
        assert made in ([("patch", False), ("patch", True)], [("patch", False)]), (name, made)
        assert state == c.state(second, wrote=len(made) == 2), name
        assert _keeps_others_label(await c.routed(second)), name
        await c.sync()
        c.kube.reset()
        assert await c.apply(second) == c.state(second), name
        c.no_write(f"after the re-diffed patch ({name}: {[list(p) for p in leaf_paths(drift)]})")
    assert world.fake.patch_conflicts == []


@pytest.mark.parametrize("driver", routing.names())
async def test_a_second_409_in_a_row_is_left_to_the_reconcile_retry(driver: str) -> None:
    """A patch refused twice is not sent a third time in a loop: the 409 reaches the worker,
    whose back-off retries; the cache has the fresh read, so that retry diffs against it."""
    world, c, second = await _on_first(driver)
    world.fake.patch_conflicts = [OTHERS, OTHERS]
    c.kube.reset()
    with pytest.raises(ApiError) as refused:
        await c.apply(second)
    assert refused.value.status == 409
    assert _made(c) == [("patch", False), ("patch", False)]
    cached = await c.caches[c.info.kind].get(c.key)
    assert cached is not None and _keeps_others_label(cached)
    c.kube.reset()
    assert await c.apply(second) == c.state(second, wrote=True)
    c.one_write("patch", "the reconcile's retry")
    await c.routed(second)


@pytest.mark.parametrize("driver", routing.names())
async def test_an_object_deleted_under_a_refused_patch_is_created_again_at_once(
    driver: str,
) -> None:
    """The other writer deleted the object while the switch's patch was refused: the fresh read
    finds nothing, and the object is created again with the switch in the same apply."""
    world, c, second = await _on_first(driver)
    world.fake.patch_conflicts = [None]
    c.kube.reset()
    assert await c.apply(second) == c.state(second, wrote=True)
    assert _made(c) == [("patch", False), ("create", True)], _made(c)
    c.owned(await c.routed(second))
    await c.sync()
    c.kube.reset()
    assert await c.apply(second) == c.state(second)
    c.no_write("after the object was created again")
