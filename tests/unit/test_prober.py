"""Tests for the one-shot backend prober, against real loopback HTTP servers."""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from modelroute.api.models import ProbeSpec, ProbeType
from modelroute.core.types import ProbeFailure
from modelroute.probing.dialects import TokenLimit
from modelroute.probing.prober import (
    MAX_BODY_BYTES,
    ProbeResult,
    ProbeTarget,
    new_session,
    probe,
)
from tests.fakes.openai_backend import FakeBackend, Fault

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
KEY = "sk-test-0123456789abcdef"
MODELS = "/v1/models"
CHAT = "/v1/chat/completions"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ServeFn = Callable[[dict[str, Handler]], Awaitable[str]]


def fixed_now() -> datetime:
    return NOW


def spec(type_: ProbeType = ProbeType.OPENAI_MODELS, **kw: Any) -> ProbeSpec:
    return ProbeSpec(type=type_, **kw)


async def run(
    target: ProbeTarget,
    session: aiohttp.ClientSession,
    clock: Callable[[], float] | None = None,
) -> ProbeResult:
    clock = clock or asyncio.get_running_loop().time
    return await probe(target, session, clock=clock, now=fixed_now)


def fake_clock(*readings: float) -> Callable[[], float]:
    it: Iterator[float] = iter(readings)
    return lambda: next(it)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    s = new_session(connection_limit=8, connection_limit_per_host=4)
    yield s
    await s.close()


@pytest.fixture
async def backend() -> AsyncIterator[FakeBackend]:
    async with FakeBackend(("gpt-4o", "gpt-4o-mini")) as fb:
        yield fb


