"""scrape: what a Prometheus scrape costs at N routes x 3 backends, and what it does to the loop.

``python -m bench.scrape [--routes 3000] [--mode shared|distinct] [--encoding identity]`` runs
in one process, no cluster: the operator's own :class:`~modelroute.metrics.Metrics`, filled as at
steady state (every backend up, one failover per route, two failure classes on one backend,
the route-level and drill gauges, a cheap histogram and request counters per probe target, a
deep probe and its tokens on the vendor), served by the operator's own
:class:`~modelroute.control.scrape.MetricsEndpoint` on aiohttp. Probe targets are ``shared``
(every route probes the same three backends, as with one vendor and a shared in-house pool)
or ``distinct`` (every backend of every route has its own target: the worst case).

On the event loop, probe-like tasks (``--probes`` per second, each updating metrics as a probe
result does) record how late each wakes up, as ``modelroute_probe_schedule_lag_seconds`` does.
Windows without scrapes and with a scrape every ``--every`` seconds (by a client in another
process) take turns, ``--rounds`` of each (medians per statistic); then one window served the
old way (prometheus_client's ``generate_latest`` on the event loop, per-route probe
histograms, ``_created`` series) for comparison. Results go to stdout as JSON and to
bench/results/scrape.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    enable_created_metrics,
    generate_latest,
)

from bench.stats import summary
from modelroute.control.scrape import MetricsEndpoint
from modelroute.metrics import _LABELS, _PROBE_BUCKETS, Metrics

BACKENDS = ("vendor", "second", "inhouse")
RESULTS = Path(__file__).resolve().parent / "results" / "scrape.json"
# A scraper as Prometheus is one: it asks for gzip (sys.argv[4] "identity": plain text).
_CLIENT = """
import gzip, json, sys, time, urllib.request
url, every, until = sys.argv[1], float(sys.argv[2]), time.time() + float(sys.argv[3])
request = urllib.request.Request(url, headers={"Accept-Encoding": sys.argv[4]})
took, size, text = [], 0, 0
while time.time() < until:
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read()
        if response.headers.get("Content-Encoding") == "gzip":
            body, size = gzip.decompress(body), len(body)
        else:
            size = len(body)
    took.append(time.perf_counter() - start)
    text = len(body)
    time.sleep(max(0.0, every - took[-1]))
