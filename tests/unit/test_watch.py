"""The operator's own list-then-watch loops (kube.watch) against FakeKube's LIST and WATCH.

The loop's time is faked with looptime: backoffs and server timeouts are timed, not slept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from modelroute.control import watching
from modelroute.kube.cache import SYNCED, ObjectCache, slim_object
from modelroute.kube.client import HTTPROUTES, SECRETS, SERVICES, ApiError, ObjectKind
from modelroute.kube.stream import StreamError
from modelroute.kube.watch import (
    PAGE,
    REPEAT_WARNING_S,
    SECRETS_PAGE,
    WatchConfig,
    Watches,
    WatchLoop,
)
from modelroute.metrics import Metrics
from modelroute.settings import Settings
from tests.fakes.kube import FakeKube

pytestmark = pytest.mark.looptime

CONFIG = WatchConfig(server_timeout_s=300, retry_first_s=0.5, retry_max_s=4.0)
Event = tuple[str | None, str, str]  # (type, namespace/name, resourceVersion)


def service(name: str, namespace: str = "ai", port: int = 80) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": {"ports": [{"port": port}]}}


class Recorder:
    """The consumer: every delivered event, in order (the body as delivered)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.bodies: list[dict[str, Any]] = []
        self.synced: list[tuple[str | None, set[tuple[str, str]]]] = []

    def __call__(self, event_type: str | None, body: dict[str, Any]) -> None:
        if event_type == SYNCED:
            self.synced.append((body["metadata"]["namespace"], set(body["listed"])))
            return
        meta = body["metadata"]
        self.events.append(
            (event_type, f"{meta['namespace']}/{meta['name']}", meta["resourceVersion"])
        )
        self.bodies.append(body)

    def types(self) -> list[tuple[str | None, str]]:
        return [(t, name) for t, name, _ in self.events]


@pytest.fixture
async def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
async def watches(kube: FakeKube) -> Iterator[Watches]:  # type: ignore[misc]
    closed: list[bool] = []

    async def close() -> None:
        closed.append(True)

    running = Watches(kube, CONFIG, close=close)
    yield running
    await running.stop()
    assert closed == [True]  # the API's connections are closed once the loops ended
    assert kube.open_watches == 0


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_list_then_watch_delivers_every_object_then_every_change(
    kube: FakeKube, watches: Watches
) -> None:
    kube.seed(service("a"))
    kube.seed(service("b"))
    seen = Recorder()
    (loop,) = watches.start(SERVICES, (), seen)
    await settle()
    # Listed objects come with type None, as kopf delivered them.
    assert seen.types() == [(None, "ai/a"), (None, "ai/b")]
    assert kube.watch_calls == [("list", ""), ("watch", str(kube.latest))]
    kube.mutate(("ai", "a"), {"spec": {"ports": [{"port": 81}]}})
    kube.seed(service("c"))
    kube.delete(("ai", "b"))
    await settle()
    assert seen.types()[2:] == [("MODIFIED", "ai/a"), ("ADDED", "ai/c"), ("DELETED", "ai/b")]
    assert loop.resource_version == str(kube.latest) and loop.lists == 1


async def test_a_large_list_is_read_in_pages(kube: FakeKube, watches: Watches) -> None:
    for i in range(PAGE + 3):
        kube.seed(service(f"s{i:04d}"), watched=False)
    seen = Recorder()
    watches.start(SERVICES, (), seen)
    await settle()
    assert len(seen.events) == PAGE + 3
    assert [op for op, _ in kube.watch_calls] == ["list", "list", "watch"]
    assert kube.watch_calls[1] == ("list", str(PAGE))  # the continue token of the first page


async def test_a_watch_the_server_ends_resumes_from_the_last_bookmark(
    kube: FakeKube, watches: Watches
) -> None:
    kube.seed(service("a"))
    seen = Recorder()
    (loop,) = watches.start(SERVICES, (), seen)
    await settle()
    kube.bookmark(SERVICES, kube.latest + 50)  # others' objects changed meanwhile
    await settle()
    assert loop.resource_version == str(kube.latest)
    assert seen.types() == [(None, "ai/a")]  # a bookmark is no event for the consumer
    kube.end_watches()
    await settle()
    assert kube.watch_calls[-1] == ("watch", str(kube.latest))  # no relist
    assert loop.lists == 1


