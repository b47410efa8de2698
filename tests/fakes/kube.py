"""An in-memory stand-in for ``modelroute.kube.KubeClient`` (our own boundary).

It stores Services, fills in the defaults a real API server adds, rejects what a real one
rejects (a changed ClusterIP, an ExternalName Service with a cluster IP, a duplicate create),
and queues watch events that a test delivers to a real ``ObjectCache`` when it wants the watch
to catch up. It also keeps route status patches, posted Events and Secrets, and can fail status
writes on demand.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from modelroute.cache import ObjectCache, ObjectKey
from modelroute.kube import ApiError


def merge_patch(current: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(current) if isinstance(current, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class FakeKube:
    """In-memory Services with API-server defaults and validation; counts the driver's calls."""

    def __init__(self) -> None:
        self.services: dict[ObjectKey, dict[str, Any]] = {}
        self.events: list[tuple[str, dict[str, Any]]] = []  # not yet seen by the watch
        self.calls: list[str] = []  # "get", "create", "patch" made through the client API
        self.fail_next_create: ApiError | None = None
        self.fail_status_writes = 0  # how many status patches to fail with a 500
        self.route_status: dict[ObjectKey, dict[str, Any]] = {}
        self.posted_events: list[dict[str, Any]] = []
        self.secrets: dict[ObjectKey, dict[str, Any]] = {}
        self.leases: dict[ObjectKey, dict[str, Any]] = {}
        self._revision = itertools.count(100)
        self._ips = itertools.count(10)

    @property
    def writes(self) -> int:
        """Service writes (create, patch) made through the client API."""
        return sum(1 for call in self.calls if call in ("create", "patch"))

    # The KubeClient methods the driver and the cache use.

    async def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append("get")
        found = self.services.get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def create_service(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("create")
        if self.fail_next_create is not None:
            error, self.fail_next_create = self.fail_next_create, None
            raise error
        assert body["metadata"]["namespace"] == namespace
        return self.seed(body)

    async def patch_service(
        self, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        self.calls.append("patch")
        return self.mutate((namespace, name), patch)

    # Status, Events and Secrets: what the scheduler writes and reads besides Services.

    async def patch_route_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        self.calls.append("patch_status")
        if self.fail_status_writes:
            self.fail_status_writes -= 1
            raise ApiError(500, "InternalError", "etcd is having a moment")
        key = (namespace, name)
        self.route_status[key] = merge_patch(self.route_status.get(key, {}), status)
        return {"status": copy.deepcopy(self.route_status[key])}

    async def create_event(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("create_event")
        self.posted_events.append(copy.deepcopy(body))
        return body

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append("get_secret")
        found = self.secrets.get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    # Leases, with the API server's optimistic concurrency (resourceVersion) on replace.

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.leases.get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        key = (namespace, body["metadata"]["name"])
        if key in self.leases:
            raise ApiError(409, "AlreadyExists", f'leases "{key[1]}" already exists')
        return self._store_lease(key, body)

    async def replace_lease(
        self, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        key = (namespace, name)
        current = self.leases.get(key)
        if current is None:
            raise ApiError(404, "NotFound", f'leases "{name}" not found')
        expected = body.get("metadata", {}).get("resourceVersion")
        if expected is not None and expected != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "the object has been modified")
        return self._store_lease(key, body)

    def _store_lease(self, key: ObjectKey, body: dict[str, Any]) -> dict[str, Any]:
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(next(self._revision))
        stored["spec"] = {k: v for k, v in stored.get("spec", {}).items() if v is not None}
        self.leases[key] = stored
        return copy.deepcopy(stored)

    # What other actors do (not counted as the driver's calls).

    def seed(self, body: dict[str, Any], *, watched: bool = True) -> dict[str, Any]:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if key in self.services:
            raise ApiError(409, "AlreadyExists", f'services "{key[1]}" already exists')
        stored = copy.deepcopy(body)
        meta = stored["metadata"]
        meta.update(uid=f"uid-svc-{next(self._revision)}", creationTimestamp="2025-01-01T00:00:00Z")
        meta.setdefault("managedFields", [{"manager": "someone"}])
        stored["status"] = {"loadBalancer": {}}
        return self._store(key, stored, "ADDED", watched=watched)

    def mutate(self, key: ObjectKey, patch: dict[str, Any]) -> dict[str, Any]:
        if key not in self.services:
            raise ApiError(404, "NotFound", f'services "{key[1]}" not found')
        return self._store(key, merge_patch(self.services[key], patch), "MODIFIED")

    def delete(self, key: ObjectKey) -> None:
        gone = self.services.pop(key)
        self.events.append(("DELETED", copy.deepcopy(gone)))

    def deliver(self, cache: ObjectCache) -> None:
        """The watch catches up: hand every queued event to the cache."""
        for event_type, body in self.events:
            cache.observe(event_type, copy.deepcopy(body))
        self.events.clear()

    def _store(
        self, key: ObjectKey, body: dict[str, Any], event: str, *, watched: bool = True
    ) -> dict[str, Any]:
        old = self.services.get(key)
        spec = body["spec"]
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port["port"])
        if spec["type"] == "ExternalName":
            if spec.get("clusterIP") or spec.get("clusterIPs"):
                raise ApiError(422, "Invalid", "spec.clusterIP: may not be set for ExternalName")
        else:
            old_ip = (old or {}).get("spec", {}).get("clusterIP")
            if old_ip and spec.get("clusterIP") != old_ip and old["spec"]["type"] != "ExternalName":
                raise ApiError(422, "Invalid", "spec.clusterIP: field is immutable")
            spec.setdefault("clusterIP", f"10.96.0.{next(self._ips)}")
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        body["metadata"]["resourceVersion"] = str(next(self._revision))
        self.services[key] = body
        if watched:
            self.events.append((event, copy.deepcopy(body)))
        return copy.deepcopy(body)
