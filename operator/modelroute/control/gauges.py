"""A route's gauges: which backend has the traffic, the weights, drills, suspension and the
route-level alert signals, set from each plan's status."""

from __future__ import annotations

from modelroute.api.models import ModelRouteSpec
from modelroute.api.status import DrillPhase, ModelRouteStatus
from modelroute.core.signals import route_signals
from modelroute.core.types import RouteRef
from modelroute.metrics import Metrics


class RouteGauges:
    """Sets one route's gauges, touching the per-backend ones only when they change: label
    lookups on every reconcile were a visible share of the CPU of a mass failover."""

    def __init__(self, metrics: Metrics, ref: RouteRef) -> None:
        self._metrics = metrics
        self._ref = ref
        self._shown: tuple[object, ...] | None = None

    def show(self, spec: ModelRouteSpec, status: ModelRouteStatus, active: str | None) -> None:
        """Export what ``status`` says about the route (``active``: where traffic is)."""
        ns, name, metrics = self._ref.namespace, self._ref.name, self._metrics
        names = [b.name for b in spec.backends]
        weights = {t.backend: t.weight for t in status.traffic}
        drill = status.drill
        drilled = drill.backend if drill and drill.phase is DrillPhase.ACTIVE else None
        signals = route_signals(spec, status)
        shown = (names, active, weights, drilled, spec.suspend, signals)
        if self._shown != shown:
            self._shown = shown
            metrics.set_active(ns, name, names, active)
            metrics.set_weights(ns, name, names, weights)
            metrics.set_incident(ns, name, names, drilled=drilled, suspended=spec.suspend)
            metrics.set_route_signals(ns, name, *signals)
