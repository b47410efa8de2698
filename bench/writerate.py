"""The API server's own write rate for Service patches, measured in the same run.

Why: the mass goal is "all N routes switched within floor + 0.25 s + N / (the API server's
write rate) + 0.25 s", and that rate depends on the machine and on whatever else loads it at
the moment. So every mass outage is preceded by a burst of N Service merge patches at
concurrency 50 from this process (the same kind of write as the operator's routing write, a
selector change, on N Services of a namespace the operator does not watch), timed from the
first request sent to the last answer. The rate is N / that time.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from bench.common import CpuMeter, RawApi, cpu_between, create_namespace, delete_namespace
from tests.harness.apiserver import Cluster

CONCURRENCY = 50
MERGE_PATCH = "application/merge-patch+json"


class WriteRate:
    """N Services in a namespace of their own; :meth:`measure` patches them all once."""

    def __init__(self, cluster: Cluster, services: int) -> None:
        self._cluster = cluster
        self._api = RawApi.admin(cluster)
        self._cpu = CpuMeter(cluster.component_pids())
        self.namespace = create_namespace(cluster, "bench-rate")
        self.services = services
        self._flip = 0
        bodies = [
            {
                "metadata": {"name": f"s{i:05d}"},
                "spec": {"selector": {"app": "a"}, "ports": [{"port": 80, "protocol": "TCP"}]},
            }
            for i in range(services)
        ]
        path = f"/api/v1/namespaces/{self.namespace}/services"
        asyncio.run(self._burst([("POST", path, b, "application/json") for b in bodies]))

    def measure(self) -> dict[str, Any]:
        """Patch every Service once at concurrency 50: writes/s and server latency."""
        self._flip += 1
        selector = {"app": "b" if self._flip % 2 else "a"}
        requests = [
            (
                "PATCH",
                f"/api/v1/namespaces/{self.namespace}/services/s{i:05d}",
                {"spec": {"selector": selector}},
                MERGE_PATCH,
            )
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
