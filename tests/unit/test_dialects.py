"""Provider dialects of the Models and Chat probes: the exact requests, and classified failures.

Each test serves loopback aiohttp apps that answer like the provider (shapes from the sources
cited in ``modelroute.probing.dialects``) and records what the prober sent: method, path and
query, headers, JSON body.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from modelroute.api.models import AuthSecretRef, ProbeSpec, ProbeType, Provider
from modelroute.core.types import ProbeFailure
from modelroute.probing.dialects import TokenLimit, dialect_for
from modelroute.probing.prober import ProbeResult, ProbeTarget, new_session, probe

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
KEY = "sk-dialect-0123456789abcdef"
PING = [{"role": "user", "content": "ping"}]
OPENAI, AZURE, ANTHROPIC = Provider.OPENAI, Provider.AZURE_OPENAI, Provider.ANTHROPIC
MODELS, CHAT = ProbeType.MODELS, ProbeType.CHAT
MODEL = {OPENAI: "gpt-4o", AZURE: "chat-deploy", ANTHROPIC: "claude-sonnet-4-5"}
CHAT_PATH = {
    OPENAI: "/v1/chat/completions",
    AZURE: "/openai/deployments/chat-deploy/chat/completions?api-version=2024-10-21",
    ANTHROPIC: "/v1/messages",
}
MODELS_PATH = {
    OPENAI: "/v1/models",
    AZURE: "/openai/models?api-version=2024-10-21",
    ANTHROPIC: "/v1/models/claude-sonnet-4-5",
}
AUTH_HEADERS = ("Authorization", "api-key", "x-api-key")


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str  # path and query
    headers: Mapping[str, str]
    body: Any


Answer = Callable[[Seen], Awaitable[web.StreamResponse]]
Serve = Callable[[Answer], Awaitable[tuple[str, list[Seen]]]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    s = new_session(connection_limit=8, connection_limit_per_host=4)
    yield s
    await s.close()


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start an app that answers every path with ``answer`` and records each request."""
    runners: list[web.AppRunner] = []

    async def _serve(answer: Answer) -> tuple[str, list[Seen]]:
        seen: list[Seen] = []

        async def handle(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            entry = Seen(
                request.method, request.path_qs, request.headers, json.loads(raw) if raw else None
            )
            seen.append(entry)
            return await answer(entry)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}", seen

    yield _serve
    for runner in runners:
        await runner.cleanup()


def auth_header(provider: Provider) -> tuple[str, str]:
    """The header the hub builds from a Secret with the provider's defaults."""
    ref = AuthSecretRef(name="key", key="apiKey").for_provider(provider)
    assert ref.header is not None and ref.prefix is not None
    return ref.header, ref.prefix + KEY


def target(
    provider: Provider,
    url: str,
    type_: ProbeType,
    *,
    model: str | None = None,
    version: str | None = None,
    token_limit: TokenLimit | None = None,
    **probe: Any,
) -> ProbeTarget:
    return ProbeTarget(
        url=url,
        model=model or MODEL[provider],
        probe=ProbeSpec(type=type_, **probe),
        auth_header=auth_header(provider),
        provider=provider,
        provider_version=version,
        token_limit=token_limit,
    )


async def run(
    t: ProbeTarget, session: aiohttp.ClientSession, clock: Callable[[], float] | None = None
) -> ProbeResult:
    clock = clock or asyncio.get_running_loop().time
    return await probe(t, session, clock=clock, now=lambda: NOW)


# -- healthy answers, per dialect -----------------------------------------------------------

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "length"}
    ],
    "usage": {"completion_tokens": 1, "completion_tokens_details": {"reasoning_tokens": 1}},
}
MESSAGE = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "P"}],
    "stop_reason": "max_tokens",
    "stop_sequence": None,
    "usage": {"input_tokens": 8, "output_tokens": 1},
}
ANTHROPIC_MODEL = {
    "type": "model",
    "id": "claude-sonnet-4-5-20250929",
    "display_name": "Claude Sonnet 4.5",
    "created_at": "2025-09-29T00:00:00Z",
}


