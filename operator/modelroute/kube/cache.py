"""Watch-fed caches of the objects routes depend on (routing objects, their targets, Secrets).

The watches (kube.watch) stream events in; a cache keeps the objects some route subscribed
to, and tells which routes to wake when one changes. A miss is read from the API once;
afterwards the watch keeps the entry fresh (a missing object is cached as ``None``). So probing
and reconciling never read the API server every interval.

A cache given ``list_namespace`` answers the first miss in a namespace with one LIST of the
namespace, and keeps what it lists and what the watch delivers even when no route has
subscribed to it yet (slimmed, at most ``keep_unsubscribed`` objects; those ``owned`` by the
operator always), dropping it on DELETED. A miss after the LIST is still read once: an object
created after the LIST was served may not have reached the watch yet (a Service applied with
its route); a subscribed miss is then cached. A caller whose create handles a 409 may skip
that read (``get(confirm_miss=False)``; nothing is cached then). Why: a (re)started operator
read every route's object one by one (1,045 GETs at 1,000 routes, queued behind the start-up
status writes), as the objects of kopf's initial list arrived before the routes had
subscribed and were dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aiohttp

from modelroute.kube.client import ApiError
from modelroute.kube.slim import slim_object as slim_object
from modelroute.kube.slim import slim_secret as slim_secret

logger = logging.getLogger("modelroute.kube.cache")

ObjectKey = tuple[str, str]  # (namespace, name)
RouteKey = tuple[str, str]  # (namespace, name) of a ModelRoute
Fetch = Callable[[str, str], Awaitable[dict[str, Any] | None]]
ListFn = Callable[[str], Awaitable[list[dict[str, Any]]]]  # every object in a namespace
# The event a watch LIST ends with: metadata.namespace (None: every namespace) and
# metadata.resourceVersion of the LIST, ``listed``: the keys it brought (see ObjectCache.observe).
SYNCED = "SYNCED"

# Objects of one kind kept before any route subscribed to them (besides those the operator
# owns): a slim Service is 1-3 KiB, so at most ~15 MiB per kind. Beyond it, objects are left
# out and a miss is read from the API again (as without keeping).
MAX_UNSUBSCRIBED = 5000


def object_key(body: dict[str, Any]) -> ObjectKey:
    """(namespace, name) of a Kubernetes object body."""
    meta = body.get("metadata", {})
    return meta.get("namespace", ""), meta.get("name", "")


def _stale_delete(body: dict[str, Any], entry: dict[str, Any] | None) -> bool:
    # A DELETED without a version (one made up from a key) is taken as it comes.
    version = _resource_version(body)
    return bool(version) and version < _resource_version(entry)


def _resource_version(body: dict[str, Any] | None) -> int:
    # resourceVersions are opaque by contract but etcd revisions in practice; comparing them
    # only guards against an older watch event overwriting a newer write-through.
    try:
        return int((body or {}).get("metadata", {}).get("resourceVersion", "0"))
    except ValueError:
        return 0


class ObjectCache:
    """Objects of one kind that routes depend on, fed by watch events and writes."""

    def __init__(
        self,
        fetch: Fetch,
        slim: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        list_namespace: ListFn | None = None,
        keep_unsubscribed: int = 0,
        owned: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """``list_namespace``: read a namespace at its first miss (None: never, as for
        Secrets); ``keep_unsubscribed``: how many objects no route subscribed to are kept;
        ``owned``: objects kept whatever that bound (the operator's own)."""
        self._fetch = fetch
        self._slim = slim
        self._entries: dict[ObjectKey, dict[str, Any] | None] = {}
        self._subscribers: dict[ObjectKey, set[RouteKey]] = {}
        self._subscriptions: dict[RouteKey, set[ObjectKey]] = {}
        self._unsubscribed: set[ObjectKey] = set()  # entries kept with no subscriber
        self._keep = keep_unsubscribed
        self._owned = owned or (lambda _: False)
        self._list = list_namespace
        self._listed: set[str] = set()  # namespaces whose every object is known
        self._listing: dict[str, asyncio.Task[None]] = {}
        # Deletions seen while a namespace's LIST is in flight: the LIST may predate them.
        self._deleted: dict[ObjectKey, int] = {}
        self._last_sync: dict[str | None, tuple[int, frozenset[ObjectKey]]] = {}  # per scope
        self._left_out = False  # an object was seen and not kept: a miss may exist after all
        self.fetches = 0
        self.lists = 0

    def complete(self, namespace: str) -> bool:
        """True when ``namespace`` was listed and nothing was left out: every object that
        existed when the LIST was served is known (a miss is still read once, unless the caller
        need not confirm it: see ``get``)."""
        return namespace in self._listed and not self._left_out

    def subscribe(self, route: RouteKey, keys: Iterable[ObjectKey]) -> None:
        """Make ``route`` depend on exactly ``keys`` (replacing its earlier subscription)."""
        wanted = set(keys)
        for key in self._subscriptions.get(route, set()) - wanted:
            self._drop(route, key)
        for key in wanted:
            self._subscribers.setdefault(key, set()).add(route)
            self._unsubscribed.discard(key)
        self._subscriptions[route] = wanted

    def unsubscribe(self, route: RouteKey) -> None:
        """Forget everything ``route`` depended on."""
        for key in self._subscriptions.pop(route, set()):
            self._drop(route, key)

    def _drop(self, route: RouteKey, key: ObjectKey) -> None:
        routes = self._subscribers.get(key)
        if routes is None:
            return
        routes.discard(route)
        if not routes:
            del self._subscribers[key]
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._keep_unsubscribed(key, entry, slimmed=True)  # still in the watch

    def _keep_unsubscribed(
        self, key: ObjectKey, body: dict[str, Any], *, slimmed: bool = False
    ) -> None:
        # The bound is checked before slimming: a Secret not kept is never copied.
        if len(self._unsubscribed) < self._keep or self._owned(body):
            self._unsubscribed.add(key)
            self._entries[key] = body if slimmed else self._slim(body)
        else:
            self._left_out = True

    async def get(self, key: ObjectKey, *, confirm_miss: bool = True) -> dict[str, Any] | None:
        """The cached object; on a miss, its namespace is listed once, and an object the LIST
        did not bring is read (created since, its watch event still on the way).

        ``confirm_miss=False``: once the namespace's LIST is complete, an object neither it
        nor the watch brought is taken as absent, unread and uncached. For a caller whose
        create of it handles a 409 (the routing objects, ``routing.writer``): at start-up each
        new route's routing object was read once more only to hear 404 (10,000 GETs ahead of
        the creates at 10,000 routes).
        """
        if key in self._entries:
            return self._entries[key]
        namespace = key[0]
        # Once objects were left out, a LIST keeps nothing more: the misses are read alone.
        if self._list is not None and namespace not in self._listed and not self._left_out:
            await self._list_once(namespace)
            if key in self._entries:
                return self._entries[key]
        if not confirm_miss and self.complete(namespace):
            # Not cached: a reader that needs the miss confirmed (a backend's target Service
            # of the same name) still reads it.
            return None
        self.fetches += 1
        body = await self._fetch(*key)
        if body is not None and self._synced_without(key, body):
            body = None  # read before a watch LIST that lacked it: deleted since
        # A watch event may have filled the entry while the read was in flight: keep it.
        if key not in self._entries and key in self._subscribers:
            self._entries[key] = self._slim(body) if body is not None else None
        return self._entries.get(key, self._slim(body) if body is not None else None)

    async def _list_once(self, namespace: str) -> None:
        """One LIST per namespace, shared by every miss waiting for it. A failed LIST leaves
        the misses to single reads; the next miss lists again."""
        task = self._listing.get(namespace)
        if task is None:
            task = asyncio.create_task(self._list_all(namespace), name=f"list:{namespace}")
            self._listing[namespace] = task
            # Ended here, not by a waiter: every waiter may have been cancelled meanwhile.
            task.add_done_callback(lambda done: self._listed_out(namespace, done))
        try:
            await asyncio.shield(task)
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("could not list %s: %s", namespace, exc, extra={"namespace": namespace})

    def _listed_out(self, namespace: str, task: asyncio.Task[None]) -> None:
        if self._listing.get(namespace) is task:
            del self._listing[namespace]
        self._deleted = {k: v for k, v in self._deleted.items() if k[0] != namespace}
        if not task.cancelled():
            task.exception()  # its waiters log it; with none left it is not worth a traceback

    async def _list_all(self, namespace: str) -> None:
        items = await self._list(namespace) if self._list is not None else []
        self.lists += 1
        for body in items:
            key = object_key(body)
            if _resource_version(body) <= self._deleted.get(key, -1):
                continue  # deleted after the LIST was served
            if self._synced_without(key, body):
                continue  # a later watch LIST lacked it: deleted since
            if key in self._subscribers:
                # A subscriber's entry is the watch's to refresh (it wakes the routes).
                self._entries.setdefault(key, self._slim(body))
            else:
                self._observe_unsubscribed("ADDED", key, body)
        self._listed.add(namespace)

    def observe(self, event_type: str | None, body: dict[str, Any]) -> set[RouteKey]:
        """Apply one watch event; return the routes to wake (those that depend on the object,
        unless the event only echoes what the cache holds). A ``SYNCED`` event deletes every
        entry in its scope that its LIST lacked and is not newer (client-go's Replace)."""
        if event_type == SYNCED:
            return self._replace(body)
        key = object_key(body)
        if event_type == "DELETED" and key[0] in self._listing:
            self._deleted[key] = _resource_version(body)
        routes = self._subscribers.get(key)
        if not routes:
            self._observe_unsubscribed(event_type, key, body)
            return set()
        if event_type == "DELETED":
            if _stale_delete(body, self._entries.get(key)):
                return set()  # a relist's DELETED (at the LIST's version) older than a put()
            self._entries[key] = None
        elif _resource_version(body) >= _resource_version(self._entries.get(key)):
            slim = self._slim(body)
            if self._entries.get(key) == slim:
                # The watch echo of our own write (already put through): nothing changed for
                # anyone. Waking every route on it would re-plan each one in the middle of a
                # mass failover, between the routing writes still to send.
                return set()
            self._entries[key] = slim
        return set(routes)

    def _synced_without(self, key: ObjectKey, body: dict[str, Any]) -> bool:
        for scope in (key[0], None):
            version, listed = self._last_sync.get(scope, (-1, frozenset()))
            if key not in listed and _resource_version(body) <= version:
                return True
        return False

    def _replace(self, synced: dict[str, Any]) -> set[RouteKey]:
        # Entries put by a miss before the watch's first LIST (or during a gap) are in no
        # loop's memory: only this comparison finds the ones deleted meanwhile.
        scope, version = synced["metadata"]["namespace"], _resource_version(synced)
        listed = frozenset(synced["listed"])  # a copy: the watch loop goes on changing its set
        self._last_sync[scope] = (version, listed)
        woken: set[RouteKey] = set()
        for key, entry in list(self._entries.items()):
            if entry is None or scope not in (None, key[0]) or key in listed:
                continue
            if _resource_version(entry) <= version:
                meta = {"namespace": key[0], "name": key[1], "resourceVersion": str(version)}
                woken |= self.observe("DELETED", {"metadata": meta})
        return woken

    def _observe_unsubscribed(
        self, event_type: str | None, key: ObjectKey, body: dict[str, Any]
    ) -> None:
        if event_type == "DELETED":
            if key in self._unsubscribed and not _stale_delete(body, self._entries[key]):
                self._unsubscribed.discard(key)
                del self._entries[key]
        elif key not in self._unsubscribed:
            self._keep_unsubscribed(key, body)
        elif _resource_version(body) >= _resource_version(self._entries[key]):
            self._entries[key] = self._slim(body)

    def put(self, body: dict[str, Any]) -> None:
        """Write-through after the operator's own write, so the next diff sees it at once."""
        key = object_key(body)
        if key not in self._subscribers:
            self._observe_unsubscribed("MODIFIED", key, body)
            return
        if _resource_version(body) >= _resource_version(self._entries.get(key)):
            self._entries[key] = self._slim(body)

    def __len__(self) -> int:
        return sum(1 for v in self._entries.values() if v is not None)
