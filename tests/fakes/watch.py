"""The LIST and WATCH part of the fake API server (``modelroute.kube.stream.WatchApi``).

``FakeKube`` inherits it (mypy checks FakeKube against the ``WatchApi`` Protocol): every change
the fake stores is recorded in ``history`` with its resourceVersion, a LIST answers what is
stored, in pages, and a WATCH replays the history after its resourceVersion, then waits for
more until its timeout (on the loop's clock: run under looptime). Faults are switches:
``watch_error`` (while set, every LIST and WATCH raises it), ``compact()`` (older
resourceVersions answer 410 Gone, as an HTTP status or, with ``gone_as_event``, as an ERROR event
the way a 1.20 API server does), ``end_watches()`` (the server ends every open watch) and
``drop_watches(error)`` (every open watch's connection breaks).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncGenerator
from typing import Any

from modelroute.kube.cache import ObjectKey
from modelroute.kube.client import ApiError, ObjectKind

GONE = ApiError(410, "Expired", "too old resource version")


class FakeWatch:
    """Change history, paged LISTs and WATCH streams of the fake's objects."""

    def __init__(self) -> None:
        self.history: list[tuple[ObjectKind, int, str, dict[str, Any]]] = []
        self.watch_calls: list[tuple[str, str]] = []  # ("list" | "watch", resourceVersion)
        self.watch_call_times: list[float] = []  # on the loop's clock
        self.watch_error: BaseException | None = None
        self.gone_as_event = False
        self.compacted = 0  # a watch from a resourceVersion below this gets 410
        self.latest = 1  # the newest resourceVersion (what a LIST is served at)
        self.open_watches = 0
        self._epoch = 0  # bumped by end_watches / drop_watches
        self._drop: BaseException | None = None
        self._changed: asyncio.Event | None = None

    def objects_of(self, kind: ObjectKind) -> dict[ObjectKey, dict[str, Any]]:
        """The stored objects of ``kind`` (FakeKube answers)."""
        raise NotImplementedError

    # What the fake's stores call on every change.

    def record(self, kind: ObjectKind, event_type: str, body: dict[str, Any]) -> None:
        """A change at ``body``'s resourceVersion: open watches see it."""
        version = int(body["metadata"]["resourceVersion"])
        self.latest = max(self.latest, version)
        self.history.append((kind, version, event_type, copy.deepcopy(body)))
        self._wake()

    def bookmark(self, kind: ObjectKind, version: int) -> None:
        """The server sends a BOOKMARK at ``version`` to every open watch of ``kind``."""
        self.latest = max(self.latest, version)
        body = {"kind": kind.kind, "metadata": {"resourceVersion": str(version)}}
        self.history.append((kind, version, "BOOKMARK", body))
        self._wake()

    def compact(self) -> None:
        """etcd compacted at the newest revision: a watch from before it gets 410 Gone."""
        self.compacted = self.latest

    def end_watches(self) -> None:
        """The server ends every open watch normally (its timeoutSeconds ran out)."""
        self._epoch += 1
        self._drop = None
        self._wake()

    def drop_watches(self, error: BaseException) -> None:
        """Every open watch's connection breaks with ``error``."""
        self._epoch += 1
        self._drop = error
        self._wake()

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    # The WatchApi calls.

    def _called(self, call: str, version: str) -> None:
        self.watch_calls.append((call, version))
        self.watch_call_times.append(asyncio.get_running_loop().time())

    async def list_page(
        self, kind: ObjectKind, namespace: str | None, *, limit: int, token: str = ""
    ) -> dict[str, Any]:
        """A page of the stored objects, in key order; the token is the next page's offset."""
        self._called("list", token)
        if self.watch_error is not None:
            raise self.watch_error
        keys = sorted(k for k in self.objects_of(kind) if namespace in (None, k[0]))
        start = int(token or 0)
        page = keys[start : start + limit]
        more = str(start + limit) if start + limit < len(keys) else ""
        items = [copy.deepcopy(self.objects_of(kind)[key]) for key in page]
        meta = {"resourceVersion": str(self.latest), "continue": more}
        return {"items": items, "metadata": meta}

    async def watch(
        self, kind: ObjectKind, namespace: str | None, resource_version: str, timeout_s: int
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Replay the history after ``resource_version``, then follow it until ``timeout_s``,
        ``end_watches`` or ``drop_watches``."""
        self._called("watch", resource_version)
        if self.watch_error is not None:
            raise self.watch_error
        if int(resource_version) < self.compacted:
            if not self.gone_as_event:
                raise GONE
            return _gone_event()
        return self._stream(kind, namespace, int(resource_version), timeout_s)

    async def _stream(
        self, kind: ObjectKind, namespace: str | None, after: int, timeout_s: int
    ) -> AsyncGenerator[dict[str, Any], None]:
        loop = asyncio.get_running_loop()
        deadline, epoch, seen = loop.time() + timeout_s, self._epoch, 0
        self.open_watches += 1
        try:
            while True:
                for entry_kind, version, event_type, body in self.history[seen:]:
                    ns = body["metadata"].get("namespace")
                    scoped = namespace in (None, ns) or event_type == "BOOKMARK"
                    if entry_kind == kind and version > after and scoped:
                        yield {"type": event_type, "object": copy.deepcopy(body)}
                seen = len(self.history)
                if self._epoch != epoch:
                    if self._drop is not None:
                        raise self._drop
                    return
                if self._changed is None:
                    self._changed = asyncio.Event()
                try:
                    await asyncio.wait_for(self._changed.wait(), deadline - loop.time())
                except TimeoutError:
                    return  # the server's timeoutSeconds: a normal end
        finally:
            self.open_watches -= 1


async def _gone_event() -> AsyncGenerator[dict[str, Any], None]:
    """What a 1.20 API server answers a watch from a compacted resourceVersion: 200, then an
    ERROR event with a 410 Status, then the end of the stream."""
    status = {"kind": "Status", "status": "Failure", "reason": "Expired", "code": 410}
    yield {"type": "ERROR", "object": {**status, "message": "too old resource version"}}