async def healthy(seen: Seen) -> web.StreamResponse:
    """Answers like any of the three providers, chosen by the path."""
    if seen.path.startswith("/v1/models/"):
        return web.json_response(ANTHROPIC_MODEL)
    if seen.path == "/v1/messages":
        return web.json_response(MESSAGE)
    if seen.method == "POST":
        return web.json_response(COMPLETION)
    listing = [{"id": "gpt-4o", "object": "model"}, {"id": "gpt-4o-mini", "object": "model"}]
    return web.json_response({"object": "list", "data": listing})


# -- exact requests -------------------------------------------------------------------------

REQUESTS = [
    pytest.param(OPENAI, None, MODELS, "GET", "/v1/models", None, id="openai-models"),
    pytest.param(
        OPENAI,
        None,
        CHAT,
        "POST",
        "/v1/chat/completions",
        {"model": "gpt-4o", "messages": PING, "max_completion_tokens": 1},
        id="openai-chat",
    ),
    pytest.param(
        AZURE, None, MODELS, "GET", "/openai/models?api-version=2024-10-21", None, id="azure-models"
    ),
    pytest.param(
        AZURE,
        "2025-04-01-preview",
        CHAT,
        "POST",
        "/openai/deployments/chat-deploy/chat/completions?api-version=2025-04-01-preview",
        {"messages": PING, "max_completion_tokens": 1},
        id="azure-chat",
    ),
    pytest.param(
        ANTHROPIC, None, MODELS, "GET", "/v1/models/claude-sonnet-4-5", None, id="anthropic-models"
    ),
    pytest.param(
        ANTHROPIC,
        None,
        CHAT,
        "POST",
        "/v1/messages",
        {"model": "claude-sonnet-4-5", "max_tokens": 1, "messages": PING},
        id="anthropic-chat",
    ),
]

EXPECTED_HEADERS = {
    OPENAI: {"Authorization": f"Bearer {KEY}"},
    AZURE: {"api-key": KEY},
    ANTHROPIC: {"x-api-key": KEY, "anthropic-version": "2023-06-01"},
}


@pytest.mark.parametrize(("provider", "version", "type_", "method", "path", "body"), REQUESTS)
async def test_request_speaks_the_dialect(
    serve: Serve,
    session: aiohttp.ClientSession,
    provider: Provider,
    version: str | None,
    type_: ProbeType,
    method: str,
    path: str,
    body: Any,
) -> None:
    url, seen = await serve(healthy)
    result = await run(target(provider, url, type_, version=version), session)
    assert result.ok, result.message
    assert result.reason is None
    assert [(s.method, s.path, s.body) for s in seen] == [(method, path, body)]
    headers = seen[0].headers
    expected = EXPECTED_HEADERS[provider]
    assert {name: headers.get(name) for name in expected} == expected
    others = {h.lower() for h in (*AUTH_HEADERS, "anthropic-version")} - {
        h.lower() for h in expected
    }
    assert not others & {h.lower() for h in headers}, f"{provider} sent another's headers"
    assert headers["User-Agent"] == "modelroute-operator-prober"


@pytest.mark.parametrize(
    ("provider", "type_", "message"),
    [
        (OPENAI, MODELS, "model gpt-4o listed by /v1/models"),
        (OPENAI, CHAT, "model gpt-4o answered /v1/chat/completions"),
        (
            AZURE,
            MODELS,
            "/openai/models?api-version=2024-10-21 answered; "
            "only a Chat probe checks deployment chat-deploy",
        ),
        (
            AZURE,
            CHAT,
            "model chat-deploy answered "
            "/openai/deployments/chat-deploy/chat/completions?api-version=2024-10-21",
        ),
        (
            ANTHROPIC,
            MODELS,
            "model claude-sonnet-4-5 listed by /v1/models/claude-sonnet-4-5 "
            "as claude-sonnet-4-5-20250929",
        ),
        (ANTHROPIC, CHAT, "model claude-sonnet-4-5 answered /v1/messages"),
    ],
)
async def test_success_messages(
    serve: Serve,
    session: aiohttp.ClientSession,
    provider: Provider,
    type_: ProbeType,
    message: str,
) -> None:
    url, _seen = await serve(healthy)
    result = await run(target(provider, url, type_), session)
    assert (result.ok, result.message) == (True, message)


