"""Prometheus metrics on an injectable registry; labels are bounded (namespace, route, backend).

``modelroute_probe_failures_total`` has one more label, ``reason``: the probe failure's class
(``core.types.ProbeFailure``, a closed set of seven), so it stays bounded too.

The probe metrics that describe a backend rather than a route are keyed by ``target``, the
shared probe's ``<host>:<port>/<model>`` (``probing.keys.ProbeKey.target``): a probe shared by
a thousand routes is one histogram, not a thousand. ``kind`` is ``cheap`` or ``deep``.

Per-route and per-target families are :mod:`modelroute.fastmetrics` families, rendered fast
and in slices (:meth:`Metrics.exposition_parts`) so a scrape never holds the event loop for
long; ``_created`` series are off (they doubled the series count and no query reads them).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

from modelroute.fastmetrics import (
    FastCounter,
    FastFamily,
    FastGauge,
    FastHistogram,
    exposition,
    exposition_parts,
)

_LABELS = ("namespace", "route", "backend")
_ROUTE_LABELS = ("namespace", "route")
_F = TypeVar("_F", FastCounter, FastGauge, FastHistogram)
_PROBE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The operator's metrics. One instance per process; tests pass their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # Process-wide, read when a scrape renders (prometheus_client leaves it untyped).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.fast: list[FastFamily] = []
        self.backend_up = self._fast(
            FastGauge(
                "modelroute_backend_up",
                "1 if the backend is healthy (after hysteresis), else 0",
                _LABELS,
            )
        )
        self.probe_failures = self._fast(
            FastCounter(
                "modelroute_probe_failures_total",
                "Failed health probes, by failure class (AuthFailed, ModelNotServed, "
                "RateLimited, Unavailable, BadResponse, SlowResponse, SecretMissing)",
                (*_LABELS, "reason"),
                indexed=True,  # a backend's reasons are removed together
            )
        )
        self.failovers = self._fast(
            FastCounter(
                "modelroute_failovers_total",
                "Traffic moves (failovers and failbacks), by the backend that received the traffic",
                _LABELS,
            )
        )
        self.active_backend = self._fast(
            FastGauge(
                "modelroute_active_backend",
                "1 for the backend receiving the route's traffic, else 0",
                _LABELS,
            )
        )
        self.backend_weight = self._fast(
            FastGauge(
                "modelroute_backend_weight",
                "Percentage of the route's traffic the routing object gives the backend",
                _LABELS,
            )
        )
        self._add_target_metrics()
        self._add_process_metrics(r)
        self._add_route_metrics()
        self._add_incident_metrics()

    def _fast(self, family: _F) -> _F:
        self.registry.register(family)
        self.fast.append(family)
        return family

    def _add_target_metrics(self) -> None:
        """Per shared probe target: what probing a backend takes, whoever subscribes."""
        self.probe_duration = self._fast(
            FastHistogram(
                "modelroute_probe_duration_seconds",
                "Duration of the cheap health probes of a probe target (host:port/model)",
                ("target",),
                _PROBE_BUCKETS,
            )
        )
        self.probe_requests = self._fast(
            FastCounter(
                "modelroute_probe_requests_total",
                "Probes sent to a probe target, by kind (cheap: the probe; deep: the rare "
                "generating probe beside it)",
                ("target", "kind"),
                indexed=True,  # a target's kinds are removed together
            )
        )
        self.probe_tokens = self._fast(
            FastCounter(
                "modelroute_probe_tokens_estimated_total",
                "Estimated tokens (input + output) spent by generating probes of a probe target",
                ("target",),
            )
        )

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
        self.reconciles = Counter(
            "modelroute_reconciles_total",
            "Reconciles run (one route's plan of traffic and status), all routes together",
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
        self.watch_listed = Gauge(
            "modelroute_watch_listed",
            "1 once every watch of the kind completed its first LIST (its cache is complete)",
            ("kind",),
            registry=r,
        )

    def observe_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Sample the loop's task and timer counts (at scrape time)."""
        self.asyncio_tasks.set(len(asyncio.all_tasks(loop)))
        # The scheduled-timer heap is private to asyncio's BaseEventLoop; another loop
        # implementation has none, and the gauge then stays 0 rather than failing the scrape.
        self.loop_timers.set(len(getattr(loop, "_scheduled", ())))

    def _add_route_metrics(self) -> None:
        """Route-level signals for alerts: PromQL cannot tell which backend is preferred."""
        # Per route: on the fast path too (rendered by generate_latest, 3 series a route were
        # one unsliced piece of ~15 us a series: 135 ms on the loop at 3,000 routes).
        self.route_failed_over = self._fast(
            FastGauge(
                "modelroute_route_failed_over",
                "1 while the route's traffic is not on its most preferred backend, else 0",
                _ROUTE_LABELS,
            )
        )
        self.failback_pending = self._fast(
            FastGauge(
                "modelroute_failback_pending",
                "1 while a more preferred backend is healthy but traffic has not moved back "
                "yet (stabilization, staged failback, Manual mode awaiting approval), else 0",
                _ROUTE_LABELS,
            )
        )

    def set_route_signals(
        self, namespace: str, route: str, failed_over: bool, failback_pending: bool
    ) -> None:
        """The route-level alert signals (see ``core.signals``)."""
        self.route_failed_over.labels(namespace, route).set(1 if failed_over else 0)
        self.failback_pending.labels(namespace, route).set(1 if failback_pending else 0)

    def _add_incident_metrics(self) -> None:
        """The incident controls: drills (per backend) and suspended routes."""
        # Per route x backend like the others, so on the fast render path too.
        self.drill_active = self._fast(
            FastGauge(
                "modelroute_drill_active",
                "1 while a failover drill reads the backend's probe results as failures, else 0",
                _LABELS,
            )
        )
        self.route_suspended = self._fast(
            FastGauge(
                "modelroute_route_suspended",
                "1 while the route's routing is suspended (spec.suspend), else 0",
                _ROUTE_LABELS,
            )
        )

    def set_incident(
        self,
        namespace: str,
        route: str,
        backends: Iterable[str],
        *,
        drilled: str | None,
        suspended: bool,
    ) -> None:
        """Mark the drilled backend (if any) with 1, every other with 0; and the suspension."""
        for name in backends:
            self.drill_active.labels(namespace, route, name).set(1 if name == drilled else 0)
        self.route_suspended.labels(namespace, route).set(1 if suspended else 0)

    def forget_route(self, namespace: str, route: str) -> None:
        """Drop a deleted route's route-level series (``forget`` drops its backends')."""
        for metric in (self.route_failed_over, self.failback_pending, self.route_suspended):
            with contextlib.suppress(KeyError):  # never reported for this route
                metric.remove(namespace, route)

    def set_active(
        self, namespace: str, route: str, backends: Iterable[str], active: str | None
    ) -> None:
        """Mark ``active`` with 1 and every other backend with 0."""
        for name in backends:
            self.active_backend.labels(namespace, route, name).set(1 if name == active else 0)
            # Exported at 0 before the first move: increase() cannot see a counter's first sample.
            self.failovers.labels(namespace, route, name)

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
            self.failovers,
            self.active_backend,
            self.backend_weight,
            self.drill_active,
        )
        for name in backends:
            for metric in per_backend:
                with contextlib.suppress(KeyError):  # never observed for this backend
                    metric.remove(namespace, route, name)
            # One series per failure reason seen: drop them all, whichever they were.
            self.probe_failures.remove_by_labels(
                {"namespace": namespace, "route": route, "backend": name}
            )

    def forget_target(self, target: str) -> None:
        """Drop the series of a probe target nothing probes any more."""
        for metric in (self.probe_duration, self.probe_tokens):
            with contextlib.suppress(KeyError):
                metric.remove(target)
        self.probe_requests.remove_by_labels({"target": target})

    def exposition(self) -> bytes:
        """The whole text exposition at once (tests, tools)."""
        return exposition(self.registry, self.fast)

    def exposition_parts(self) -> Iterator[bytes]:
        """The text exposition in slices, for /metrics (see ``control.scrape``)."""
        return exposition_parts(self.registry, self.fast)
