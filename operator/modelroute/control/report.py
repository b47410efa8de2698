"""A route's Events and status writes, made off its reconcile loop: routing never waits on them.

The worker hands over what each reconcile decided (:meth:`Reporter.submit`) and goes back to
waiting for the next probe result; this task posts the Events and writes the status after it.
Status is coalesced: only the latest is written (one write with the newest state when probes
change faster than the API server answers). A status that differs from the one written only
in backend counters (a failure below its threshold: it decides nothing) waits up to
``status_defer_seconds`` from the change (see :meth:`Reporter.submit`), usually written with
the decisive status that follows (the failover): one status write a failover, not one per
failed probe. Every other change is written at once.

What is written is judged when taken in and after each write, against the status the API
server accepted (its answer), never one captured before an await: a decision made while a write
was in flight is neither skipped (a flap back to the status before that write) nor written
twice. A write whose answer never came (dropped connection, timeout) may have landed: the
newest status is then written whatever it is. Events are kept in order (:class:`EventQueue`),
each posted before the status that follows its decision, and logged once, when submitted.

While urgent requests (routing writes, the reads they wait on) are in flight or waiting, a
submission is held, in order, until they are through (``Lanes.until_quiet``) or at most
``settings.report_hold_max_seconds``; a stop hands it to the route's next reporter.

Why: with status written in the reconcile loop, the probe that decided a failover waited for
the previous probe's status write, and the routing write queued behind it (bench mass).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime

import aiohttp

from modelroute.api.models import ModelRouteSpec
from modelroute.api.status import ModelRouteStatus
from modelroute.control.eventqueue import EventQueue, Held, StampedEvent
from modelroute.control.route import Deps
from modelroute.control.stored import accepted
from modelroute.core import status
from modelroute.core.types import PlannedEvent, RouteRef
from modelroute.kube.client import ApiError
from modelroute.kube.reachability import TRANSPORT_FAILURES

logger = logging.getLogger("modelroute.control.report")

# Backoff (seconds) for retrying a failed status write.
_RETRY_FIRST_SECONDS = 1.0
_RETRY_MAX_SECONDS = 30.0
_API_FAILURES = (ApiError, aiohttp.ClientError, TimeoutError, *TRANSPORT_FAILURES)


class Reporter:
    """Posts one route's Events and writes its status, in that order, after its routing."""

    def __init__(
        self,
        ref: RouteRef,
        deps: Deps,
        written: ModelRouteStatus | None,
        on_done: Callable[[asyncio.Task[None]], None],
        unsent: Sequence[StampedEvent] = (),
        *,
        uncertain: bool = False,
    ) -> None:
        """``written``: the status last written (or read back from the API server);
        ``on_done`` is called with the writer task when it ends (a crash is the worker's);
        ``unsent``: Events the route's previous reporter had not posted (a spec change right
        after a failover must not lose its FailedOver), sent with the first submit;
        ``uncertain``: a write after ``written`` may have landed (see :attr:`uncertain`)."""
        self._ref = ref
        self._on_done = on_done
        self._task: asyncio.Task[None] | None = None
        self._deps = deps
        self.written = written
        # True while the stored status may differ from ``written``: a write is in flight, or
        # one failed without an answer (it may have landed). The next status is then written.
        self.uncertain = uncertain
        self._desired: ModelRouteStatus | None = None
        self._spec: ModelRouteSpec | None = None
        self._events = EventQueue(ref, deps, unsent)
        self._due: float | None = None  # loop time the desired status is to be written at
        self._hold_until: float | None = None  # see _first_hold
        self._wake = asyncio.Event()
        self._back = asyncio.Event()  # set when the API server answers again (one waiter)
        self._attempted = asyncio.Event()  # set after each send attempt and when _run ends
        self._inbox: list[Held] = []  # submitted while urgent requests were busy

    @property
    def unsent(self) -> list[StampedEvent]:
        """Events decided but not posted yet (handed to the next reporter of the route)."""
        return list(self._events.entries)

    @property
    def pending(self) -> bool:
        """True while Events or a status write are waiting to be judged or sent."""
        return bool(self._inbox) or bool(self._events) or self._due is not None

    def submit(
        self,
        events: Sequence[PlannedEvent],
        desired: ModelRouteStatus,
        spec: ModelRouteSpec | None,
        changed_at: float | None = None,
    ) -> None:
        """The latest status and the Events of one reconcile, whose routing write is done;
        ``changed_at``: loop time of the first change in it that decides nothing (a deferred
        write is due ``status_defer_seconds`` after it, not after the submit).

        Whether the status is worth a write is judged against what the API server accepted
        last, not by the caller against a status it read before its routing await; while
        urgent requests are busy (a mass failover), once they are through (module doc).
        """
        now = self._deps.now()
        for event in events:
            self._deps.events.log(self._ref, event.type, event.reason, event.message)
        lanes = self._deps.lanes
        if lanes is None or not (self._inbox or lanes.urgent_busy):
            self._accept(events, desired, spec, now, changed_at)
            return
        if len(self._inbox) >= self._deps.settings.max_unsent_events:
            self._accept_inbox()  # bounded: what is held is taken in now
        last = self._inbox[-1][1] if self._inbox else self._desired
        if events or status.decisive(last if last is not None else self.written, desired):
            self._back.set()  # as _accept would: a new decision sits out no backoff
        self._inbox.append((tuple(events), desired, spec, now, changed_at))
        self._wake.set()
        self._ensure_task()

    def _accept(
        self,
        events: Sequence[PlannedEvent],
        desired: ModelRouteStatus,
        spec: ModelRouteSpec | None,
        now: datetime,
        changed_at: float | None,
    ) -> None:
        self._events.keep(events, desired, now)
        before = self._desired if self._desired is not None else self.written
        self._desired, self._spec = desired, spec
        self._classify(changed_at)
        if events or status.decisive(before, desired):
            # A new decision (Events, a decisive change of the status) does not sit out a
            # backoff of up to 30 s taken before it: the API server may well be back already.
            # The same status planned again (every probe) waits for the backoff, or every
            # reconcile during an outage would retry at once.
            self._back.set()
        if self.pending:
            self._wake.set()
            self._ensure_task()

    def _accept_inbox(self) -> None:
        inbox, self._inbox = self._inbox, []
        for entry in inbox:
            self._accept(*entry)

    def _ensure_task(self) -> None:
        # A task only while there is something to send: 10,000 idle routes hold none.
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"report:{self._ref.key}")
            self._task.add_done_callback(self._on_done)

    async def drain(self) -> None:
        """Return once the Events and the status due by now are sent (a graceful stop: the
        next leader plans from what this one wrote, not from a status one move behind).
        Deferred counter-only changes are left; the caller bounds the wait."""
        loop = asyncio.get_running_loop()
        while True:
            self._accept_inbox()  # held or not, it is what the next leader must plan from
            due = self._due is not None and self._due <= loop.time()
            if self._task is None or self._task.done() or not (self._events or due):
                return
            self._attempted.clear()
            await self._attempted.wait()

    async def stop(self) -> None:
        """Cancel what is waiting (the next worker of the route plans its status again); the
        Events of what was held are kept (:attr:`unsent`), nothing is sent."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        held, self._inbox = self._inbox, []
        for events, desired, _, now, _ in held:
            self._events.keep(events, desired, now)

    def _classify(self, changed_at: float | None = None) -> None:
        desired, written = self._desired, self.written
        if desired is None or not (
            self.uncertain or status.needs_write(written, desired, self._spec)
        ):
            self._due = None  # back to what is written (a flap): nothing to write
            return
        now = asyncio.get_running_loop().time()
        if self.uncertain or status.decisive(written, desired):
            self._due = max(now, self._first_hold(now))
        elif self._due is None:
            # A deferred change keeps its first due time: at most one such write per period.
            since = now if changed_at is None else min(now, changed_at)
            self._due = since + self._deps.settings.status_defer_seconds

    def _first_hold(self, now: float) -> float:
        """Until when a new route's first status waits for every backend's first verdict (0:
        no wait). Counted from the first submit; a route with a verdict written never waits."""
        if self._hold_until is None:
            fresh = self.written is None or all(b.healthy is None for b in self.written.backends)
            self._hold_until = now + self._deps.settings.first_status_hold_seconds if fresh else 0
        desired = self._desired
        if self._hold_until <= now or desired is None or not desired.backends:
            self._hold_until = 0.0  # over for good: later writes are the usual ones
        elif all(b.healthy is not None for b in desired.backends):
            self._hold_until = 0.0
        return self._hold_until

    async def _run(self) -> None:
        """Send what is due until nothing is pending; failed writes are retried with backoff."""
        try:
            await self._send_pending()
        finally:
            self._attempted.set()  # drain() waits no longer for a reporter with nothing to send

    async def _send_pending(self) -> None:
        retry = _RETRY_FIRST_SECONDS
        while self.pending:
            await self._until_due()
            if self._deps.lanes is not None:
                # Built once urgent requests are through (it could not be sent before): from
                # the newest status, not from one that waited behind them (at start-up, each
                # route's first status waited behind every route's routing write).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._deps.settings.report_hold_max_seconds):
                        await self._deps.lanes.until_quiet()
            self._accept_inbox()
            try:
                await self._flush()
                self._attempted.set()
            except _API_FAILURES as exc:
                self._attempted.set()
                self._classify()  # against the baseline as it now stands
                logger.warning(
                    "could not write the route's Events or status, retrying in %.0fs: %s",
                    retry,
                    exc,
                    extra={"namespace": self._ref.namespace, "route": self._ref.name},
                )
                await self._backoff(retry, exc)
                retry = min(retry * 2, _RETRY_MAX_SECONDS)
            else:
                retry = _RETRY_FIRST_SECONDS

    async def _backoff(self, seconds: float, exc: BaseException) -> None:
        """Wait ``seconds``, or less when the API server was gone: until it answers again, so
        a status decided during an outage lands as soon as it is back, not a backoff later."""
        self._back.clear()
        reach = self._deps.reachability
        if reach is not None and isinstance(exc, TRANSPORT_FAILURES):
            reach.wake_when_back(self._back.set)  # the same bound method: registered once
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._back.wait(), seconds)

    async def _until_due(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            if self._inbox or self._events or self._due is None:
                return
            delay = self._due - loop.time()
            if delay <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _flush(self) -> None:
        deps, ref = self._deps, self._ref
        await self._events.post_all()
        if self._inbox:
            return  # a newer decision was held meanwhile: its status, not this one, is next
        desired = self._desired
        due = self._due
        if desired is None or due is None or due > asyncio.get_running_loop().time():
            return
        patch = status.wire_patch(self.written, desired)
        before, self.uncertain = self.uncertain, True  # until the answer: it may land anyway
        try:
            answer = await deps.kube.patch_route_status(ref.namespace, ref.name, patch)
        except ApiError as exc:
            if 400 <= exc.status < 500:
                self.uncertain = before  # refused: the stored status is as it was
            raise
        deps.metrics.api_writes.labels("modelroutes/status").inc()
        self.written, self.uncertain = accepted(answer, desired), False
        self._due = None
        # A newer status may have come while this one was being written: judge it against
        # what the server accepted.
        self._classify()
