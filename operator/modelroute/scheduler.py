"""Probe scheduling and reconciling for many routes: watch → probe → decide → route → report.

One :class:`RouteWorker` per ModelRoute subscribes its backends' probes to the shared
:class:`~modelroute.probe_hub.ProbeHub` (identical probes run once, whoever needs them), folds
each result into its own health records, and runs one reconcile loop that wakes only when
something material changed: a health flip, a cache event (drift, a target
Service or Secret changed), a spec or annotation change, or a failback stabilization maturing.
On a move the routing write goes first; the Event and status follow.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import pydantic

from modelroute import drivers, health, policy, prober, status
from modelroute.cache import ObjectCache, RouteKey
from modelroute.drivers.base import DriverContext, RouteRef, RoutingDriver
from modelroute.events import EventRecorder
from modelroute.kube import ApiError, KubeClient
from modelroute.metrics import Metrics
from modelroute.models import ModelRouteSpec, ModelRouteStatus, ProbeSpec
from modelroute.probe_hub import ProbeHub, ProbeKey, Subscriber
from modelroute.settings import Settings
from modelroute.validation import InvalidSpecError, parse_spec, validate

logger = logging.getLogger("modelroute.scheduler")

# Backoff (seconds) for retrying a reconcile whose API calls failed.
_RETRY_FIRST_SECONDS = 1.0
_RETRY_MAX_SECONDS = 30.0

_EVENT_TYPES = {
    policy.Transition.FAILOVER: "Warning",
    policy.Transition.FAILBACK: "Normal",
    policy.Transition.REROUTE: "Normal",
    policy.Transition.INITIAL: "Normal",
}
_EVENT_REASONS = {policy.Transition.INITIAL: "Routed"}


@dataclass(frozen=True)
class RouteObject:
    """The parts of a ModelRoute body the worker uses."""

    ref: RouteRef
    generation: int | None
    raw_spec: dict[str, Any]
    annotations: dict[str, str]
    status: ModelRouteStatus

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> RouteObject:
        """Parse a kopf/API body; an unreadable status is treated as empty (it is ours)."""
        meta = body.get("metadata", {})
        try:
            parsed_status = ModelRouteStatus.model_validate(body.get("status") or {})
        except pydantic.ValidationError:
            parsed_status = ModelRouteStatus()
        return cls(
            ref=RouteRef(meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", "")),
            generation=meta.get("generation"),
            raw_spec=dict(body.get("spec") or {}),
            annotations=dict(meta.get("annotations") or {}),
            status=parsed_status,
        )


@dataclass
class Deps:
    """Everything workers share; built once by the runtime."""

    settings: Settings
    kube: KubeClient
    services: ObjectCache
    secrets: ObjectCache
    metrics: Metrics
    events: EventRecorder
    probes: ProbeHub
    now: Callable[[], datetime]
    driver_context: DriverContext = field(init=False)

    def __post_init__(self) -> None:
        self.driver_context = DriverContext(kube=self.kube, services=self.services)


def _health_key(record: health.HealthRecord, probe: ProbeSpec) -> tuple[Any, ...]:
    # What can change a decision or the written status; see status.material.
    return (
        record.healthy,
        min(record.consecutive_failures, probe.failure_threshold),
        min(record.consecutive_successes, probe.success_threshold),
        record.message,
    )


class RouteWorker:
    """Probes one route's backends and keeps its routing and status in line with their health."""

    def __init__(self, route: RouteObject, deps: Deps) -> None:
        self.route = route
        self._deps = deps
        self.records: dict[str, health.HealthRecord] = {
            b.name: health.from_status(b) for b in route.status.backends
        }
        self.active: str | None = route.status.active_backend
        self._written: ModelRouteStatus | None = route.status
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._subscriptions: list[tuple[ProbeKey, Subscriber]] = []
        self._stabilization_timer: asyncio.TimerHandle | None = None
        self.last_result_at: float | None = None
        self.max_probe_period: float = 0.0
        self.crashed = False

    @property
    def key(self) -> RouteKey:
        """(namespace, name) of the route."""
        return self.route.ref.key

    def start(self) -> None:
        """Start the reconcile loop (which starts the probe timers)."""
        task = asyncio.create_task(self._run(), name=f"route:{self.key}")
        task.add_done_callback(self._log_crash)
        self._tasks.append(task)

    def _log_crash(self, task: asyncio.Task[None]) -> None:
        # A bug must not end a route's probing silently: log it loudly; liveness then fails.
        if not task.cancelled() and task.exception() is not None:
            self.crashed = True
            ref = self.route.ref
            logger.error(
                "route worker crashed",
                exc_info=task.exception(),
                extra={"namespace": ref.namespace, "route": ref.name},
            )

    async def stop(self) -> None:
        """Cancel every task of this route and wait for them (returns within milliseconds)."""
        if self._stabilization_timer is not None:
            self._stabilization_timer.cancel()
        for key, subscriber in self._subscriptions:
            self._deps.probes.unsubscribe(key, subscriber)
        self._subscriptions.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def wake(self) -> None:
        """Ask for a reconcile (a dependency or the route's metadata changed)."""
        self._dirty.set()

    def update(self, route: RouteObject) -> None:
        """Same spec, new metadata (annotations, generation): reconcile with it."""
        self.route = route
        self.wake()

    # --- the loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        ref = self.route.ref
        try:
            spec = parse_spec(self.route.raw_spec)
            validate(spec, drivers.names())
        except InvalidSpecError as exc:
            # No retry loop: the spec is looked at again only when it changes.
            await self._report_invalid(str(exc))
            return
        driver = drivers.create(spec.routing.driver, self._deps.driver_context)
        self._deps.services.subscribe(self.key, driver.dependencies(ref, spec))
        self._deps.secrets.subscribe(
            self.key,
            {(ref.namespace, b.auth_secret_ref.name) for b in spec.backends if b.auth_secret_ref},
        )
        self.records = {
            b.name: self.records.get(b.name, health.HealthRecord()) for b in spec.backends
        }
        await self._resume_routing(spec, driver)
        self._start_probes(spec)
        self._dirty.set()
        retry = _RETRY_FIRST_SECONDS
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._reconcile(spec, driver)
            except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
                # Nothing material may change for a long time after a failed write: retry on
                # a timer (with backoff) rather than waiting for the next health change.
                logger.warning(
                    "reconcile failed, retrying in %.0fs: %s",
                    retry,
                    exc,
                    extra={"namespace": ref.namespace, "route": ref.name},
                )
                asyncio.get_running_loop().call_later(retry, self._dirty.set)
                retry = min(retry * 2, _RETRY_MAX_SECONDS)
            else:
                retry = _RETRY_FIRST_SECONDS

    async def _resume_routing(self, spec: ModelRouteSpec, driver: RoutingDriver) -> None:
        """Take the active backend from the routing object when it names one of ours."""
        ref = self.route.ref
        try:
            observed = await driver.observe(ref, spec)
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            # Status still says where traffic was; the first reconcile reads the object again.
            logger.warning(
                "could not read the routing object at start: %s",
                exc,
                extra={"namespace": ref.namespace, "route": ref.name},
            )
            return
        if observed.backend in {b.name for b in spec.backends}:
            # The routing object is written before status: after a crash between the two it
            # is the more recent truth.
            self.active = observed.backend

    def _start_probes(self, spec: ModelRouteSpec) -> None:
        ref = self.route.ref
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
            self._deps.probes.subscribe(key, subscriber)
            self._subscriptions.append((key, subscriber))

    def _record(
        self, name: str, probe: ProbeSpec, labels: tuple[str, str, str], result: prober.ProbeResult
    ) -> None:
        metrics = self._deps.metrics
        if result.latency_ms is not None:
            metrics.probe_duration.labels(*labels).observe(result.latency_ms / 1000)
        if not result.ok:
            metrics.probe_failures.labels(*labels).inc()
        before = self.records.get(name, health.HealthRecord())
        after = health.fold(before, result, probe)
        self.records[name] = after
        metrics.backend_up.labels(*labels).set(1 if after.healthy else 0)
        self.last_result_at = asyncio.get_running_loop().time()
        if _health_key(before, probe) != _health_key(after, probe):
            self._dirty.set()

    async def _reconcile(self, spec: ModelRouteSpec, driver: RoutingDriver) -> None:
        route, deps = self.route, self._deps
        now = deps.now()
        token = route.annotations.get(policy.APPROVE_FAILBACK_ANNOTATION)
        consumed = self._written.failback_approval if self._written else None
        decision = policy.decide(
            spec,
            self.records,
            self.active,
            now,
            failback_approved=token is not None and token != consumed,
        )
        problem: status.Problem | None = None
        moved_from = None
        target = decision.target if decision.target is not None else self.active
        if target is not None:
            backend = next(b for b in spec.backends if b.name == target)
            state = await driver.apply(route.ref, spec, backend)
            if state.wrote:
                deps.metrics.api_writes.labels("services").inc()
            problem = state.problem
            if problem is None and target != self.active:
                moved_from, self.active = self.active, target
        else:
            problem = (await driver.observe(route.ref, spec)).problem
        moved = moved_from is not None and decision.transition is not None
        if decision.transition is not None and target == self.active and problem is None:
            await self._announce(decision, moved)
        deps.metrics.set_active(
            route.ref.namespace, route.ref.name, [b.name for b in spec.backends], self.active
        )
        await self._write_status(spec, decision, problem, moved, token or consumed, now)
        self._schedule_stabilization(spec, now)

    async def _announce(self, decision: policy.Decision, moved: bool) -> None:
        transition = decision.transition
        assert transition is not None
        ref = self.route.ref
        if moved:
            self._deps.metrics.failovers.labels(ref.namespace, ref.name, str(self.active)).inc()
        reason = _EVENT_REASONS.get(transition, transition.value)
        await self._deps.events.emit(
            ref, _EVENT_TYPES[transition], reason, decision.message, self._deps.now()
        )

    async def _write_status(
        self,
        spec: ModelRouteSpec | None,
        decision: policy.Decision,
        problem: status.Problem | None,
        moved: bool,
        approval: str | None,
        now: datetime,
    ) -> None:
        previous = self._written or ModelRouteStatus()
        new = (
            status.build_status(
                previous=previous,
                spec=spec,
                generation=self.route.generation,
                records=self.records,
                active=self.active,
                decision=decision,
                problem=problem,
                moved=moved,
                failback_approval=approval,
                now=now,
            )
            if spec is not None
            else status.build_invalid_status(
                previous=previous,
                generation=self.route.generation,
                problem=problem,
                now=now,
            )
        )
        if not status.needs_write(self._written, new, spec):
            return
        ref = self.route.ref
        await self._deps.kube.patch_route_status(ref.namespace, ref.name, new.to_wire())
        self._deps.metrics.api_writes.labels("modelroutes/status").inc()
        self._written = new
        await self._warn_on_new_problem(previous, new)

    async def _warn_on_new_problem(self, previous: ModelRouteStatus, new: ModelRouteStatus) -> None:
        old_ready = next((c for c in previous.conditions if c.type == status.READY), None)
        ready = next((c for c in new.conditions if c.type == status.READY), None)
        if ready is None or ready.status.value == "True" or ready.reason == "AwaitingFirstProbes":
            return
        if old_ready is not None and old_ready.reason == ready.reason:
            return
        await self._deps.events.emit(
            self.route.ref, "Warning", ready.reason, ready.message, self._deps.now()
        )

    async def _report_invalid(self, message: str) -> None:
        problem = status.Problem("InvalidSpec", message)
        decision = policy.Decision(
            target=None, transition=None, reason="InvalidSpec", message=message
        )
        await self._write_status(None, decision, problem, False, None, self._deps.now())

    def _schedule_stabilization(self, spec: ModelRouteSpec, decided_at: datetime) -> None:
        # Failback waits on time alone, with no probe result changing anything material; wake
        # the reconcile when the earliest candidate's stabilization window ends.
        # Windows are compared with ``decided_at`` (the time the decision used), not with the
        # clock after the writes: under load (bench: 1,000 routes failing back at once) the
        # writes can take longer than a short window, and a window that ended meanwhile was
        # never acted on -- the route then stayed on the fallback for good. Such a window
        # gets an immediate wake-up instead.
        if self._stabilization_timer is not None:
            self._stabilization_timer.cancel()
            self._stabilization_timer = None
        if self.active is None:
            return
        order = [b.name for b in spec.preference_order()]
        if self.active not in order:
            return
        ready_at = [
            rec.healthy_since.timestamp() + spec.failback.stabilization_seconds
            for name in order[: order.index(self.active)]
            if (rec := self.records.get(name)) and rec.healthy and rec.healthy_since
        ]
        future = [t for t in ready_at if t > decided_at.timestamp()]
        if future:
            delay = max(0.0, min(future) - self._deps.now().timestamp()) + 0.001
            loop = asyncio.get_running_loop()
            self._stabilization_timer = loop.call_later(delay, self._dirty.set)

    def backend_names(self) -> list[str]:
        """Backend names of the current spec (raw, so it works for invalid specs too)."""
        return [b.get("name", "") for b in self.route.raw_spec.get("backends") or []]