async def test_the_server_timeout_ends_a_watch_and_it_resumes(
    kube: FakeKube, watches: Watches
) -> None:
    watches.start(SERVICES, (), Recorder())
    await asyncio.sleep(CONFIG.server_timeout_s * 2 + 1)
    assert [op for op, _ in kube.watch_calls] == ["list", "watch", "watch", "watch"]


@pytest.mark.parametrize("gone_as_event", [False, True], ids=["http-410", "error-event-410"])
async def test_410_relists_and_delivers_the_deletes_missed_meanwhile(
    kube: FakeKube, watches: Watches, gone_as_event: bool
) -> None:
    """The API server was away while an object was deleted and another changed, and etcd was
    compacted: the resumed watch gets 410, the loop relists, and the cache hears of both."""
    kube.gone_as_event = gone_as_event
    for name in ("kept", "deleted", "changed"):
        kube.seed(service(name))
    cache = ObjectCache(kube_fetch(kube), slim_object)
    cache.subscribe(("ai", "route"), [("ai", "deleted"), ("ai", "changed")])
    woken: list[set[tuple[str, str]]] = []
    (loop,) = watches.start(SERVICES, (), lambda t, b: woken.append(cache.observe(t, b)))
    await settle()
    assert await cache.get(("ai", "deleted")) is not None
    kube.watch_error = aiohttp.ClientConnectionError("connection refused")
    kube.drop_watches(aiohttp.ClientPayloadError("connection reset"))
    await settle()
    kube.delete(("ai", "deleted"))
    kube.mutate(("ai", "changed"), {"spec": {"ports": [{"port": 8080}]}})
    kube.compact()
    kube.watch_error = None
    await asyncio.sleep(CONFIG.retry_max_s)
    assert loop.lists == 2
    assert await cache.get(("ai", "deleted")) is None
    changed = await cache.get(("ai", "changed"))
    assert changed is not None and changed["spec"]["ports"][0]["port"] == 8080
    assert {("ai", "route")} in woken[-2:]  # the route woke for the deletion and the change
    assert kube.calls == []  # the cache never read the API: the watch told it everything


async def test_an_object_read_before_the_first_list_and_deleted_meanwhile_is_dropped(
    kube: FakeKube, watches: Watches
) -> None:
    """Routes start before the watches: a miss reads the object (GET or the namespace's LIST);
    it is deleted before the watch's first LIST, which never knew it. The LIST's SYNCED
    still tells the cache, and wakes the route (the writer recreates its Service)."""
    kube.seed(service("deleted"))
    kube.seed(service("kept", "other"))
    cache = ObjectCache(kube_fetch(kube), slim_object)
    cache.subscribe(("ai", "route"), [("ai", "deleted")])
    cache.subscribe(("other", "route"), [("other", "kept")])
    assert await cache.get(("ai", "deleted")) is not None
    assert await cache.get(("other", "kept")) is not None
    kube.delete(("ai", "deleted"))
    woken: list[set[tuple[str, str]]] = []
    seen = Recorder()

    def deliver(event_type: str | None, body: dict[str, Any]) -> None:
        seen(event_type, body)
        woken.append(cache.observe(event_type, body))

    watches.start(SERVICES, ("ai", "other"), deliver)
    await settle()
    assert await cache.get(("ai", "deleted")) is None
    assert await cache.get(("other", "kept")) is not None
    assert {("ai", "route")} in woken
    assert sorted(seen.synced, key=str) == [("ai", set()), ("other", {("other", "kept")})]


def kube_fetch(kube: FakeKube) -> Any:
    async def fetch(namespace: str, name: str) -> dict[str, Any] | None:
        return await kube.get_object(SERVICES, namespace, name)

    return fetch


async def test_connection_errors_back_off_and_log_once_per_outage(
    kube: FakeKube, watches: Watches, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelroute.kube.watch")
    loop_clock = asyncio.get_running_loop()
    seen = Recorder()
    (loop,) = watches.start(SERVICES, (), seen)
    await settle()
    kube.watch_error = aiohttp.ClientConnectionError("connection refused")
    kube.drop_watches(aiohttp.ClientPayloadError("connection reset"))
    start, calls = loop_clock.time(), len(kube.watch_calls)
    await asyncio.sleep(16)
    times = [round(t - start, 1) for t in kube.watch_call_times[calls:]]
    # Short first retry, doubling, capped: the watch is back within seconds of the server.
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]
    kube.watch_error = None
    kube.seed(service("new"))
    await asyncio.sleep(CONFIG.retry_max_s)
    assert seen.types() == [("ADDED", "ai/new")]  # resumed from its resourceVersion
    assert loop.lists == 1
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len([m for m in lines if "lost" in m]) == 1
    assert len([m for m in lines if "resumed" in m]) == 1


