"""A route's share of the probe loops: subscribe its backends, fold results into health records.

The worker reads ``records``; the feed calls ``on_change`` when a result changed something
material (a flip, a counter below its threshold, a new message), so a steady backend wakes
nothing. It also keeps what liveness needs: when the route last received a result.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

from modelroute.api.models import ModelRouteSpec, ProbeSpec
from modelroute.core import health
from modelroute.core.types import ProbeFailure, RouteRef
from modelroute.metrics import Metrics
from modelroute.probing import prober
from modelroute.probing.hub import ProbeKey, ProbeSource, Subscriber


class HealthFeed:
    """Probe results of one route's backends, folded with each backend's own thresholds."""

    def __init__(
        self,
        probes: ProbeSource,
        metrics: Metrics,
        records: dict[str, health.HealthRecord],
        on_change: Callable[[], None],
    ) -> None:
        self._probes = probes
        self._metrics = metrics
        self.records = records
        self._on_change = on_change
        self._subscriptions: list[tuple[ProbeKey, Subscriber]] = []
        self.last_result_at: float | None = None
        self._up_shown: dict[str, bool | None] = {}  # backend_up as last set, per backend
        self.max_probe_period: float = 0.0

    def start(self, ref: RouteRef, spec: ModelRouteSpec) -> None:
        """Subscribe every backend's probe; records of backends no longer in spec are dropped."""
        self.records = {
            b.name: self.records.get(b.name, health.HealthRecord()) for b in spec.backends
        }
        # Liveness counts from the start, so probes that never finish are noticed too.
        self.last_result_at = asyncio.get_running_loop().time()
        for backend in spec.backends:
            probe = spec.effective_probe(backend)
            self.max_probe_period = max(
                self.max_probe_period, probe.interval_seconds + probe.timeout_seconds
            )
            key = ProbeKey.for_backend(ref.namespace, backend, probe)
            labels = (ref.namespace, ref.name, backend.name)
            subscriber = functools.partial(self._record, backend.name, probe, labels)
            self._probes.subscribe(key, subscriber)
            self._subscriptions.append((key, subscriber))

    def stop(self) -> None:
        """Unsubscribe from every probe loop."""
        for key, subscriber in self._subscriptions:
            self._probes.unsubscribe(key, subscriber)
        self._subscriptions.clear()

    def _record(
        self, name: str, probe: ProbeSpec, labels: tuple[str, str, str], result: prober.ProbeResult
    ) -> None:
        metrics = self._metrics
        if result.latency_ms is not None:
            metrics.probe_duration.labels(*labels).observe(result.latency_ms / 1000)
        if not result.ok:
            # A source that gives no class (a scripted test source) counts as Unavailable.
            reason = result.reason or ProbeFailure.UNAVAILABLE
            metrics.probe_failures.labels(*labels, reason.value).inc()
        before = self.records.get(name, health.HealthRecord())
        after = health.fold(before, result, probe)
        self.records[name] = after
        if name not in self._up_shown or self._up_shown[name] != after.healthy:
            # Only on change: a label lookup per result per route is most of the cost of a
            # steady probe result (3,000 results a second at 1,000 routes probed every second).
            self._up_shown[name] = after.healthy
            metrics.backend_up.labels(*labels).set(1 if after.healthy else 0)
        self.last_result_at = asyncio.get_running_loop().time()
        if health.material_key(before, probe) != health.material_key(after, probe):
            self._on_change()
