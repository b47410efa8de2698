"""Create and patch one kind of routing object through the API and its watch-fed cache.

Every driver writes its routing object the same way: create it, or diff against the one that
appeared meanwhile (409); merge-patch it, or create it again when it was deleted before the
watch said so (404). Each write goes through to the cache, so the next diff sees it at once.

A merge patch carries no resourceVersion, yet it can still be refused with 409: an older
kube-apiserver (seen on 1.20) applies a Service patch to the object it read and stores it with
that read's resourceVersion, so another writer's update landing in between is a conflict. The
patch is then diffed again against a fresh read and sent once more, at once: a failover is not
delayed by the reconcile's back-off, and the second patch does not undo the other writer's
change to a field the operator does not own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from modelroute.core.types import RouteRef
from modelroute.kube.cache import ObjectCache
from modelroute.kube.client import MODELROUTES, ApiError, KubeApi, ObjectKind
from modelroute.routing.ownership import ownership, retained_by

logger = logging.getLogger("modelroute.routing.writer")

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
        return await self._converge(route, current, desired, diff, adopt=adopt, wrote=wrote)

    async def _converge(
        self,
        route: RouteRef,
        current: dict[str, Any],
        desired: dict[str, Any],
        diff: Diff,
        *,
        adopt: bool,
        wrote: bool,
        reread: bool = True,
    ) -> tuple[dict[str, Any], bool] | None:
        """:meth:`ensure` once the object exists; a patch refused with 409 is diffed again
        against a fresh read and sent once more when ``reread``."""
        found = ownership(route, current, adopt=adopt)
        if found == "foreign" or (found == "retained" and not await self._orphaned(current)):
            return None
        patch = None if wrote else diff(current, desired)
        if patch is None:
            return current, wrote
        try:
            return await self.patch(route.namespace, current, desired, patch), True
        except ApiError as exc:
            if exc.status != 409 or not reread:
                raise
            fresh = await self._reread(route.namespace, current)
        wrote = False
        if fresh is None:  # deleted meanwhile: create it again now, not after a back-off
            fresh, wrote = await self.create(route.namespace, desired)
        return await self._converge(
            route, fresh, desired, diff, adopt=adopt, wrote=wrote, reread=False
        )

    async def _reread(self, namespace: str, current: dict[str, Any]) -> dict[str, Any] | None:
        """The object as it is now, after a patch of ``current`` was refused with 409; the
        cache is told too (the object, or that it is gone)."""
        name = current["metadata"]["name"]
        logger.debug(
            "%s %s/%s changed under the patch (409): diff again", self._kind.plural, namespace, name
        )
        fresh = await self._kube.get_object(self._kind, namespace, name)
        if fresh is None:
            self._cache.observe("DELETED", current)
        else:
            self._cache.put(fresh)
        return fresh

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
