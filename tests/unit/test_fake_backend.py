"""Tests for the fake OpenAI-compatible backend used across tests, benchmarks and the demo."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fakes import FakeBackend, FakeBackendThread, Fault

CHAT_BODY: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "ping me please"}],
}


@pytest.fixture
async def backend() -> AsyncIterator[FakeBackend]:
    async with FakeBackend(("gpt-4o", "gpt-4o-mini"), name="acme") as b:
        yield b


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    async with session.get(url) as resp:
        return resp.status, resp.content_type, await resp.text()


async def _chat(
    session: aiohttp.ClientSession, base: str, body: Any = CHAT_BODY, **kw: Any
) -> tuple[int, Any]:
    async with session.post(f"{base}/v1/chat/completions", json=body, **kw) as resp:
        return resp.status, await resp.json(content_type=None)


# -- healthy behaviour ------------------------------------------------------------------


async def test_start_returns_loopback_url_with_real_port(backend: FakeBackend) -> None:
    assert backend.port > 0
    assert backend.host == "127.0.0.1"
    assert backend.url == f"http://127.0.0.1:{backend.port}"
    assert backend.fault is Fault.NONE


async def test_models_list(backend: FakeBackend, session: aiohttp.ClientSession) -> None:
    async with session.get(f"{backend.url}/v1/models") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["gpt-4o", "gpt-4o-mini"]
    for model in body["data"]:
        assert model["object"] == "model"
        assert model["owned_by"] == "acme"
        assert isinstance(model["created"], int)


async def test_chat_completion_shape(backend: FakeBackend, session: aiohttp.ClientSession) -> None:
    status, body = await _chat(session, backend.url)
    assert status == 200
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["model"] == "gpt-4o"
    assert body["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop"}
    ]
    usage = body["usage"]
    assert usage["completion_tokens"] == 1
    assert usage["prompt_tokens"] >= 1
    assert usage["total_tokens"] == usage["prompt_tokens"] + 1


async def test_chat_unknown_model_is_404(
    backend: FakeBackend, session: aiohttp.ClientSession
) -> None:
    status, body = await _chat(session, backend.url, {**CHAT_BODY, "model": "nope"})
    assert status == 404
    assert body["error"]["code"] == "model_not_found"
    assert body["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "user", "content": "hi"}]},
        {"model": "gpt-4o"},
        {"model": "gpt-4o", "messages": []},
        ["not", "an", "object"],
    ],
    ids=["no-model", "no-messages", "empty-messages", "not-an-object"],
)
async def test_chat_rejects_invalid_body(
    backend: FakeBackend, session: aiohttp.ClientSession, body: Any
) -> None:
    status, answer = await _chat(session, backend.url, body)
    assert status == 400
    assert answer["error"]["type"] == "invalid_request_error"


async def test_chat_rejects_unparseable_json(
    backend: FakeBackend, session: aiohttp.ClientSession
) -> None:
    async with session.post(
        f"{backend.url}/v1/chat/completions",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 400
        assert "error" in await resp.json()


async def test_healthz_and_root(backend: FakeBackend, session: aiohttp.ClientSession) -> None:
    async with session.get(f"{backend.url}/healthz") as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ok"}
    status, content_type, text = await _get(session, f"{backend.url}/")
    assert status == 200
    assert content_type == "text/plain"
    assert "acme" in text


async def test_single_string_model_is_not_split_into_characters() -> None:
    async with FakeBackend("gpt-4o") as b:  # a str is a Sequence[str]: an easy slip
        assert b.models == ("gpt-4o",)


# -- authentication -----------------------------------------------------------------------


async def test_api_key_enforced_without_echoing_it(session: aiohttp.ClientSession) -> None:
    wrong = "sk-WRONG-do-not-echo-1234"
    async with FakeBackend(api_key="sk-right") as b:
        for headers in ({}, {"Authorization": f"Bearer {wrong}"}, {"Authorization": "sk-right"}):
            async with session.get(f"{b.url}/v1/models", headers=headers) as resp:
                assert resp.status == 401
                raw = await resp.text()
            body = json.loads(raw)
            assert body["error"]["code"] == "invalid_api_key"
            assert body["error"]["message"] == "Incorrect API key provided"
            assert wrong not in raw
            assert "sk-right" not in raw

        status, _ = await _chat(session, b.url, headers={"Authorization": f"Bearer {wrong}"})
        assert status == 401

        good = {"Authorization": "Bearer sk-right"}
        async with session.get(f"{b.url}/v1/models", headers=good) as resp:
            assert resp.status == 200
        assert b.last_headers["Authorization"] == "Bearer sk-right"
        status, body = await _chat(session, b.url, headers=good)
        assert status == 200
        assert body["choices"][0]["message"]["content"] == "pong"

        # Only /v1/* is protected: probes of /healthz need no credentials.
        async with session.get(f"{b.url}/healthz") as resp:
            assert resp.status == 200


# -- faults -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "error_type"),
    [
        (Fault.OUTAGE, 503, "server_error"),
        (Fault.SERVER_ERROR, 500, "server_error"),
        (Fault.RATE_LIMITED, 429, "requests"),
    ],
)
async def test_error_faults_apply_to_every_endpoint(
    backend: FakeBackend,
    session: aiohttp.ClientSession,
    fault: Fault,
    status: int,
    error_type: str,
) -> None:
    await backend.set_fault(fault)
    assert backend.fault is fault
    for path in ("/v1/models", "/healthz", "/"):
        async with session.get(f"{backend.url}{path}") as resp:
            assert resp.status == status, path
            assert (await resp.json())["error"]["type"] == error_type
    got, _ = await _chat(session, backend.url)
    assert got == status

    await backend.clear_fault()
    assert backend.fault is Fault.NONE
    got, _ = await _chat(session, backend.url)
    assert got == 200


async def test_rate_limited_retry_after(
    backend: FakeBackend, session: aiohttp.ClientSession
) -> None:
    await backend.set_fault(Fault.RATE_LIMITED)
    async with session.get(f"{backend.url}/v1/models") as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "1"
    await backend.set_fault(Fault.RATE_LIMITED, retry_after=7)
    async with session.post(f"{backend.url}/v1/chat/completions", json=CHAT_BODY) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "7"
        assert (await resp.json())["error"]["code"] == "rate_limit_exceeded"


async def test_hang_times_out_then_recovers(
    backend: FakeBackend, session: aiohttp.ClientSession
) -> None:
    await backend.set_fault(Fault.HANG)
    with pytest.raises(asyncio.TimeoutError):
        async with session.get(
            f"{backend.url}/v1/models", timeout=aiohttp.ClientTimeout(total=0.2)
        ) as resp:
            await resp.read()
    await backend.clear_fault()
    status, _ = await _chat(session, backend.url)
    assert status == 200


async def test_hung_request_is_answered_once_fault_cleared(
    backend: FakeBackend, session: aiohttp.ClientSession
) -> None:
    await backend.set_fault(Fault.HANG)
    pending = asyncio.ensure_future(_chat(session, backend.url))
    await asyncio.sleep(0.1)
    assert not pending.done()
    await backend.clear_fault()
    status, body = await asyncio.wait_for(pending, 5)
    assert status == 200
    assert body["object"] == "chat.completion"


async def test_stop_is_prompt_with_hung_request_in_flight(
    session: aiohttp.ClientSession,
) -> None:
    b = FakeBackend()
    await b.start()
    await b.set_fault(Fault.HANG)
    pending = asyncio.ensure_future(_get(session, f"{b.url}/v1/models"))
    await asyncio.sleep(0.05)
    assert not pending.done()
    assert b.requests_total == 1  # the request really is parked inside the server

    started = time.monotonic()
    await asyncio.wait_for(b.stop(), 5)
    assert time.monotonic() - started < 1.5  # well below aiohttp's shutdown timeout

    # The parked client is not left dangling: it gets an answer or a disconnect.
    try:
        status, _, _ = await asyncio.wait_for(pending, 5)
    except aiohttp.ClientError:
        pass
    else:
        assert status == 503


async def test_slow_answers_after_delay(
    backend: FakeBackend, session: aiohttp.ClientSession
) -> None:
    await backend.set_fault(Fault.SLOW, delay=0.25)
    started = time.monotonic()
    status, body = await _chat(session, backend.url)
    elapsed = time.monotonic() - started
    assert status == 200
    assert body["choices"][0]["message"]["content"] == "pong"
    assert elapsed >= 0.24


async def test_malformed_json(backend: FakeBackend, session: aiohttp.ClientSession) -> None:
    await backend.set_fault(Fault.MALFORMED_JSON)
    for path in ("/v1/models", "/healthz"):
        async with session.get(f"{backend.url}{path}") as resp:
            assert resp.status == 200
            assert resp.content_type == "application/json"
            text = await resp.text()
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)


async def test_html_page(backend: FakeBackend, session: aiohttp.ClientSession) -> None:
    await backend.set_fault(Fault.HTML_PAGE)
    status, content_type, text = await _get(session, f"{backend.url}/v1/models")
    assert status == 200
    assert content_type == "text/html"
    assert "<html" in text.lower()
    async with session.post(f"{backend.url}/v1/chat/completions", json=CHAT_BODY) as resp:
        assert resp.content_type == "text/html"
        with pytest.raises(aiohttp.ContentTypeError):
            await resp.json()


async def test_wrong_models(backend: FakeBackend, session: aiohttp.ClientSession) -> None:
    await backend.set_fault(Fault.WRONG_MODELS)
    async with session.get(f"{backend.url}/v1/models") as resp:
        assert resp.status == 200
        ids = [m["id"] for m in (await resp.json())["data"]]
    assert ids  # still a well-formed, non-empty list...
    assert not set(ids) & set(backend.models)  # ...just without any configured model
    status, body = await _chat(session, backend.url)
    assert status == 404
    assert body["error"]["code"] == "model_not_found"
    async with session.get(f"{backend.url}/healthz") as resp:
        assert resp.status == 200


async def test_refused_then_same_port_answers_again(
    backend: FakeBackend, session: aiohttp.ClientSession
) -> None:
    port = backend.port
    async with session.get(f"{backend.url}/healthz") as resp:  # leaves a pooled connection
        assert resp.status == 200

    await backend.set_fault(Fault.REFUSED)
    with pytest.raises(aiohttp.ClientConnectorError):
        async with session.get(f"{backend.url}/healthz"):
            pass
    # A fresh session proves it is the listener that is gone, not just a stale connection.
    async with aiohttp.ClientSession() as fresh:
        with pytest.raises(aiohttp.ClientConnectorError):
            async with fresh.get(f"{backend.url}/v1/models"):
                pass

    await backend.clear_fault()
    assert backend.port == port
    status, _ = await _chat(session, f"http://127.0.0.1:{port}")
    assert status == 200


async def test_backend_can_start_refused() -> None:
    b = FakeBackend()
    await b.set_fault(Fault.REFUSED)
    url = await b.start()
    try:
        assert b.port > 0
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.ClientConnectorError):
                await _get(s, f"{url}/healthz")
            await b.clear_fault()
            assert (await _get(s, f"{url}/healthz"))[0] == 200
    finally:
        await b.stop()


async def test_set_fault_rejects_negative_values(backend: FakeBackend) -> None:
    with pytest.raises(ValueError):
        await backend.set_fault(Fault.SLOW, delay=-1)
    with pytest.raises(ValueError):
        await backend.set_fault(Fault.RATE_LIMITED, retry_after=-1)
    assert backend.fault is Fault.NONE


# -- counters -----------------------------------------------------------------------------


async def test_counters_by_path(backend: FakeBackend, session: aiohttp.ClientSession) -> None:
    await _get(session, f"{backend.url}/v1/models")
    await _get(session, f"{backend.url}/v1/models")
    await _chat(session, backend.url)
    await backend.set_fault(Fault.OUTAGE)
    await _get(session, f"{backend.url}/healthz")  # faulted requests count too
    await _get(session, f"{backend.url}/__control/stats")  # control requests do not

    assert backend.requests_total == 4
    assert backend.requests_by_path == {
        "/v1/models": 2,
        "/v1/chat/completions": 1,
        "/healthz": 1,
    }
    backend.reset_counters()
    assert backend.requests_total == 0
    assert not backend.requests_by_path


async def test_last_headers(backend: FakeBackend, session: aiohttp.ClientSession) -> None:
    await _get(session, f"{backend.url}/healthz")
    async with session.get(f"{backend.url}/v1/models", headers={"X-Probe": "42"}):
        pass
    assert backend.last_headers["X-Probe"] == "42"


# -- control endpoints ---------------------------------------------------------------------


async def test_control_endpoint_switches_faults(
    backend: FakeBackend, session: aiohttp.ClientSession
) -> None:
    control = f"{backend.url}/__control/fault"
    async with session.post(control, json={"fault": "outage"}) as resp:
        assert resp.status == 200
        assert (await resp.json())["fault"] == "outage"
    assert backend.stats()["fault"] == Fault.OUTAGE
    assert (await _get(session, f"{backend.url}/v1/models"))[0] == 503

    # Control endpoints keep working while a fault is active.
    async with session.post(control, json={"fault": "rate_limited", "retry_after": 3}) as resp:
        assert resp.status == 200
    async with session.get(f"{backend.url}/v1/models") as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "3"

    async with session.get(f"{backend.url}/__control/stats") as resp:
        stats = await resp.json()
    assert stats["fault"] == "rate_limited"
    assert stats["requests_total"] == 2
    assert stats["requests_by_path"] == {"/v1/models": 2}

    async with session.post(control, json={"fault": "none"}) as resp:
        assert resp.status == 200
    assert backend.fault is Fault.NONE
    assert (await _get(session, f"{backend.url}/v1/models"))[0] == 200


@pytest.mark.parametrize(
    "body",
    [
        {"fault": "meltdown"},
        {"delay": 1},
        {"fault": "slow", "delay": -1},
        {"fault": "rate_limited", "retry_after": "soon"},
    ],
    ids=["unknown-name", "missing-fault", "negative-delay", "bad-retry-after"],
)
async def test_control_endpoint_rejects_bad_requests(
    backend: FakeBackend, session: aiohttp.ClientSession, body: dict[str, Any]
) -> None:
    async with session.post(f"{backend.url}/__control/fault", json=body) as resp:
        assert resp.status == 400
        message = (await resp.json())["error"]
    assert message
    if body.get("fault") == "meltdown":
        assert "meltdown" in message
        assert "outage" in message  # lists the valid names
    assert backend.fault is Fault.NONE


async def test_control_refused_answers_then_closes(
    backend: FakeBackend, session: aiohttp.ClientSession
) -> None:
    async with session.post(f"{backend.url}/__control/fault", json={"fault": "refused"}) as resp:
        assert resp.status == 200
        assert (await resp.json())["fault"] == "refused"
    assert backend.fault is Fault.REFUSED
    with pytest.raises(aiohttp.ClientConnectorError):
        await _get(session, f"{backend.url}/__control/stats")
    await backend.clear_fault()
    assert (await _get(session, f"{backend.url}/healthz"))[0] == 200


# -- thread variant ------------------------------------------------------------------------


def _sync_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_thread_variant_from_sync_code() -> None:
    with FakeBackendThread(["m1"], name="threaded") as fake:
        url = fake.url
        status, raw = _sync_get(f"{url}/v1/models")
        assert status == 200
        assert [m["id"] for m in json.loads(raw)["data"]] == ["m1"]

        fake.set_fault(Fault.OUTAGE)
        assert _sync_get(f"{url}/healthz")[0] == 503

        fake.set_fault(Fault.REFUSED)
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"{url}/healthz", timeout=5)

        fake.clear_fault()
        assert _sync_get(f"{url}/healthz")[0] == 200
        assert fake.backend is not None
        assert fake.backend.requests_by_path["/healthz"] == 2
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/healthz", timeout=5)
    fake.stop()  # idempotent