async def test_a_watch_that_ends_at_once_is_not_reopened_in_a_busy_loop(
    kube: FakeKube, watches: Watches
) -> None:
    watches.start(SERVICES, (), Recorder())
    await settle()
    start, calls = asyncio.get_running_loop().time(), len(kube.watch_calls)
    for _ in range(5):
        kube.end_watches()  # ended with nothing in it, right after it opened
        await asyncio.sleep(0.1)
    # Not five watches in half a second: the next one waited for the retry delay, and stays.
    assert len(kube.watch_calls) - calls == 1
    assert kube.watch_call_times[calls] - start == pytest.approx(0.5, abs=0.01)
    assert kube.open_watches == 1


async def test_an_unreadable_event_relists(kube: FakeKube, watches: Watches) -> None:
    kube.seed(service("a"))
    seen = Recorder()
    (loop,) = watches.start(SERVICES, (), seen)
    await settle()
    kube.drop_watches(StreamError("watch event is not JSON"))
    await asyncio.sleep(CONFIG.retry_first_s + 0.1)
    assert loop.lists == 2
    assert seen.types() == [(None, "ai/a"), (None, "ai/a")]


async def test_an_unreadable_list_is_retried_with_backoff_and_deletes_nothing(
    kube: FakeKube, watches: Watches
) -> None:
    """An authenticating proxy answers 200 with a page that is no LIST: never an empty one."""
    kube.seed(service("a"))
    seen = Recorder()
    (loop,) = watches.start(SERVICES, (), seen)
    await settle()
    kube.watch_error = StreamError("LIST answer is not a JSON object")
    start, calls = asyncio.get_running_loop().time(), len(kube.watch_calls)
    kube.drop_watches(StreamError("watch event is not JSON"))
    await asyncio.sleep(8)
    times = [round(t - start, 1) for t in kube.watch_call_times[calls:]]
    assert times == [0.5, 1.5, 3.5, 7.5]  # backing off, not a busy loop of LISTs
    kube.watch_error = None
    await asyncio.sleep(CONFIG.retry_max_s)
    assert loop.lists == 2
    assert seen.types() == [(None, "ai/a"), (None, "ai/a")]  # no DELETED
    assert seen.synced == [(None, {("ai", "a")})] * 2


async def test_a_failing_consumer_does_not_end_the_watch(kube: FakeKube, watches: Watches) -> None:
    seen = Recorder()

    def consumer(event_type: str | None, body: dict[str, Any]) -> None:
        if body["metadata"]["name"] == "bad":
            raise RuntimeError("a bug")
        seen(event_type, body)

    watches.start(SERVICES, (), consumer)
    await settle()
    kube.seed(service("bad"))
    kube.seed(service("good"))
    await settle()
    assert seen.types() == [("ADDED", "ai/good")]


async def test_one_loop_per_watched_namespace(kube: FakeKube, watches: Watches) -> None:
    kube.seed(service("a", "team-a"))
    kube.seed(service("b", "team-b"))
    kube.seed(service("c", "elsewhere"))
    seen = Recorder()
    loops = watches.start(SERVICES, ("team-a", "team-b"), seen)
    await settle()
    kube.seed(service("d", "elsewhere"))
    kube.seed(service("e", "team-b"))
    await settle()
    assert [loop.name for loop in loops] == ["services in team-a", "services in team-b"]
    assert sorted(seen.types(), key=str) == sorted(
        [(None, "team-a/a"), (None, "team-b/b"), ("ADDED", "team-b/e")], key=str
    )


async def test_secrets_are_listed_and_delivered_uncopied(kube: FakeKube, watches: Watches) -> None:
    kube.secrets[("ai", "key")] = {
        "metadata": {"name": "key", "namespace": "ai", "resourceVersion": "7"},
        "data": {"apiKey": "c2VjcmV0"},
    }
    seen = Recorder()
    (loop,) = watches.start(SECRETS, (), seen)
    await settle()
    assert seen.types() == [(None, "ai/key")]
    assert loop.name == "secrets in all namespaces"


