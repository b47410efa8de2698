"""A route's share of the probe loops: subscribe its backends, fold results into health records.

The worker reads ``records``; the feed calls ``on_change`` when a result changed something
material (a flip, a counter below its threshold, a new message): a steady backend wakes
nothing. A backend that was and stays healthy (failing below its threshold) calls
``on_quiet_change``: that decides nothing. It also keeps when the route last got a result.

A result is folded once per probe, not once per route: the backends of every route that take
the same probe (one :class:`ProbeKey`) with the same thresholds are members of one
:class:`_SharedFold`, one subscriber of the probe loop. Folding is pure, so members whose
records are equal get the same new record (one object, shared from then on); a member whose
record differs (a route started later, a deep failure of its own) gets its own fold. A backend
under a drill (``spec.drill``) reads its results through the drill's overlay and keeps a
subscription of its own.

A backend with a deep probe (``probe.deep``) gets a second subscription; its results fold with
:func:`~modelroute.core.health.fold_deep` (a failure makes the backend unhealthy until a deep
probe passes).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

from modelroute.api.models import DrillSpec, ModelRouteSpec, ProbeSpec
from modelroute.core import drill, health
from modelroute.core.types import ProbeFailure, RouteRef
from modelroute.metrics import Metrics
from modelroute.probing import prober
from modelroute.probing.hub import ProbeKey, ProbeSource, Subscriber

logger = logging.getLogger("modelroute.control.feed")

_NEVER_PROBED = health.HealthRecord()


class _GroupKey(NamedTuple):
    key: ProbeKey
    failure_threshold: int  # what of the ProbeSpec a fold reads
    success_threshold: int


class _Folded(NamedTuple):
    before: health.HealthRecord
    after: health.HealthRecord
    material: bool  # the material key changed: the route is woken
    quiet: bool  # ... by a change that decides nothing (health.decides_nothing)


class _SharedFold:
    """One subscriber for every route backend that takes one probe with the same thresholds."""

    def __init__(self, probe: ProbeSpec, metrics: Metrics, forget: Callable[[], None]) -> None:
        self._probe = probe
        self._metrics = metrics
        self._forget = forget
        self.members: dict[tuple[HealthFeed, str], tuple[str, str, str]] = {}
        self._last: prober.ProbeResult | None = None  # the latest result, for late joiners

    def join(
        self, feed: HealthFeed, name: str, labels: tuple[str, str, str], *, catch_up: bool
    ) -> None:
        """Add ``feed``'s backend ``name``; ``catch_up``: fold the probe's latest result into
        it at once when the record predates it (see :meth:`_catch_up`)."""
        self.members[(feed, name)] = labels
        if catch_up:
            self._catch_up(feed, name, labels)

    def _catch_up(self, feed: HealthFeed, name: str, labels: tuple[str, str, str]) -> None:
        # Why: a route that joins a running loop would otherwise count from the next result,
        # one interval behind the routes already on it. A restarted operator starts 1,000
        # routes over about a second while the shared loop probes: the later ones decided a
        # mass failover an interval late (issue 13, scenario 5). A record already holding
        # this result (a worker replaced in this process carries it) is left as it is.
        result = self._last
        before = feed.records.get(name, _NEVER_PROBED)
        if result is None or not _predates(before.last_probe_time, result.finished_at):
            return
        if not result.ok:
            reason = (result.reason or ProbeFailure.UNAVAILABLE).value
            self._metrics.probe_failures.labels(*labels, reason).inc()
        folded = self._fold(before, result)
        now = asyncio.get_running_loop().time()
        feed.take(name, labels, folded.after, folded.material, now, quiet=folded.quiet)

    def __call__(self, result: prober.ProbeResult) -> None:
        self._last = result
        by_identity: dict[int, _Folded] = {}
        by_value: dict[health.HealthRecord, _Folded] = {}
        now = asyncio.get_running_loop().time()
        failures = self._metrics.probe_failures
        # A source that gives no class (a scripted test source) counts as Unavailable.
        reason = None if result.ok else (result.reason or ProbeFailure.UNAVAILABLE).value
        for (feed, name), labels in list(self.members.items()):
            try:
                before = feed.records.get(name, _NEVER_PROBED)
                folded = by_identity.get(id(before))
                if folded is None or folded.before is not before:
                    folded = by_value.get(before) or self._fold(before, result)
                    by_identity[id(before)] = by_value[before] = folded
                if reason is not None:
                    failures.labels(*labels, reason).inc()
                feed.take(name, labels, folded.after, folded.material, now, quiet=folded.quiet)
            except Exception:
                # One route's bug must not starve the others of results.
                logger.exception("probe result not taken", extra={"route": labels[1]})

    def _fold(self, before: health.HealthRecord, result: prober.ProbeResult) -> _Folded:
        after = health.fold(before, result, self._probe)
        changed = health.material_key(before, self._probe) != health.material_key(
            after, self._probe
        )
        return _Folded(before, after, changed, changed and health.decides_nothing(before, after))

    def remove(self, feed: HealthFeed, name: str) -> None:
        """Stop delivering to ``feed``'s backend ``name``; the last member unsubscribes."""
        self.members.pop((feed, name), None)
        if not self.members:
            self._forget()


