"""A route's share of the probe loops: subscribe its backends, fold results into health records.

The worker reads ``records``; the feed calls ``on_change`` when a result changed something
material (a flip, a counter below its threshold, a new message), so a steady backend wakes
nothing. It also keeps what liveness needs: when the route last received a result.

A backend with a deep probe (``probe.deep``) gets a second subscription; its results fold with
:func:`~modelroute.core.health.fold_deep` (a failure makes the backend unhealthy until a deep
probe passes).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

from modelroute.api.models import DrillSpec, ModelRouteSpec, ProbeSpec
from modelroute.core import drill, health
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
        self._drill: DrillSpec | None = None

    def start(self, ref: RouteRef, spec: ModelRouteSpec) -> None:
        """Subscribe every backend's probe; records of backends no longer in spec are dropped."""
        self.records = {
            b.name: health.without_deep_probe(self.records.get(b.name, health.HealthRecord()))
            if spec.effective_probe(b).effective_deep is None
            else self.records.get(b.name, health.HealthRecord())
            for b in spec.backends
        }
        self._drill = spec.drill  # read where results become health: metrics see the real ones
        # Liveness counts from the start, so probes that never finish are noticed too.
        self.last_result_at = asyncio.get_running_loop().time()
        for backend in spec.backends:
            probe = spec.effective_probe(backend)
            self.max_probe_period = max(
                self.max_probe_period, probe.interval_seconds + probe.timeout_seconds
            )
            labels = (ref.namespace, ref.name, backend.name)
            key = ProbeKey.for_backend(ref.namespace, backend, probe)
            self._subscribe(key, functools.partial(self._record, backend.name, probe, labels))
            deep = ProbeKey.deep_for_backend(ref.namespace, backend, probe)
            if deep is not None:
                fold = functools.partial(self._record, backend.name, probe, labels, deep=True)
                self._subscribe(deep, fold)

    def _subscribe(self, key: ProbeKey, subscriber: Subscriber) -> None:
        self._probes.subscribe(key, subscriber)
        self._subscriptions.append((key, subscriber))

    def stop(self) -> None:
        """Unsubscribe from every probe loop."""
        for key, subscriber in self._subscriptions:
            self._probes.unsubscribe(key, subscriber)
        self._subscriptions.clear()

    def _record(
        self,
        name: str,
        probe: ProbeSpec,
        labels: tuple[str, str, str],
        result: prober.ProbeResult,
        *,
        deep: bool = False,
    ) -> None:
        metrics = self._metrics
        if not result.ok:
            # A source that gives no class (a scripted test source) counts as Unavailable.
            reason = result.reason or ProbeFailure.UNAVAILABLE
            metrics.probe_failures.labels(*labels, reason.value).inc()
        before = self.records.get(name, health.HealthRecord())
        if deep:
            # Not overlaid by a drill: a drilled deep failure would hold the backend unhealthy
            # until the next deep probe, long after the drill; the cheap overlay drives it.
            after = health.fold_deep(before, result, probe)
        else:
            after = health.fold(before, drill.overlay(result, name, self._drill), probe)
        self.records[name] = after
        if name not in self._up_shown or self._up_shown[name] != after.healthy:
            # Only on change: a label lookup per result per route is most of the cost of a
            # steady probe result (3,000 results a second at 1,000 routes probed every second).
            self._up_shown[name] = after.healthy
            metrics.backend_up.labels(*labels).set(1 if after.healthy else 0)
        self.last_result_at = asyncio.get_running_loop().time()
        if health.material_key(before, probe) != health.material_key(after, probe):
            self._on_change()
