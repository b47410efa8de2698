"""The start-up list (control.prelist): routes start before kopf hands them over, kopf's
delivery of them is a no-op, and a route deleted before kopf listed is not kept running."""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from modelroute.control import prelist
from modelroute.kube.client import ApiError
from modelroute.settings import Settings
from tests.fakes.openai_backend import FakeBackend
from tests.unit import test_controller
from tests.unit.test_controller import NS, World, _route, _until

world = test_controller.world  # the controller's fixture: FakeKube, real caches and probe hub


class Pages:
    """A fake GET of the ModelRoute collection, in pages of ``size``; records the queries."""

    def __init__(self, items: list[dict[str, Any]], size: int = 500) -> None:
        self.items, self.size, self.paths = items, size, list[str]()
        self.urgent = list[bool]()

    async def __call__(self, path: str, *, urgent: bool = False) -> dict[str, Any] | None:
        self.paths.append(path)
        self.urgent.append(urgent)
        start = int(parse_qs(urlsplit(path).query).get("continue", ["0"])[0])
        end = start + self.size
        token = str(end) if end < len(self.items) else ""
        return {"items": self.items[start:end], "metadata": {"continue": token}}


def _named(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}"}}


async def test_lists_every_page_of_each_namespace_with_the_shard_selector() -> None:
    get = Pages([_named(f"r{i}") for i in range(5)], size=2)
    settings = Settings(namespaces=("ai", "ml"), label_selector="shard=a")
    items = await prelist.list_routes(get, settings)
    assert len(items) == 10  # the fake serves the same five in each namespace
    assert len(get.paths) == 6  # three pages each
    first = urlsplit(get.paths[0])
    assert first.path == "/apis/modelroute.dev/v1alpha1/namespaces/ai/modelroutes"
    assert parse_qs(first.query) == {"limit": ["500"], "labelSelector": ["shard=a"]}
    assert parse_qs(urlsplit(get.paths[1]).query)["continue"] == ["2"]


async def test_lists_cluster_wide_without_namespaces() -> None:
    get = Pages([])
    assert await prelist.list_routes(get, Settings()) == []
    assert urlsplit(get.paths[0]).path == "/apis/modelroute.dev/v1alpha1/modelroutes"
    assert "labelSelector" not in get.paths[0]


async def test_listed_routes_start_at_once_and_kopf_delivery_is_a_no_op(world: World) -> None:
    async with FakeBackend(("gpt-4o",)) as vendor, FakeBackend(("llama",)) as inhouse:
        body = _route(vendor.url, inhouse.url)
        task = await prelist.start_listed(world.controller, Pages([body]), Settings())
        assert task is not None
        worker = world.controller.workers[(NS, "chat")]
        assert world.controller.unconfirmed == 1
        await _until(lambda: world.status().get("activeBackend") == "vendor")
        # kopf's listed copy (older resourceVersion, same spec): the same worker carries on.
        await world.controller.on_route_event(None, copy.deepcopy(body))
        assert world.controller.workers[(NS, "chat")] is worker
        assert world.controller.unconfirmed == 0
        task.cancel()  # it would end at its next look (nothing left to check)


async def test_a_route_deleted_before_kopf_listed_is_removed(world: World) -> None:
    async with FakeBackend(("gpt-4o",)) as vendor, FakeBackend(("llama",)) as inhouse:
        await world.controller.adopt_listed([_route(vendor.url, inhouse.url)])
        assert (NS, "chat") in world.controller.workers
        # kopf lists without it and never says DELETED; the next list of our own lacks it.
        await prelist.recheck(world.controller, Pages([]), Settings(), every=0.0)
        assert world.controller.workers == {}
        assert world.controller.unconfirmed == 0


async def test_a_listed_route_still_there_waits_for_kopf(world: World) -> None:
    async with FakeBackend(("gpt-4o",)) as vendor, FakeBackend(("llama",)) as inhouse:
        body = _route(vendor.url, inhouse.url)
        await world.controller.adopt_listed([body])
        await world.controller.sweep_unconfirmed([copy.deepcopy(body)])
        assert (NS, "chat") in world.controller.workers
        assert world.controller.unconfirmed == 1
        # Recreated under the same name: the old route's worker goes, kopf starts the new one.
        recreated = copy.deepcopy(body)
        recreated["metadata"]["uid"] = "uid-2"
        await world.controller.sweep_unconfirmed([recreated])
        assert world.controller.workers == {}
        await world.controller.on_route_event(None, recreated)
        assert world.controller.workers[(NS, "chat")].route.ref.uid == "uid-2"


async def test_a_route_kopf_delivered_is_left_to_kopf(world: World) -> None:
    async with FakeBackend(("gpt-4o",)) as vendor, FakeBackend(("llama",)) as inhouse:
        body = _route(vendor.url, inhouse.url)
        await world.controller.adopt_listed([body])
        await world.controller.on_route_event(None, copy.deepcopy(body))
        # Deleted after kopf listed: kopf's watch says DELETED; a list of ours drops nothing.
        await world.controller.sweep_unconfirmed([])
        assert (NS, "chat") in world.controller.workers