def _predates(probed: datetime | None, finished: datetime) -> bool:
    """Whether a record last probed at ``probed`` predates a result that ``finished``; a time
    that cannot be compared (without a zone: not one the operator wrote) counts as not."""
    try:
        return probed is None or probed < finished
    except TypeError:
        return False


class _Shares:
    """The shared folds of one probe source, by probe, thresholds and metrics."""

    def __init__(self, probes: ProbeSource) -> None:
        self._probes = probes
        self._folds: dict[tuple[_GroupKey, Metrics], _SharedFold] = {}

    def join(self, key: ProbeKey, probe: ProbeSpec, metrics: Metrics) -> _SharedFold:
        """The shared fold of ``key`` under ``probe``'s thresholds, subscribed if new."""
        group = (_GroupKey(key, probe.failure_threshold, probe.success_threshold), metrics)
        shared = self._folds.get(group)
        if shared is None:
            forget = functools.partial(self._drop, group)
            shared = self._folds[group] = _SharedFold(probe, metrics, forget)
            self._probes.subscribe(key, shared)
        return shared

    def _drop(self, group: tuple[_GroupKey, Metrics]) -> None:
        shared = self._folds.pop(group, None)
        if shared is not None:
            self._probes.unsubscribe(group[0].key, shared)


#: Shared folds per probe source (one hub per process; tests make their own sources).
_SHARES: weakref.WeakKeyDictionary[ProbeSource, _Shares] = weakref.WeakKeyDictionary()


def _shares(probes: ProbeSource) -> _Shares:
    shares = _SHARES.get(probes)
    if shares is None:
        shares = _SHARES[probes] = _Shares(probes)
    return shares


