"""Watch-fed caches of the objects routes depend on (routing objects, their targets, Secrets).

kopf streams watch events in; a cache keeps only the objects some route subscribed to, and
tells which routes to wake when one changes. A miss is read from the API once; afterwards the
watch keeps the entry fresh (a missing object is cached as ``None``). So probing and
reconciling never read the API server every interval.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

ObjectKey = tuple[str, str]  # (namespace, name)
RouteKey = tuple[str, str]  # (namespace, name) of a ModelRoute
Fetch = Callable[[str, str], Awaitable[dict[str, Any] | None]]


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
    """Objects of one kind that routes subscribed to, fed by watch events and writes."""

    def __init__(self, fetch: Fetch, slim: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self._fetch = fetch
        self._slim = slim
        self._entries: dict[ObjectKey, dict[str, Any] | None] = {}
        self._subscribers: dict[ObjectKey, set[RouteKey]] = {}
        self._subscriptions: dict[RouteKey, set[ObjectKey]] = {}
        self.fetches = 0

    def subscribe(self, route: RouteKey, keys: Iterable[ObjectKey]) -> None:
        """Make ``route`` depend on exactly ``keys`` (replacing its earlier subscription)."""
        wanted = set(keys)
        for key in self._subscriptions.get(route, set()) - wanted:
            self._drop(route, key)
        for key in wanted:
            self._subscribers.setdefault(key, set()).add(route)
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
            self._entries.pop(key, None)

    async def get(self, key: ObjectKey) -> dict[str, Any] | None:
        """The cached object, reading it from the API once on a miss."""
        if key in self._entries:
            return self._entries[key]
        self.fetches += 1
        body = await self._fetch(*key)
        # A watch event may have filled the entry while the read was in flight: keep it.
        if key not in self._entries and key in self._subscribers:
            self._entries[key] = self._slim(body) if body is not None else None
        return self._entries.get(key, self._slim(body) if body is not None else None)

    def observe(self, event_type: str | None, body: dict[str, Any]) -> set[RouteKey]:
        """Apply one watch event; return the routes that depend on the object."""
        key = object_key(body)
        routes = self._subscribers.get(key)
        if not routes:
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

    def put(self, body: dict[str, Any]) -> None:
        """Write-through after the operator's own write, so the next diff sees it at once."""
        key = object_key(body)
        if key in self._subscribers and _resource_version(body) >= _resource_version(
            self._entries.get(key)
        ):
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
