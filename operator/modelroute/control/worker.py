"""One route's control loop: observe -> plan -> apply (routing first) -> Events -> status.

A :class:`RouteWorker` folds its backends' shared probe results into health records and runs
one reconcile loop, woken only by material change: a health flip, a watched object, a spec or
annotation change, or the plan's ``recheck_at``. Every decision is
:func:`modelroute.core.plan.plan`; the worker only gathers its inputs and carries it out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

import aiohttp

from modelroute import routing
from modelroute.api.models import ModelRouteSpec
from modelroute.api.validation import InvalidSpecError, parse_spec
from modelroute.control.feed import HealthFeed
from modelroute.control.gauges import RouteGauges
from modelroute.control.handover import Handover
from modelroute.control.report import Reporter
from modelroute.control.resumption import resume_routing
from modelroute.control.route import (
    Deps,
    Driven,
    RouteObject,
    WorkerState,
    observed_move,
    split_from_status,
)
from modelroute.control.wakeups import Wakeups
from modelroute.core import health, ramp, resume
from modelroute.core.plan import Plan, PlanInput, plan, plan_invalid
from modelroute.core.policy import APPROVE_FAILBACK_ANNOTATION
from modelroute.core.types import PlannedEvent, Problem, ReadyReason, TrafficSplit
from modelroute.kube.cache import RouteKey
from modelroute.kube.client import ApiError
from modelroute.kube.reachability import TRANSPORT_FAILURES
from modelroute.routing import RoutingState

logger = logging.getLogger("modelroute.control.worker")

_RETRY_FIRST_SECONDS, _RETRY_MAX_SECONDS = 1.0, 30.0  # backoff of a failed reconcile
_API_FAILURES = (ApiError, aiohttp.ClientError, TimeoutError)
_INVALID = ReadyReason.INVALID_SPEC


class RouteWorker:
    """Probes one route's backends and keeps its routing and status in line with their health."""

    def __init__(self, route: RouteObject, deps: Deps, carried: RouteWorker | None = None) -> None:
        """Start from the route's status, or from ``carried``: its previous worker's state."""
        self.route = route
        self._deps = deps
        source = carried.state() if carried is not None else None
        records = (
            dict(source.records)
            if source
            else {b.name: health.from_status(b) for b in route.status.backends}
        )
        self.feed = HealthFeed(deps.probes, deps.metrics, records, self.wake, self._quiet_change)
        self.routed = source.routed if source else split_from_status(route.status)
        self._previous = source.previous if source else route.status
        written = source.written if source else route.status
        unsent, unsure = (source.unsent, source.uncertain) if source else ((), False)
        self.reporter = Reporter(
            route.ref, deps, written, self._log_crash, unsent, uncertain=unsure
        )
        self._driven: Driven | None = None
        self._handover = Handover.start(route.status, deps, source)
        self._owed: TrafficSplit | None = None  # an unrecorded failover (see resumption)
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._wakeups = Wakeups(self._dirty)
        self.crashed = False
        self._gauges = RouteGauges(deps.metrics, route.ref)

    def state(self) -> WorkerState:
        """Health, routing and status as this worker knows them."""
        r = self.reporter
        before = self._handover.with_current(self._driven)
        state = (self.feed.records, self.routed, self._previous, r.written, r.unsent)
        return WorkerState(*state, r.uncertain, before)

    @property
    def key(self) -> RouteKey:
        """(namespace, name) of the route."""
        return self.route.ref.key

    @property
    def active(self) -> str | None:
        """The backend that has the traffic, as far as this worker knows."""
        return self.routed.primary if self.routed is not None else None

    def start(self) -> None:
        """Start the reconcile loop (which starts the probe loops)."""
        task = asyncio.create_task(self._run(), name=f"route:{self.key}")
        task.add_done_callback(self._log_crash)
        self._tasks.append(task)

    def _log_crash(self, task: asyncio.Task[None]) -> None:
        # A bug must not end a route's probing silently: log it loudly; liveness then fails.
        if not task.cancelled() and task.exception() is not None:
            self.crashed = True
            logger.error("route worker crashed", exc_info=task.exception(), extra=self._log)

    @property
    def _log(self) -> dict[str, str]:
        return {"namespace": self.route.ref.namespace, "route": self.route.ref.name}

    async def stop(self) -> None:
        """Cancel every task of this route and wait for them (returns within milliseconds)."""
        self._wakeups.cancel()
        self.feed.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.reporter.stop()

    async def finalize(self) -> None:
        """The route was deleted: let its driver leave the routing object as the policy says."""
        if self._driven is None:
            return
        try:
            await self._driven.driver.finalize(self.route.ref, self._driven.spec)
        except _API_FAILURES as exc:
            logger.warning("could not finalize the routing object: %s", exc, extra=self._log)

    def wake(self) -> None:
        """Ask for a reconcile (a dependency or the route's metadata changed)."""
        self._dirty.set()

    def _quiet_change(self) -> None:
        """A backend that stays healthy changed below its thresholds: plan within
        ``status_defer_seconds`` (when its status change is due), or with the next wake-up
        (``Wakeups.quiet``). A staged failback or a drill plans at once: one failure decides."""
        driven, settings = self._driven, self._deps.settings
        if driven is None or driven.spec.drill is not None or self._previous.failback is not None:
            self.wake()
            return
        self._wakeups.quiet(settings.status_defer_seconds, asyncio.get_running_loop().time())

    def same_spec(self, route: RouteObject) -> bool:
        """True when ``route`` is this worker's route object with an unchanged spec."""
        return self.route.ref.uid == route.ref.uid and self.route.raw_spec == route.raw_spec

    def update(self, route: RouteObject) -> None:
        """Same spec, new metadata (annotations, generation): reconcile with it."""
        self.route = route
        self.wake()

    # --- the loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            spec = parse_spec(self.route.raw_spec)
            routing.validate(spec)
        except InvalidSpecError as exc:
            # Reported once (retried only until written): no probing, no routing, and the
            # spec is looked at again only when it changes.
            message = str(exc)
            await self._loop(lambda: self._carry_out_invalid(message), once=True)
            return
        unavailable = self._deps.unavailable_drivers.get(spec.routing.driver)
        if unavailable is not None:
            # Same: nothing to probe for until the operator can serve the driver.
            reason = ReadyReason.DRIVER_UNAVAILABLE
            await self._loop(lambda: self._carry_out_invalid(unavailable, reason), once=True)
            return
        info = routing.info(spec.routing.driver)
        driven = self._driven = Driven(spec, info, info.create(self._deps.driver_context))
        self._subscribe_objects(driven)
        await self._resume_routing(driven)
        self.feed.start(self.route.ref, spec, catch_up=self._owed is None)  # see feed.start
        await self._loop(lambda: self._reconcile(driven), once=False)

    async def _loop(self, step: Callable[[], Awaitable[None]], *, once: bool) -> None:
        """Run ``step`` whenever woken (``once``: until it succeeds), retrying API failures."""
        self._dirty.set()
        retry = _RETRY_FIRST_SECONDS
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await step()
            except _API_FAILURES as exc:
                # Nothing material may change for long after a failed write: retry on a timer.
                logger.warning(
                    "reconcile failed, retrying in %.0fs: %s", retry, exc, extra=self._log
                )
                self._wakeups.retry(retry)
                retry = min(retry * 2, _RETRY_MAX_SECONDS)
                if isinstance(exc, TRANSPORT_FAILURES) and self._deps.reachability is not None:
                    self._deps.reachability.wake_when_back(self._dirty.set)  # back: retry now
            else:
                if once:
                    return
                retry = _RETRY_FIRST_SECONDS

    def _subscribe_objects(self, driven: Driven) -> None:
        ref = self.route.ref
        wanted = driven.driver.dependencies(ref, driven.spec)
        for kind, cache in self._deps.caches.items():
            cache.subscribe(self.key, wanted.get(kind, set()))
        auth = {name for b in driven.spec.backends for name in b.secret_names()}
        self._deps.secrets.subscribe(self.key, {(ref.namespace, name) for name in auth})

    async def _resume_routing(self, driven: Driven) -> None:
        """Start from the routing object when it is newer than status (see resumption)."""
        got = await resume_routing(
            self.route.ref, driven, self.routed, self.feed.records, self._previous
        )
        self.routed, self.feed.records, self._owed = got.routed, dict(got.records), got.owed

    def _inputs(self, spec: ModelRouteSpec) -> PlanInput:
        return PlanInput(
            spec=spec,
            generation=self.route.generation,
            records=dict(self.feed.records),
            routed=self.routed,
            previous=self._previous,
            written=self.reporter.written,
            approval=self.route.annotations.get(APPROVE_FAILBACK_ANNOTATION),
            now=self._deps.now(),
        )

    async def _reconcile(self, driven: Driven) -> None:
        # Bounded across routes, so that when one probe wakes every route the plans interleave
        # with the write answers and routing writes go out as each plan is made, not after N.
        async with self._deps.reconcile_slots:
            self._deps.metrics.reconciles.inc()
            since = self._wakeups.reconciling()  # quiet changes: this plan takes them in
            given = self._inputs(driven.spec)
            decided = plan(given)
            state = await self._route(driven, decided)
            if (seen := observed_move(driven.spec, self.routed, decided.split, state)) is not None:
                # Nothing applied (suspended, fail-static), and the object carries another split,
                # e.g. pinned by hand: plan on it, so status and the next move's Events are true.
                self.routed = seen
                given = replace(given, routed=seen)
                taken, decided = decided, plan(given)
                decided = resume.recorded(taken, decided, self._owed, given.now)
                state = await self._route(driven, decided)
        written_at = self._deps.now() if state.wrote else None
        if state.problem is not None or state.verdict is not None:
            # Plan again with what the driver (and the gateway behind it) said.
            decided = plan(
                replace(given, problem=state.problem, verdict=state.verdict, carried=state.split)
            )
        if written_at is not None:
            decided = ramp.after_routing_write(decided, given.now, written_at)
        if decided.split is not None and (state.problem is None or state.split == decided.split):
            self.routed = decided.split
        warned: tuple[PlannedEvent, ...] = ()
        try:  # released before status; but cancelled or failing, status and Events still go out
            warned = await self._handover.settle(self.route.ref, driven, state)
        finally:  # (synchronous: a cancellation cannot cut it short)
            self._carry_out(replace(decided, events=decided.events + warned), driven.spec, since)
            self._owed = None  # taken (or recorded) by this plan, or no longer where traffic is

    async def _route(self, driven: Driven, decided: Plan) -> RoutingState:
        """The routing write, first: apply the planned split (a no-op when it is there)."""
        ref, spec = self.route.ref, driven.spec
        if decided.split is None:
            return self._handover.explain(ref, driven, await driven.driver.observe(ref, spec))
        state = await driven.driver.apply(ref, spec, decided.split)
        if state.wrote:
            self._deps.metrics.api_writes.labels(driven.info.kind.plural).inc()
        return self._handover.explain(ref, driven, state)

    def _carry_out(
        self, decided: Plan, spec: ModelRouteSpec | None, changed_at: float | None = None
    ) -> None:
        """After routing: metrics and the next recheck here; Events and the status write are
        handed to the reporter, so the next probe result never waits for them."""
        ref, deps = self.route.ref, self._deps
        if spec is not None:
            self._gauges.show(spec, decided.status, self.active)
        if decided.moved and self.active is not None:
            deps.metrics.failovers.labels(ref.namespace, ref.name, self.active).inc()
        # Kept before the Events and the write: a failure in either must not lose a move.
        self._previous = status = self._handover.stamp(ref, self._driven, decided.status)
        self.reporter.submit(decided.events, status, spec, changed_at)
        self._wakeups.recheck(decided.recheck_at, deps.now())
        if status.failback is not None:  # a ramp: one failure while this plan ran aborts it
            self._wakeups.hurry()

    async def _carry_out_invalid(self, message: str, reason: ReadyReason = _INVALID) -> None:
        decided = plan_invalid(
            previous=self._previous,
            written=self.reporter.written,
            generation=self.route.generation,
            problem=Problem(reason, message),
            now=self._deps.now(),
        )
        self._carry_out(decided, None)
