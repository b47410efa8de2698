"""KubeClient against a loopback aiohttp server playing the API server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from modelroute.kube.client import SERVICES, ApiError, KubeClient, ObjectKind
from modelroute.kube.credentials import Credentials

Seen = list[dict[str, Any]]


@pytest.fixture
async def api() -> AsyncIterator[tuple[KubeClient, Seen]]:
    seen: Seen = []

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.text()
        seen.append(
            {
                "method": request.method,
                "path": request.path,
                "raw_path": request.raw_path,
                "raw_body": body,
                "query": dict(request.query),
                "headers": dict(request.headers),
                "body": json.loads(body) if body else None,
            }
        )
        # A POST goes to the collection: the object's name is in the body.
        name = (
            (seen[-1]["body"] or {}).get("metadata", {}).get("name")
            if request.method == "POST"
            else request.path.rsplit("/", 1)[-1]
        )
        if name == "missing":
            return web.json_response(
                {"kind": "Status", "reason": "NotFound", "message": "not found"}, status=404
            )
        if name == "taken":
            return web.json_response(
                {
                    "kind": "Status",
                    "reason": "AlreadyExists",
                    "message": 'services "taken" already exists',
                },
                status=409,
            )
        if name == "proxy":
            return web.Response(
                status=502, text="<html>bad gateway</html>", content_type="text/html"
            )
        if name == "moved":  # a proxy's redirect: no answer of the API server's
            return web.Response(status=307, headers={"Location": "https://elsewhere/"})
        if name == "chunked":
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            response.content_type = "application/json"
            await response.prepare(request)
            await response.write(b'{"metadata": ')
            await response.write(b'{"name": "chunked"}}')
            await response.write_eof()
            return response
        return web.json_response({"metadata": {"name": name}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = KubeClient(
        Credentials(server=f"http://127.0.0.1:{port}", ssl_context=False, token="t0k3n"),
        field_manager="modelroute-operator",
    )
    yield client, seen
    await client.close()
    await runner.cleanup()


async def test_get_returns_the_object_and_none_for_404(api: tuple[KubeClient, Seen]) -> None:
    client, seen = api
    assert await client.get_object(SERVICES, "ai", "chat-llm") == {"metadata": {"name": "chat-llm"}}
    assert await client.get_object(SERVICES, "ai", "missing") is None
    assert seen[0]["path"] == "/api/v1/namespaces/ai/services/chat-llm"
    assert seen[0]["headers"]["Authorization"] == "Bearer t0k3n"
    assert "fieldManager" not in seen[0]["query"]


async def test_writes_carry_the_field_manager_and_content_type(
    api: tuple[KubeClient, Seen],
) -> None:
    client, seen = api
    await client.patch_object(SERVICES, "ai", "chat-llm", {"spec": {"selector": {"app": "x"}}})
    await client.patch_route_status("ai", "chat", {"activeBackend": "vendor"})
    await client.create_event("ai", {"reason": "FailedOver"})
    assert [s["query"].get("fieldManager") for s in seen] == ["modelroute-operator"] * 3
    assert seen[0]["headers"]["Content-Type"] == "application/merge-patch+json"
    assert seen[1]["path"] == "/apis/modelroute.dev/v1alpha1/namespaces/ai/modelroutes/chat/status"
    assert seen[1]["body"] == {"status": {"activeBackend": "vendor"}}
    assert seen[2]["headers"]["Content-Type"] == "application/json"


async def test_bodies_are_compact_ascii_json_and_paths_go_as_quoted(
    api: tuple[KubeClient, Seen],
) -> None:
    client, seen = api
    await client.create_event("ai", {"message": "café down", "count": 1})
    await client.get_object(ObjectKind("", "v1", "configmaps", "ConfigMap"), "a i", "x%y")
    assert seen[0]["raw_body"] == '{"message":"caf\\u00e9 down","count":1}'
    assert seen[0]["body"] == {"message": "café down", "count": 1}
    # Quoted once by ObjectKind.path, and not again on the way out.
    assert seen[1]["raw_path"] == "/api/v1/namespaces/a%20i/configmaps/x%25y"
    assert seen[1]["path"] == "/api/v1/namespaces/a i/configmaps/x%y"


async def test_a_lone_surrogate_in_a_body_is_sent_escaped_not_raised(
    api: tuple[KubeClient, Seen],
) -> None:
    # A vendor error text with half an emoji ends up in an Event message: no UnicodeEncodeError.
    client, seen = api
    await client.create_event("ai", {"message": "overloaded \ud83d"})
    assert seen[0]["raw_body"] == '{"message":"overloaded \\ud83d"}'


async def test_a_rotated_token_is_sent_from_the_next_request_on(
    api: tuple[KubeClient, Seen],
) -> None:
    client, seen = api
    await client.get_object(SERVICES, "ai", "chat-llm")
    await client.patch_object(SERVICES, "ai", "chat-llm", {})
    client._transport._credentials.token = "r0tat3d"  # as Credentials.authorization refreshes it
    await client.get_object(SERVICES, "ai", "chat-llm")
    await client.patch_object(SERVICES, "ai", "chat-llm", {})
    tokens = [s["headers"]["Authorization"] for s in seen]
    assert tokens == ["Bearer t0k3n"] * 2 + ["Bearer r0tat3d"] * 2
    assert "Content-Type" not in seen[2]["headers"]  # a GET's headers are not a PATCH's
    assert seen[3]["headers"]["Content-Type"] == "application/merge-patch+json"


async def test_errors_become_api_errors_with_reason(api: tuple[KubeClient, Seen]) -> None:
    client, _ = api
    with pytest.raises(ApiError) as conflict:
        await client.create_object(SERVICES, "ai", {"metadata": {"name": "taken"}})
    assert (conflict.value.status, conflict.value.reason) == (409, "AlreadyExists")
    with pytest.raises(ApiError) as not_found_write:
        await client.patch_object(SERVICES, "ai", "missing", {})
    assert not_found_write.value.status == 404  # a 404 on a write is an error, not None
    with pytest.raises(ApiError) as proxy:
        await client.get_object(SERVICES, "ai", "proxy")
    assert proxy.value.status == 502
    with pytest.raises(ApiError) as moved:
        await client.patch_object(SERVICES, "ai", "moved", {})
    assert moved.value.status == 307  # not taken for a write that was done


async def test_chunked_bodies_are_read(api: tuple[KubeClient, Seen]) -> None:
    client, _ = api
    assert await client.get_object(SERVICES, "ai", "chunked") == {"metadata": {"name": "chunked"}}


async def test_routing_writes_take_free_slots_before_other_waiting_requests() -> None:
    from modelroute.kube.lanes import Lanes

    lanes = Lanes(1)
    order: list[str] = []
    await lanes.acquire(urgent=False)  # the only slot is taken

    async def queued(name: str, urgent: bool) -> None:
        await lanes.acquire(urgent)
        order.append(name)
        lanes.release(urgent)

    waiting = [
        asyncio.create_task(queued(n, u))
        for n, u in (("status-1", False), ("event-1", False), ("route", True))
    ]
    cancelled = asyncio.create_task(queued("cancelled", True))
    await asyncio.sleep(0)  # everyone is queued now
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    lanes.release()
    await asyncio.gather(*waiting)
    # The routing write jumps the queue; the others keep their order; a cancelled waiter
    # neither runs nor swallows a slot.
    assert order == ["route", "status-1", "event-1"]
    async with asyncio.timeout(1):  # the slot is free again: this must not block
        await lanes.acquire(urgent=False)


def test_object_kinds_build_rest_paths() -> None:
    routes = ObjectKind("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute")
    assert routes.api_version == "gateway.networking.k8s.io/v1"
    assert routes.path("ai") == "/apis/gateway.networking.k8s.io/v1/namespaces/ai/httproutes"
    assert SERVICES.api_version == "v1"
    assert SERVICES.path("a b", "x") == "/api/v1/namespaces/a%20b/services/x"