async def test_stop_cancels_every_loop_mid_watch(kube: FakeKube) -> None:
    closed: list[bool] = []

    async def close() -> None:
        closed.append(True)

    running = Watches(kube, CONFIG, close=close)
    running.start(SERVICES, ("a", "b"), Recorder())
    running.start(SECRETS, (), Recorder())
    await settle()
    assert kube.open_watches == 3
    await running.stop()
    assert kube.open_watches == 0 and closed == [True]


async def test_a_loop_alone_keeps_its_known_objects_across_relists(kube: FakeKube) -> None:
    """Deletes found by a relist are the objects known before and missing now, no more."""
    kube.seed(service("a"))
    kube.seed(service("b"))
    seen = Recorder()
    loop = WatchLoop(kube, SERVICES, None, seen, CONFIG)
    task = asyncio.create_task(loop.run())
    await settle()
    kube.drop_watches(aiohttp.ClientPayloadError("reset"))
    kube.watch_error = aiohttp.ClientConnectionError("refused")
    await settle()
    kube.delete(("ai", "a"))
    kube.compact()
    kube.watch_error = None
    await asyncio.sleep(CONFIG.retry_max_s)  # the relist waits: no event came since the LIST
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    deleted = [(t, n) for t, n, _ in seen.events if t == "DELETED"]
    assert deleted == [("DELETED", "ai/a")]
    assert seen.bodies[-1]["metadata"]["resourceVersion"] == str(kube.latest)


class Consumer:
    """The controller's two event entry points, recorded."""

    def __init__(self) -> None:
        self.objects: list[tuple[str, str | None, str]] = []
        self.secrets: list[tuple[str | None, str]] = []

    def on_object_event(
        self, kind: ObjectKind, event_type: str | None, body: dict[str, Any]
    ) -> None:
        if event_type != SYNCED:
            self.objects.append((kind.plural, event_type, body["metadata"]["name"]))

    def on_secret_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        if event_type != SYNCED:
            self.secrets.append((event_type, body["metadata"]["name"]))


@pytest.mark.parametrize("namespaces", [(), ("ai", "research")], ids=["clusterwide", "namespaced"])
async def test_the_runtime_watches_the_served_kinds_and_secrets_in_its_scope(
    kube: FakeKube, namespaces: tuple[str, ...]
) -> None:
    kube.serve(HTTPROUTES)
    kube.seed(service("svc"))
    kube.seed({"metadata": {"name": "hr", "namespace": "ai"}, "spec": {}}, kind=HTTPROUTES)
    kube.secrets[("ai", "key")] = {
        "metadata": {"name": "key", "namespace": "ai", "resourceVersion": "3"}
    }
    consumer = Consumer()
    settings = Settings(namespaces=namespaces)
    running = watching.start(settings, [SERVICES], consumer, kube)
    await settle()
    await running.stop()
    scopes: list[str | None] = [*namespaces] or [None]
    assert [(loop.name) for loop in running.loops] == [
        *(f"services in {ns or 'all namespaces'}" for ns in scopes),
        *(f"secrets in {ns or 'all namespaces'}" for ns in scopes),
    ]
    assert consumer.objects == [("services", None, "svc")]  # HTTPRoutes: not a served kind
    assert consumer.secrets == [(None, "key")]


