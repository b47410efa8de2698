"""WatchClient (kube.stream) against a loopback server speaking the API server's LIST and WATCH
wire format: query parameters, one JSON event a line, 410 as a status, unreadable lines."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from modelroute.control import watching
from modelroute.kube.client import HTTPROUTES, SERVICES, ApiError, ObjectKind
from modelroute.kube.credentials import Credentials
from modelroute.kube.stream import MAX_LINE, StreamError, WatchClient, collection_path
from modelroute.settings import Settings

ADDED = {"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "12"}}}
BOOKMARK = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}}


class Server:
    """Answers LISTs from ``pages`` and WATCHes with ``lines`` (or ``status``)."""

    def __init__(self) -> None:
        self.queries: list[dict[str, str]] = []
        self.asked = asyncio.Event()  # set at every request
        self.lines: list[bytes] = []
        self.status = 200
        self.page: bytes | None = None  # a LIST answer other than the normal pages

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.queries.append({"path": request.path, **request.query})
        self.asked.set()
        if self.status != 200:
            body = {"kind": "Status", "reason": "Expired", "message": "too old", "code": 410}
            return web.json_response(body, status=self.status)
        if request.query.get("watch") != "true" and self.page is not None:
            return web.Response(body=self.page, content_type="text/html")
        if request.query.get("watch") != "true":
            token = request.query.get("continue", "")
            meta = {"resourceVersion": "10", "continue": "" if token else "next"}
            return web.json_response({"items": [{"page": token or "first"}], "metadata": meta})
        response = web.StreamResponse()
        await response.prepare(request)
        for line in self.lines:
            await response.write(line)
        await response.write_eof()
        return response


@pytest.fixture
async def served() -> AsyncIterator[tuple[Server, WatchClient]]:
    server = Server()
    app = web.Application()
    app.router.add_get("/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    api = WatchClient(
        Credentials(server=url, ssl_context=False), request_timeout_s=5, idle_timeout_s=5
    )
    yield server, api
    await api.close()
    await runner.cleanup()


def test_collection_paths() -> None:
    assert collection_path(SERVICES, None) == "/api/v1/services"
    assert collection_path(SERVICES, "ai") == "/api/v1/namespaces/ai/services"
    assert collection_path(HTTPROUTES, None) == "/apis/gateway.networking.k8s.io/v1/httproutes"


async def test_list_pages_carry_limit_and_continue(served: tuple[Server, WatchClient]) -> None:
    server, api = served
    first = await api.list_page(SERVICES, "ai", limit=500)
    second = await api.list_page(SERVICES, "ai", limit=500, token="next")
    assert first["items"] == [{"page": "first"}] and first["metadata"]["continue"] == "next"
    assert second["items"] == [{"page": "next"}]
    assert server.queries[0] == {"path": "/api/v1/namespaces/ai/services", "limit": "500"}
    assert server.queries[1]["continue"] == "next"


async def test_a_watch_yields_one_event_a_line(served: tuple[Server, WatchClient]) -> None:
    server, api = served
    server.lines = [
        json.dumps(ADDED).encode() + b"\n",
        b"\n",
        json.dumps(BOOKMARK).encode() + b"\n",
    ]
    events = [e async for e in await api.watch(SERVICES, None, "10", 300)]
    assert events == [ADDED, BOOKMARK]
    assert server.queries[0] == {
        "path": "/api/v1/services",
        "watch": "true",
        "resourceVersion": "10",
        "allowWatchBookmarks": "true",
        "timeoutSeconds": "300",
    }


async def test_an_expired_watch_raises_410(served: tuple[Server, WatchClient]) -> None:
    server, api = served
    server.status = 410
    with pytest.raises(ApiError) as failed:
        await api.watch(SERVICES, "ai", "1", 300)
    assert failed.value.status == 410 and failed.value.reason == "Expired"


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"<html>proxy error</html>\n", "not JSON"),
        (b"[1, 2]\n", "not an object"),
        (b'{"type": "ADDED", "object": ' + b" " * MAX_LINE, "longer than"),
    ],
    ids=["not-json", "not-an-object", "too-long"],
)
async def test_an_unreadable_event_is_a_stream_error(
    served: tuple[Server, WatchClient], line: bytes, why: str
) -> None:
    server, api = served
    server.lines = [json.dumps(ADDED).encode() + b"\n", line]
    seen: list[dict[str, Any]] = []
    with pytest.raises(StreamError, match=why):
        async for event in await api.watch(SERVICES, "ai", "10", 300):
            seen.append(event)
    assert seen == [ADDED]  # what came before it was delivered


@pytest.mark.parametrize(
    "page",
    [
        b"<html>Sign in</html>",
        b"",
        b"{}",
        b"[]",
        b'{"items": {}, "metadata": {"resourceVersion": "3"}}',
        b'{"items": [], "metadata": {"resourceVersion": 3}}',
        b'{"items": []}',
    ],
    ids=["html", "empty", "empty-object", "array", "items-not-list", "rv-not-string", "no-rv"],
)
async def test_a_2xx_list_answer_that_is_not_a_page_is_a_stream_error(
    served: tuple[Server, WatchClient], page: bytes
) -> None:
    """An authenticating proxy's 200 page is never an empty collection (that would delete
    every cached object)."""
    server, api = served
    server.page = page
    with pytest.raises(StreamError):
        await api.list_page(SERVICES, "ai", limit=500)


@pytest.mark.parametrize(
    "event",
    [
        {"type": "ADDED"},
        {"object": {}},
        {"type": "ADDED", "object": "x"},
        {"type": 1, "object": {}},
    ],
    ids=["no-object", "no-type", "object-not-dict", "type-not-str"],
)
async def test_a_watch_line_that_is_not_an_event_is_a_stream_error(
    served: tuple[Server, WatchClient], event: dict[str, Any]
) -> None:
    server, api = served
    server.lines = [json.dumps(event).encode() + b"\n"]
    with pytest.raises(StreamError, match="no type and object"):
        async for _ in await api.watch(SERVICES, "ai", "10", 300):
            pass


class Consumer:
    def __init__(self) -> None:
        self.events: list[tuple[str | None, dict[str, Any]]] = []

    def on_object_event(
        self, kind: ObjectKind, event_type: str | None, body: dict[str, Any]
    ) -> None:
        self.events.append((event_type, body))

    def on_secret_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        self.events.append((event_type, body))


async def test_the_watches_use_the_runtime_credentials_and_load_none(
    served: tuple[Server, WatchClient],
) -> None:
    """Loading them again could fail after the routes started (a half-started runtime)."""
    server, api = served
    settings = Settings(kubeconfig="/nonexistent/kubeconfig")
    running = watching.start(settings, [SERVICES], Consumer(), api._credentials)
    try:
        async with asyncio.timeout(5):
            while len({q["path"] for q in server.queries}) < 2:
                server.asked.clear()
                await server.asked.wait()
    finally:
        await running.stop()
    assert {q["path"] for q in server.queries} == {"/api/v1/services", "/api/v1/secrets"}
