"""The kopf wiring that lets the caches know a watch's initial list is in.

kopf runs no handler before every index handler has seen its kind's whole initial list. Each
routing kind gets an index handler that feeds its cache (and indexes nothing), so when the
first ModelRoute event arrives the caches hold every listed object and may call a miss a
known absence (``ObjectCache.listed``).
"""

from __future__ import annotations

from typing import Any

import kopf

from modelroute.control import handlers
from modelroute.kube.client import SERVICES, ObjectKind


class Recorder:
    """Stands for the runtime and its controller: records what the handlers hand over."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.controller = self

    def listed(self) -> None:
        self.calls.append(("listed", None))

    def on_object_event(self, kind: ObjectKind, event_type: str | None, body: Any) -> None:
        self.calls.append(("object", (kind, event_type, body["metadata"]["name"])))

    async def on_route_event(self, event_type: str | None, body: Any) -> None:
        self.calls.append(("route", body["metadata"]["name"]))


def _index_handler(kind: ObjectKind) -> Any:
    registry = kopf.get_default_registry()
    found = [
        h
        for h in registry._indexing.get_all_handlers()
        if h.selector is not None
        and (h.selector.group, h.selector.plural or h.selector.any_name) == ("", kind.plural)
    ]
    assert len(found) == 1, found
    return found[0].fn


async def test_a_routing_kind_is_indexed_and_its_index_feeds_the_cache() -> None:
    handlers.watch(SERVICES)
    handlers.watch(SERVICES)  # a retried start-up handler registers nothing twice
    recorder = Recorder()
    memo = kopf.Memo(runtime=recorder)
    body = kopf.Body({"metadata": {"name": "chat-llm", "namespace": "ai"}, "spec": {}})
    assert await _index_handler(SERVICES)(body=body, memo=memo) is None  # indexes nothing
    assert recorder.calls == [("object", (SERVICES, None, "chat-llm"))]


async def test_a_route_event_marks_the_lists_in_before_the_route_starts() -> None:
    recorder = Recorder()
    event = {"type": None, "object": {"metadata": {"name": "chat", "namespace": "ai"}}}
    await handlers.modelroute_event(event=event, memo=kopf.Memo(runtime=recorder))
    assert recorder.calls == [("listed", None), ("route", "chat")]
