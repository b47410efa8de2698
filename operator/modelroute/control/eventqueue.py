"""A route's Events decided and not yet posted: in order, stamped, bounded, each posted once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from modelroute.api.models import ModelRouteSpec
from modelroute.api.status import ModelRouteStatus
from modelroute.control.route import Deps
from modelroute.core.types import PlannedEvent, RouteRef
from modelroute.kube.client import ApiError
from modelroute.kube.events import decision_of

logger = logging.getLogger("modelroute.control.report")

# An Event, when it was decided, and what identifies the decision (kube.events.decision_of;
# None: not a counted move): the next process re-posting it after a crash gets a 409.
StampedEvent = tuple[PlannedEvent, datetime, str | None]
# A submission to a route's reporter held while urgent requests were busy, not judged yet:
# its Events, status, spec and when it was decided (control.report).
# events, desired status, spec, when decided, when its first deferrable change came (loop time)
Held = tuple[
    tuple[PlannedEvent, ...], ModelRouteStatus, ModelRouteSpec | None, datetime, float | None
]


class EventQueue:
    """The Events of one route waiting to be posted (by its :class:`Reporter`).

    At most ``settings.max_unsent_events`` are kept (beyond that the oldest are dropped, with a
    warning), and an Event the API server refuses ``settings.max_event_attempts`` times is
    dropped: what follows it must not wait on it forever."""

    def __init__(self, ref: RouteRef, deps: Deps, unsent: Sequence[StampedEvent] = ()) -> None:
        self._ref = ref
        self._deps = deps
        self.entries: list[StampedEvent] = list(unsent)
        self._attempts = 0  # refusals of the first entry so far

    def __bool__(self) -> bool:
        return bool(self.entries)

    def keep(
        self, events: Sequence[PlannedEvent], desired: ModelRouteStatus, now: datetime
    ) -> None:
        """Queue the Events of one decision, whose status is ``desired``, decided at ``now``."""
        traffic = {t.backend: t.weight for t in desired.traffic}
        self.entries.extend(
            (event, now, decision_of(event.reason, desired.failover_count, traffic))
            for event in events
        )
        kept = self._deps.settings.max_unsent_events
        over = len(self.entries) - kept
        if over > 0:
            del self.entries[:over]
            logger.warning(
                "dropped the %d oldest Events not yet posted (more than %d kept)",
                over,
                kept,
                extra={"namespace": self._ref.namespace, "route": self._ref.name},
            )

    async def post_all(self) -> None:
        """Post every queued Event, in order; each is taken off only once posted (or dropped
        after its refusals), so a cancellation keeps the rest."""
        while self.entries:
            entry = self.entries[0]
            await self._post(entry)
            if self.entries and self.entries[0] is entry:  # not dropped by keep() meanwhile
                self.entries.pop(0)

    async def _post(self, entry: StampedEvent) -> None:
        """Post one Event; an API server refusing it (429, 5xx) is retried, but at most
        ``settings.max_event_attempts`` times."""
        event, at, decision = entry
        try:
            await self._deps.events.post(
                self._ref, event.type, event.reason, event.message, at, decision=decision
            )
        except ApiError as exc:
            self._attempts += 1
            if self._attempts < self._deps.settings.max_event_attempts:
                raise
            logger.warning(
                "dropped event %s after %d refusals: %s",
                event.reason,
                self._attempts,
                exc,
                extra={"namespace": self._ref.namespace, "route": self._ref.name},
            )
        self._attempts = 0
