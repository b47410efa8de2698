"""Create and patch one kind of routing object through the API and its watch-fed cache.

Every driver writes its routing object the same way: create it, or diff against the one that
appeared meanwhile (409); merge-patch it, or create it again when it was deleted before the
watch said so (404). Each write goes through to the cache, so the next diff sees it at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelroute.core.types import RouteRef
from modelroute.kube.cache import ObjectCache
from modelroute.kube.client import MODELROUTES, ApiError, KubeApi, ObjectKind
from modelroute.routing.ownership import ownership, retained_by

Diff = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any] | None]


class ObjectWriter:
    """Writes of one kind's objects, kept in step with that kind's cache."""

    def __init__(self, kube: KubeApi, cache: ObjectCache, kind: ObjectKind) -> None:
        self._kube = kube
        self._cache = cache
        self._kind = kind

    async def ensure(
        self,
        route: RouteRef,
        current: dict[str, Any] | None,
        desired: dict[str, Any],
        diff: Diff,
        *,
        adopt: bool = False,
    ) -> tuple[dict[str, Any], bool] | None:
        """Make the route's object ``desired``: (it, whether it was written), or None when an
        object of that name belongs to someone else (it is never written).

        ``diff`` gives the merge patch from the object as it is to ``desired`` (None: nothing
        differs, so nothing is written). ``adopt`` (spec.routing.adopt) lets the route take
        over an object another route of ours retained, once that route is gone.
        """
        wrote = False
        if current is None:
            current, wrote = await self.create(route.namespace, desired)
        found = ownership(route, current, adopt=adopt)
        if found == "foreign" or (found == "retained" and not await self._orphaned(current)):
            return None
        patch = None if wrote else diff(current, desired)
        if patch is not None:
            current = await self.patch(route.namespace, current, desired, patch)
            wrote = True
        return current, wrote

    async def _orphaned(self, obj: dict[str, Any]) -> bool:
        """True when the route a retained object was created for no longer exists (or is being
        deleted): only then may another route adopt it. Read once, at adoption time."""
        namespace = obj.get("metadata", {}).get("namespace", "")
        owner = await self._kube.get_object(MODELROUTES, namespace, retained_by(obj))
        return owner is None or bool(owner.get("metadata", {}).get("deletionTimestamp"))

    async def create(self, namespace: str, desired: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create ``desired``: (it, True), else (the object that exists already, False)."""
        try:
            created = await self._kube.create_object(self._kind, namespace, desired)
        except ApiError as exc:
            if exc.status != 409:
                raise
            # Created meanwhile (or the cache had not seen it yet): diff against the real one.
            name = desired["metadata"]["name"]
            existing = await self._kube.get_object(self._kind, namespace, name)
            if existing is None:
                raise
            self._cache.put(existing)
            return existing, False
        self._cache.put(created)
        return created, True

    async def patch(
        self,
        namespace: str,
        current: dict[str, Any],
        desired: dict[str, Any],
        patch: dict[str, Any],
    ) -> dict[str, Any]:
        """Merge-patch the object; create ``desired`` again when it was deleted meanwhile."""
        name = desired["metadata"]["name"]
        try:
            updated = await self._kube.patch_object(self._kind, namespace, name, patch)
        except ApiError as exc:
            if exc.status != 404:
                raise
            # Deleted before the watch said so: forget it and create it again, now.
            self._cache.observe("DELETED", current)
            created, wrote = await self.create(namespace, desired)
            if not wrote:
                raise  # created meanwhile by someone else: the retry diffs against it
            return created
        self._cache.put(updated)
        return updated
