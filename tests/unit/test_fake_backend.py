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

from tests.fakes import Dialect, FakeBackend, FakeBackendThread, Fault
from tests.fakes.openai_backend import main

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
    async with asyncio.timeout(30):  # until the request is parked inside the server
        while b.requests_total == 0:  # noqa: ASYNC110  (a counter in the fake; no event)
            await asyncio.sleep(0.01)
    assert not pending.done()
    assert b.requests_total == 1

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


# -- dialects: shared helpers ---------------------------------------------------------------

AZURE_Q = "?api-version=2024-10-21"
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}
MESSAGES_BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-5-20250929",
    "max_tokens": 1,
    "messages": [{"role": "user", "content": "ping me please"}],
}


async def _call(
    session: aiohttp.ClientSession, method: str, url: str, **kw: Any
) -> tuple[int, Any, Any]:
    async with session.request(method, url, **kw) as resp:
        return resp.status, await resp.json(content_type=None), resp.headers


def test_dialect_names_and_defaults() -> None:
    assert Dialect("anthropic") is Dialect.ANTHROPIC  # CLI and hand-written tests: any case
    assert FakeBackend().dialect is Dialect.OPENAI
    assert FakeBackend(dialect="AzureOpenAI").models == ("gpt-4o",)
    assert FakeBackend(dialect=Dialect.ANTHROPIC).models == ("claude-sonnet-4-5",)
    with pytest.raises(ValueError, match="no API versions"):
        FakeBackend(versions=["2024-10-21"])
    with pytest.raises(ValueError, match="reasoning_models"):
        FakeBackend(dialect="Anthropic", reasoning_models=["o3"])
    with pytest.raises(ValueError):
        FakeBackend(dialect="Gemini")


def test_cli_rejects_an_option_the_dialect_lacks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dialect", "OpenAI", "--version", "2024-10-21"]) == 2
    assert "no API versions" in capsys.readouterr().err


# -- OpenAI: reasoning models ---------------------------------------------------------------


@pytest.fixture
async def reasoning() -> AsyncIterator[FakeBackend]:
    async with FakeBackend(("gpt-4o", "o3-mini", "gpt-5")) as b:
        yield b


@pytest.mark.parametrize("model", ["o3-mini", "gpt-5"])
async def test_reasoning_model_rejects_max_tokens(
    reasoning: FakeBackend, session: aiohttp.ClientSession, model: str
) -> None:
    body = {**CHAT_BODY, "model": model, "max_tokens": 1}
    status, answer = await _chat(session, reasoning.url, body)
    assert status == 400
    assert answer == {
        "error": {
            "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            "type": "invalid_request_error",
            "param": "max_tokens",
            "code": "unsupported_parameter",
        }
    }
    status, answer = await _chat(
        session, reasoning.url, {**CHAT_BODY, "model": model, "max_completion_tokens": 1}
    )
    assert status == 200
    assert answer["choices"][0]["message"]["content"] == "pong"


async def test_reasoning_model_accepts_only_the_default_temperature(
    reasoning: FakeBackend, session: aiohttp.ClientSession
) -> None:
    body = {**CHAT_BODY, "model": "o3-mini", "temperature": 0.2}
    status, answer = await _chat(session, reasoning.url, body)
    assert status == 400
    assert answer["error"] == {
        "message": "Unsupported value: 'temperature' does not support 0.2 with this model. "
        "Only the default (1) value is supported.",
        "type": "invalid_request_error",
        "param": "temperature",
        "code": "unsupported_value",
    }
    status, _ = await _chat(session, reasoning.url, {**body, "temperature": 1})
    assert status == 200


async def test_other_models_take_max_tokens_and_temperature(
    reasoning: FakeBackend, session: aiohttp.ClientSession
) -> None:
    body = {**CHAT_BODY, "max_tokens": 1, "temperature": 0}
    assert (await _chat(session, reasoning.url, body))[0] == 200
    body = {**CHAT_BODY, "max_completion_tokens": 1}
    assert (await _chat(session, reasoning.url, body))[0] == 200


