"""The discovery part of the fake API server: which resources each group/version serves.

``FakeKube`` inherits it, so its ``api_resources`` answers as ``KubeClient.api_resources`` does
(mypy checks FakeKube against the ``KubeApi`` Protocol). It starts as a bare cluster: the core
kinds, Leases and the ModelRoute CRD, no Gateway API; ``serve(kind)`` installs a CRD's kind,
``unserve(kind)`` removes it (a group/version left with no resource is not served at all: 404).
"""

from __future__ import annotations

from modelroute.kube.client import EVENTS, LEASES, MODELROUTES, SECRETS, SERVICES, ObjectKind

BARE_CLUSTER = (SERVICES, SECRETS, EVENTS, LEASES, MODELROUTES)


class FakeDiscovery:
    """Served resources by group/version; ``discovery_error`` (while set) fails every call,
    ``not_ready`` (while set) fails the readiness check before discovery."""

    def __init__(self) -> None:
        self.served: dict[str, set[str]] = {}
        self.discovery_calls: list[str] = []  # the group/versions asked for, in order
        self.discovery_error: BaseException | None = None
        self.not_ready: BaseException | None = None
        for kind in BARE_CLUSTER:
            self.serve(kind)

    def serve(self, kind: ObjectKind) -> None:
        """The cluster serves ``kind`` from now on (its CRD was installed)."""
        self.served.setdefault(kind.api_version, set()).add(kind.plural)

    def unserve(self, kind: ObjectKind) -> None:
        """The cluster no longer serves ``kind`` (its CRD was deleted)."""
        resources = self.served.get(kind.api_version, set())
        resources.discard(kind.plural)
        if not resources:
            self.served.pop(kind.api_version, None)

    async def api_ready(self) -> None:
        """Ready, unless ``not_ready`` is set (its /readyz fails, or it does not answer)."""
        if self.not_ready is not None:
            raise self.not_ready

    async def api_resources(self, group_version: str) -> set[str] | None:
        """The resources ``group_version`` serves; None when it is not served (a 404)."""
        self.discovery_calls.append(group_version)
        if self.discovery_error is not None:
            raise self.discovery_error
        found = self.served.get(group_version)
        return set(found) if found is not None else None
