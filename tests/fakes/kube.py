"""An in-memory stand-in for ``modelroute.kube.client.KubeClient`` (our own boundary).

It implements the ``KubeApi`` Protocol (mypy checks that: see the end of this module). It stores
objects of any kind, fills in the defaults a real API server adds to Services, HTTPRoutes and
AIGatewayRoutes (``schema_defaults``; and the generation of custom resources), rejects what a
real one rejects (a changed ClusterIP, an ExternalName Service with a cluster IP, a Service
backendRef without a port, a duplicate create), and queues watch events that a test delivers to
a real ``ObjectCache`` when it wants the watch to catch up. It also keeps route status patches,
posted Events, Secrets and Leases.
Faults are switches on the fake (``fail_next_create``, ``patch_conflicts``, ``fail_status_writes``,
``status_write_error``, ``status_answer_error``, ``status_writes_held``, ``events_held``,
``lease_error``, ``delete_error``), never
methods a test reassigns.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modelroute.kube.cache import ObjectCache, ObjectKey
from modelroute.kube.client import SECRETS, SERVICES, ApiError, ObjectKind
from tests.fakes.discovery import FakeDiscovery
from tests.fakes.schema_defaults import SCHEMA_DEFAULTS
from tests.fakes.watch import FakeWatch

if TYPE_CHECKING:
    from modelroute.kube.client import KubeApi
    from modelroute.kube.stream import WatchApi


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


class FakeKube(FakeDiscovery, FakeWatch):
    """In-memory objects with API-server defaults and validation; counts the driver's calls.

    ``default_kind`` is the kind that ``seed``, ``mutate``, ``delete`` and ``services`` act on
    when a test names none: Services, or another routing driver's kind.
    """

    def __init__(self, default_kind: ObjectKind = SERVICES) -> None:
        FakeDiscovery.__init__(self)  # discovery: a bare cluster, plus the default kind
        FakeWatch.__init__(self)  # LIST and WATCH of what is stored (tests.fakes.watch)
        self.serve(default_kind)
        self.default_kind = default_kind
        self.objects: dict[ObjectKind, dict[ObjectKey, dict[str, Any]]] = {}
        self.events: list[tuple[str, dict[str, Any]]] = []  # not yet seen by the watch
        self.calls: list[str] = []  # "get", "create", "patch", ... made through the client API
        self.fail_next_create: ApiError | None = None
        self.fail_status_writes = 0  # how many status patches to fail with a 500
        # While set, every status patch raises it (e.g. a RuntimeError standing for a bug).
        self.status_write_error: BaseException | None = None
        # While set, every status patch is stored, then raises it: the write landed and its
        # answer was lost (the connection dropped after the API server committed it).
        self.status_answer_error: BaseException | None = None
        # While set, every delete_object raises it (a 403, a webhook refusing the delete).
        self.delete_error: BaseException | None = None
        # While set, every status patch waits until this asyncio.Event is set (a slow API
        # server, for status writes only); the patch is counted in ``calls`` when it is sent.
        self.status_writes_held: asyncio.Event | None = None
        # While set, every Event post raises it (e.g. the API server gone mid-failover).
        self.event_error: BaseException | None = None
        # While set, every Event post waits until this asyncio.Event is set (a slow API server
        # during a mass failover, for Events only); the post is counted when it is sent.
        self.events_held: asyncio.Event | None = None
        # While set, every Lease call raises it (an operator cut off from the API server).
        self.lease_error: BaseException | None = None
        # While set, every routing object patch raises it (the API server gone mid-switch).
        self.patch_error: BaseException | None = None
        # Each routing object patch takes the first of these, if any: that merge patch lands as
        # another writer's update (None: the other writer deletes the object), and the patch is
        # refused with 409 (as kube-apiserver 1.20 refuses a Service patch when an update lands
        # between its read and its write).
        self.patch_conflicts: list[dict[str, Any] | None] = []
        self.route_status: dict[ObjectKey, dict[str, Any]] = {}
        self.posted_events: list[dict[str, Any]] = []
        self.secrets: dict[ObjectKey, dict[str, Any]] = {}
        self.leases: dict[ObjectKey, dict[str, Any]] = {}
        self._revision = itertools.count(100)
        self._ips = itertools.count(10)

    def store(self, kind: ObjectKind | None = None) -> dict[ObjectKey, dict[str, Any]]:
        """The stored objects of ``kind`` (``default_kind`` when None)."""
        return self.objects.setdefault(kind or self.default_kind, {})

    def objects_of(self, kind: ObjectKind) -> dict[ObjectKey, dict[str, Any]]:
        """What a LIST of ``kind`` answers (Secrets come from ``secrets``)."""
        return self.secrets if kind == SECRETS else self.store(kind)

    @property
    def services(self) -> dict[ObjectKey, dict[str, Any]]:
        """The stored objects of ``default_kind`` (Services unless the test chose another)."""
        return self.store()

    @property
    def writes(self) -> int:
        """Routing-object writes (create, patch) made through the client API."""
        return sum(1 for call in self.calls if call in ("create", "patch"))

    # The KubeApi methods that drivers, caches and workers use.

    async def get_object(
        self, kind: ObjectKind, namespace: str, name: str
    ) -> dict[str, Any] | None:
        """One stored object (Secrets come from ``secrets``), or None."""
        if kind == SECRETS:
            self.calls.append("get_secret")
            found = self.secrets.get((namespace, name))
        else:
            self.calls.append("get")
            found = self.store(kind).get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def create_object(
        self, kind: ObjectKind, namespace: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Create an object, or raise ``fail_next_create`` (once)."""
        self.calls.append("create")
        if self.fail_next_create is not None:
            error, self.fail_next_create = self.fail_next_create, None
            raise error
        assert body["metadata"]["namespace"] == namespace
        return self.seed(body, kind=kind)

    async def patch_object(
        self, kind: ObjectKind, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        """JSON-merge-patch an object, as the API server does, unless ``patch_error`` is set."""
        self.calls.append("patch")
        if self.patch_error is not None:
            raise self.patch_error
        if self.patch_conflicts:
            change = self.patch_conflicts.pop(0)
            if change is None:
                self.delete((namespace, name), kind=kind)
            else:
                self.mutate((namespace, name), change, kind=kind)
            modified = f'{kind.plural} "{name}": the object has been modified'
            raise ApiError(409, "Conflict", f"Operation cannot be fulfilled on {modified}")
        return self.mutate((namespace, name), patch, kind=kind)

    async def delete_object(
        self,
        kind: ObjectKind,
        namespace: str,
        name: str,
        uid: str,
        resource_version: str | None = None,
    ) -> None:
        """Delete an object, only while it has ``uid`` and, when given, ``resource_version``
        (409 otherwise, as the API server)."""
        self.calls.append("delete")
        if self.delete_error is not None:
            raise self.delete_error
        found = self.store(kind).get((namespace, name))
        if found is None:
            return
        if found["metadata"].get("uid") != uid:
            raise ApiError(409, "Conflict", f"Precondition failed: UID in precondition: {uid}")
        have = found["metadata"].get("resourceVersion")
        if resource_version and have != resource_version:
            raise ApiError(
                409, "Conflict", f"Precondition failed: ResourceVersion in precondition: {have}"
            )
        self.delete((namespace, name), kind=kind)

    async def patch_route_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch a route's status, unless a fault switch says otherwise."""
        self.calls.append("patch_status")
        if self.status_writes_held is not None:
            await self.status_writes_held.wait()
        if self.status_write_error is not None:
            raise self.status_write_error
        if self.fail_status_writes:
            self.fail_status_writes -= 1
            raise ApiError(500, "InternalError", "etcd is having a moment")
        key = (namespace, name)
        self.route_status[key] = merge_patch(self.route_status.get(key, {}), status)
        if self.status_answer_error is not None:
            raise self.status_answer_error
        return {"status": copy.deepcopy(self.route_status[key])}

    async def create_event(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Keep a posted Event, unless ``event_error`` says otherwise."""
        self.calls.append("create_event")
        if self.events_held is not None:
            await self.events_held.wait()
        if self.event_error is not None:
            raise self.event_error
        name = body["metadata"].get("name")
        if name is not None and any(
            e["metadata"].get("name") == name and e["metadata"]["namespace"] == namespace
            for e in self.posted_events
        ):
            raise ApiError(409, "AlreadyExists", f'events "{name}" already exists')
        self.posted_events.append(copy.deepcopy(body))
        return body

    # Leases, with the API server's optimistic concurrency (resourceVersion) on replace.

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A stored Lease, or None."""
        self._lease_fault()
        found = self.leases.get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a Lease; 409 when it exists."""
        self._lease_fault()
        key = (namespace, body["metadata"]["name"])
        if key in self.leases:
            raise ApiError(409, "AlreadyExists", f'leases "{key[1]}" already exists')
        return self._store_lease(key, body)

    async def replace_lease(
        self, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Replace a Lease; 409 when the given resourceVersion is stale."""
        self._lease_fault()
        key = (namespace, name)
        current = self.leases.get(key)
        if current is None:
            raise ApiError(404, "NotFound", f'leases "{name}" not found')
        expected = body.get("metadata", {}).get("resourceVersion")
        if expected is not None and expected != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "the object has been modified")
        return self._store_lease(key, body)

    def _lease_fault(self) -> None:
        if self.lease_error is not None:
            raise self.lease_error

    def _store_lease(self, key: ObjectKey, body: dict[str, Any]) -> dict[str, Any]:
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(next(self._revision))
        stored["spec"] = {k: v for k, v in stored.get("spec", {}).items() if v is not None}
        self.leases[key] = stored
        return copy.deepcopy(stored)

    # What other actors do (not counted as the driver's calls).

    def seed(
        self, body: dict[str, Any], *, watched: bool = True, kind: ObjectKind | None = None
    ) -> dict[str, Any]:
        """An object someone created (``create_object`` lands here too)."""
        kind = kind or self.default_kind
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if key in self.store(kind):
            raise ApiError(409, "AlreadyExists", f'{kind.plural} "{key[1]}" already exists')
        stored = copy.deepcopy(body)
        meta = stored["metadata"]
        meta.update(uid=f"uid-{next(self._revision)}", creationTimestamp="2025-01-01T00:00:00Z")
        meta.setdefault("managedFields", [{"manager": "someone"}])
        if kind == SERVICES:
            stored["status"] = {"loadBalancer": {}}
        return self._store(kind, key, stored, "ADDED", watched=watched)

    def mutate(
        self, key: ObjectKey, patch: dict[str, Any], *, kind: ObjectKind | None = None
    ) -> dict[str, Any]:
        """Someone merge-patches an object (``patch_object`` lands here too)."""
        kind = kind or self.default_kind
        if key not in self.store(kind):
            raise ApiError(404, "NotFound", f'{kind.plural} "{key[1]}" not found')
        return self._store(kind, key, merge_patch(self.store(kind)[key], patch), "MODIFIED")

    def delete(self, key: ObjectKey, *, kind: ObjectKind | None = None) -> None:
        """Someone deletes an object; the watch tells when delivered."""
        gone = self.store(kind).pop(key)
        self.events.append(("DELETED", copy.deepcopy(gone)))
        gone["metadata"]["resourceVersion"] = str(next(self._revision))  # the deletion's own
        self.record(kind or self.default_kind, "DELETED", gone)

    def deliver(self, cache: ObjectCache) -> None:
        """The watch catches up: hand every queued event to the cache."""
        for event_type, body in self.events:
            cache.observe(event_type, copy.deepcopy(body))
        self.events.clear()

    def deliver_to(self, on_event: Callable[[str | None, dict[str, Any]], None]) -> None:
        """The watch catches up, through the operator's handler (which wakes the routes)."""
        for event_type, body in self.events:
            on_event(event_type, copy.deepcopy(body))
        self.events.clear()

    def _store(
        self,
        kind: ObjectKind,
        key: ObjectKey,
        body: dict[str, Any],
        event: str,
        *,
        watched: bool = True,
    ) -> dict[str, Any]:
        old = self.store(kind).get(key)
        if kind == SERVICES:
            self._service_defaults(old, body["spec"])
        if kind in SCHEMA_DEFAULTS:
            SCHEMA_DEFAULTS[kind](body.setdefault("spec", {}))
        if kind.group:
            # Custom resources: the API server counts spec changes (status and metadata
            # changes leave the generation alone); gateways stamp their conditions with it.
            generation = (old or {}).get("metadata", {}).get("generation", 0)
            changed = old is None or old.get("spec") != body.get("spec")
            body["metadata"]["generation"] = generation + 1 if changed else generation
        body["metadata"]["resourceVersion"] = str(next(self._revision))
        self.store(kind)[key] = body
        if watched:
            self.events.append((event, copy.deepcopy(body)))
        self.record(kind, event, body)
        return copy.deepcopy(body)

    def _service_defaults(self, old: dict[str, Any] | None, spec: dict[str, Any]) -> None:
        """What a real API server adds to a Service, and what it refuses."""
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port["port"])
        if spec["type"] == "ExternalName":
            if spec.get("clusterIP") or spec.get("clusterIPs"):
                raise ApiError(422, "Invalid", "spec.clusterIP: may not be set for ExternalName")
            return
        old_spec = (old or {}).get("spec", {})
        old_ip = old_spec.get("clusterIP")
        if old_ip and spec.get("clusterIP") != old_ip and old_spec.get("type") != "ExternalName":
            raise ApiError(422, "Invalid", "spec.clusterIP: field is immutable")
        spec.setdefault("clusterIP", f"10.96.0.{next(self._ips)}")
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")


if TYPE_CHECKING:
    # The fake must keep up with the boundary it stands in for: mypy fails here if it drifts.
    _conforms: KubeApi = FakeKube()
    _conforms_watch: WatchApi = FakeKube()
