"""Watch-fed caches of the objects routes depend on (routing objects, their targets, Secrets).

kopf streams watch events in; a cache keeps the objects some route subscribed to, and tells
which routes to wake when one changes. A miss is read from the API once; afterwards the watch
keeps the entry fresh (a missing object is cached as ``None``). So probing and reconciling
never read the API server every interval.

A cache may also keep objects no route has subscribed to yet (``keep_unsubscribed``, slimmed,
bounded; objects ``owned`` by the operator are always kept): the watch's initial list arrives
before the routes that need its objects have started, and without them a (re)started operator
read every route's object one by one (1,045 GETs at 1,000 routes, queued behind the start-up
status writes). Once told the initial list is in (:meth:`ObjectCache.listed`) and while
nothing it saw was left out, a miss is a known absence and is not read at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

ObjectKey = tuple[str, str]  # (namespace, name)
RouteKey = tuple[str, str]  # (namespace, name) of a ModelRoute
Fetch = Callable[[str, str], Awaitable[dict[str, Any] | None]]

# Objects of one kind kept before any route subscribed to them (besides those the operator
# owns): a slim Service is 1-3 KiB, so at most ~15 MiB per kind. Beyond it, objects are left
# out and a miss is read from the API again (as without keeping).
MAX_UNSUBSCRIBED = 5000


def object_key(body: dict[str, Any]) -> ObjectKey:
    """(namespace, name) of a Kubernetes object body."""
    meta = body.get("metadata", {})
    return meta.get("namespace", ""), meta.get("name", "")


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
        keep_unsubscribed: int = 0,
        owned: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """``keep_unsubscribed``: how many objects no route subscribed to are kept (0: none, as
        for Secrets); ``owned``: objects kept whatever that bound (the operator's own)."""
        self._fetch = fetch
        self._slim = slim
        self._entries: dict[ObjectKey, dict[str, Any] | None] = {}
        self._subscribers: dict[ObjectKey, set[RouteKey]] = {}
        self._subscriptions: dict[RouteKey, set[ObjectKey]] = {}
        self._unsubscribed: set[ObjectKey] = set()  # entries kept with no subscriber
        self._keep = keep_unsubscribed
        self._owned = owned or (lambda _: False)
        self._listed = False
        self._left_out = False  # an object was seen and not kept: a miss may exist after all
        self.fetches = 0

    @property
    def complete(self) -> bool:
        """True when every object of the watch is in the cache: a miss is a known absence."""
        return self._listed and not self._left_out

    def listed(self) -> None:
        """The watch's initial list has been observed in full (kopf lists before it watches)."""
        self._listed = True

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
                self._keep_unsubscribed(key, entry)  # already slim; still in the watch

    def _keep_unsubscribed(self, key: ObjectKey, slim: dict[str, Any]) -> None:
        if len(self._unsubscribed) < self._keep or self._owned(slim):
            self._unsubscribed.add(key)
            self._entries[key] = slim
        else:
            self._left_out = True

    async def get(self, key: ObjectKey) -> dict[str, Any] | None:
        """The cached object, reading it from the API once on a miss (none once complete)."""
        if key in self._entries:
            return self._entries[key]
        if self.complete:
            if key in self._subscribers:
                self._entries[key] = None
            return None
        self.fetches += 1
        body = await self._fetch(*key)
        # A watch event may have filled the entry while the read was in flight: keep it.
        if key not in self._entries and key in self._subscribers:
            self._entries[key] = self._slim(body) if body is not None else None
        return self._entries.get(key, self._slim(body) if body is not None else None)

    def observe(self, event_type: str | None, body: dict[str, Any]) -> set[RouteKey]:
        """Apply one watch event; return the routes to wake (those that depend on the object,
        unless the event only echoes what the cache holds)."""
        key = object_key(body)
        routes = self._subscribers.get(key)
        if not routes:
            self._observe_unsubscribed(event_type, key, body)
            return set()
        if event_type == "DELETED":
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

    def _observe_unsubscribed(
        self, event_type: str | None, key: ObjectKey, body: dict[str, Any]
    ) -> None:
        if event_type == "DELETED":
            if key in self._unsubscribed:
                self._unsubscribed.discard(key)
                del self._entries[key]
        elif key not in self._unsubscribed:
            self._keep_unsubscribed(key, self._slim(body))
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


def slim_object(body: dict[str, Any]) -> dict[str, Any]:
    """Keep only what routing needs from an object: identity, ownership, spec and status."""
    meta = body.get("metadata", {})
    return {
        "metadata": {
            k: meta[k]
            for k in (
                "name",
                "namespace",
                "uid",
                "resourceVersion",
                "generation",  # what a gateway's status conditions are stamped against
                "labels",
                "annotations",
                "ownerReferences",
            )
            if k in meta
        },
        "spec": dict(body.get("spec", {})),
        **({"status": dict(body["status"])} if isinstance(body.get("status"), dict) else {}),
    }


def slim_secret(body: dict[str, Any]) -> dict[str, Any]:
    """Keep only the data of a Secret (never logged, never copied elsewhere)."""
    meta = body.get("metadata", {})
    return {
        "metadata": {k: meta[k] for k in ("name", "namespace", "resourceVersion") if k in meta},
        "data": dict(body.get("data") or {}),
    }