async def test_a_standby_that_starts_leading_still_sweeps_a_route_deleted_before_kopf_listed(
    world: World,
) -> None:
    # A rolling update: the new pod lists as a standby, a route is deleted before kopf lists,
    # the old pod hands the Lease over: taking the lead must not confirm the listed routes.
    async with FakeBackend(("gpt-4o",)) as vendor, FakeBackend(("llama",)) as inhouse:
        await world.controller.stop_leading()
        await world.controller.adopt_listed([_route(vendor.url, inhouse.url)])
        assert world.controller.workers == {}
        await world.controller.start_leading()
        assert (NS, "chat") in world.controller.workers
        assert world.controller.unconfirmed == 1
        await prelist.recheck(world.controller, Pages([]), Settings(), every=0.0)
        assert world.controller.workers == {}


class Failing(Pages):
    """A fake GET that raises ``error`` on its first ``times`` calls, then lists."""

    def __init__(self, items: list[dict[str, Any]], error: Exception, times: int = 1) -> None:
        super().__init__(items)
        self.error, self.times = error, times

    async def __call__(self, path: str, *, urgent: bool = False) -> dict[str, Any] | None:
        if self.times > 0:
            self.times -= 1
            self.paths.append(path)
            raise self.error
        return await super().__call__(path, urgent=urgent)


async def test_a_bug_in_a_recheck_is_logged_and_the_next_round_still_sweeps(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeBackend(("gpt-4o",)) as vendor, FakeBackend(("llama",)) as inhouse:
        await world.controller.adopt_listed([_route(vendor.url, inhouse.url)])
        get = Failing([], KeyError("items"))
        with caplog.at_level(logging.ERROR, logger="modelroute.control.prelist"):
            await prelist.recheck(world.controller, get, Settings(), every=0.0)
        assert world.controller.workers == {}  # swept by the round after the failure
        failed = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(failed) == 1 and failed[0].exc_info is not None  # with its traceback


async def test_rechecks_end_after_a_bounded_number_of_lists_naming_the_routes(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeBackend(("gpt-4o",)) as vendor, FakeBackend(("llama",)) as inhouse:
        body = _route(vendor.url, inhouse.url)
        await world.controller.adopt_listed([body])
        get = Pages([copy.deepcopy(body)])  # still there, and kopf never delivers it
        with caplog.at_level(logging.WARNING, logger="modelroute.control.prelist"):
            await prelist.recheck(world.controller, get, Settings(), every=0.0, rounds=3)
        assert len(get.paths) == 3
        assert (NS, "chat") in world.controller.workers  # left running, for kopf
        assert f"{NS}/chat" in caplog.text and "after 3 lists" in caplog.text


class HeldPages(Pages):
    """Pages, but every page after the first waits until ``release`` is set."""

    def __init__(self, items: list[dict[str, Any]], size: int, fail: bool = False) -> None:
        super().__init__(items, size)
        self.release, self.fail = asyncio.Event(), fail
        self.asked = list[str]()

    async def __call__(self, path: str, *, urgent: bool = False) -> dict[str, Any] | None:
        self.asked.append(path)
        if "continue" in path:
            await self.release.wait()
            if self.fail:
                raise ApiError(500, "InternalError", "etcd went away")
        return await super().__call__(path, urgent=urgent)


async def test_a_page_starts_its_routes_while_the_next_is_listed(world: World) -> None:
    async with FakeBackend(("gpt-4o",)) as vendor, FakeBackend(("llama",)) as inhouse:
        bodies = [_renamed(_route(vendor.url, inhouse.url), f"r{i}") for i in range(3)]
        get = HeldPages(bodies, size=2)
        listing = asyncio.create_task(prelist.start_listed(world.controller, get, Settings()))
        await _until(lambda: len(world.controller.workers) == 2)
        assert len(get.asked) == 2  # the second page was asked for before the first started
        assert not listing.done()
        get.release.set()
        task = await listing
        assert task is not None
        assert sorted(name for _, name in world.controller.workers) == ["r0", "r1", "r2"]
        task.cancel()


async def test_routes_of_a_partial_list_are_still_checked_for_deletion(world: World) -> None:
    async with FakeBackend(("gpt-4o",)) as vendor, FakeBackend(("llama",)) as inhouse:
        bodies = [_renamed(_route(vendor.url, inhouse.url), f"r{i}") for i in range(3)]
        get = HeldPages(bodies, size=2, fail=True)
        get.release.set()
        task = await prelist.start_listed(world.controller, get, Settings())
        assert task is not None  # the first page's routes run: kopf confirms or the check drops
        assert world.controller.unconfirmed == 2
        task.cancel()


def _renamed(body: dict[str, Any], name: str) -> dict[str, Any]:
    body = copy.deepcopy(body)
    body["metadata"].update(name=name, uid=f"uid-{name}")
    body["spec"]["service"]["name"] = f"{name}-llm"
    return body


async def test_the_start_up_list_goes_in_the_routing_lane_and_the_rechecks_do_not(
    world: World,
) -> None:
    # The first pages' routes route at once: in the normal lane the next page waited for all
    # of their routing writes.
    async with FakeBackend(("gpt-4o",)) as vendor, FakeBackend(("llama",)) as inhouse:
        bodies = [_renamed(_route(vendor.url, inhouse.url), f"r{i}") for i in range(3)]
        get = Pages(bodies, size=2)
        task = await prelist.start_listed(world.controller, get, Settings())
        assert task is not None
        task.cancel()
        assert get.urgent == [True, True]
        await prelist.recheck(world.controller, get, Settings(), every=0.0, rounds=1)
        assert get.urgent[2:] == [False, False]