async def test_reasoning_models_option_replaces_the_name_rule(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeBackend(("thinker", "o3-mini"), reasoning_models=["thinker"]) as b:
        status, answer = await _chat(
            session, b.url, {**CHAT_BODY, "model": "thinker", "max_tokens": 1}
        )
        assert (status, answer["error"]["code"]) == (400, "unsupported_parameter")
        status, _ = await _chat(session, b.url, {**CHAT_BODY, "model": "o3-mini", "max_tokens": 1})
        assert status == 200


async def test_openai_unknown_path_is_an_openai_404(
    backend: FakeBackend, session: aiohttp.ClientSession
) -> None:
    status, body, _ = await _call(session, "POST", f"{backend.url}/v1/messages", json={})
    assert status == 404
    assert body["error"]["message"] == "Invalid URL (POST /v1/messages)"
    assert body["error"]["type"] == "invalid_request_error"


# -- Azure OpenAI ---------------------------------------------------------------------------


@pytest.fixture
async def azure() -> AsyncIterator[FakeBackend]:
    async with FakeBackend(("gpt-4o-prod", "o4-mini"), dialect="AzureOpenAI", api_key="az") as b:
        yield b


AZ = {"api-key": "az"}


async def test_azure_models_and_deployment_chat(
    azure: FakeBackend, session: aiohttp.ClientSession
) -> None:
    status, body, _ = await _call(session, "GET", f"{azure.url}/openai/models{AZURE_Q}", headers=AZ)
    assert status == 200
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["gpt-4o-prod", "o4-mini"]
    assert {m["object"] for m in body["data"]} == {"model"}
    assert all(
        m["status"] == "succeeded" and m["capabilities"]["chat_completion"] for m in body["data"]
    )

    chat = f"{azure.url}/openai/deployments/gpt-4o-prod/chat/completions{AZURE_Q}"
    body_without_model = {"messages": CHAT_BODY["messages"], "max_tokens": 1}
    status, body, _ = await _call(session, "POST", chat, json=body_without_model, headers=AZ)
    assert status == 200
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-4o-prod"
    assert body["choices"][0]["message"]["content"] == "pong"
    assert azure.stats()["dialect"] == "AzureOpenAI"


async def test_azure_api_version_rules(azure: FakeBackend, session: aiohttp.ClientSession) -> None:
    models = f"{azure.url}/openai/models"
    status, body, _ = await _call(session, "GET", models, headers=AZ)
    assert (status, body) == (404, {"error": {"code": "404", "message": "Resource not found"}})
    status, body, _ = await _call(session, "GET", f"{models}?api-version=2099-01-01", headers=AZ)
    assert (status, body["error"]) == (
        400,
        {"code": "BadRequest", "message": "API version not supported"},
    )
    async with FakeBackend(dialect="AzureOpenAI", versions=["2024-06-01"]) as only:
        url = f"{only.url}/openai/models"
        assert (await _call(session, "GET", f"{url}?api-version=2024-06-01"))[0] == 200
        assert (await _call(session, "GET", f"{url}{AZURE_Q}"))[0] == 400


async def test_azure_key_goes_in_api_key_only(
    azure: FakeBackend, session: aiohttp.ClientSession
) -> None:
    url = f"{azure.url}/openai/models{AZURE_Q}"
    for headers in ({}, {"api-key": "wrong-1234"}, {"Authorization": "Bearer az"}):
        status, body, _ = await _call(session, "GET", url, headers=headers)
        assert status == 401
        assert body["error"]["code"] == "401"
        assert body["error"]["message"].startswith("Access denied due to invalid subscription key")
        assert "wrong-1234" not in json.dumps(body)
    assert azure.last_headers["Authorization"] == "Bearer az"


async def test_azure_deployment_errors(azure: FakeBackend, session: aiohttp.ClientSession) -> None:
    base = f"{azure.url}/openai/deployments"
    status, body, _ = await _call(
        session, "POST", f"{base}/nope/chat/completions{AZURE_Q}", json=CHAT_BODY, headers=AZ
    )
    assert (status, body["error"]["code"]) == (404, "DeploymentNotFound")
    # The reasoning-model rules follow the deployment's name; errors keep OpenAI's shape.
    status, body, _ = await _call(
        session,
        "POST",
        f"{base}/o4-mini/chat/completions{AZURE_Q}",
        json={**CHAT_BODY, "max_tokens": 1},
        headers=AZ,
    )
    assert status == 400
    assert (body["error"]["code"], body["error"]["param"]) == (
        "unsupported_parameter",
        "max_tokens",
    )
    status, body, _ = await _call(
        session, "GET", f"{azure.url}/openai/v9/whatever{AZURE_Q}", headers=AZ
    )
    assert (status, body["error"]["code"]) == (404, "404")


async def test_azure_deployments_list_only_on_legacy_versions(
    azure: FakeBackend, session: aiohttp.ClientSession
) -> None:
    url = f"{azure.url}/openai/deployments"
    status, body, _ = await _call(session, "GET", f"{url}?api-version=2022-12-01", headers=AZ)
    assert status == 200
    assert [(d["id"], d["object"], d["status"]) for d in body["data"]] == [
        ("gpt-4o-prod", "deployment", "succeeded"),
        ("o4-mini", "deployment", "succeeded"),
    ]
    status, body, _ = await _call(session, "GET", f"{url}{AZURE_Q}", headers=AZ)
    assert (status, body["error"]["message"]) == (404, "Resource not found")


# -- Anthropic ------------------------------------------------------------------------------

CLAUDES = ("claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001", "claude-opus-4-1-20250805")


@pytest.fixture
async def claude() -> AsyncIterator[FakeBackend]:
    async with FakeBackend(CLAUDES, dialect="Anthropic", api_key="sk-ant") as b:
        yield b


ANT = {"x-api-key": "sk-ant", **ANTHROPIC_HEADERS}


async def test_anthropic_models_list_and_pages(
    claude: FakeBackend, session: aiohttp.ClientSession
) -> None:
    status, body, _ = await _call(session, "GET", f"{claude.url}/v1/models", headers=ANT)
    assert status == 200
    assert body["data"][0] == {
        "type": "model",
        "id": "claude-sonnet-4-5-20250929",
        "display_name": "Claude Sonnet 4.5",
        "created_at": "2025-01-01T00:00:00Z",
    }
    assert (body["has_more"], body["first_id"], body["last_id"]) == (False, CLAUDES[0], CLAUDES[2])

    url = f"{claude.url}/v1/models?limit=2"
    _, page, _ = await _call(session, "GET", url, headers=ANT)
    assert ([m["id"] for m in page["data"]], page["has_more"]) == (list(CLAUDES[:2]), True)
    _, page, _ = await _call(session, "GET", f"{url}&after_id={page['last_id']}", headers=ANT)
    assert ([m["id"] for m in page["data"]], page["has_more"]) == ([CLAUDES[2]], False)
    _, page, _ = await _call(session, "GET", f"{url}&before_id={CLAUDES[2]}", headers=ANT)
    assert [m["id"] for m in page["data"]] == list(CLAUDES[:2])
    status, _, _ = await _call(session, "GET", f"{claude.url}/v1/models?limit=0", headers=ANT)
    assert status == 400


async def test_anthropic_model_by_id_or_alias(
    claude: FakeBackend, session: aiohttp.ClientSession
) -> None:
    for name in ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"):
        status, body, _ = await _call(session, "GET", f"{claude.url}/v1/models/{name}", headers=ANT)
        assert (status, body["id"]) == (200, "claude-sonnet-4-5-20250929")
    status, body, _ = await _call(session, "GET", f"{claude.url}/v1/models/claude-2", headers=ANT)
    assert status == 404
    assert body["type"] == "error"
    assert body["error"] == {"type": "not_found_error", "message": "model: claude-2"}
    assert body["request_id"].startswith("req_")


async def test_anthropic_message_shape(claude: FakeBackend, session: aiohttp.ClientSession) -> None:
    url = f"{claude.url}/v1/messages"
    status, body, _ = await _call(session, "POST", url, json=MESSAGES_BODY, headers=ANT)
    assert status == 200
    assert body["id"].startswith("msg_")
    assert {k: body[k] for k in ("type", "role", "model", "content", "stop_reason")} == {
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "pong"}],
        "stop_reason": "end_turn",
    }
    assert body["stop_sequence"] is None
    assert body["usage"]["input_tokens"] == 3
    assert body["usage"]["output_tokens"] == 1
    # An alias is answered by the latest dated model it names.
    alias = {**MESSAGES_BODY, "model": "claude-haiku-4-5"}
    status, body, _ = await _call(session, "POST", url, json=alias, headers=ANT)
    assert (status, body["model"]) == (200, "claude-haiku-4-5-20251001")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_tokens": None}, "max_tokens: Field required"),
        ({"model": None}, "model: Field required"),
        ({"messages": None}, "messages: Field required"),
        ({"max_tokens": "1"}, "max_tokens: Input should be a valid integer"),
        ({"max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
        ({"messages": []}, "messages: at least one message is required"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role: Input should be"),
    ],
    ids=["no-max-tokens", "no-model", "no-messages", "str-max-tokens", "zero", "empty", "role"],
)
async def test_anthropic_rejects_invalid_messages(
    claude: FakeBackend, session: aiohttp.ClientSession, change: dict[str, Any], message: str
) -> None:
    body = {k: v for k, v in (MESSAGES_BODY | change).items() if v is not None}
    status, answer, _ = await _call(
        session, "POST", f"{claude.url}/v1/messages", json=body, headers=ANT
    )
    assert status == 400
    assert answer["error"]["type"] == "invalid_request_error"
    assert answer["error"]["message"].startswith(message)


async def test_anthropic_version_header(
    claude: FakeBackend, session: aiohttp.ClientSession
) -> None:
    url = f"{claude.url}/v1/models"
    status, body, _ = await _call(session, "GET", url, headers={"x-api-key": "sk-ant"})
    assert (status, body["error"]["type"]) == (400, "invalid_request_error")
    assert body["error"]["message"] == "anthropic-version: header is required"
    odd = {"x-api-key": "sk-ant", "anthropic-version": "2024-01-01"}
    status, body, _ = await _call(session, "GET", url, headers=odd)
    assert body["error"]["message"] == 'anthropic-version: "2024-01-01" is not a valid version'
    for version in ("2023-01-01", "2023-06-01", "2026-10-21"):
        headers = {"x-api-key": "sk-ant", "anthropic-version": version}
        assert (await _call(session, "GET", url, headers=headers))[0] == 200


async def test_anthropic_sampling_parameters_by_version(
    claude: FakeBackend, session: aiohttp.ClientSession
) -> None:
    url = f"{claude.url}/v1/messages"
    body = {**MESSAGES_BODY, "temperature": 1.0}
    assert (await _call(session, "POST", url, json=body, headers=ANT))[0] == 200
    new = {**ANT, "anthropic-version": "2026-10-21"}
    status, answer, _ = await _call(session, "POST", url, json=body, headers=new)
    assert status == 400
    assert answer["error"]["message"] == "temperature: Extra inputs are not permitted"


async def test_anthropic_key_in_x_api_key_or_bearer(
    claude: FakeBackend, session: aiohttp.ClientSession
) -> None:
    url = f"{claude.url}/v1/models"
    cases: list[tuple[dict[str, str], int, str | None]] = [
        ({}, 401, "x-api-key header is required"),
        ({"x-api-key": "sk-ant-WRONG-1234"}, 401, "invalid x-api-key"),
        ({"Authorization": "Bearer sk-ant-WRONG-1234"}, 401, None),
        # x-api-key wins over Authorization when both are sent.
        ({"x-api-key": "sk-ant-WRONG-1234", "Authorization": "Bearer sk-ant"}, 401, None),
        ({"Authorization": "Bearer sk-ant"}, 200, None),
        ({"x-api-key": "sk-ant", "Authorization": "Bearer other"}, 200, None),
    ]
    for headers, expected, message in cases:
        status, body, _ = await _call(session, "GET", url, headers={**headers, **ANTHROPIC_HEADERS})
        assert status == expected, headers
        if expected == 401:
            assert body["error"]["type"] == "authentication_error"
            assert "WRONG" not in json.dumps(body)
        if message is not None:
            assert body["error"]["message"] == message


async def test_anthropic_unknown_path(claude: FakeBackend, session: aiohttp.ClientSession) -> None:
    status, body, _ = await _call(
        session, "POST", f"{claude.url}/v1/chat/completions", json=CHAT_BODY, headers=ANT
    )
    assert (status, body["error"]["type"]) == (404, "not_found_error")


# -- every fault in every dialect -------------------------------------------------------------

# For each dialect: models served, how to list them, how to chat, and the headers it needs.
DIALECT_CALLS: dict[Dialect, tuple[tuple[str, ...], str, str, Any, dict[str, str]]] = {
    Dialect.OPENAI: (("gpt-4o",), "/v1/models", "/v1/chat/completions", CHAT_BODY, {}),
    Dialect.AZURE_OPENAI: (
        ("gpt-4o",),
        f"/openai/models{AZURE_Q}",
        f"/openai/deployments/gpt-4o/chat/completions{AZURE_Q}",
        {"messages": CHAT_BODY["messages"]},
        {},
    ),
    Dialect.ANTHROPIC: (
        ("claude-sonnet-4-5-20250929",),
        "/v1/models",
        "/v1/messages",
        MESSAGES_BODY,
        ANTHROPIC_HEADERS,
    ),
}


def _error_kind(dialect: Dialect, body: Any) -> Any:
    """The dialect's name for an error: OpenAI type, Azure code, Anthropic error type."""
    if dialect is Dialect.ANTHROPIC:
        assert body["type"] == "error"
        return body["error"]["type"]
    return body["error"]["code"] if dialect is Dialect.AZURE_OPENAI else body["error"]["type"]


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (
            Fault.OUTAGE,
            {
                "OpenAI": (503, "server_error"),
                "AzureOpenAI": (503, "ServiceUnavailable"),
                "Anthropic": (529, "overloaded_error"),
            },
        ),
        (
            Fault.SERVER_ERROR,
            {
                "OpenAI": (500, "server_error"),
                "AzureOpenAI": (500, "InternalServerError"),
                "Anthropic": (500, "api_error"),
            },
        ),
        (
            Fault.RATE_LIMITED,
            {
                "OpenAI": (429, "requests"),
                "AzureOpenAI": (429, "429"),
                "Anthropic": (429, "rate_limit_error"),
            },
        ),
    ],
    ids=["outage", "server_error", "rate_limited"],
)
@pytest.mark.parametrize("dialect", list(Dialect), ids=str)
async def test_error_faults_in_every_dialect(
    session: aiohttp.ClientSession,
    dialect: Dialect,
    fault: Fault,
    expected: dict[str, tuple[int, str]],
) -> None:
    models, list_path, chat_path, chat_body, headers = DIALECT_CALLS[dialect]
    status, kind = expected[dialect.value]
    async with FakeBackend(models, dialect=dialect) as b:
        await b.set_fault(fault, retry_after=4)
        for method, path, body in (("GET", list_path, None), ("POST", chat_path, chat_body)):
            got, answer, answer_headers = await _call(
                session, method, f"{b.url}{path}", json=body, headers=headers
            )
            assert (got, _error_kind(dialect, answer)) == (status, kind), path
            if fault is Fault.RATE_LIMITED:
                assert answer_headers["Retry-After"] == "4"
        await b.clear_fault()
        got, _, _ = await _call(
            session, "POST", f"{b.url}{chat_path}", json=chat_body, headers=headers
        )
        assert got == 200