@pytest.fixture
async def serve() -> AsyncIterator[ServeFn]:
    """Start tiny aiohttp apps for answers the fake backend cannot give."""
    runners: list[web.AppRunner] = []

    async def _serve(routes: dict[str, Handler]) -> str:
        app = web.Application()
        for path, handler in routes.items():
            app.router.add_route("*", path, handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield _serve
    for runner in runners:
        await runner.cleanup()


def json_handler(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(doc, status=status, headers=headers)

    return handler


# -- success per probe type -----------------------------------------------------------------


async def test_openai_models_success(backend: FakeBackend, session: aiohttp.ClientSession) -> None:
    result = await run(ProbeTarget(backend.url, "gpt-4o-mini", spec()), session)
    assert result.ok, result.message
    assert result.message == "model gpt-4o-mini listed by /v1/models"
    assert result.latency_ms is not None and result.latency_ms >= 0
    assert result.finished_at == NOW
    assert result.retry_after_s is None
    assert backend.requests_by_path[MODELS] == 1
    assert backend.last_headers["User-Agent"] == "modelroute-operator-prober"
    assert backend.last_headers["Accept"] == "application/json"
    assert "Authorization" not in backend.last_headers


async def test_openai_chat_success(backend: FakeBackend, session: aiohttp.ClientSession) -> None:
    result = await run(ProbeTarget(backend.url, "gpt-4o", spec(ProbeType.OPENAI_CHAT)), session)
    assert result.ok, result.message
    assert result.finished_at == NOW
    assert backend.requests_by_path[CHAT] == 1


async def test_openai_chat_sends_tiny_request(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    seen: list[Any] = []

    async def chat(request: web.Request) -> web.StreamResponse:
        seen.append((request.method, await request.json()))
        return web.json_response({"choices": [{"message": {"content": "p"}}]})

    url = await serve({CHAT: chat})
    result = await run(ProbeTarget(url, "llama", spec(ProbeType.OPENAI_CHAT)), session)
    assert result.ok, result.message
    # What OpenAI reasoning models take: max_completion_tokens, and no temperature at all.
    assert seen == [
        (
            "POST",
            {
                "model": "llama",
                "messages": [{"role": "user", "content": "ping"}],
                "max_completion_tokens": 1,
            },
        )
    ]
    assert result.token_limit is TokenLimit.MAX_COMPLETION_TOKENS


async def test_http_success(backend: FakeBackend, session: aiohttp.ClientSession) -> None:
    target = ProbeTarget(backend.url, "gpt-4o", spec(ProbeType.HTTP, path="/healthz"))
    result = await run(target, session)
    assert result.ok, result.message
    assert result.message == "HTTP 200 from /healthz"
    assert backend.requests_by_path == {"/healthz": 1}


async def test_http_redirect_is_success_and_not_followed(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    followed: list[str] = []

    async def login(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/elsewhere")

    async def elsewhere(request: web.Request) -> web.StreamResponse:
        followed.append(request.path)
        return web.Response(status=500)

    url = await serve({"/login": login, "/elsewhere": elsewhere})
    result = await run(ProbeTarget(url, "m", spec(ProbeType.HTTP, path="/login")), session)
    assert result.ok, result.message
    assert result.message == "HTTP 302 from /login"
    assert followed == []


async def test_openai_models_redirect_is_failure(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    async def portal(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/portal")

    url = await serve({MODELS: portal})
    result = await run(ProbeTarget(url, "gpt-4o", spec()), session)
    assert not result.ok
    assert result.message.startswith("HTTP 302 from /v1/models")


async def test_http_server_error_fails_with_code(
    backend: FakeBackend, session: aiohttp.ClientSession
) -> None:
    await backend.set_fault(Fault.SERVER_ERROR)
    target = ProbeTarget(backend.url, "gpt-4o", spec(ProbeType.HTTP, path="/healthz"))
    result = await run(target, session)
    assert not result.ok
    assert result.message.startswith("HTTP 500 from /healthz")
    assert result.reason is ProbeFailure.UNAVAILABLE


async def test_tcp_success(backend: FakeBackend, session: aiohttp.ClientSession) -> None:
    result = await run(ProbeTarget(backend.url, "gpt-4o", spec(ProbeType.TCP)), session)
    assert result.ok, result.message
    assert result.latency_ms is not None
    assert result.finished_at == NOW
    assert backend.requests_total == 0  # a bare connect, no HTTP request


async def test_tcp_refused(backend: FakeBackend, session: aiohttp.ClientSession) -> None:
    await backend.set_fault(Fault.REFUSED)
    result = await run(ProbeTarget(backend.url, "gpt-4o", spec(ProbeType.TCP)), session)
    assert not result.ok
    assert result.message == "connection failed: Connection refused"
    assert result.reason is ProbeFailure.UNAVAILABLE
    assert result.latency_ms is None


# -- OpenAI answers that are not healthy ----------------------------------------------------


async def test_model_missing_lists_served_ids(session: aiohttp.ClientSession) -> None:
    async with FakeBackend(("m6", "m3", "m1", "m5", "m2", "m4")) as fb:
        result = await run(ProbeTarget(fb.url, "gpt-4o", spec()), session)
    assert not result.ok
    assert result.message == (
        "model gpt-4o not listed by /v1/models (serves: m1, m2, m3, m4, m5, ...)"
    )
    assert result.latency_ms is not None


async def test_wrong_models(backend: FakeBackend, session: aiohttp.ClientSession) -> None:
    await backend.set_fault(Fault.WRONG_MODELS)
    result = await run(ProbeTarget(backend.url, "gpt-4o", spec()), session)
    assert result.message == "model gpt-4o not listed by /v1/models (serves: some-other-model)"


async def test_chat_with_unknown_model_quotes_backend_error(
    backend: FakeBackend, session: aiohttp.ClientSession
) -> None:
    await backend.set_fault(Fault.WRONG_MODELS)
    result = await run(ProbeTarget(backend.url, "gpt-4o", spec(ProbeType.OPENAI_CHAT)), session)
    assert not result.ok
    assert result.message == (
        "HTTP 404 from /v1/chat/completions: "
        "The model `gpt-4o` does not exist or you do not have access to it."
    )


async def test_malformed_json(backend: FakeBackend, session: aiohttp.ClientSession) -> None:
    await backend.set_fault(Fault.MALFORMED_JSON)
    result = await run(ProbeTarget(backend.url, "gpt-4o", spec()), session)
    assert not result.ok
    assert result.message == "malformed JSON from /v1/models"
    assert result.latency_ms is not None


async def test_html_page(backend: FakeBackend, session: aiohttp.ClientSession) -> None:
    await backend.set_fault(Fault.HTML_PAGE)
    result = await run(ProbeTarget(backend.url, "gpt-4o", spec()), session)
    assert not result.ok
    assert result.message == (
        "HTML page instead of JSON from /v1/models (captive portal or login page?)"
    )


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (
            Fault.OUTAGE,
            "HTTP 503 from /v1/models: The server is temporarily unavailable (injected outage)",
        ),
        (
            Fault.SERVER_ERROR,
            "HTTP 500 from /v1/models: The server had an error while processing your request",
        ),
    ],
)
async def test_server_errors_include_code(
    backend: FakeBackend, session: aiohttp.ClientSession, fault: Fault, expected: str
) -> None:
    await backend.set_fault(fault)
    result = await run(ProbeTarget(backend.url, "gpt-4o", spec()), session)
    assert not result.ok
    assert result.message == expected
    assert result.latency_ms is not None


async def test_long_backend_error_is_truncated(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    url = await serve({MODELS: json_handler({"error": {"message": "x" * 500}}, status=502)})
    result = await run(ProbeTarget(url, "gpt-4o", spec()), session)
    prefix = "HTTP 502 from /v1/models: "
    assert result.message.startswith(prefix)
    assert result.message.endswith("...")
    assert len(result.message) == len(prefix) + 120


@pytest.mark.parametrize(
    ("doc", "type_", "ok", "message"),
    [
        ({"object": "list"}, ProbeType.OPENAI_MODELS, False, "unexpected /v1/models shape"),
        ([{"id": "gpt-4o"}], ProbeType.OPENAI_MODELS, False, "unexpected /v1/models shape"),
        (
            {"error": {"message": "upstream down"}},
            ProbeType.OPENAI_MODELS,
            False,
            "error from /v1/models: upstream down",
        ),
        ({"data": [{"id": "gpt-4o"}]}, ProbeType.OPENAI_MODELS, True, None),
        ({"choices": []}, ProbeType.OPENAI_CHAT, False, "unexpected /v1/chat/completions shape"),
        (
            {"choices": [{"message": {"content": 3}}]},
            ProbeType.OPENAI_CHAT,
            False,
            "unexpected /v1/chat/completions shape",
        ),
        ({"choices": [{"message": {"content": ""}}]}, ProbeType.OPENAI_CHAT, True, None),
        (
            {"choices": [{"message": {"content": None}, "finish_reason": "length"}]},
            ProbeType.OPENAI_CHAT,
            True,
            None,
        ),
    ],
)
async def test_answer_shapes(
    serve: ServeFn,
    session: aiohttp.ClientSession,
    doc: Any,
    type_: ProbeType,
    ok: bool,
    message: str | None,
) -> None:
    url = await serve({MODELS: json_handler(doc), CHAT: json_handler(doc)})
    result = await run(ProbeTarget(url, "gpt-4o", spec(type_)), session)
    assert result.ok is ok, result.message
    if message is not None:
        assert result.message == message


# -- rate limits, timeouts, latency ---------------------------------------------------------


async def test_rate_limited_sets_retry_after(
    backend: FakeBackend, session: aiohttp.ClientSession
) -> None:
    await backend.set_fault(Fault.RATE_LIMITED, retry_after=7)
    result = await run(ProbeTarget(backend.url, "gpt-4o", spec()), session)
    assert not result.ok
    assert result.retry_after_s == 7.0
    # The pause is honoured (retry_after_s) but not quoted: a changing number would rewrite
    # status on every probe.
    assert result.message == "rate limited (429), next probe after the Retry-After pause"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        (format_datetime(NOW - timedelta(seconds=90), usegmt=True), 0.0),
        ("soon", None),
        ("-3", None),
    ],
)
async def test_retry_after_forms(
    serve: ServeFn, session: aiohttp.ClientSession, header: str, expected: float | None
) -> None:
    body = {"error": {"message": "slow down", "code": "rate_limit_exceeded"}}
    url = await serve({MODELS: json_handler(body, 429, {"Retry-After": header})})
    result = await run(ProbeTarget(url, "gpt-4o", spec()), session)
    assert not result.ok
    assert result.retry_after_s == expected
    assert result.message.startswith("rate limited (429)")


async def test_exhausted_quota_is_quoted(serve: ServeFn, session: aiohttp.ClientSession) -> None:
    body = {"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}}
    url = await serve({MODELS: json_handler(body, 429)})
    result = await run(ProbeTarget(url, "gpt-4o", spec()), session)
    assert result.message == "rate limited (429): You exceeded your current quota"
    assert result.retry_after_s is None


async def test_hang_times_out(backend: FakeBackend, session: aiohttp.ClientSession) -> None:
    await backend.set_fault(Fault.HANG)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await run(ProbeTarget(backend.url, "gpt-4o", spec(timeout_seconds=1)), session)
    assert not result.ok
    assert result.message == "timeout after 1s"
    assert result.latency_ms is None
    assert result.finished_at == NOW
    assert loop.time() - started < 3


async def test_cancellation_propagates(serve: ServeFn, session: aiohttp.ClientSession) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        arrived.set()
        await release.wait()
        return web.Response(status=503)

    url = await serve({MODELS: hang})
    task = asyncio.create_task(run(ProbeTarget(url, "gpt-4o", spec()), session))
    async with asyncio.timeout(5):
        await arrived.wait()
    task.cancel()
    try:
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        release.set()


@pytest.mark.parametrize(("threshold", "ok"), [(100, False), (5000, True)])
async def test_latency_threshold_on_slow_answer(
    backend: FakeBackend, session: aiohttp.ClientSession, threshold: int, ok: bool
) -> None:
    await backend.set_fault(Fault.SLOW, delay=0.3)
    target = ProbeTarget(backend.url, "gpt-4o", spec(latency_threshold_ms=threshold))
    result = await run(target, session)
    assert result.ok is ok, result.message
    assert result.latency_ms is not None and result.latency_ms >= 300
    if not ok:
        assert result.message == f"slow answer: over {threshold}ms threshold"
        assert result.reason is ProbeFailure.SLOW_RESPONSE
    else:
        assert result.reason is None


@pytest.mark.parametrize(("threshold", "ok"), [(250, True), (249, False), (None, True)])
async def test_latency_comes_from_injected_clock(
    backend: FakeBackend, session: aiohttp.ClientSession, threshold: int | None, ok: bool
) -> None:
    target = ProbeTarget(backend.url, "gpt-4o", spec(latency_threshold_ms=threshold))
    result = await run(target, session, clock=fake_clock(100.0, 100.25))
    assert result.latency_ms == 250
    assert result.ok is ok


async def test_refused(backend: FakeBackend, session: aiohttp.ClientSession) -> None:
    await backend.set_fault(Fault.REFUSED)
    result = await run(ProbeTarget(backend.url, "gpt-4o", spec()), session)
    assert not result.ok
    assert result.message == "connection failed: Connection refused"
    assert result.latency_ms is None
    assert result.finished_at == NOW


# -- authentication -------------------------------------------------------------------------


async def test_auth_header_is_sent(session: aiohttp.ClientSession) -> None:
    async with FakeBackend(api_key=KEY) as fb:
        target = ProbeTarget(fb.url, "gpt-4o", spec(), ("Authorization", f"Bearer {KEY}"))
        result = await run(target, session)
        assert result.ok, result.message
        assert fb.last_headers["Authorization"] == f"Bearer {KEY}"


async def test_wrong_key_is_unauthorized(session: aiohttp.ClientSession) -> None:
    async with FakeBackend(api_key=KEY) as fb:
        target = ProbeTarget(fb.url, "gpt-4o", spec(), ("Authorization", "Bearer sk-wrong-key"))
        result = await run(target, session)
    assert not result.ok
    # The vendor's text is not quoted: it may echo parts of the key.
    assert result.message == "unauthorized (401): check authSecretRef"
    assert "sk-wrong-key" not in result.message


@pytest.mark.parametrize("padding", [0, 70])
async def test_echoed_key_is_redacted(
    serve: ServeFn, session: aiohttp.ClientSession, padding: int
) -> None:
    # Real vendors echo (parts of) the key; padding 70 puts it across the truncation point.
    async def echo(request: web.Request) -> web.StreamResponse:
        text = "x" * padding + " Incorrect API key provided: " + request.headers["Authorization"]
        return web.json_response({"error": {"message": text}}, status=401)

    url = await serve({MODELS: echo})
    result = await run(
        ProbeTarget(url, "gpt-4o", spec(), ("Authorization", f"Bearer {KEY}")), session
    )
    assert result.message == "unauthorized (401): check authSecretRef"
    assert KEY not in result.message
    assert KEY[:7] not in result.message  # not even a truncated piece of it


async def test_forbidden(serve: ServeFn, session: aiohttp.ClientSession) -> None:
    url = await serve({"/": json_handler({"detail": "Not allowed"}, 403)})
    result = await run(ProbeTarget(url, "m", spec(ProbeType.HTTP)), session)
    assert result.message == "unauthorized (403): check authSecretRef"


async def test_auth_error_short_circuits(
    backend: FakeBackend, session: aiohttp.ClientSession
) -> None:
    target = ProbeTarget(backend.url, "gpt-4o", spec(), auth_error="Secret ai/vendor-key not found")
    result = await run(target, session, clock=fake_clock())  # the clock must not be needed
    assert result == ProbeResult(
        False, None, "Secret ai/vendor-key not found", NOW, reason=ProbeFailure.SECRET_MISSING
    )
    assert backend.requests_total == 0


# -- stability and limits -------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [Fault.OUTAGE, Fault.SERVER_ERROR, Fault.REFUSED, Fault.WRONG_MODELS, Fault.RATE_LIMITED],
)
@pytest.mark.parametrize("type_", [ProbeType.OPENAI_MODELS, ProbeType.OPENAI_CHAT])
async def test_identical_failures_give_identical_messages(
    backend: FakeBackend, session: aiohttp.ClientSession, fault: Fault, type_: ProbeType
) -> None:
    await backend.set_fault(fault, retry_after=3)
    target = ProbeTarget(backend.url, "gpt-4o", spec(type_))
    first = await run(target, session, clock=fake_clock(1.0, 1.1))
    second = await run(target, session, clock=fake_clock(5.0, 5.7))
    assert not first.ok
    assert first.message == second.message


async def _stream_forever(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    await resp.write(b'{"data": [{"id": "gpt-4o"}], "pad": "')
    chunk = b"x" * 65536
    try:
        for _ in range(4096):  # 256 MiB at most, in case the client never hangs up
            await resp.write(chunk)
    except ConnectionError:
        pass  # the prober hung up, as it should
    return resp


async def _declare_huge_then_stall(request: web.Request) -> web.StreamResponse:
    # Content-Length alone says "too big": no need to wait for (or read) the body.
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.content_length = 10 * MAX_BODY_BYTES
    await resp.prepare(request)
    await resp.write(b'{"data": [')
    await asyncio.sleep(30)  # cancelled by the server cleanup
    return resp


def _models_doc_bytes(size: int) -> bytes:
    head = b'{"data": [{"id": "gpt-4o"}], "pad": "'
    return head + b"x" * (size - len(head) - 2) + b'"}'


@pytest.mark.parametrize(
    ("handler", "ok"),
    [
        (json_handler(json.loads(_models_doc_bytes(MAX_BODY_BYTES))), True),
        (json_handler(json.loads(_models_doc_bytes(MAX_BODY_BYTES + 1))), False),
        (_stream_forever, False),
        (_declare_huge_then_stall, False),
    ],
    ids=["exactly-1MiB", "1MiB-plus-one", "endless-stream", "declared-too-large"],
)
async def test_body_size_limit(
    serve: ServeFn, session: aiohttp.ClientSession, handler: Handler, ok: bool
) -> None:
    url = await serve({MODELS: handler})
    # A generous timeout: an unbounded read of the endless stream would end as a timeout.
    result = await run(ProbeTarget(url, "gpt-4o", spec(timeout_seconds=5)), session)
    assert result.ok is ok, result.message
    if not ok:
        assert result.message == "answer from /v1/models over the 1 MiB probe limit (not read)"
        assert result.reason is ProbeFailure.BAD_RESPONSE


async def test_new_session_settings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = new_session(connection_limit=10, connection_limit_per_host=3)
    try:
        assert isinstance(s.connector, aiohttp.TCPConnector)
        assert s.connector.limit == 10
        assert s.connector.limit_per_host == 3
        assert isinstance(s.cookie_jar, aiohttp.DummyCookieJar)
        assert s.timeout.total is None
    finally:
        await s.close()
