"""The reads a cache makes on a miss, for ``kube.cache.ObjectCache``: in the routing writes'
lane, since a routing write may be waiting on them."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from modelroute.kube.client import KubeClient, ObjectKind


async def urgent_get(
    kube: KubeClient, kind: ObjectKind, namespace: str, name: str
) -> dict[str, Any] | None:
    """A routing object (or its target) read on a cache miss: the routing write waits on it, so
    it goes in the routing writes' lane, never behind status writes and Events."""
    return await kube.request("GET", kind.path(namespace, name), urgent=True)


async def urgent_list(kube: KubeClient, kind: ObjectKind, namespace: str) -> list[dict[str, Any]]:
    """Every object of ``kind`` in ``namespace``, in pages of 500 (urgent, as above)."""
    items: list[dict[str, Any]] = []
    token = ""
    while True:
        query = urlencode({"limit": 500, **({"continue": token} if token else {})})
        page = await kube.request("GET", f"{kind.path(namespace)}?{query}", urgent=True) or {}
        items.extend(page.get("items") or [])
        token = (page.get("metadata") or {}).get("continue") or ""
        if not token:
            return items