@pytest.mark.parametrize("dialect", list(Dialect), ids=str)
async def test_body_faults_and_wrong_models_in_every_dialect(
    session: aiohttp.ClientSession, dialect: Dialect
) -> None:
    models, list_path, chat_path, chat_body, headers = DIALECT_CALLS[dialect]
    async with FakeBackend(models, dialect=dialect) as b:
        await b.set_fault(Fault.WRONG_MODELS)
        status, listed, _ = await _call(session, "GET", f"{b.url}{list_path}", headers=headers)
        assert status == 200
        assert [m["id"] for m in listed["data"]] == ["some-other-model"]
        status, answer, _ = await _call(
            session, "POST", f"{b.url}{chat_path}", json=chat_body, headers=headers
        )
        assert status == 404
        assert _error_kind(dialect, answer) in {
            "invalid_request_error",  # OpenAI: type of a model_not_found
            "DeploymentNotFound",
            "not_found_error",
        }
        await b.set_fault(Fault.MALFORMED_JSON)
        async with session.get(f"{b.url}{list_path}", headers=headers) as resp:
            assert resp.content_type == "application/json"
            with pytest.raises(json.JSONDecodeError):
                json.loads(await resp.text())
        await b.set_fault(Fault.HTML_PAGE)
        status, content_type, text = await _get(session, f"{b.url}{list_path}")
        assert (status, content_type) == (200, "text/html")
        assert "<html" in text.lower()


