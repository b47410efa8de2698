"""Prometheus metrics on an injectable registry; labels are bounded (namespace, route, backend).

``modelroute_probe_failures_total`` has one more label, ``reason``: the probe failure's class
(``core.types.ProbeFailure``, a closed set of seven), so it stays bounded too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LABELS = ("namespace", "route", "backend")
_PROBE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The operator's metrics. One instance per process; tests pass their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.backend_up = Gauge(
            "modelroute_backend_up",
            "1 if the backend is healthy (after hysteresis), else 0",
            _LABELS,
            registry=r,
        )
        self.probe_duration = Histogram(
            "modelroute_probe_duration_seconds",
            "Duration of health probes",
            _LABELS,
            buckets=_PROBE_BUCKETS,
            registry=r,
        )
        self.probe_failures = Counter(
            "modelroute_probe_failures_total",
            "Failed health probes, by failure class (AuthFailed, ModelNotServed, RateLimited, "
            "Unavailable, BadResponse, SlowResponse, SecretMissing)",
            (*_LABELS, "reason"),
            registry=r,
        )
        self.failovers = Counter(
            "modelroute_failovers_total",
            "Traffic moves (failovers and failbacks), by the backend that received the traffic",
            _LABELS,
            registry=r,
        )
        self.active_backend = Gauge(
            "modelroute_active_backend",
            "1 for the backend receiving the route's traffic, else 0",
            _LABELS,
            registry=r,
        )
        self.backend_weight = Gauge(
            "modelroute_backend_weight",
            "Percentage of the route's traffic the routing object gives the backend",
            _LABELS,
            registry=r,
        )
        self._add_process_metrics(r)

    def _add_process_metrics(self, r: CollectorRegistry) -> None:
        """The metrics of the operator itself rather than of a route's backends."""
        self.probe_lag = Histogram(
            "modelroute_probe_schedule_lag_seconds",
            "How late probes start compared to their schedule",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 5),
            registry=r,
        )
        self.api_writes = Counter(
            "modelroute_api_writes_total",
            "Writes the operator sent to the API server",
            ("resource",),
            registry=r,
        )
        self.leader = Gauge(
            "modelroute_leader",
            "1 while this replica runs the routes (holds the leader Lease, or no election)",
            registry=r,
        )
        self.routes = Gauge("modelroute_routes", "ModelRoutes handled by this operator", registry=r)
        # Leak detectors for long runs (make soak): both stay flat at a steady route count.
        self.asyncio_tasks = Gauge(
            "modelroute_asyncio_tasks", "asyncio tasks alive in the operator's loop", registry=r
        )
        self.loop_timers = Gauge(
            "modelroute_event_loop_timers",
            "Timers (call_later/call_at handles) scheduled on the operator's loop",
            registry=r,
        )

    def observe_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Sample the loop's task and timer counts (at scrape time)."""
        self.asyncio_tasks.set(len(asyncio.all_tasks(loop)))
        # The scheduled-timer heap is private to asyncio's BaseEventLoop; another loop
        # implementation has none, and the gauge then stays 0 rather than failing the scrape.
        self.loop_timers.set(len(getattr(loop, "_scheduled", ())))

    def set_active(
        self, namespace: str, route: str, backends: Iterable[str], active: str | None
    ) -> None:
        """Mark ``active`` with 1 and every other backend with 0."""
        for name in backends:
            self.active_backend.labels(namespace, route, name).set(1 if name == active else 0)

    def set_weights(
        self, namespace: str, route: str, backends: Iterable[str], weights: Mapping[str, int]
    ) -> None:
        """Each backend's share of the traffic (0 for backends without any)."""
        for name in backends:
            self.backend_weight.labels(namespace, route, name).set(weights.get(name, 0))

    def forget(self, namespace: str, route: str, backends: Iterable[str]) -> None:
        """Drop a deleted route's (or removed backend's) series, so none go stale."""
        per_backend = (
            self.backend_up,
            self.probe_duration,
            self.failovers,
            self.active_backend,
            self.backend_weight,
        )
        for name in backends:
            for metric in per_backend:
                with contextlib.suppress(KeyError):  # never observed for this backend
                    metric.remove(namespace, route, name)
            # One series per failure reason seen: drop them all, whichever they were.
            self.probe_failures.remove_by_labels(
                {"namespace": namespace, "route": route, "backend": name}
            )
