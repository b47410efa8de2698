"""Tests for the watch-fed object cache: subscriptions, one read per miss, event ordering."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from modelroute.kube.cache import ObjectCache, object_key, slim_object, slim_secret
from modelroute.kube.client import ApiError

ROUTE_A = ("ai", "chat")
ROUTE_B = ("ai", "embed")
KEY = ("ai", "llama-vllm")
OTHER = ("ai", "vendor-egress")


def svc(name: str = "llama-vllm", rv: int | str | None = 5, **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ai"}
    if rv is not None:
        meta["resourceVersion"] = str(rv)
    return {"metadata": meta, "spec": spec}


class FakeFetch:
    """The API read behind the cache: answers from ``objects`` and counts the calls."""

    def __init__(self, objects: dict[tuple[str, str], dict[str, Any]] | None = None) -> None:
        self.objects = dict(objects or {})
        self.calls: list[tuple[str, str]] = []
        self.during: Callable[[], None] | None = None  # runs while the read is "in flight"

    async def __call__(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append((namespace, name))
        if self.during is not None:
            self.during()
        return self.objects.get((namespace, name))


def identity(body: dict[str, Any]) -> dict[str, Any]:
    return body


def make(
    objects: dict[tuple[str, str], dict[str, Any]] | None = None,
    slim: Callable[[dict[str, Any]], dict[str, Any]] = identity,
) -> tuple[ObjectCache, FakeFetch]:
    fetch = FakeFetch(objects)
    return ObjectCache(fetch, slim), fetch


def test_object_key() -> None:
    assert object_key(svc()) == KEY
    assert object_key({}) == ("", "")


async def test_miss_is_fetched_once_then_cached() -> None:
    cache, fetch = make({KEY: svc(app="llama")})
    cache.subscribe(ROUTE_A, [KEY])
    first = await cache.get(KEY)
    second = await cache.get(KEY)
    assert first == second == svc(app="llama")
    assert fetch.calls == [KEY]
    assert cache.fetches == 1
    assert len(cache) == 1


async def test_missing_object_is_cached_as_missing() -> None:
    cache, fetch = make({})
    cache.subscribe(ROUTE_A, [KEY])
    assert await cache.get(KEY) is None
    assert await cache.get(KEY) is None
    assert fetch.calls == [KEY]
    assert len(cache) == 0  # a negative entry is not an object


async def test_unsubscribed_key_is_read_every_time_and_not_stored() -> None:
    cache, fetch = make({KEY: svc()})
    assert await cache.get(KEY) == svc()
    assert await cache.get(KEY) == svc()
    assert fetch.calls == [KEY, KEY]
    assert len(cache) == 0


async def test_slim_applies_to_fetched_objects() -> None:
    body = {**svc(), "status": {"x": 1}}
    body["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    cache, _ = make({KEY: body}, slim=slim_object)
    cache.subscribe(ROUTE_A, [KEY])
    got = await cache.get(KEY)
    assert got is not None
    assert "managedFields" not in got["metadata"]
    assert got["status"] == {"x": 1}  # a gateway's verdict lives in status


def test_observe_returns_subscribers() -> None:
    cache, _ = make()
    cache.subscribe(ROUTE_A, [KEY, OTHER])
    cache.subscribe(ROUTE_B, [KEY])
    assert cache.observe("MODIFIED", svc()) == {ROUTE_A, ROUTE_B}
    assert cache.observe("MODIFIED", svc("vendor-egress")) == {ROUTE_A}


async def test_observe_ignores_unsubscribed_keys_and_does_not_store_them() -> None:
    cache, fetch = make({KEY: svc(rv=3, app="from-api")})
    assert cache.observe("ADDED", svc(rv=9, app="from-watch")) == set()
    assert len(cache) == 0
    cache.subscribe(ROUTE_A, [KEY])
    assert await cache.get(KEY) == svc(rv=3, app="from-api")  # read, not the ignored event
    assert fetch.calls == [KEY]


async def test_observe_fills_and_refreshes_the_entry() -> None:
    cache, fetch = make({})
    cache.subscribe(ROUTE_A, [KEY])
    assert await cache.get(KEY) is None
    cache.observe("ADDED", svc(rv=6, app="v1"))
    assert await cache.get(KEY) == svc(rv=6, app="v1")
    cache.observe("MODIFIED", svc(rv=7, app="v2"))
    assert await cache.get(KEY) == svc(rv=7, app="v2")
    assert fetch.calls == [KEY]


async def test_deleted_event_caches_missing() -> None:
    cache, fetch = make({KEY: svc(rv=5)})
    cache.subscribe(ROUTE_A, [KEY])
    assert await cache.get(KEY) is not None
    assert cache.observe("DELETED", svc(rv=5)) == {ROUTE_A}
    assert await cache.get(KEY) is None
    assert fetch.calls == [KEY]  # no read after the deletion: the watch said it is gone
    assert len(cache) == 0


@pytest.mark.parametrize("subscribed", [True, False], ids=["subscribed", "unsubscribed"])
async def test_a_deleted_older_than_a_write_through_is_ignored(subscribed: bool) -> None:
    """A relist's synthetic DELETED carries the LIST's resourceVersion: the worker may have
    created the object again since (put at a newer version)."""
    cache = ObjectCache(FakeFetch(), identity, keep_unsubscribed=10)
    if subscribed:
        cache.subscribe(ROUTE_A, [KEY])
    cache.put(svc(rv=10, app="written"))
    assert cache.observe("DELETED", svc(rv=9)) == set()
    assert await cache.get(KEY) == svc(rv=10, app="written")
    cache.observe("DELETED", svc(rv=11))
    assert len(cache) == 0


@pytest.mark.parametrize(
    ("event_rv", "expected"),
    [
        pytest.param(9, svc(rv=10, app="written"), id="older-event-ignored"),
        pytest.param(10, svc(rv=10, app="event"), id="same-version-taken"),
        pytest.param(11, svc(rv=11, app="event"), id="newer-event-taken"),
    ],
)
async def test_event_older_than_write_through_does_not_overwrite(
    event_rv: int, expected: dict[str, Any]
) -> None:
    cache, fetch = make()
    cache.subscribe(ROUTE_A, [KEY])
    cache.put(svc(rv=10, app="written"))
    assert cache.observe("MODIFIED", svc(rv=event_rv, app="event")) == {ROUTE_A}
    assert await cache.get(KEY) == expected
    assert fetch.calls == []


async def test_the_echo_of_a_write_through_wakes_nobody() -> None:
    cache, fetch = make()
    cache.subscribe(ROUTE_A, [KEY])
    cache.put(svc(rv=10, app="written"))
    assert cache.observe("MODIFIED", svc(rv=10, app="written")) == set()
    assert cache.observe("MODIFIED", svc(rv=11, app="changed")) == {ROUTE_A}
    assert await cache.get(KEY) == svc(rv=11, app="changed")
    assert fetch.calls == []


async def test_put_does_not_overwrite_a_newer_entry() -> None:
    cache, _ = make()
    cache.subscribe(ROUTE_A, [KEY])
    cache.observe("MODIFIED", svc(rv=12, app="watched"))
    cache.put(svc(rv=11, app="written"))
    assert await cache.get(KEY) == svc(rv=12, app="watched")


async def test_put_ignores_unsubscribed_keys() -> None:
    cache, fetch = make({KEY: svc(rv=1, app="api")})
    cache.put(svc(rv=2, app="written"))
    cache.subscribe(ROUTE_A, [KEY])
    assert await cache.get(KEY) == svc(rv=1, app="api")
    assert fetch.calls == [KEY]


async def test_event_during_read_wins_over_the_read() -> None:
    cache, fetch = make({KEY: svc(rv=5, app="read")})
    cache.subscribe(ROUTE_A, [KEY])
    fetch.during = lambda: cache.observe("MODIFIED", svc(rv=6, app="watched"))
    assert await cache.get(KEY) == svc(rv=6, app="watched")
    fetch.during = None
    assert await cache.get(KEY) == svc(rv=6, app="watched")


@pytest.mark.parametrize("rv", [None, "", "not-a-number"], ids=["absent", "empty", "opaque"])
async def test_unparsable_resource_version_counts_as_oldest(rv: str | None) -> None:
    cache, _ = make()
    cache.subscribe(ROUTE_A, [KEY])
    cache.put(svc(rv=rv, app="first"))
    cache.observe("MODIFIED", svc(rv=1, app="second"))
    assert await cache.get(KEY) == svc(rv=1, app="second")


async def test_unsubscribing_the_last_route_drops_the_entry() -> None:
    cache, fetch = make({KEY: svc()})
    cache.subscribe(ROUTE_A, [KEY])
    cache.subscribe(ROUTE_B, [KEY])
    await cache.get(KEY)
    cache.unsubscribe(ROUTE_A)
    assert len(cache) == 1  # ROUTE_B still depends on it
    assert cache.observe("MODIFIED", svc(rv=6)) == {ROUTE_B}
    cache.unsubscribe(ROUTE_B)
    assert len(cache) == 0
    assert cache.observe("MODIFIED", svc(rv=7)) == set()
    cache.subscribe(ROUTE_A, [KEY])
    await cache.get(KEY)
    assert fetch.calls == [KEY, KEY]  # read again: the entry was dropped


async def test_resubscribe_replaces_the_previous_keys() -> None:
    cache, _ = make({KEY: svc(), OTHER: svc("vendor-egress")})
    cache.subscribe(ROUTE_A, [KEY, OTHER])
    await cache.get(KEY)
    await cache.get(OTHER)
    cache.subscribe(ROUTE_A, [OTHER])
    assert cache.observe("MODIFIED", svc(rv=9)) == set()
    assert cache.observe("MODIFIED", svc("vendor-egress", rv=9)) == {ROUTE_A}
    assert len(cache) == 1


def test_unsubscribe_unknown_route_is_harmless() -> None:
    cache, _ = make()
    cache.unsubscribe(ROUTE_A)
    cache.subscribe(ROUTE_A, [])
    cache.unsubscribe(ROUTE_A)
    assert len(cache) == 0


# --- slimming ------------------------------------------------------------------------------

SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "type": "Opaque",
    "metadata": {
        "name": "vendor-key",
        "namespace": "ai",
        "resourceVersion": "7",
        "uid": "u",
        "labels": {"team": "ml"},
        "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": '{"stringData":{"apiKey":"sk"}}'
        },
        "managedFields": [{"manager": "kubectl"}],
    },
    "data": {"apiKey": "c2stc2VjcmV0"},
    "stringData": {"apiKey": "sk-secret"},
}


def test_slim_secret_keeps_only_data() -> None:
    slim = slim_secret(SECRET)
    assert slim == {
        "metadata": {"name": "vendor-key", "namespace": "ai", "resourceVersion": "7"},
        "data": {"apiKey": "c2stc2VjcmV0"},
    }
    assert "sk" not in repr(slim)  # the last-applied annotation carries the key in clear


def test_slim_secret_without_data() -> None:
    assert slim_secret({"metadata": {"name": "s"}}) == {"metadata": {"name": "s"}, "data": {}}
    assert slim_secret({"metadata": {"name": "s"}, "data": None})["data"] == {}


def test_slim_object_keeps_what_routing_needs() -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "chat-llm",
            "namespace": "ai",
            "uid": "u",
            "resourceVersion": "8",
            "generation": 3,
            "labels": {"a": "b"},
            "annotations": {"c": "d"},
            "ownerReferences": [{"uid": "o"}],
            "managedFields": [{"manager": "x"}],
            "creationTimestamp": "2025-01-01T00:00:00Z",
        },
        "spec": {"type": "ClusterIP", "selector": {"app": "x"}, "ports": [{"port": 80}]},
        "status": {"loadBalancer": {}},
    }
    slim = slim_object(body)
    assert set(slim) == {"metadata", "spec", "status"}
    assert set(slim["metadata"]) == {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "labels",
        "annotations",
        "ownerReferences",
    }
    assert all(
        slim["metadata"][k] == v for k, v in body["metadata"].items() if k in slim["metadata"]
    )
    assert slim["spec"] == body["spec"]
    slim["spec"]["type"] = "ExternalName"
    assert body["spec"]["type"] == "ClusterIP"  # the spec is copied, not aliased


def test_slim_object_of_a_minimal_body() -> None:
    assert slim_object({}) == {"metadata": {}, "spec": {}}


# --- one LIST per namespace, and objects kept before any route subscribed ---------------------


def owned_svc(name: str, rv: int = 5) -> dict[str, Any]:
    body = svc(name, rv)
    body["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "modelroute-operator"}
    return body


def is_owned(body: dict[str, Any]) -> bool:
    labels = body.get("metadata", {}).get("labels") or {}
    return labels.get("app.kubernetes.io/managed-by") == "modelroute-operator"


class FakeList:
    """The API's LIST behind the cache: answers from ``objects``, counts the calls."""

    def __init__(self, objects: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.objects = objects
        self.calls: list[str] = []
        self.gate: asyncio.Event | None = None  # holds the answer until set
        self.error: Exception | None = None

    async def __call__(self, namespace: str) -> list[dict[str, Any]]:
        self.calls.append(namespace)
        served = [copy.deepcopy(b) for k, b in self.objects.items() if k[0] == namespace]
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return served


def listing(
    objects: dict[tuple[str, str], dict[str, Any]] | None = None, keep: int = 10
) -> tuple[ObjectCache, FakeFetch, FakeList]:
    objects = dict(objects or {})
    fetch, lister = FakeFetch(objects), FakeList(objects)
    cache = ObjectCache(
        fetch, slim_object, list_namespace=lister, keep_unsubscribed=keep, owned=is_owned
    )
    return cache, fetch, lister


async def test_the_first_miss_lists_the_namespace_once_for_every_route() -> None:
    """A restarted operator: 200 routes start at once, and none reads its object alone."""
    objects = {("ai", f"r{i}-llm"): owned_svc(f"r{i}-llm") for i in range(200)}
    objects[KEY] = svc()
    cache, fetch, lister = listing(objects)
    for i in range(200):
        cache.subscribe(("ai", f"r{i}"), [("ai", f"r{i}-llm"), KEY])
    got = await asyncio.gather(*(cache.get(("ai", f"r{i}-llm")) for i in range(200)))
    assert all(g is not None for g in got)
    assert await cache.get(KEY) == slim_object(svc())
    assert lister.calls == ["ai"] and fetch.calls == []


async def test_a_miss_after_the_list_is_read_once_then_known() -> None:
    cache, fetch, lister = listing({KEY: svc()})
    cache.subscribe(ROUTE_A, [KEY, OTHER])
    assert await cache.get(OTHER) is None
    assert await cache.get(OTHER) is None  # the absence is cached for a subscriber
    assert cache.complete("ai") and not cache.complete("other-namespace")
    assert fetch.calls == [OTHER] and lister.calls == ["ai"]
    cache.observe("ADDED", svc("vendor-egress", rv=9))  # created later: the watch says so
    assert await cache.get(OTHER) == slim_object(svc("vendor-egress", rv=9))


async def test_an_object_created_after_the_list_is_found_before_its_watch_event() -> None:
    """kubectl apply of a target Service and a new ModelRoute: the route asks for the Service
    while its ADDED event is still on the way; it must not be reported missing."""
    cache, fetch, lister = listing({KEY: svc()})
    cache.subscribe(ROUTE_A, [KEY])
    assert await cache.get(KEY) is not None  # lists "ai"
    fetch.objects[OTHER] = svc("vendor-egress", rv=9)
    cache.subscribe(ROUTE_B, [OTHER])
    assert await cache.get(OTHER) == slim_object(svc("vendor-egress", rv=9))
    assert fetch.calls == [OTHER] and lister.calls == ["ai"]


async def test_a_miss_the_caller_need_not_confirm_is_taken_as_absent_after_the_list() -> None:
    """A new route's routing object: its create handles a 409, so no read only to hear 404."""
    cache, fetch, lister = listing({KEY: svc()})
    cache.subscribe(ROUTE_A, [KEY, OTHER])
    assert await cache.get(OTHER, confirm_miss=False) is None  # lists "ai", reads nothing
    assert await cache.get(OTHER, confirm_miss=False) is None
    assert fetch.calls == [] and lister.calls == ["ai"]
    fetch.objects[OTHER] = svc("vendor-egress", rv=8)  # its watch event still on the way
    assert await cache.get(OTHER) == slim_object(svc("vendor-egress", rv=8))  # confirmed: read
    assert fetch.calls == [OTHER]
    cache.observe("ADDED", svc("vendor-egress", rv=9))  # created later: the watch says so
    assert await cache.get(OTHER, confirm_miss=False) == slim_object(svc("vendor-egress", rv=9))


async def test_a_miss_is_still_read_when_the_list_failed_or_left_objects_out() -> None:
    cache, fetch, lister = listing({KEY: svc()})
    lister.error = ApiError(500, "InternalError", "etcd")
    cache.subscribe(ROUTE_A, [OTHER])
    assert await cache.get(OTHER, confirm_miss=False) is None
    assert fetch.calls == [OTHER]  # no complete LIST: the miss is read
    crowded = {("ai", f"s{i}"): svc(f"s{i}") for i in range(3)}
    cache, fetch, lister = listing(crowded, keep=1)  # objects left out of the cache
    cache.subscribe(ROUTE_A, [OTHER])
    assert await cache.get(OTHER, confirm_miss=False) is None
    assert not cache.complete("ai") and fetch.calls == [OTHER]


async def test_watch_events_before_any_subscription_are_kept() -> None:
    """kopf's own initial list arrives before the routes subscribe."""
    cache, fetch, lister = listing({KEY: svc(rv=1, app="api")})
    assert cache.observe(None, svc(rv=5, app="listed")) == set()  # nobody to wake yet
    cache.subscribe(ROUTE_A, [KEY])
    assert await cache.get(KEY) == slim_object(svc(rv=5, app="listed"))
    assert fetch.calls == [] and lister.calls == []


async def test_a_deleted_unsubscribed_object_is_forgotten() -> None:
    cache, fetch, _ = listing({KEY: svc()})
    await cache.get(OTHER)  # lists "ai"
    del fetch.objects[KEY]
    cache.observe("DELETED", svc())
    cache.subscribe(ROUTE_A, [KEY])
    assert await cache.get(KEY) is None  # read again, not the stale copy
    assert fetch.calls == [OTHER, KEY] and len(cache) == 0


async def test_a_list_whose_waiters_were_cancelled_still_ends() -> None:
    """A route's worker stopped mid-LIST (spec change, deletion) must not leave the LIST
    pending for good: the next miss lists again after a failure, and deletions seen during
    the LIST are not recorded forever."""
    cache, _, lister = listing({KEY: svc()})
    lister.gate, lister.error = asyncio.Event(), aiohttp.ClientConnectionError("refused")
    cache.subscribe(ROUTE_A, [KEY])
    waiter = asyncio.create_task(cache.get(KEY))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    cache.observe("DELETED", svc("gone", rv=7))  # recorded: the LIST is in flight
    lister.gate.set()
    for _ in range(5):  # the LIST's task ends and its done-callback runs
        await asyncio.sleep(0)
    for i in range(100):
        cache.observe("DELETED", svc(f"gone-{i}", rv=100 + i))
    assert not cache._listing and not cache._deleted  # the leak itself (private state)
    lister.error = None
    assert await cache.get(KEY) is not None
    assert lister.calls == ["ai", "ai"]  # the failed LIST was not taken for a pending one


async def test_once_objects_are_left_out_a_miss_is_read_without_a_list() -> None:
    """Cluster-wide with more objects than the bound: a LIST could keep nothing more."""
    cache, fetch, lister = listing({KEY: svc()}, keep=1)
    cache.observe(None, svc("a"))
    cache.observe(None, svc("b"))  # beyond the bound: left out
    cache.subscribe(ROUTE_A, [KEY])
    assert await cache.get(KEY) is not None
    assert lister.calls == [] and fetch.calls == [KEY]


async def test_a_deletion_during_the_list_beats_the_list() -> None:
    cache, _, lister = listing({KEY: svc(rv=5)})
    lister.gate = asyncio.Event()
    cache.subscribe(ROUTE_A, [KEY])
    pending = asyncio.create_task(cache.get(KEY))
    await asyncio.sleep(0)  # the LIST is served (with the object) ...
    cache.observe("DELETED", svc(rv=6))  # ... then the object is deleted
    lister.gate.set()
    assert await pending is None


async def test_the_list_does_not_overwrite_a_newer_copy_or_wake_anyone() -> None:
    cache, _, _ = listing({KEY: svc(rv=5, app="listed")})
    cache.put(svc(rv=10, app="written"))
    await cache.get(OTHER)
    cache.subscribe(ROUTE_A, [KEY])
    assert await cache.get(KEY) == slim_object(svc(rv=10, app="written"))
    # ... and the echo of what it holds wakes nobody, a change does.
    assert cache.observe("MODIFIED", svc(rv=10, app="written")) == set()
    assert cache.observe("MODIFIED", svc(rv=11, app="new")) == {ROUTE_A}


async def test_beyond_the_bound_objects_are_left_out_and_misses_read_again() -> None:
    objects = {("ai", f"s{i}"): svc(f"s{i}") for i in range(3)}
    objects[("ai", "chat-llm")] = owned_svc("chat-llm")
    cache, fetch, _ = listing(objects, keep=2)
    await cache.get(("ai", "chat-llm"))  # the operator's own: kept whatever the bound
    assert len(cache) == 3 and not cache.complete("ai")
    for key in [k for k in objects if k[1].startswith("s")]:
        assert await cache.get(key) is not None
    assert len(fetch.calls) == 1  # only the one left out is read


async def test_a_failed_list_falls_back_to_a_read_and_lists_again_later() -> None:
    cache, fetch, lister = listing({KEY: svc()})
    lister.error = aiohttp.ClientConnectionError("connection refused")
    cache.subscribe(ROUTE_A, [KEY])
    assert await cache.get(KEY) is not None
    assert fetch.calls == [KEY] and not cache.complete("ai")
    lister.error = None
    assert await cache.get(OTHER) is None
    assert lister.calls == ["ai", "ai"] and cache.complete("ai")


async def test_an_object_a_route_stops_depending_on_stays_known() -> None:
    cache, fetch, _ = listing({KEY: svc(rv=6, app="v1")})
    cache.subscribe(ROUTE_A, [KEY])
    await cache.get(KEY)
    cache.unsubscribe(ROUTE_A)
    cache.subscribe(ROUTE_B, [KEY])
    assert await cache.get(KEY) == slim_object(svc(rv=6, app="v1"))
    assert fetch.calls == []


def test_secrets_no_route_needs_are_never_copied() -> None:
    slimmed: list[dict[str, Any]] = []

    def slim(body: dict[str, Any]) -> dict[str, Any]:
        slimmed.append(body)
        return slim_secret(body)

    cache, _ = make(slim=slim)
    for event in (None, "ADDED", "MODIFIED"):
        cache.observe(event, {"metadata": {"namespace": "ai", "name": "key"}, "data": {"k": "c2"}})
    assert slimmed == [] and len(cache) == 0


async def test_without_a_list_nothing_unsubscribed_is_kept_and_misses_are_read() -> None:
    """Secrets: never listed nor kept before a route needs them (their data is a key)."""
    cache, fetch = make({KEY: svc()})
    cache.observe(None, svc())
    cache.subscribe(ROUTE_A, [KEY])
    assert await cache.get(KEY) == svc()
    assert fetch.calls == [KEY] and not cache.complete("ai")


def synced(namespace: str | None, rv: int, *names: str) -> dict[str, Any]:
    listed = {("ai", name) for name in names}
    return {"metadata": {"namespace": namespace, "resourceVersion": str(rv)}, "listed": listed}


async def test_a_watch_list_drops_what_it_lacks_unless_newer_or_out_of_scope() -> None:
    cache, _ = make()
    cache.subscribe(ROUTE_A, [KEY, OTHER])
    cache.subscribe(ROUTE_B, [("elsewhere", "svc")])
    cache.put(svc(rv=5))  # read before the watch's LIST, deleted since
    cache.put(svc("vendor-egress", rv=12))  # written after the LIST was served
    cache.put({"metadata": {"name": "svc", "namespace": "elsewhere", "resourceVersion": "3"}})
    assert cache.observe("SYNCED", synced("ai", 10)) == {ROUTE_A}
    assert await cache.get(KEY) is None
    assert await cache.get(OTHER) == svc("vendor-egress", rv=12)
    assert await cache.get(("elsewhere", "svc")) is not None
    assert cache.observe("SYNCED", synced(None, 20, "vendor-egress")) == {ROUTE_B}
    assert await cache.get(("elsewhere", "svc")) is None
    assert await cache.get(OTHER) is not None


async def test_a_watch_list_during_a_namespace_list_keeps_its_deletions() -> None:
    """The namespace's LIST (a miss's) was served before a deletion the watch's LIST saw."""
    release = asyncio.Event()

    async def list_namespace(namespace: str) -> list[dict[str, Any]]:
        await release.wait()
        return [svc(rv=5), svc("vendor-egress", rv=6)]

    cache = ObjectCache(FakeFetch(), identity, list_namespace=list_namespace, keep_unsubscribed=9)
    cache.subscribe(ROUTE_A, [KEY])
    miss = asyncio.create_task(cache.get(KEY))
    await asyncio.sleep(0)
    cache.observe("SYNCED", synced("ai", 8, "vendor-egress"))
    release.set()
    assert await miss is None
    assert await cache.get(OTHER) == svc("vendor-egress", rv=6)


async def test_a_read_answered_before_a_watch_list_that_lacks_it_is_taken_as_deleted() -> None:
    # The GET was served (rv 5), the object deleted, then the watch's LIST (rv 10) lacked it
    # and its SYNCED arrived while the answer was still on its way: the watch resumes from 10
    # and will never say "deleted", so the read must not be cached as present.
    cache, fetch = make({KEY: svc(rv=5)})
    cache.subscribe(ROUTE_A, [KEY])
    fetch.during = lambda: cache.observe("SYNCED", synced("ai", 10))
    assert await cache.get(KEY) is None
    assert await cache.get(KEY) is None
    assert fetch.calls == [KEY]
    newer, fetch2 = make({KEY: svc(rv=11)})  # created after that LIST: kept
    newer.subscribe(ROUTE_A, [KEY])
    fetch2.during = lambda: newer.observe("SYNCED", synced(None, 10))
    assert await newer.get(KEY) == svc(rv=11)