class HealthFeed:
    """Probe results of one route's backends, folded with each backend's own thresholds."""

    def __init__(
        self,
        probes: ProbeSource,
        metrics: Metrics,
        records: dict[str, health.HealthRecord],
        on_change: Callable[[], None],
        on_quiet_change: Callable[[], None] | None = None,
    ) -> None:
        """``on_change``: a result changed a record materially; ``on_quiet_change`` (default:
        ``on_change``): it did, but decides nothing (module doc)."""
        self._probes = probes
        self._metrics = metrics
        self.records = records
        self._on_change = on_change
        self._on_quiet_change = on_quiet_change or on_change
        self._subscriptions: list[tuple[ProbeKey, Subscriber]] = []
        self._shared: list[tuple[_SharedFold, str]] = []
        self.last_result_at: float | None = None
        self._up_shown: dict[str, bool | None] = {}  # backend_up as last set, per backend
        self.max_probe_period: float = 0.0
        self._drill: DrillSpec | None = None
        self._catching_up = True

    def start(self, ref: RouteRef, spec: ModelRouteSpec, *, catch_up: bool = True) -> None:
        """Subscribe every backend's probe; records of backends no longer in spec are dropped.
        ``catch_up``: a backend joining a probe that already has a result takes it at once;
        off for an owed failover's records (control.resumption), which its first plan must
        take as given: a success folded in first (the backend back) would plan traffic back."""
        self._catching_up = catch_up
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
            self._subscribe_cheap(key, probe, backend.name, labels)
            deep = ProbeKey.deep_for_backend(ref.namespace, backend, probe)
            if deep is not None:
                fold = functools.partial(self._record, backend.name, probe, labels, deep=True)
                self._subscribe(deep, fold)

    def _subscribe_cheap(
        self, key: ProbeKey, probe: ProbeSpec, name: str, labels: tuple[str, str, str]
    ) -> None:
        if self._drill is not None and self._drill.backend == name:
            # Drilled: results go through the drill's overlay, a fold of this route's own.
            self._subscribe(key, functools.partial(self._record, name, probe, labels))
            return
        try:
            shares = _shares(self._probes)
        except TypeError:  # a source that cannot be weakly referenced: a fold of its own
            self._subscribe(key, functools.partial(self._record, name, probe, labels))
            return
        shared = shares.join(key, probe, self._metrics)
        self._shared.append((shared, name))
        shared.join(self, name, labels, catch_up=self._catching_up)

    def _subscribe(self, key: ProbeKey, subscriber: Subscriber) -> None:
        self._probes.subscribe(key, subscriber)
        self._subscriptions.append((key, subscriber))

    def stop(self) -> None:
        """Unsubscribe from every probe loop."""
        for key, subscriber in self._subscriptions:
            self._probes.unsubscribe(key, subscriber)
        self._subscriptions.clear()
        for shared, name in self._shared:
            shared.remove(self, name)
        self._shared.clear()

    def take(
        self,
        name: str,
        labels: tuple[str, str, str],
        after: health.HealthRecord,
        material: bool,
        now: float,
        *,
        quiet: bool = False,
    ) -> None:
        """Backend ``name``'s new record, folded from a result (``material``: wake the route;
        ``quiet``: the change decides nothing, see the module doc)."""
        self.records[name] = after
        if name not in self._up_shown or self._up_shown[name] != after.healthy:
            # Only on change: a label lookup per result per route is most of the cost of a
            # steady probe result (3,000 results a second at 1,000 routes probed every second).
            self._up_shown[name] = after.healthy
            self._metrics.backend_up.labels(*labels).set(1 if after.healthy else 0)
        self.last_result_at = now
        if material:
            (self._on_quiet_change if quiet else self._on_change)()

    def _record(
        self,
        name: str,
        probe: ProbeSpec,
        labels: tuple[str, str, str],
        result: prober.ProbeResult,
        *,
        deep: bool = False,
    ) -> None:
        """A route's own fold: a deep probe's result, or a drilled backend's."""
        if not result.ok:
            reason = result.reason or ProbeFailure.UNAVAILABLE
            self._metrics.probe_failures.labels(*labels, reason.value).inc()
        before = self.records.get(name, _NEVER_PROBED)
        if deep:
            # Not overlaid by a drill: a drilled deep failure would hold the backend unhealthy
            # until the next deep probe, long after the drill; the cheap overlay drives it.
            after = health.fold_deep(before, result, probe)
        else:
            after = health.fold(before, drill.overlay(result, name, self._drill), probe)
        material = health.material_key(before, probe) != health.material_key(after, probe)
        # A drilled backend's failures decide the drill (and deep failures are never quiet).
        quiet = material and not deep and self._drill is None
        quiet = quiet and health.decides_nothing(before, after)
        self.take(name, labels, after, material, asyncio.get_running_loop().time(), quiet=quiet)
