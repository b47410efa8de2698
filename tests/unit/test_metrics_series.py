"""The metrics' series budget, the fast exposition, and the /metrics endpoint off the event loop."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from modelroute.api.models import ModelRouteSpec
from modelroute.control.feed import HealthFeed
from modelroute.control.scrape import MAX_SLICE_S, MetricsEndpoint, _next_slice
from modelroute.core.types import ProbeFailure, RouteRef
from modelroute.metrics import Metrics
from modelroute.probing.prober import ProbeResult
from tests.unit.test_probe_failure_metrics import Source

NOW = datetime(2030, 1, 1, tzinfo=UTC)
#: The budget of issue 12: series per route x backend, at steady state with typical failures.
MAX_SERIES_PER_ROUTE_BACKEND = 8
SPEC = ModelRouteSpec.model_validate(
    {
        "service": {"name": "chat-llm", "port": 80},
        "backends": [
            {"name": n, "priority": i, "model": "m", "endpoint": f"http://{n}.test"}
            for i, n in enumerate(("vendor", "second", "inhouse"))
        ],
    }
)


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def _a_busy_route(metrics: Metrics) -> None:
    """A route whose vendor failed over (three failure classes) and came back, probed by the
    hub: every per-route and per-target series a route at steady state has."""
    source = Source()
    feed = HealthFeed(source, metrics, {}, lambda: None)
    feed.start(RouteRef("ai", "chat", "uid"), SPEC)
    typical = (ProbeFailure.UNAVAILABLE, ProbeFailure.RATE_LIMITED, ProbeFailure.SLOW_RESPONSE)
    for reason in typical:
        source.push("http://vendor.test", ProbeResult(False, None, "m", NOW, reason=reason))
    for url in ("http://vendor.test", "http://second.test", "http://inhouse.test"):
        source.push(url, ProbeResult(True, 12, "m", NOW))
    names = [b.name for b in SPEC.backends]
    metrics.set_active("ai", "chat", names, "vendor")
    metrics.set_weights("ai", "chat", names, {"vendor": 100})
    metrics.set_incident("ai", "chat", names, drilled=None, suspended=False)
    for name in ("second", "vendor"):  # failed over, then back
        metrics.failovers.labels("ai", "chat", name).inc()
    for target in ("vendor.test:80/m", "second.test:80/m"):
        metrics.probe_duration.labels(target).observe(0.012)
        metrics.probe_requests.labels(target, "cheap").inc()
    metrics.probe_requests.labels("vendor.test:80/m", "deep").inc()
    metrics.probe_tokens.labels("vendor.test:80/m").inc(9)


async def test_a_route_backend_exports_at_most_8_series() -> None:
    metrics = Metrics()
    _a_busy_route(metrics)
    per_backend = Counter(
        labels["backend"]
        for _, labels, _ in _samples(metrics.exposition().decode())
        if labels.get("route") == "chat" and "backend" in labels
    )
    assert set(per_backend) == {"vendor", "second", "inhouse"}
    assert max(per_backend.values()) <= MAX_SERIES_PER_ROUTE_BACKEND, per_backend


async def test_probe_series_are_per_target_not_per_route_and_no_created_series() -> None:
    metrics = Metrics()
    _a_busy_route(metrics)
    text = metrics.exposition().decode()
    assert "_created" not in text
    probe_labels = {
        tuple(sorted(labels))
        for name, labels, _ in _samples(text)
        if name.startswith(("modelroute_probe_duration", "modelroute_probe_requests"))
    }
    assert probe_labels == {("le", "target"), ("target",), ("kind", "target")}


async def test_the_fast_exposition_is_what_prometheus_client_renders() -> None:
    metrics = Metrics()
    _a_busy_route(metrics)
    metrics.probe_lag.observe(0.002)
    metrics.api_writes.labels("services").inc()

    def canonical(text: str) -> list[str]:
        return sorted(
            repr((n, sorted(labels.items()), float(v))) for n, labels, v in _samples(text)
        )

    fast = canonical(metrics.exposition().decode())
    slow = canonical(generate_latest(metrics.registry).decode())
    assert fast == slow
    assert (
        metrics.registry.get_sample_value(
            "modelroute_probe_duration_seconds_bucket",
            {"target": "vendor.test:80/m", "le": "0.025"},
        )
        == 1.0
    )


def test_label_values_are_escaped() -> None:
    metrics = Metrics()
    metrics.backend_up.labels('n"s', "r\\1", "b%s\n").set(1)
    [(_, labels, value)] = [
        s for s in _samples(metrics.exposition().decode()) if s[0] == "modelroute_backend_up"
    ]
    assert labels == {"namespace": 'n"s', "route": "r\\1", "backend": "b%s\n"} and value == 1


async def test_forget_drops_a_routes_series_and_forget_target_a_targets() -> None:
    metrics = Metrics()
    _a_busy_route(metrics)
    metrics.forget("ai", "chat", [b.name for b in SPEC.backends])
    metrics.forget_target("vendor.test:80/m")
    left = {(n, labels.get("target")) for n, labels, _ in _samples(metrics.exposition().decode())}
    assert all(target in (None, "second.test:80/m") for _, target in left)
    assert ("modelroute_probe_requests_total", "second.test:80/m") in left
    assert not any(n.startswith("modelroute_backend_up") for n, _ in left)


def test_rendering_in_another_thread_while_the_loop_adds_series() -> None:
    metrics, stop = Metrics(), threading.Event()
    errors: list[BaseException] = []

    def render() -> None:
        try:
            while not stop.is_set():
                metrics.exposition()
        except BaseException as exc:  # a dict changing size mid-iteration would land here
            errors.append(exc)

    thread = threading.Thread(target=render)
    thread.start()
    for i in range(20_000):
        metrics.backend_up.labels("ai", f"r{i}", "b").set(1)
        metrics.probe_duration.labels(f"t{i % 500}").observe(0.01)
    stop.set()
    thread.join()
    assert errors == []


async def test_scrapes_share_one_render_and_reuse_it() -> None:
    now, renders = [0.0], []

    def parts() -> Iterator[bytes]:
        renders.append(now[0])
        yield f"render {len(renders)}\n".encode()

    endpoint = MetricsEndpoint(parts, min_interval_s=1.0, clock=lambda: now[0])
    first = asyncio.create_task(endpoint.body())
    second = asyncio.create_task(endpoint.body())
    assert await first == await second == b"render 1\n"
    now[0] = 0.5
    assert await endpoint.body() == b"render 1\n"  # reused
    now[0] = 1.5
    assert await endpoint.body() == b"render 2\n"
    assert renders == [0.0, 1.5]


async def test_the_event_loop_runs_between_slices_of_a_render() -> None:
    ticks: list[int] = []

    async def ticker() -> None:
        for i in range(1000):
            ticks.append(i)
            await asyncio.sleep(0)

    seen_by_slice: list[int] = []

    def parts() -> Iterator[bytes]:
        for _ in range(5):
            seen_by_slice.append(len(ticks))
            yield b"x"

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    endpoint = MetricsEndpoint(parts, min_interval_s=0.0, slice_s=0.0, busy_share=0.0)
    assert await endpoint.body() == b"xxxxx"
    # Every slice saw the ticker move on: the render never held the loop for two slices.
    assert all(b > a for a, b in itertools.pairwise(seen_by_slice)), seen_by_slice
    task.cancel()


async def test_a_cancelled_scrape_does_not_cancel_the_render_others_wait_for() -> None:
    def parts() -> Iterator[bytes]:
        yield b"o"
        yield b"k"

    endpoint = MetricsEndpoint(parts, min_interval_s=0.0, slice_s=0.0)
    gone = asyncio.create_task(endpoint.body())
    waiting = asyncio.create_task(endpoint.body())
    await asyncio.sleep(0)
    gone.cancel()
    assert await waiting == b"ok"


async def test_a_large_exposition_comes_in_slices() -> None:
    metrics = Metrics()
    for i in range(1000):
        metrics.probe_duration.labels(f"t{i}").observe(0.01)
    parts = list(metrics.exposition_parts())
    assert len(parts) > 1000 // 64
    assert b"".join(parts) == metrics.exposition()


def test_a_family_is_rendered_again_only_after_a_change() -> None:
    metrics = Metrics()
    up = metrics.backend_up.labels("ai", "chat", "vendor")
    up.set(1)
    first = list(metrics.backend_up.parts())
    up.set(1)  # the same value: nothing to render again
    assert all(a is b for a, b in zip(first, metrics.backend_up.parts(), strict=True))
    up.set(0)
    assert b'backend="vendor"} 0.0' in metrics.backend_up.render()
    metrics.probe_duration.labels("t").observe(0.01)
    before = metrics.probe_duration.render()
    metrics.probe_duration.labels("t").observe(0.01)
    assert b'_count{target="t"} 2' in metrics.probe_duration.render() != before
    metrics.backend_up.remove("ai", "chat", "vendor")
    assert metrics.backend_up.render() == b""


async def test_the_handler_streams_the_whole_exposition() -> None:
    metrics = Metrics()
    _a_busy_route(metrics)
    for i in range(500):
        metrics.probe_duration.labels(f"t{i}").observe(0.01)
    endpoint = MetricsEndpoint(metrics.exposition_parts, min_interval_s=0.0)
    app = web.Application()
    app.router.add_get("/metrics", endpoint.handle)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        assert "Content-Encoding" not in response.headers
        assert await response.read() == metrics.exposition()


def test_a_busy_loop_gives_the_render_longer_slices() -> None:
    # The share of the loop's other work since the last slice, when longer than the slice;
    # capped, so a render never holds the loop for long however busy it is.
    assert _next_slice(0.002, 0.0) == 0.002
    assert _next_slice(0.002, 0.010) == 0.010
    assert _next_slice(0.002, 1.0) == MAX_SLICE_S < 0.05
