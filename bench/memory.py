"""memory: where a route's bytes go, in one process, no cluster.

``python -m bench.memory [--routes 500 --routes 1500] [--top 25]`` builds N routes x 3 backends
(sharing three loopback fake vendors) through the operator's own path (the Controller's
start-up adoption, real workers, probe hub, caches, metrics; the API server is
``tests.fakes.kube.FakeKube``), waits until every route is routed and its first statuses are
written, and then takes a tracemalloc snapshot. Per size: the traced bytes of the operator's
own objects (allocations in the fakes excluded) per route, and the top lines by size; across
two sizes, the slope (bytes per extra route), which excludes what every process has anyway.
kopf's own per-object state is not in it (this harness has no kopf); the scale benchmark's
RSS at two sizes covers the whole process.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from typing import Any

from modelroute.control.controller import Controller
from modelroute.control.route import Deps
from modelroute.kube.cache import ObjectCache, slim_object, slim_secret
from modelroute.kube.client import SECRETS, SERVICES
from modelroute.kube.events import EventRecorder
from modelroute.metrics import Metrics
from modelroute.probing import prober
from modelroute.probing.hub import ProbeHub
from modelroute.settings import Settings
from tests.fakes.backend import FakeBackend
from tests.fakes.kube import FakeKube

NS = "bench"
FRAMES = 8
BACKENDS = (("vendor", "vendor-egress", 8080), ("inhouse", "llama-vllm", 8000))
BACKENDS += (("alt", "alt-vllm", 8000),)
PROBE = {"intervalSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3, "successThreshold": 2}
#: Frames in the fakes and the harness are not the operator's.
_FOREIGN = ("*/tests/*", "*/bench/*", "*tracemalloc*")


def _body(i: int, urls: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": f"r{i:05d}", "namespace": NS, "uid": f"u{i}", "generation": 1},
        "spec": {
            "service": {"name": f"r{i:05d}-llm", "port": 80},
            "backends": [
                {
                    "name": name,
                    "priority": p,
                    "model": "m",
                    "serviceRef": {"name": svc, "port": port},
                    "endpoint": urls[name],
                }
                for p, (name, svc, port) in enumerate(BACKENDS)
            ],
            "probe": {"type": "OpenAIModels", **PROBE},
            "failback": {"mode": "Automatic", "stabilizationSeconds": 60},
        },
    }


def _deps(kube: FakeKube) -> tuple[Deps, ProbeHub]:
    metrics = Metrics()
    secrets = ObjectCache(functools.partial(kube.get_object, SECRETS), slim_secret)

    def now() -> datetime:
        return datetime.now(UTC)

    hub = ProbeHub(
        session=prober.new_session(connection_limit=0, connection_limit_per_host=20),
        secrets=secrets,
        metrics=metrics,
        now=now,
        start_jitter_seconds=1.0,
        max_retry_after_seconds=60.0,
    )
    caches = {SERVICES: ObjectCache(functools.partial(kube.get_object, SERVICES), slim_object)}
    deps = Deps(
        settings=Settings(),
        kube=kube,
        caches=caches,
        secrets=secrets,
        metrics=metrics,
        events=EventRecorder(kube, "bench"),
        probes=hub,
        now=now,
    )
    return deps, hub


async def measure(routes: int, top: int) -> dict[str, Any]:
    """Start ``routes`` routes, wait until all are routed and quiet, then count."""
    kube = FakeKube()
    for _, svc, port in BACKENDS:
        kube.seed(
            {
                "metadata": {"name": svc, "namespace": NS},
                "spec": {"selector": {"app": svc}, "ports": [{"port": port}]},
            },
            watched=False,
        )
    fakes = [FakeBackend(("m",)) for _ in BACKENDS]
    for fake in fakes:
        await fake.start()
    urls = {name: fake.url for (name, _, _), fake in zip(BACKENDS, fakes, strict=True)}
    bodies = [_body(i, urls) for i in range(routes)]
    gc.collect()
    tracemalloc.start(FRAMES)
    base = tracemalloc.take_snapshot()
    deps, hub = _deps(kube)
    controller = Controller(deps)
    started = time.perf_counter()
    await controller.adopt_listed(bodies)
    del bodies
    await _wait_routed(kube, routes)
    routed_s = time.perf_counter() - started
    await asyncio.sleep(12)  # every backend's first verdicts and their status writes
    gc.collect()
    foreign = [tracemalloc.Filter(False, p, all_frames=True) for p in _FOREIGN]
    stats = (
        tracemalloc.take_snapshot()
        .filter_traces(foreign)
        .compare_to(base.filter_traces(foreign), "traceback")
    )
    total = sum(s.size_diff for s in stats)
    by_line = _by_operator_line(stats)
    out = {
        "routes": routes,
        "routed_s": round(routed_s, 2),
        "traced_bytes": total,
        "bytes_per_route": round(total / routes),
        "top": [(where, size, round(size / routes)) for where, size in by_line[:top]],
    }
    tracemalloc.stop()
    await controller.shutdown()
    await hub.close()
    for fake in fakes:
        await fake.stop()
    return out


def _by_operator_line(stats: list[tracemalloc.StatisticDiff]) -> list[tuple[str, int]]:
    """Sizes grouped by the innermost frame in the operator's code (and the line allocating,
    when that is elsewhere: pydantic, asyncio, copy)."""
    sizes: dict[str, int] = {}
    for stat in stats:
        frames = list(reversed(stat.traceback))  # innermost first
        ours = next((f for f in frames if "/modelroute/" in f.filename), None)
        inner = f"{frames[0].filename.rsplit('/', 1)[-1]}:{frames[0].lineno}"
        key = f"{ours.filename.rsplit('/modelroute/', 1)[-1]}:{ours.lineno}" if ours else "-"
        key = f"{key} <- {inner}" if ours is not frames[0] else key
        sizes[key] = sizes.get(key, 0) + stat.size_diff
    return sorted(sizes.items(), key=lambda kv: -kv[1])


async def _wait_routed(kube: FakeKube, routes: int) -> None:
    # FakeKube has no event to wait on: poll it.
    while sum(1 for s in kube.services.values() if s["metadata"]["name"].endswith("-llm")) < routes:  # noqa: ASYNC110
        await asyncio.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--routes", type=int, action="append")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    sizes = args.routes or [500, 1500]
    results = [asyncio.run(measure(n, args.top)) for n in sizes]
    for r in results:
        print(json.dumps(r, indent=1), flush=True)
    if len(results) >= 2:
        a, b = results[0], results[-1]
        slope = (b["traced_bytes"] - a["traced_bytes"]) / (b["routes"] - a["routes"])
        print(json.dumps({"slope_bytes_per_route": round(slope)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