@pytest.mark.parametrize("dialect", list(Dialect), ids=str)
async def test_hang_and_refused_in_every_dialect(
    session: aiohttp.ClientSession, dialect: Dialect
) -> None:
    models, list_path, _, _, headers = DIALECT_CALLS[dialect]
    async with FakeBackend(models, dialect=dialect) as b:
        await b.set_fault(Fault.HANG)
        with pytest.raises(asyncio.TimeoutError):
            async with session.get(
                f"{b.url}{list_path}", headers=headers, timeout=aiohttp.ClientTimeout(total=0.2)
            ) as resp:
                await resp.read()
        await b.set_fault(Fault.REFUSED)
        with pytest.raises(aiohttp.ClientConnectorError):
            await _call(session, "GET", f"{b.url}{list_path}", headers=headers)
        await b.clear_fault()
        assert (await _call(session, "GET", f"{b.url}{list_path}", headers=headers))[0] == 200


@pytest.mark.parametrize("dialect", list(Dialect), ids=str)
async def test_stopping_answers_a_hung_request_in_the_dialect(
    session: aiohttp.ClientSession, dialect: Dialect
) -> None:
    models, list_path, _, _, headers = DIALECT_CALLS[dialect]
    b = FakeBackend(models, dialect=dialect)
    await b.start()
    await b.set_fault(Fault.HANG)
    pending = asyncio.ensure_future(_call(session, "GET", f"{b.url}{list_path}", headers=headers))
    await asyncio.sleep(0.05)
    await asyncio.wait_for(b.stop(), 5)
    try:
        status, body, _ = await asyncio.wait_for(pending, 5)
    except aiohttp.ClientError:
        return  # a disconnect is a fine answer too
    assert status in {503, 529}
    assert _error_kind(dialect, body) in {"server_error", "ServiceUnavailable", "overloaded_error"}
