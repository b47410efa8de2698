"""The operator's own list-then-watch (kube.watch) on the real API server: every object
created, changed or deleted in the watched namespace reaches the cache, in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from kubernetes import client

from modelroute.kube.cache import ObjectCache, slim_object
from modelroute.kube.client import SERVICES
from modelroute.kube.credentials import load_credentials
from modelroute.kube.stream import WatchClient
from modelroute.kube.watch import WatchConfig, WatchLoop
from tests.harness.apiserver import Cluster

CONFIG = WatchConfig(server_timeout_s=60, retry_first_s=0.5, retry_max_s=2.0)
Seen = list[tuple[str | None, str]]


def service(name: str, port: int = 80) -> client.V1Service:
    ports = [client.V1ServicePort(port=port)]
    return client.V1Service(
        metadata=client.V1ObjectMeta(name=name), spec=client.V1ServiceSpec(ports=ports)
    )


async def until(check: Callable[[], bool], what: str, within: float = 20.0) -> None:
    """Wait until ``check`` holds (the API server's pace, real time); fail after ``within``."""
    try:
        async with asyncio.timeout(within):
            # Polled: the loop's counters and the cache change with no event to wait on.
            while not check():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"not within {within} s: {what}")


class Watched:
    """A running loop over ``namespace``'s Services, feeding a cache and recording events."""

    def __init__(self, cluster: Cluster, namespace: str, api: Any = None) -> None:
        self.api = api or WatchClient(
            load_credentials(str(cluster.kubeconfig)), request_timeout_s=30, idle_timeout_s=90
        )
        core = client.CoreV1Api(cluster.api_client())

        async def fetch(ns: str, name: str) -> dict[str, Any] | None:
            raise AssertionError(f"the cache read {ns}/{name}: the watch should have told it")

        self.cache = ObjectCache(fetch, slim_object, keep_unsubscribed=100)
        self.seen: Seen = []
        self.core = core
        self.loop = WatchLoop(self.api, SERVICES, namespace, self.deliver, CONFIG)

    def deliver(self, event_type: str | None, body: dict[str, Any]) -> None:
        self.seen.append((event_type, body["metadata"]["name"]))
        self.cache.observe(event_type, body)


@pytest.fixture
async def watched(crd: Cluster, namespace: str) -> AsyncIterator[Watched]:
    running = Watched(crd, namespace)
    task = asyncio.create_task(running.loop.run())
    yield running
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await running.api.close()


async def test_objects_created_changed_and_deleted_reach_the_cache(
    watched: Watched, namespace: str
) -> None:
    core = watched.core
    # A route depends on both: the cache keeps their entries (a deleted one as None).
    watched.cache.subscribe(("routes", "r"), [(namespace, "before"), (namespace, "after")])
    core.create_namespaced_service(namespace, service("before"))
    await until(lambda: watched.loop.lists == 1, "the first LIST")
    core.create_namespaced_service(namespace, service("after"))
    core.patch_namespaced_service("before", namespace, {"metadata": {"labels": {"a": "b"}}})
    core.delete_namespaced_service("after", namespace, _preload_content=False)
    await until(lambda: ("DELETED", "after") in watched.seen, "the deletion")
    key = (namespace, "before")
    entry = await watched.cache.get(key)
    assert entry is not None and entry["metadata"]["labels"] == {"a": "b"}
    assert await watched.cache.get((namespace, "after")) is None
    names = [name for _, name in watched.seen]
    assert names.count("after") == 2 and ("ADDED", "after") in watched.seen
    assert watched.loop.lists == 1  # one LIST, then the watch alone