async def test_anthropic_version_comes_from_provider_version(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    url, seen = await serve(healthy)
    result = await run(target(ANTHROPIC, url, CHAT, version="2026-10-21"), session)
    assert result.ok, result.message
    assert seen[0].headers["anthropic-version"] == "2026-10-21"


@pytest.mark.parametrize(
    ("alias", "name"), [(ProbeType.OPENAI_MODELS, MODELS), (ProbeType.OPENAI_CHAT, CHAT)]
)
@pytest.mark.parametrize("provider", [OPENAI, AZURE, ANTHROPIC])
async def test_old_type_names_mean_the_same_for_every_provider(
    serve: Serve,
    session: aiohttp.ClientSession,
    provider: Provider,
    alias: ProbeType,
    name: ProbeType,
) -> None:
    url, seen = await serve(healthy)
    assert alias.canonical is name
    old = await run(target(provider, url, alias), session, clock=lambda: 0.0)
    new = await run(target(provider, url, name), session, clock=lambda: 0.0)
    assert old == new and old.ok
    assert [(s.path, s.body) for s in seen[:1]] == [(s.path, s.body) for s in seen[1:]]


def test_dialect_defaults() -> None:
    azure = dialect_for(AZURE)
    assert azure.models_call("d").path == "/openai/models?api-version=2024-10-21"
    assert dialect_for(ANTHROPIC).headers() == {"anthropic-version": "2023-06-01"}
    # Odd characters in a deployment, model or version cannot change the request's shape.
    odd = dialect_for(AZURE, "2024 10&x=1").chat_call("a/b?c", None).path
    assert odd == "/openai/deployments/a%2Fb%3Fc/chat/completions?api-version=2024%2010%26x%3D1"
    assert dialect_for(ANTHROPIC).models_call("a/b").path == "/v1/models/a%2Fb"


# -- reasoning models and the token field ---------------------------------------------------


def chat_body(provider: Provider, field: str) -> dict[str, Any]:
    """An OpenAI-style one-token chat body (Azure names the model in the path instead)."""
    model = {"model": MODEL[provider]} if provider is OPENAI else {}
    return {**model, "messages": PING, field: 1}


def openai_error(status: int, message: str, param: str | None, code: str | None) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param}}
    body["error"]["code"] = code
    return web.json_response(body, status=status)


async def reasoning_model(seen: Seen) -> web.StreamResponse:
    """An OpenAI reasoning model (o-series, GPT-5): max_tokens and temperature are refused."""
    if "max_tokens" in seen.body:
        return openai_error(
            400,
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            "max_tokens",
            "unsupported_parameter",
        )
    if seen.body.get("temperature", 1) != 1:
        return openai_error(
            400,
            "Unsupported value: 'temperature' does not support 0 with this model. "
            "Only the default (1) value is supported.",
            "temperature",
            "unsupported_value",
        )
    return web.json_response(COMPLETION)


# Servers that refuse max_completion_tokens, as each says so.
LEGACY_REFUSALS = [
    pytest.param(
        400,
        {
            "object": "error",
            "message": "[{'type': 'extra_forbidden', 'loc': ('body', 'max_completion_tokens'), "
            "'msg': 'Extra inputs are not permitted', 'input': 1}]",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        },
        id="older-vllm",
    ),
    pytest.param(
        422,
        {
            "detail": [
                {
                    "type": "extra_forbidden",
                    "loc": ["body", "max_completion_tokens"],
                    "msg": "Extra inputs are not permitted",
                }
            ]
        },
        id="fastapi-422",
    ),
    pytest.param(
        400,
        {
            "error": {
                "code": None,
                "message": "Unrecognized request argument supplied: max_completion_tokens",
            }
        },
        id="azure-old-api-version",
    ),
]


