"""The failure class of each probe in the route's health feed and in the failures metric."""

from __future__ import annotations

from datetime import UTC, datetime

from modelroute.api.models import ModelRouteSpec
from modelroute.control.feed import HealthFeed
from modelroute.core.types import ProbeFailure, RouteRef
from modelroute.metrics import Metrics
from modelroute.probing.hub import ProbeKey, Subscriber
from modelroute.probing.prober import ProbeResult

NOW = datetime(2030, 1, 1, tzinfo=UTC)
FAILURES = "modelroute_probe_failures_total"
SPEC = ModelRouteSpec.model_validate(
    {
        "service": {"name": "chat-llm", "port": 80},
        "backends": [
            {"name": "vendor", "priority": 0, "model": "gpt-4o", "endpoint": "http://v.test"},
            {"name": "inhouse", "priority": 1, "model": "llama", "endpoint": "http://i.test"},
        ],
    }
)


class Source:
    """A ProbeSource the test pushes results through, by probe URL."""

    def __init__(self) -> None:
        self.subscribers: dict[str, list[Subscriber]] = {}

    def subscribe(self, key: ProbeKey, subscriber: Subscriber) -> None:
        self.subscribers.setdefault(key.url, []).append(subscriber)

    def unsubscribe(self, key: ProbeKey, subscriber: Subscriber) -> None:
        self.subscribers[key.url].remove(subscriber)

    def push(self, url: str, result: ProbeResult) -> None:
        for subscriber in self.subscribers[url]:
            subscriber(result)


def failed(reason: ProbeFailure | None, message: str = "m") -> ProbeResult:
    return ProbeResult(False, None, message, NOW, reason=reason)


def count(metrics: Metrics, route: str, backend: str, reason: str) -> float | None:
    labels = {"namespace": "ai", "route": route, "backend": backend, "reason": reason}
    return metrics.registry.get_sample_value(FAILURES, labels)


async def test_failures_are_counted_by_class_and_kept_in_the_record() -> None:
    metrics, source = Metrics(), Source()
    feed = HealthFeed(source, metrics, {}, lambda: None)
    feed.start(RouteRef("ai", "chat", "uid"), SPEC)
    source.push("http://v.test", failed(ProbeFailure.AUTH_FAILED, "unauthorized (401)"))
    source.push("http://v.test", failed(ProbeFailure.AUTH_FAILED, "unauthorized (401)"))
    source.push("http://v.test", failed(ProbeFailure.RATE_LIMITED, "rate limited (429)"))
    source.push("http://i.test", failed(None))  # a source that gives no class
    assert count(metrics, "chat", "vendor", "AuthFailed") == 2
    assert count(metrics, "chat", "vendor", "RateLimited") == 1
    assert count(metrics, "chat", "inhouse", "Unavailable") == 1
    assert feed.records["vendor"].reason is ProbeFailure.RATE_LIMITED
    source.push("http://v.test", ProbeResult(True, 5, "ok", NOW))
    assert feed.records["vendor"].reason is None
    feed.stop()


async def test_forget_drops_every_reason_of_the_backend_only() -> None:
    metrics, source = Metrics(), Source()
    for route in ("chat", "other"):
        HealthFeed(source, metrics, {}, lambda: None).start(RouteRef("ai", route, route), SPEC)
    for reason in (ProbeFailure.UNAVAILABLE, ProbeFailure.BAD_RESPONSE):
        source.push("http://v.test", failed(reason))
    metrics.forget("ai", "chat", ["vendor"])
    assert count(metrics, "chat", "vendor", "Unavailable") is None
    assert count(metrics, "chat", "vendor", "BadResponse") is None
    assert count(metrics, "other", "vendor", "Unavailable") == 1
    metrics.forget("ai", "chat", ["never-probed"])  # nothing to drop is no error
