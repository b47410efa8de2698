"""The operator's own watch (kube.watch) across an API server restart after an etcd
compaction: the resumed watch gets 410 Gone, relists, and misses nothing, deletions included.

The loop's watches are held back (a gate at our own WatchApi boundary) while the test deletes
and changes objects on the restarted server, so those changes land in the relist gap for sure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from modelroute.kube.client import ObjectKind
from modelroute.kube.credentials import load_credentials
from modelroute.kube.stream import WatchClient
from tests.envtest.test_watch import Watched, service, until
from tests.harness.apiserver import Cluster

pytestmark = pytest.mark.apiserver


class GatedWatchClient(WatchClient):
    """The real client, whose watches wait for ``gate`` before they open."""

    def __init__(self, cluster: Cluster) -> None:
        credentials = load_credentials(str(cluster.kubeconfig))
        super().__init__(credentials, request_timeout_s=30, idle_timeout_s=90)
        self.gate = asyncio.Event()
        self.gate.set()
        self.answers: list[str] = []  # "open" or the error of each watch opened

    async def watch(
        self, kind: ObjectKind, namespace: str | None, resource_version: str, timeout_s: int
    ) -> AsyncGenerator[dict[str, Any], None]:
        await self.gate.wait()
        try:
            events = await super().watch(kind, namespace, resource_version, timeout_s)
        except Exception as exc:
            self.answers.append(type(exc).__name__)
            raise
        self.answers.append("open")
        return events


async def test_a_compacted_restart_relists_and_misses_no_deletion(
    crd: Cluster, namespace: str, caplog: pytest.LogCaptureFixture, control_plane: Cluster
) -> None:
    caplog.set_level(logging.INFO, logger="modelroute.kube.watch")
    api = GatedWatchClient(crd)
    watched = Watched(crd, namespace, api)
    core = watched.core
    for name in ("kept", "deleted", "changed"):
        core.create_namespaced_service(namespace, service(name))
    watched.cache.subscribe(("routes", "r"), [(namespace, "deleted"), (namespace, "changed")])
    task = asyncio.create_task(watched.loop.run())
    try:
        await until(lambda: watched.loop.lists == 1, "the first LIST")
        api.gate.clear()
        await asyncio.to_thread(control_plane.stop_apiserver)
        await asyncio.to_thread(control_plane.etcd_compact)
        await asyncio.to_thread(control_plane.start_apiserver)
        core.delete_namespaced_service("deleted", namespace, _preload_content=False)
        core.patch_namespaced_service("changed", namespace, {"metadata": {"labels": {"x": "y"}}})
        api.gate.set()
        await until(lambda: watched.loop.lists == 2, "the relist", within=30)
        assert await watched.cache.get((namespace, "deleted")) is None
        changed = await watched.cache.get((namespace, "changed"))
        assert changed is not None and changed["metadata"]["labels"] == {"x": "y"}
        assert ("DELETED", "deleted") in watched.seen
        # Relisted because of the 410 (an HTTP status or an ERROR event), not by chance.
        expired = [r for r in caplog.records if "410 Gone" in r.getMessage()]
        assert len(expired) == 1, (api.answers, [r.getMessage() for r in caplog.records])
        # The watch is live again: a new object arrives without another LIST.
        core.create_namespaced_service(namespace, service("new"))
        await until(lambda: ("ADDED", "new") in watched.seen, "an object created afterwards")
        assert watched.loop.lists == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await api.close()
