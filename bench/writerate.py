"""The API server's own write rate for Service patches, measured in the same run.

Why: the mass goal is "all N routes switched within floor + 0.25 s + N / (the API server's
write rate) + 0.25 s", and that rate depends on the machine and on whatever else loads it at
the moment. So every mass outage is preceded by a burst of N Service merge patches at
concurrency 50 from this process, timed from the first request sent to the last answer. The
rate is N / that time.

The write is the operator's routing write in a mass failover: the same merge patch (the
backend annotation, the selector and the ports, whose targetPort differs between the two
backends) on Services shaped like its stable Services (its labels, an ownerReference), in a
namespace the operator does not watch. On bare Services (no labels,
annotation or owner) the API server and etcd spent 20-25 % less CPU per selector patch (bench/
notes.md item 13), so a rate measured on them set a floor no operator could reach.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import aiohttp

from bench.common import CpuMeter, RawApi, cpu_between, create_namespace, delete_namespace
from modelroute.core.types import RouteRef
from modelroute.routing.ownership import MANAGED_BY, MANAGED_BY_LABEL, ROUTE_LABEL, owner_reference
from modelroute.routing.service_object import BACKEND_ANNOTATION, service_patch
from tests.harness.apiserver import Cluster

CONCURRENCY = 50
MERGE_PATCH = "application/merge-patch+json"


def _ports(backend: str) -> list[dict[str, Any]]:
    """The stable Service's port, mapped to the backend's targetPort (the bench's two backends
    listen on different ports, so a failover's patch changes the ports too)."""
    return [{"protocol": "TCP", "port": 80, "targetPort": 8080 if backend == "a" else 8000}]


def _uid(route: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-rate/{route}"))


def _service(i: int, backend: str) -> dict[str, Any]:
    """A Service shaped like the operator's stable Service of route ``r<i>``."""
    route = f"r{i:05d}"
    return {
        "metadata": {
            "name": f"s{i:05d}",
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, ROUTE_LABEL: route},
            "annotations": {BACKEND_ANNOTATION: backend},
            # The owner need not exist: no garbage collector runs against the bench's API server.
            # Its uid is fixed per route, so the two shapes of one Service differ in what a
            # failover changes only.
            "ownerReferences": [owner_reference(RouteRef("bench-rate", route, _uid(route)))],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": backend},
            "ports": _ports(backend),
        },
    }


class WriteRate:
    """N Services in a namespace of their own; :meth:`measure` patches them all once."""

    def __init__(self, cluster: Cluster, services: int) -> None:
        self._cluster = cluster
        self._api = RawApi.admin(cluster)
        self._cpu = CpuMeter(cluster.component_pids())
        self.namespace = create_namespace(cluster, "bench-rate")
        self.services = services
        self._flip = 0
        bodies = [_service(i, "a") for i in range(services)]
        path = f"/api/v1/namespaces/{self.namespace}/services"
        asyncio.run(self._burst([("POST", path, b, "application/json") for b in bodies]))

    def measure(self) -> dict[str, Any]:
        """Patch every Service once at concurrency 50: writes/s and server latency."""
        self._flip += 1
        was, now = ("a", "b") if self._flip % 2 else ("b", "a")
        # The operator's own diff between the two shapes: the patch its failover sends.
        patch = service_patch(_service(0, was), _service(0, now))
        assert patch is not None, "the two backends' Services do not differ"
        requests = [
            ("PATCH", f"/api/v1/namespaces/{self.namespace}/services/s{i:05d}", patch, MERGE_PATCH)
            for i in range(self.services)
        ]
        cpu0 = self._cpu.read()
        elapsed, latencies = asyncio.run(self._burst(requests))
        spent = cpu_between(cpu0, self._cpu.read())
        latencies.sort()
        return {
            "writes": self.services,
            "concurrency": CONCURRENCY,
            "elapsed_s": round(elapsed, 3),
            "writes_per_s": round(self.services / elapsed, 1),
            "latency_p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
            # The API server's and etcd's CPU per write, to set beside the outage's.
            "control_plane_cpu_ms_per_write": (
                round(1000 * sum(spent.values()) / self.services, 3) if len(spent) == 2 else None
            ),
            "cpu_s": spent,
        }

    def close(self) -> None:
        delete_namespace(self._cluster, self.namespace)

    async def _burst(
        self, requests: list[tuple[str, str, dict[str, Any], str]]
    ) -> tuple[float, list[float]]:
        headers = {"Authorization": f"Bearer {self._api.token}"}
        connector = aiohttp.TCPConnector(ssl=self._api.context, limit=CONCURRENCY)
        queue: asyncio.Queue[tuple[str, str, dict[str, Any], str]] = asyncio.Queue()
        for request in requests:
            queue.put_nowait(request)
        latencies: list[float] = []

        async def worker(session: aiohttp.ClientSession) -> None:
            while not queue.empty():
                method, path, body, content_type = queue.get_nowait()
                sent = time.perf_counter()
                async with session.request(
                    method,
                    self._api.server + path,
                    data=json.dumps(body),
                    headers={**headers, "Content-Type": content_type},
                ) as response:
                    await response.read()
                    if response.status >= 400:
                        raise RuntimeError(f"write-rate burst: {method} {path}: {response.status}")
                latencies.append(time.perf_counter() - sent)

        async with aiohttp.ClientSession(connector=connector) as session:
            # Open the connections first: the burst measures writes, not TLS handshakes.
            await asyncio.gather(*(self._warm(session, headers) for _ in range(CONCURRENCY)))
            started = time.perf_counter()
            await asyncio.gather(*(worker(session) for _ in range(CONCURRENCY)))
            return time.perf_counter() - started, latencies

    async def _warm(self, session: aiohttp.ClientSession, headers: dict[str, str]) -> None:
        async with session.get(self._api.server + "/healthz", headers=headers) as response:
            await response.read()