print(json.dumps({"took": took, "bytes": size, "text_bytes": text}))
"""


def _targets(routes: int, mode: str) -> list[list[str]]:
    if mode == "shared":
        return [[f"{b}.ai.svc:8000/model-{b}" for b in BACKENDS]] * routes
    return [
        [f"127.0.0.1:{20_000 + 3 * r + i}/model-{b}" for i, b in enumerate(BACKENDS)]
        for r in range(routes)
    ]


def fill(metrics: Metrics, routes: int, mode: str) -> None:
    """Every series a fleet at steady state has (see the module doc)."""
    for r, targets in enumerate(_targets(routes, mode)):
        route = f"r{r:04d}"
        metrics.set_active("bench", route, BACKENDS, "vendor")
        metrics.set_weights("bench", route, BACKENDS, {"vendor": 100})
        # What RouteGauges.show sets for every route as well.
        metrics.set_incident("bench", route, BACKENDS, drilled=None, suspended=False)
        metrics.set_route_signals("bench", route, failed_over=False, failback_pending=False)
        for backend in BACKENDS:
            metrics.backend_up.labels("bench", route, backend).set(1)
        metrics.failovers.labels("bench", route, "second").inc()
        metrics.failovers.labels("bench", route, "vendor").inc()
        for reason in ("Unavailable", "RateLimited"):
            metrics.probe_failures.labels("bench", route, "vendor", reason).inc()
        for target in targets:
            for value in (0.004, 0.012, 0.03, 0.2):
                metrics.probe_duration.labels(target).observe(value)
            metrics.probe_requests.labels(target, "cheap").inc(17)
        metrics.probe_requests.labels(targets[0], "deep").inc()
        metrics.probe_tokens.labels(targets[0]).inc(9)


def old_registry(routes: int) -> CollectorRegistry:
    """The same fleet in the previous metrics: prometheus_client, probe histograms per route."""
    r = CollectorRegistry()
    up = Gauge("modelroute_backend_up", "up", _LABELS, registry=r)
    duration = Histogram(
        "modelroute_probe_duration_seconds", "d", _LABELS, buckets=_PROBE_BUCKETS, registry=r
    )
    failures = Counter("modelroute_probe_failures_total", "f", (*_LABELS, "reason"), registry=r)
    failovers = Counter("modelroute_failovers_total", "f", _LABELS, registry=r)
    active = Gauge("modelroute_active_backend", "a", _LABELS, registry=r)
    weight = Gauge("modelroute_backend_weight", "w", _LABELS, registry=r)
    for i in range(routes):
        route = f"r{i:04d}"
        for backend in BACKENDS:
            labels = ("bench", route, backend)
            up.labels(*labels).set(1)
            active.labels(*labels).set(backend == "vendor")
            weight.labels(*labels).set(100 if backend == "vendor" else 0)
            duration.labels(*labels).observe(0.012)
        failovers.labels("bench", route, "second").inc()
        failovers.labels("bench", route, "vendor").inc()
        for reason in ("Unavailable", "RateLimited"):
            failures.labels("bench", route, "vendor", reason).inc()
    return r


def series(text: str, routes: int, targets: int) -> dict[str, Any]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    per_route = sum(1 for line in lines if 'route="' in line)
    per_target = sum(1 for line in lines if 'target="' in line)
    return {
        "series": len(lines),
        "per_route_backend": round(per_route / (routes * len(BACKENDS)), 2),
        "per_target": round(per_target / targets, 2) if targets else None,
        "targets": targets,
    }


async def _probe_like(
    metrics: Metrics, targets: list[str], lags: list[float], rate: int, until: float
) -> None:
    """``rate`` wake-ups a second, spread over 100 tasks, each updating the fleet's metrics as
    a probe result does (the next target's histogram and counter, a route's backend_up)."""
    loop = asyncio.get_running_loop()
    turn = iter(range(10**9))

    async def one() -> None:
        period = 100 / rate
        due = loop.time() + random.uniform(0, period)
        while due < until:
            await asyncio.sleep(max(0.0, due - loop.time()))
            lags.append(max(0.0, loop.time() - due))
            n = next(turn)
            target = targets[n % len(targets)]
            metrics.probe_duration.labels(target).observe(0.01)
            metrics.probe_requests.labels(target, "cheap").inc()
            route = f"r{n // 3 % (len(targets) // 3 or 1):04d}"
            metrics.backend_up.labels("bench", route, BACKENDS[n % 3]).set(1)
            due += period

    await asyncio.gather(*(one() for _ in range(100)))


async def window(
    metrics: Metrics, targets: list[str], handler: Any, args: argparse.Namespace, scrape: bool
) -> dict[str, Any]:
    """One window: probe lag, and the scrapes of a client in another process if ``scrape``."""
    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    lags: list[float] = []
    loop = asyncio.get_running_loop()
    client = None
    if scrape:
        client = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CLIENT,
            f"http://127.0.0.1:{port}/metrics",
            str(args.every),
            str(args.seconds),
            args.encoding,
            stdout=subprocess.PIPE,
        )
    await _probe_like(metrics, targets, lags, args.probes, loop.time() + args.seconds)
    out: dict[str, Any] = {"lag_ms": _ms(summary(lags))}
    if client is not None:
        stdout, _ = await client.communicate()
        scraped = json.loads(stdout)
        out["scrape_ms"] = _ms(summary(scraped["took"]))
        out["bytes"] = scraped["bytes"]
        out["text_bytes"] = scraped["text_bytes"]
    await runner.cleanup()
    return out


def _median_of(runs: list[dict[str, Any]], key: str) -> Any:
    """Per statistic, the median over the rounds (n: the total)."""
    first = runs[0][key]
    if not isinstance(first, dict):
        return first
    return {
        stat: sum(r[key][stat] for r in runs)
        if stat == "n"
        else sorted(r[key][stat] for r in runs)[len(runs) // 2]
        for stat in first
    }


def _ms(stats: dict[str, float | int]) -> dict[str, float | int]:
    return {k: (v if k == "n" else round(v * 1000, 2)) for k, v in stats.items()}


async def run_mode(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    metrics = Metrics()
    fill(metrics, args.routes, mode)
    targets = 3 if mode == "shared" else 3 * args.routes
    renders = []
    for _ in range(5):
        start = time.perf_counter()
        body = metrics.exposition()
        renders.append(time.perf_counter() - start)
    result: dict[str, Any] = {
        **series(body.decode(), args.routes, targets),
        "render_ms": _ms(summary(renders)),
    }
    endpoint = MetricsEndpoint(metrics.exposition_parts, min_interval_s=0.0)
    fleet = sorted({t for route in _targets(args.routes, mode) for t in route})
    # Windows without and with scrapes take turns, so the machine's own noise (other
    # processes) falls on both alike.
    windows: dict[str, list[dict[str, Any]]] = {"idle": [], "scraped": []}
    for _ in range(args.rounds):
        for name in windows:
            got = await window(metrics, fleet, endpoint.handle, args, name == "scraped")
            windows[name].append(got)
    for name, runs in windows.items():
        result[name] = {key: _median_of(runs, key) for key in runs[0]}
    return result


async def run_old(args: argparse.Namespace) -> dict[str, Any]:
    enable_created_metrics()  # as it was
    registry = old_registry(args.routes)
    lag_metrics = Metrics()
    enable_created_metrics()  # Metrics() turned them off again

    async def on_the_loop(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    body = generate_latest(registry).decode()
    fleet = [f"old-{i}" for i in range(3 * args.routes)]
    scraped = await window(lag_metrics, fleet, on_the_loop, args, scrape=True)
    return {**series(body, args.routes, 0), "scraped": scraped}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scrape", description=__doc__)
    parser.add_argument("--routes", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=10.0, help="each window (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="idle/scraped window pairs")
    parser.add_argument("--every", type=float, default=1.0, help="scrape period (default 1 s)")
    parser.add_argument("--probes", type=int, default=600, help="probe wake-ups a second")
    parser.add_argument("--mode", action="append", choices=("shared", "distinct"))
    parser.add_argument("--no-old", action="store_true", help="skip the old path's window")
    parser.add_argument(
        "--encoding",
        default="gzip",
        choices=("gzip", "identity"),
        help="Accept-Encoding of the scraper (default gzip, as Prometheus sends)",
    )
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"routes": args.routes, "backends": len(BACKENDS)}
    for mode in args.mode or ["shared", "distinct"]:
        results[mode] = asyncio.run(run_mode(args, mode))
        print(json.dumps({mode: results[mode]}), file=sys.stderr, flush=True)
    if not args.no_old:
        results["old_on_loop"] = asyncio.run(run_old(args))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(json.dumps(results, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