def legacy_server(status: int, refusal: Any) -> Answer:
    async def answer(seen: Seen) -> web.StreamResponse:
        if "max_completion_tokens" in seen.body:
            return web.json_response(refusal, status=status)
        return web.json_response(COMPLETION)

    return answer


@pytest.mark.parametrize("provider", [OPENAI, AZURE])
async def test_reasoning_model_takes_the_default_shape(
    serve: Serve, session: aiohttp.ClientSession, provider: Provider
) -> None:
    url, seen = await serve(reasoning_model)
    result = await run(target(provider, url, CHAT), session)
    assert result.ok, result.message
    assert len(seen) == 1
    assert seen[0].body["max_completion_tokens"] == 1
    assert "temperature" not in seen[0].body and "max_tokens" not in seen[0].body
    assert result.token_limit is TokenLimit.MAX_COMPLETION_TOKENS


@pytest.mark.parametrize("provider", [OPENAI, AZURE])
async def test_reasoning_model_refusing_max_tokens_gets_the_other_field(
    serve: Serve, session: aiohttp.ClientSession, provider: Provider
) -> None:
    # The loop remembered max_tokens (an older server sat at this URL); the model changed.
    url, seen = await serve(reasoning_model)
    result = await run(target(provider, url, CHAT, token_limit=TokenLimit.MAX_TOKENS), session)
    assert result.ok, result.message
    assert [s.body for s in seen] == [
        chat_body(provider, "max_tokens"),
        chat_body(provider, "max_completion_tokens"),
    ]
    assert result.token_limit is TokenLimit.MAX_COMPLETION_TOKENS


@pytest.mark.parametrize(("status", "refusal"), LEGACY_REFUSALS)
@pytest.mark.parametrize("provider", [OPENAI, AZURE])
async def test_server_refusing_max_completion_tokens_gets_max_tokens(
    serve: Serve, session: aiohttp.ClientSession, provider: Provider, status: int, refusal: Any
) -> None:
    url, seen = await serve(legacy_server(status, refusal))
    result = await run(target(provider, url, CHAT), session)
    assert result.ok, result.message
    assert [s.body for s in seen] == [
        chat_body(provider, "max_completion_tokens"),
        chat_body(provider, "max_tokens"),
    ]
    assert result.token_limit is TokenLimit.MAX_TOKENS
    # Remembered: the next probe sends max_tokens first, and only once.
    again = await run(target(provider, url, CHAT, token_limit=result.token_limit), session)
    assert again.ok and len(seen) == 3 and "max_tokens" in seen[2].body


