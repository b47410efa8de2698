"""Deep probes through the real hub, against a fake vendor that lists but cannot generate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from modelroute.api.models import ModelRouteSpec
from modelroute.control.feed import HealthFeed
from modelroute.core.health import HealthRecord
from modelroute.core.types import RouteRef
from modelroute.kube.cache import ObjectCache, slim_secret
from modelroute.metrics import Metrics
from modelroute.probing import prober
from modelroute.probing.hub import ProbeHub
from tests.fakes.openai_backend import FakeBackend, Fault

REF = RouteRef("ai", "chat", "uid")


async def _no_secret(namespace: str, name: str) -> dict[str, Any] | None:
    return None


@pytest.fixture
async def hub() -> AsyncIterator[ProbeHub]:
    probe_hub = ProbeHub(
        session=prober.new_session(connection_limit=0, connection_limit_per_host=10),
        secrets=ObjectCache(_no_secret, slim_secret),
        metrics=Metrics(),
        now=lambda: datetime(2030, 1, 1, tzinfo=UTC),
        start_jitter_seconds=0.0,
        max_retry_after_seconds=60.0,
    )
    yield probe_hub
    await probe_hub.close()


def _spec(url: str, other: str) -> ModelRouteSpec:
    return ModelRouteSpec.model_validate(
        {
            "service": {"name": "chat-llm", "port": 80},
            "backends": [
                {"name": "vendor", "priority": 0, "model": "gpt-4o", "endpoint": url},
                {"name": "inhouse", "priority": 1, "model": "gpt-4o", "endpoint": other},
            ],
            "probe": {
                "intervalSeconds": 1,
                "timeoutSeconds": 1,
                "failureThreshold": 3,
                "successThreshold": 2,
                "deep": {"intervalSeconds": 300, "timeoutSeconds": 2},
            },
        }
    )


async def _until(check: Any, within: float = 30.0) -> None:
    """Poll ``check`` (probe counts and records change in other tasks) until it holds.

    The ceiling only guards a hang: wide, for a loaded CI machine."""
    for _ in range(int(within / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {within}s")


def _count(hub_metrics: Metrics, name: str, **labels: str) -> float:
    return hub_metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_backend_that_lists_the_model_but_cannot_generate_turns_unhealthy(
    hub: ProbeHub,
) -> None:
    metrics: Metrics = hub._metrics  # the hub's own, to read what it counted
    async with FakeBackend() as vendor, FakeBackend() as inhouse:
        await vendor.set_fault(Fault.CANNOT_GENERATE)
        feed = HealthFeed(hub, metrics, {}, lambda: None)
        feed.start(REF, _spec(vendor.url, inhouse.url))
        await _until(lambda: feed.records["vendor"].deep_failure is not None)
        vendor_record: HealthRecord = feed.records["vendor"]
        assert vendor_record.healthy is False
        # The deep failure's own message, or (once a cheap probe came after it) the cheap
        # probe's, which says the backend stays unhealthy until a deep probe passes.
        assert "deep probe" in vendor_record.message, vendor_record.message
        await _until(lambda: feed.records["inhouse"].healthy is True)
        # The cheap probe goes on passing (the model is listed) and heals nothing.
        listed = vendor.requests_by_path["/v1/models"]
        await _until(lambda: vendor.requests_by_path["/v1/models"] >= listed + 2)
        assert feed.records["vendor"].healthy is False
        assert feed.records["vendor"].consecutive_successes == 0
        # While it fails, the deep probe is retried at the cheap interval, not every 300 s
        # (waited for: on a loaded machine the retry may land after the cheap probes above).
        await _until(lambda: vendor.requests_by_path["/v1/chat/completions"] >= 2)

        await vendor.clear_fault()
        await _until(lambda: feed.records["vendor"].healthy is True)
        assert feed.records["vendor"].deep_failure is None
        generated = vendor.requests_by_path["/v1/chat/completions"]
        await asyncio.sleep(1.5)  # passing again: back to one deep probe per 300 s
        assert vendor.requests_by_path["/v1/chat/completions"] == generated

        target = f"127.0.0.1:{vendor.port}/gpt-4o"
        requests = "modelroute_probe_requests_total"
        assert _count(metrics, requests, target=target, kind="deep") == generated
        assert _count(metrics, requests, target=target, kind="cheap") >= 3
        # Tokens only for the completion that came back (8 input + 1 output).
        assert _count(metrics, "modelroute_probe_tokens_estimated_total", target=target) == 9
        feed.stop()
        assert len(hub) == 0  # the feed's loops, cheap and deep, stopped with it
        assert _count(metrics, requests, target=target, kind="deep") == 0  # forgotten


async def test_routes_share_one_deep_probe(hub: ProbeHub) -> None:
    metrics: Metrics = hub._metrics
    async with FakeBackend() as vendor, FakeBackend() as inhouse:
        spec = _spec(vendor.url, inhouse.url)
        feeds = [HealthFeed(hub, metrics, {}, lambda: None) for _ in range(3)]
        for i, feed in enumerate(feeds):
            feed.start(RouteRef("ai", f"chat{i}", str(i)), spec)
        # Two backends: one cheap and one deep loop each, whatever the number of routes.
        assert len(hub) == 4
        await _until(lambda: all(f.records["vendor"].healthy for f in feeds))
        await _until(lambda: vendor.requests_by_path["/v1/chat/completions"] >= 1)
        await asyncio.sleep(0.3)
        assert vendor.requests_by_path["/v1/chat/completions"] == 1
        for feed in feeds:
            feed.stop()
