"""core.signals: the route-level alert signals, a pure function of spec and the planned status."""

from __future__ import annotations

import pytest

from modelroute.api.models import ModelRouteSpec
from modelroute.api.status import BackendStatus, ModelRouteStatus
from modelroute.core.signals import RouteSignals, route_signals
from modelroute.metrics import Metrics

# Listed out of preference order: priority decides, not the list position.
SPEC = ModelRouteSpec.model_validate(
    {
        "service": {"name": "chat-llm", "port": 80},
        "backends": [
            {"name": "inhouse", "priority": 1, "model": "llama", "endpoint": "http://i.test"},
            {"name": "vendor", "priority": 0, "model": "gpt-4o", "endpoint": "http://v.test"},
            {"name": "spare", "priority": 2, "model": "llama", "endpoint": "http://s.test"},
        ],
    }
)


def status(active: str | None, **healthy: bool | None) -> ModelRouteStatus:
    backends = [BackendStatus(name=name, healthy=h) for name, h in healthy.items()]
    return ModelRouteStatus(active_backend=active, backends=backends)


@pytest.mark.parametrize(
    ("active", "healthy", "expected"),
    [
        # Before a first choice nothing is failed over, whatever health says.
        (None, {"vendor": False, "inhouse": False}, RouteSignals(False, False)),
        # On the preferred backend: neither, even with other backends down.
        ("vendor", {"vendor": True, "inhouse": False}, RouteSignals(False, False)),
        # Failed over while the preferred backend is still down.
        ("inhouse", {"vendor": False, "inhouse": True}, RouteSignals(True, False)),
        # ... not yet probed (healthy unset) is not "healthy again".
        ("inhouse", {"vendor": None, "inhouse": True}, RouteSignals(True, False)),
        # The preferred backend is healthy again: failback pending (stabilization, Manual).
        ("inhouse", {"vendor": True, "inhouse": True}, RouteSignals(True, True)),
        # On the third choice, the second is back: that is a pending failback too.
        ("spare", {"vendor": False, "inhouse": True, "spare": True}, RouteSignals(True, True)),
        # Less preferred backends being healthy is no failback.
        ("inhouse", {"vendor": False, "inhouse": True, "spare": True}, RouteSignals(True, False)),
        # Traffic still on a backend removed from spec: any healthy listed backend is ahead.
        ("gone", {"spare": True}, RouteSignals(True, True)),
        ("gone", {"vendor": False}, RouteSignals(True, False)),
    ],
)
def test_route_signals(
    active: str | None, healthy: dict[str, bool | None], expected: RouteSignals
) -> None:
    assert route_signals(SPEC, status(active, **healthy)) == expected


def test_metrics_set_and_forget_the_route_signals_of_one_route_only() -> None:
    metrics = Metrics()
    metrics.set_route_signals("ai", "chat", True, False)
    metrics.set_route_signals("ai", "other", True, True)

    def value(name: str, route: str) -> float | None:
        labels = {"namespace": "ai", "route": route}
        return metrics.registry.get_sample_value(name, labels)

    assert value("modelroute_route_failed_over", "chat") == 1
    assert value("modelroute_failback_pending", "chat") == 0
    metrics.forget_route("ai", "chat")
    assert value("modelroute_route_failed_over", "chat") is None
    assert value("modelroute_failback_pending", "chat") is None
    assert value("modelroute_failback_pending", "other") == 1
    metrics.forget_route("ai", "never-reported")  # nothing to drop is no error


def test_failover_counters_are_exported_at_zero_before_the_first_move() -> None:
    # increase() cannot see a counter's first sample: a series born at 1 hides the first move.
    metrics = Metrics()
    metrics.set_active("ai", "chat", ["vendor", "inhouse"], "vendor")
    for backend in ("vendor", "inhouse"):
        labels = {"namespace": "ai", "route": "chat", "backend": backend}
        assert metrics.registry.get_sample_value("modelroute_failovers_total", labels) == 0
    metrics.forget("ai", "chat", ["vendor", "inhouse"])
    assert metrics.registry.get_sample_value("modelroute_failovers_total", labels) is None