class Flaky:
    """A WatchApi whose LISTs first fail with what no retry list names (a token refresh hook's
    ConfigException, a non-numeric ERROR code), then answer from ``kube``."""

    def __init__(self, kube: FakeKube, failures: int) -> None:
        self.kube, self.failures = kube, failures

    async def list_page(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if self.failures:
            self.failures -= 1
            raise ValueError("refresh hook failed")
        return await self.kube.list_page(*args, **kwargs)

    async def watch(self, *args: Any) -> Any:
        return await self.kube.watch(*args)


async def test_an_unexpected_error_is_logged_once_and_retried(
    kube: FakeKube, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelroute.kube.watch")
    kube.seed(service("a"))
    seen = Recorder()
    running = Watches(Flaky(kube, failures=3), CONFIG)  # type: ignore[arg-type]
    (loop,) = running.start(SERVICES, (), seen)
    await asyncio.sleep(CONFIG.retry_max_s)
    await running.stop()
    assert loop.lists == 1 and seen.types() == [(None, "ai/a")]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert "failed" in errors[0].getMessage()


class Fatal(BaseException):
    """Not an Exception: what even the last resort lets through."""


async def test_a_loop_that_ends_unexpectedly_is_logged(
    kube: FakeKube, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = Flaky(kube, failures=0)

    async def fatal(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise Fatal

    flaky.list_page = fatal  # type: ignore[method-assign]
    running = Watches(flaky, CONFIG)  # type: ignore[arg-type]
    running.start(SERVICES, (), Recorder())
    await settle()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "watch:services in all namespaces ended unexpectedly"
    ]
    await running.stop()


class Counted(Flaky):
    """Ends the loop (Fatal) after ``limit`` LISTs: a busy loop fails the test, never hangs it."""

    def __init__(self, kube: FakeKube, limit: int) -> None:
        super().__init__(kube, failures=0)
        self.limit = limit

    async def list_page(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.limit -= 1
        if self.limit < 0:
            raise Fatal
        return await super().list_page(*args, **kwargs)


@pytest.mark.parametrize("gone_as_event", [False, True], ids=["http-410", "error-event-410"])
async def test_a_server_answering_every_watch_with_410_gets_paced_relists(
    kube: FakeKube, gone_as_event: bool
) -> None:
    kube.gone_as_event = gone_as_event
    kube.compacted = 10**9  # every watch is "too old"
    running = Watches(Counted(kube, limit=50), CONFIG)  # type: ignore[arg-type]
    (loop,) = running.start(SERVICES, (), Recorder())
    start = asyncio.get_running_loop().time()
    await asyncio.sleep(10)
    lists = [
        round(t - start, 1)
        for (c, _), t in zip(kube.watch_calls, kube.watch_call_times, strict=True)
        if c == "list"
    ]
    assert lists == [0.0, 0.5, 1.5, 3.5, 7.5]  # doubling up to the cap, not back to back
    kube.compacted = 0
    await asyncio.sleep(CONFIG.retry_max_s)
    kube.seed(service("a"))
    await settle()
    kube.compacted = 10**9
    kube.end_watches()  # a watch that delivered something: the next relist is at once
    await settle()
    assert loop.lists == 7
    await running.stop()


async def test_a_refused_list_is_a_warning_repeated_every_few_minutes(
    kube: FakeKube, caplog: pytest.LogCaptureFixture
) -> None:
    """RBAC drift (403) or a CRD removed (404) heals by no retry: it stays visible."""
    caplog.set_level(logging.INFO, logger="modelroute.kube.watch")
    kube.watch_error = ApiError(403, "Forbidden", "services is forbidden")
    running = Watches(kube, CONFIG)
    (loop,) = running.start(SERVICES, (), Recorder())
    await asyncio.sleep(REPEAT_WARNING_S * 2 + 2 * CONFIG.retry_max_s)
    kube.watch_error = None
    await asyncio.sleep(CONFIG.retry_max_s)
    await running.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3 and all("refused" in m and "forbidden" in m for m in warnings)
    assert loop.lists == 1
    assert any("resumed" in r.getMessage() for r in caplog.records)


async def test_the_listed_gauge_turns_1_once_every_loop_of_the_kind_listed(
    kube: FakeKube,
) -> None:
    metrics = Metrics()
    kube.watch_error = ApiError(403, "Forbidden", "services is forbidden")
    settings = Settings(namespaces=("ai", "research"))
    running = watching.start(settings, [SERVICES], Consumer(), kube, metrics)

    def listed(kind: str) -> float | None:
        return metrics.registry.get_sample_value("modelroute_watch_listed", {"kind": kind})

    await settle()
    assert (listed("services"), listed("secrets")) == (0, 0)
    kube.watch_error = None
    await asyncio.sleep(CONFIG.retry_max_s)
    assert (listed("services"), listed("secrets")) == (1, 1)
    await running.stop()


async def test_secrets_are_listed_in_smaller_pages(kube: FakeKube, watches: Watches) -> None:
    """A Helm release Secret can be ~1 MiB: 500 of them would be one huge LIST answer."""
    for i in range(SECRETS_PAGE + 1):
        meta = {"name": f"s{i:03}", "namespace": "ai", "resourceVersion": "2"}
        kube.secrets[("ai", f"s{i:03}")] = {"metadata": meta}
    seen = Recorder()
    watches.start(SECRETS, (), seen)
    await settle()
    assert len(seen.events) == SECRETS_PAGE + 1
    assert kube.watch_calls[:2] == [("list", ""), ("list", str(SECRETS_PAGE))]
