"""The watches that feed the caches: every routing kind served, and Secrets (kube.watch).

They replace kopf's on-event handlers for those kinds (see the module docstring of
:mod:`modelroute.kube.watch` for why); ModelRoutes stay with kopf. Same scope as kopf's
watches: the operator's namespaces, or cluster-wide when none is set.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from modelroute.kube.client import SECRETS, ObjectKind
from modelroute.kube.credentials import Credentials
from modelroute.kube.stream import WatchApi, WatchClient
from modelroute.kube.watch import Deliver, WatchConfig, Watches, WatchLoop
from modelroute.metrics import Metrics
from modelroute.settings import Settings


class Consumer(Protocol):
    """Where the events go (the controller: it feeds the caches and wakes routes)."""

    def on_object_event(
        self, kind: ObjectKind, event_type: str | None, body: dict[str, Any]
    ) -> None:
        """An event of a routing kind."""
        ...

    def on_secret_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        """An event of a Secret."""
        ...


def start(
    settings: Settings,
    kinds: Iterable[ObjectKind],
    consumer: Consumer,
    api: WatchApi | Credentials,
    metrics: Metrics | None = None,
) -> Watches:
    """Start a list-then-watch of each of ``kinds`` and of Secrets, delivering to
    ``consumer``, through ``api`` (or a :class:`WatchClient` on the runtime's credentials,
    not loaded again: closed by :meth:`Watches.stop`); ``metrics``: modelroute_watch_listed."""
    client = None
    if isinstance(api, Credentials):
        api = client = WatchClient(
            api,
            request_timeout_s=settings.api_timeout_seconds,
            idle_timeout_s=settings.watch_client_timeout_seconds,
        )
    config = WatchConfig(
        server_timeout_s=settings.watch_server_timeout_seconds,
        retry_first_s=settings.watch_retry_first_seconds,
        retry_max_s=settings.watch_retry_max_seconds,
    )
    watches = Watches(api, config, close=client.close if client is not None else None)
    for kind in kinds:
        deliver = functools.partial(consumer.on_object_event, kind)
        _start(watches, kind, settings.namespaces, deliver, metrics)
    _start(watches, SECRETS, settings.namespaces, consumer.on_secret_event, metrics)
    return watches


def _start(
    watches: Watches,
    kind: ObjectKind,
    namespaces: Iterable[str],
    deliver: Deliver,
    metrics: Metrics | None,
) -> None:
    """Start ``kind``'s loops; its gauge turns 1 once each of them completed a LIST."""
    loops: list[WatchLoop] = []
    listed: Callable[[], None] | None = None
    if metrics is not None:
        gauge = metrics.watch_listed.labels(kind.plural)
        gauge.set(0)

        def listed() -> None:
            gauge.set(1 if all(loop.lists for loop in loops) else 0)

    loops.extend(watches.start(kind, namespaces, deliver, listed))