class Controller:
    """All route workers of this operator process, and the caches that wake them.

    Every ModelRoute body seen is kept, leading or not; workers run only while this replica
    leads (always, without leader election), so a takeover starts every route at once.
    """

    def __init__(self, deps: Deps, *, leading: bool = True) -> None:
        self._deps = deps
        self._workers: dict[RouteKey, RouteWorker] = {}
        self._bodies: dict[RouteKey, dict[str, Any]] = {}
        self._leading = leading
        deps.metrics.leader.set(1 if leading else 0)

    @property
    def workers(self) -> dict[RouteKey, RouteWorker]:
        """Live workers by route key (read-only use)."""
        return self._workers

    async def on_route_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        """A ModelRoute was listed, added, modified or deleted."""
        route = RouteObject.from_body(body)
        if event_type == "DELETED":
            self._bodies.pop(route.ref.key, None)
            await self.remove(route.ref.key)
            return
        self._bodies[route.ref.key] = body
        if not self._leading:
            return
        worker = self._workers.get(route.ref.key)
        if (
            worker is not None
            and worker.route.ref.uid == route.ref.uid
            and worker.route.raw_spec == route.raw_spec
        ):
            if (
                worker.route.annotations != route.annotations
                or worker.route.generation != route.generation
            ):
                worker.update(route)
            return
        carried: RouteWorker | None = None
        if worker is not None:
            await worker.stop()
            carried = worker if worker.route.ref.uid == route.ref.uid else None
        new = RouteWorker(route, self._deps)
        if carried is not None:
            # A spec change keeps what was learnt about backends that are still there.
            new.records.update(carried.records)
            new.active = carried.active
            new._written = carried._written
            gone = set(carried.backend_names()) - set(new.backend_names())
            self._deps.metrics.forget(route.ref.namespace, route.ref.name, gone)
        self._workers[route.ref.key] = new
        self._deps.metrics.routes.set(len(self._workers))
        new.start()

    async def remove(self, key: RouteKey) -> None:
        """Stop a deleted route's worker and drop its subscriptions and metric series."""
        worker = self._workers.pop(key, None)
        if worker is None:
            return
        await worker.stop()
        self._deps.services.unsubscribe(key)
        self._deps.secrets.unsubscribe(key)
        self._deps.metrics.forget(key[0], key[1], worker.backend_names())
        self._deps.metrics.routes.set(len(self._workers))

    def on_service_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        """A Service changed: wake the routes that route through it or own it."""
        for key in self._deps.services.observe(event_type, body):
            if (worker := self._workers.get(key)) is not None:
                worker.wake()

    def on_secret_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        """A Secret changed: the next probes use the new key (no wake needed)."""
        self._deps.secrets.observe(event_type, body)

    def stalled(self, now: float) -> list[RouteKey]:
        """Routes whose worker crashed, or whose probes produced nothing for far longer than
        their schedule allows."""
        limit = self._deps.settings.liveness_stall_intervals
        return [
            key
            for key, w in self._workers.items()
            if w.crashed
            or (
                w.last_result_at is not None and now - w.last_result_at > limit * w.max_probe_period
            )
        ]

    async def start_leading(self) -> None:
        """This replica now holds the Lease: start a worker for every route seen."""
        self._leading = True
        self._deps.metrics.leader.set(1)
        for body in list(self._bodies.values()):
            await self.on_route_event(None, body)

    async def stop_leading(self) -> None:
        """Another replica may take over: stop every worker (route bodies are kept)."""
        self._leading = False
        self._deps.metrics.leader.set(0)
        for key in list(self._workers):
            await self.remove(key)

    async def shutdown(self) -> None:
        """Stop every worker."""
        workers, self._workers = list(self._workers.values()), {}
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
