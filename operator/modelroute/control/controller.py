"""All route workers of this operator process, and the watch events that wake them."""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from typing import Any

import aiohttp

from modelroute.control.route import Deps, RouteObject
from modelroute.control.worker import RouteWorker
from modelroute.kube.cache import RouteKey, slim_object
from modelroute.kube.client import MODELROUTES, ApiError, ObjectKind

logger = logging.getLogger("modelroute.control.controller")


class Controller:
    """Starts, replaces and stops one :class:`RouteWorker` per ModelRoute.

    Every ModelRoute body seen is kept, leading or not; workers run only while this replica
    leads (always, without leader election), so a takeover starts every route at once.
    """

    def __init__(self, deps: Deps, *, leading: bool = True) -> None:
        self._deps = deps
        self._workers: dict[RouteKey, RouteWorker] = {}
        self._bodies: dict[RouteKey, bytes] = {}  # see _pack
        # Routes started from the operator's own start-up list, by uid, until kopf delivers
        # them (or a later list shows they are gone: see sweep_unconfirmed).
        self._unconfirmed: dict[RouteKey, str] = {}
        self._leading = leading
        deps.metrics.leader.set(1 if leading else 0)

    @property
    def workers(self) -> dict[RouteKey, RouteWorker]:
        """Live workers by route key (read-only use)."""
        return self._workers

    async def on_route_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        """A ModelRoute was listed, added, modified or deleted."""
        route = RouteObject.from_body(body)
        self._unconfirmed.pop(route.ref.key, None)
        await self._apply(event_type, route, body)

    async def _apply(
        self, event_type: str | None, route: RouteObject, body: dict[str, Any]
    ) -> None:
        if event_type == "DELETED":
            self._bodies.pop(route.ref.key, None)
            await self.remove(route.ref.key, finalize=await self._deleted(route))
            self._wake_adopters(route.ref.namespace)
            return
        self._bodies[route.ref.key] = _pack(body)
        if not self._leading:
            return
        worker = self._workers.get(route.ref.key)
        if worker is None or not worker.same_spec(route):
            await self._replace(worker, route)
        elif (worker.route.annotations, worker.route.generation) != (
            route.annotations,
            route.generation,
        ):
            worker.update(route)  # an approval annotation, or a new generation: same spec

    @property
    def unconfirmed(self) -> int:
        """How many routes started from the start-up list kopf has not delivered yet."""
        return len(self._unconfirmed)

    @property
    def unconfirmed_names(self) -> list[str]:
        """``namespace/name`` of the routes counted by :attr:`unconfirmed`, sorted."""
        return sorted(f"{ns}/{name}" for ns, name in self._unconfirmed)

    async def adopt_listed(self, bodies: list[dict[str, Any]]) -> None:
        """Start the routes of the operator's own start-up list at once: kopf hands its list
        over one object at a time, on a loop the started routes share (13-42 s for 1,000).
        kopf's later delivery of the same route is then a no-op (same uid, spec, generation)."""
        for i, body in enumerate(bodies):
            route = RouteObject.from_body(body)
            await self._apply(None, route, body)
            self._unconfirmed[route.ref.key] = route.ref.uid
            if i % 50 == 49:
                await asyncio.sleep(0)  # the probe loops already started get their turn

    async def sweep_unconfirmed(self, bodies: list[dict[str, Any]]) -> None:
        """``bodies``: a ModelRoute list taken after the start-up one. A started route kopf has
        not delivered and this list lacks was deleted (or relabelled away) in between, maybe
        before kopf listed: kopf will never say so, so it is removed as if DELETED."""
        present = {
            (m.get("namespace", ""), m.get("name", "")): m.get("uid")
            for b in bodies
            if (m := b.get("metadata") or {})
        }
        for key in list(self._unconfirmed):
            uid = self._unconfirmed.get(key)  # kopf may have delivered it meanwhile
            if uid is None or present.get(key) == uid:
                continue  # delivered, or still there: kopf delivers it (listed or watched)
            body = self._bodies.get(key)
            if body is not None:
                await self.on_route_event("DELETED", _unpack(body))
            self._unconfirmed.pop(key, None)

    async def _deleted(self, route: RouteObject) -> bool:
        """Whether a DELETED route is gone, or only left this shard (relabelled: the API server's
        filtered watch says DELETED for both). A route that left is dropped, never finalized:
        its routing object stays, and the shard now selecting it takes it over."""
        if not self._deps.settings.label_selector or route.ref.key not in self._workers:
            return True
        ns, name = route.ref.namespace, route.ref.name
        try:
            current = await self._deps.kube.get_object(MODELROUTES, ns, name)
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            # Not finalizing loses nothing: the ownerReference still removes what it must.
            logger.warning("could not tell whether %s/%s was deleted: %s", ns, name, exc)
            return False
        if current is None or current.get("metadata", {}).get("uid") != route.ref.uid:
            return True
        logger.info(
            "route %s/%s no longer matches the label selector: another shard serves it now",
            ns,
            name,
            extra={"label_selector": self._deps.settings.label_selector},
        )
        return False

    def _wake_adopters(self, namespace: str) -> None:
        """A deleted route may leave a retained routing object that a route with
        spec.routing.adopt is waiting for: nothing else changes for it, so wake it."""
        for (ns, _), worker in self._workers.items():
            if ns == namespace and (worker.route.raw_spec.get("routing") or {}).get("adopt"):
                worker.wake()

    async def _replace(self, worker: RouteWorker | None, route: RouteObject) -> None:
        """A new route, or a new spec: a new worker (carrying over what the old one learnt)."""
        carried: RouteWorker | None = None
        if worker is not None:
            await worker.stop()
            carried = worker if worker.route.ref.uid == route.ref.uid else None
        new = RouteWorker(route, self._deps, carried=carried)
        if carried is not None:
            gone = set(carried.route.backend_names()) - set(route.backend_names())
            self._deps.metrics.forget(route.ref.namespace, route.ref.name, gone)
        self._workers[route.ref.key] = new
        self._deps.metrics.routes.set(len(self._workers))
        new.start()

    async def remove(self, key: RouteKey, *, finalize: bool = False) -> None:
        """Stop a route's worker and drop its subscriptions and metric series.

        ``finalize`` when the route itself was deleted (not when leadership is lost): its
        driver then leaves the routing object as the deletion policy says.
        """
        worker = self._workers.pop(key, None)
        if worker is None:
            return
        await worker.stop()
        if finalize:
            await worker.finalize()
        for cache in (*self._deps.caches.values(), self._deps.secrets):
            cache.unsubscribe(key)
        self._deps.metrics.forget(key[0], key[1], worker.route.backend_names())
        self._deps.metrics.forget_route(key[0], key[1])
        self._deps.metrics.routes.set(len(self._workers))

    def on_object_event(
        self, kind: ObjectKind, event_type: str | None, body: dict[str, Any]
    ) -> None:
        """A watched object changed: wake the routes that route through it or depend on it."""
        for key in self._deps.caches[kind].observe(event_type, body):
            if (worker := self._workers.get(key)) is not None:
                worker.wake()

    def on_secret_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        """A Secret changed: the next probes use the new key (no wake needed)."""
        self._deps.secrets.observe(event_type, body)

    def stalled(self, now: float) -> list[RouteKey]:
        """Routes whose worker crashed, or whose probes produced nothing for far longer than
        their schedule allows."""
        settings = self._deps.settings
        # A rate-limited backend's Retry-After pauses its probes (up to the cap): a quiet loop
        # then, not a stuck one.
        slack = settings.max_retry_after_seconds
        return [
            key
            for key, w in self._workers.items()
            if w.crashed
            or (
                (last := w.feed.last_result_at) is not None
                and now - last > settings.liveness_stall_intervals * w.feed.max_probe_period + slack
            )
        ]

    async def start_leading(self) -> None:
        """This replica now holds the Lease: start a worker for every route seen."""
        self._leading = True
        self._deps.metrics.leader.set(1)
        for packed in list(self._bodies.values()):
            # Not on_route_event: only kopf's own delivery confirms a route of the start-up
            # list (a route deleted before kopf listed must still be swept).
            body = _unpack(packed)
            await self._apply(None, RouteObject.from_body(body), body)

    async def stop_leading(self) -> None:
        """Another replica may take over: stop every worker (route bodies are kept)."""
        self._leading = False
        self._deps.metrics.leader.set(0)
        for key in list(self._workers):
            await self.remove(key)

    async def drain(self) -> None:
        """Wait until the routes have sent the Events and statuses they owe (a graceful stop,
        while this replica still holds the Lease: a new leader started from a status one move
        behind would count the next failover from there). The caller bounds the wait."""
        if self._leading and self._workers:
            await asyncio.gather(*(w.reporter.drain() for w in self._workers.values()))

    async def shutdown(self) -> None:
        """Stop every worker."""
        workers, self._workers = list(self._workers.values()), {}
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)


def _pack(body: dict[str, Any]) -> bytes:
    """A route body as kept while it is not needed: compact JSON without kopf's managedFields,
    compressed. It is read again only when this replica starts leading; as dicts 10,000 bodies
    were a million objects more for the memory and every full collection, and compressed they
    are a third of the JSON's bytes (about 20 MiB less at 10,000 routes with full statuses)."""
    text = json.dumps(slim_object(body), separators=(",", ":"))
    return zlib.compress(text.encode(), 1)


def _unpack(packed: bytes) -> dict[str, Any]:
    """The body :func:`_pack` kept."""
    body: dict[str, Any] = json.loads(zlib.decompress(packed))
    return body
