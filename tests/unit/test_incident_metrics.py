"""The incident controls' metrics: modelroute_drill_active and modelroute_route_suspended."""

from __future__ import annotations

from modelroute.metrics import Metrics


def test_metrics_of_the_incident_controls_and_their_removal() -> None:
    metrics = Metrics()

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(
            name, {"namespace": "ai", "route": "chat", **labels}
        )

    metrics.set_incident("ai", "chat", ["vendor", "inhouse"], drilled="vendor", suspended=True)
    assert value("modelroute_drill_active", backend="vendor") == 1
    assert value("modelroute_drill_active", backend="inhouse") == 0
    assert value("modelroute_route_suspended") == 1
    metrics.set_incident("ai", "chat", ["vendor", "inhouse"], drilled=None, suspended=False)
    assert value("modelroute_drill_active", backend="vendor") == 0
    assert value("modelroute_route_suspended") == 0
    metrics.forget("ai", "chat", ["vendor", "inhouse"])
    metrics.forget_route("ai", "chat")
    assert value("modelroute_drill_active", backend="vendor") is None
    assert value("modelroute_route_suspended") is None