async def test_refusing_both_fields_fails_after_one_retry(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    async def refuses_both(seen: Seen) -> web.StreamResponse:
        field = "max_tokens" if "max_tokens" in seen.body else "max_completion_tokens"
        return openai_error(400, f"Unsupported parameter: '{field}'", field, "unsupported")

    url, seen = await serve(refuses_both)
    result = await run(target(OPENAI, url, CHAT), session)
    assert len(seen) == 2
    assert (result.ok, result.reason) == (False, ProbeFailure.BAD_RESPONSE)
    assert result.message == (
        "HTTP 400 from /v1/chat/completions: Unsupported parameter: 'max_tokens'"
    )
    assert result.token_limit is TokenLimit.MAX_TOKENS


async def test_another_400_is_not_retried(serve: Serve, session: aiohttp.ClientSession) -> None:
    async def bad_messages(seen: Seen) -> web.StreamResponse:
        return openai_error(400, "'messages' must be a non-empty array", "messages", None)

    url, seen = await serve(bad_messages)
    result = await run(target(OPENAI, url, CHAT), session)
    assert len(seen) == 1
    assert (result.ok, result.reason) == (False, ProbeFailure.BAD_RESPONSE)


@pytest.mark.parametrize("provider", [OPENAI, AZURE])
async def test_token_budget_spent_on_reasoning_still_proves_the_model(
    serve: Serve, session: aiohttp.ClientSession, provider: Provider
) -> None:
    # BerriAI/litellm#26987: a one-token probe of a reasoning model can end in this 400.
    async def thought_too_long(seen: Seen) -> web.StreamResponse:
        return openai_error(
            400,
            "Could not finish the message because max_tokens or model output limit was "
            "reached. Please try again with higher max_tokens.",
            None,
            None,
        )

    url, seen = await serve(thought_too_long)
    result = await run(target(provider, url, CHAT), session)
    assert result.ok, result.message
    assert result.message.endswith("(stopped at the token limit)")
    assert len(seen) == 1


async def test_anthropic_body_is_fixed(serve: Serve, session: aiohttp.ClientSession) -> None:
    async def refuses(seen: Seen) -> web.StreamResponse:
        error = {"type": "invalid_request_error", "message": "max_tokens: unsupported value"}
        return web.json_response({"type": "error", "error": error}, status=400)

    url, seen = await serve(refuses)
    result = await run(target(ANTHROPIC, url, CHAT, token_limit=TokenLimit.MAX_TOKENS), session)
    assert len(seen) == 1 and seen[0].body["max_tokens"] == 1
    assert (result.reason, result.token_limit) == (ProbeFailure.BAD_RESPONSE, None)


# -- failures, classified -------------------------------------------------------------------


def error_doc(provider: Provider, type_: str, message: str) -> dict[str, Any]:
    if provider is ANTHROPIC:
        return {"type": "error", "error": {"type": type_, "message": message}}
    return {"error": {"code": type_, "message": message}}


def failing(provider: Provider, status: int, type_: str, message: str, **headers: str) -> Answer:
    async def answer(seen: Seen) -> web.StreamResponse:
        doc = error_doc(provider, type_, message.replace("{key}", KEY))
        return web.json_response(doc, status=status, headers=headers)

    return answer


def raw(body: str, content_type: str) -> Answer:
    async def answer(seen: Seen) -> web.StreamResponse:
        return web.Response(text=body, content_type=content_type)

    return answer


async def hang(seen: Seen) -> web.StreamResponse:
    await asyncio.sleep(30)  # cancelled by the server's cleanup
    return web.Response()


def answers(provider: Provider) -> dict[str, tuple[Answer | None, ProbeFailure]]:
    """Every fault, as this provider words it, and the class it must get."""
    html = "<!DOCTYPE html><html><body><form action='/login'></form></body></html>"
    return {
        "401": (
            failing(provider, 401, "authentication_error", "Incorrect API key provided: {key}"),
            ProbeFailure.AUTH_FAILED,
        ),
        "403": (
            failing(provider, 403, "permission_error", "not allowed to use this model"),
            ProbeFailure.AUTH_FAILED,
        ),
        "404": (
            failing(provider, 404, "not_found_error", "model: nope"),
            ProbeFailure.MODEL_NOT_SERVED,
        ),
        "429": (
            failing(provider, 429, "rate_limit_error", "slow down", **{"Retry-After": "7"}),
            ProbeFailure.RATE_LIMITED,
        ),
        "500": (failing(provider, 500, "api_error", "internal"), ProbeFailure.UNAVAILABLE),
        "529": (failing(provider, 529, "overloaded_error", "busy"), ProbeFailure.UNAVAILABLE),
        "refused": (None, ProbeFailure.UNAVAILABLE),
        "timeout": (hang, ProbeFailure.UNAVAILABLE),
        "malformed-json": (raw('{"data": [', "application/json"), ProbeFailure.BAD_RESPONSE),
        "html-page": (raw(html, "text/html"), ProbeFailure.BAD_RESPONSE),
        "wrong-shape": (raw('{"unexpected": true}', "application/json"), ProbeFailure.BAD_RESPONSE),
    }


def closed_port_url() -> str:
    with socket.socket() as s:  # bound, never listening: connects are refused
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


FAULTS = list(answers(OPENAI))


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("type_", [MODELS, CHAT])
@pytest.mark.parametrize("provider", [OPENAI, AZURE, ANTHROPIC])
async def test_failure_is_classified(
    serve: Serve,
    session: aiohttp.ClientSession,
    provider: Provider,
    type_: ProbeType,
    fault: str,
) -> None:
    answer, reason = answers(provider)[fault]
    url = closed_port_url() if answer is None else (await serve(answer))[0]
    result = await run(target(provider, url, type_, timeout_seconds=1), session)
    assert (result.ok, result.reason) == (False, reason), result.message
    assert KEY not in result.message and KEY[:12] not in result.message
    assert result.retry_after_s == (7.0 if fault == "429" else None)
    path = (MODELS_PATH if type_ is MODELS else CHAT_PATH)[provider]
    expected = {
        "401": "unauthorized (401): check authSecretRef",
        "404": f"HTTP 404 from {path}: model: nope",
        "529": f"HTTP 529 from {path}: busy",
        "refused": "connection failed: Connection refused",
        "timeout": "timeout after 1s",
        "malformed-json": f"malformed JSON from {path}",
        "html-page": f"HTML page instead of JSON from {path} (captive portal or login page?)",
        "wrong-shape": f"unexpected {path} shape",
    }
    if fault in expected:
        assert result.message == expected[fault]


async def test_model_missing_from_the_openai_list(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    url, _seen = await serve(healthy)
    result = await run(target(OPENAI, url, MODELS, model="o3"), session)
    assert (result.reason, result.message) == (
        ProbeFailure.MODEL_NOT_SERVED,
        "model o3 not listed by /v1/models (serves: gpt-4o, gpt-4o-mini)",
    )


async def test_azure_deployment_not_found(serve: Serve, session: aiohttp.ClientSession) -> None:
    text = (
        "The API deployment for this resource does not exist. If you created the deployment "
        "within the last 5 minutes, please wait a moment and try again."
    )
    url, seen = await serve(failing(AZURE, 404, "DeploymentNotFound", text))
    result = await run(target(AZURE, url, CHAT, model="gone"), session)
    assert seen[0].path == "/openai/deployments/gone/chat/completions?api-version=2024-10-21"
    assert result.reason is ProbeFailure.MODEL_NOT_SERVED
    assert result.message.startswith(
        "HTTP 404 from /openai/deployments/gone/chat/completions?api-version=2024-10-21: "
        "The API deployment for this resource does not exist."
    )


async def test_slow_answer_is_classified(serve: Serve, session: aiohttp.ClientSession) -> None:
    url, _seen = await serve(healthy)
    readings = iter([10.0, 10.5])
    t = target(ANTHROPIC, url, CHAT, latency_threshold_ms=100)
    result = await run(t, session, clock=lambda: next(readings))
    assert (result.ok, result.reason, result.latency_ms) == (
        False,
        ProbeFailure.SLOW_RESPONSE,
        500,
    )


async def test_missing_secret_is_classified(session: aiohttp.ClientSession) -> None:
    t = ProbeTarget(
        url=closed_port_url(),
        model="claude-sonnet-4-5",
        probe=ProbeSpec(type=CHAT),
        auth_error="key 'apiKey' not found in Secret ai/anthropic-key",
        provider=ANTHROPIC,
    )
    result = await run(t, session)
    assert (result.ok, result.reason) == (False, ProbeFailure.SECRET_MISSING)


@pytest.mark.parametrize(
    ("status", "reason"),
    [(404, ProbeFailure.BAD_RESPONSE), (503, ProbeFailure.UNAVAILABLE)],
)
async def test_http_probe_classes(
    serve: Serve, session: aiohttp.ClientSession, status: int, reason: ProbeFailure
) -> None:
    async def answer(seen: Seen) -> web.StreamResponse:
        return web.Response(status=status)

    url, _seen = await serve(answer)
    result = await run(target(ANTHROPIC, url, ProbeType.HTTP, path="/healthz"), session)
    assert (result.reason, result.message) == (reason, f"HTTP {status} from /healthz")
