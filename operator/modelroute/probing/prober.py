"""Probe one backend once and describe the outcome.

This module only talks to the backend (aiohttp for HTTP, a bare socket for ``TCP``): no
Kubernetes, no global state, no sleeps.  Time comes from injected callables so the caller (and
the tests) decide what "now" means.  It holds the public API (:class:`ProbeResult`,
:class:`ProbeTarget`, :func:`new_session`, :func:`probe`), sending and size-bounded reading,
and one small function per probe type.  Deciding whether an HTTP answer is healthy, and wording
it when not, is :mod:`modelroute.probing.answers`; naming a failure to answer at all (DNS,
connect, TLS) is :mod:`modelroute.probing.errors`.

Every :class:`ProbeResult` message is meant for ``status.backends[].message``.  The operator
writes status only when it changes, so a message must be the same for repeated identical
failures: no timings, request ids or client ports, only HTTP status codes and configured values.
Secrets (the auth header value) never appear in a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import aiohttp
from yarl import URL

from modelroute.api.models import ProbeSpec, ProbeType
from modelroute.probing.answers import (
    BadAnswer,
    Reply,
    is_completion,
    json_body,
    missing_model,
    redact,
    require_success,
    served_ids,
    shape_error,
)
from modelroute.probing.errors import error_message

__all__ = ["ProbeResult", "ProbeTarget", "new_session", "probe"]

USER_AGENT: Final = "modelroute-operator-prober"
#: Largest body read from a backend; a backend streaming forever must not eat memory.
MAX_BODY_BYTES: Final = 1 << 20
MODELS_PATH: Final = "/v1/models"
CHAT_PATH: Final = "/v1/chat/completions"
#: The cheapest completion that still proves the model answers.
CHAT_PROMPT: Final[Mapping[str, Any]] = {
    "messages": [{"role": "user", "content": "ping"}],
    "max_tokens": 1,
    "temperature": 0,
}

# aiohttp warns (DeprecationWarning) about enable_cleanup_closed on Pythons whose asyncio no
# longer leaks aborted TLS transports (https://github.com/python/cpython/pull/118960).
_NEEDS_CLEANUP_CLOSED = sys.version_info < (3, 12, 8) or (3, 13) <= sys.version_info < (3, 13, 1)


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one probe of one backend."""

    ok: bool
    #: Milliseconds until the answer was complete; None when nothing answered.
    latency_ms: int | None
    #: Short, human-readable and stable across repeated identical failures; never a secret.
    message: str
    #: Timezone-aware UTC time the probe ended, from the injected ``now``.
    finished_at: datetime
    #: Seconds the backend asked us to wait (429 ``Retry-After``), if it said so.
    retry_after_s: float | None = None


@dataclass(frozen=True)
class ProbeTarget:
    """Everything needed to probe one backend: where, which model, how, with which key."""

    #: Base URL without trailing slash, e.g. ``http://127.0.0.1:1234``.
    url: str
    model: str
    #: Effective probe settings (route-level merged with the backend's overrides).
    probe: ProbeSpec
    #: ``(header name, full header value)``; never copied into any message.
    auth_header: tuple[str, str] | None = None
    #: When set the probe is not sent and fails with this message (e.g. Secret missing).
    auth_error: str | None = None


def new_session(*, connection_limit: int, connection_limit_per_host: int) -> aiohttp.ClientSession:
    """Create the one session shared by all probes; call it with the event loop running.

    No cookies (a backend must not steer later probes), no ``raise_for_status`` (status codes
    are probe results), and no session timeout: :func:`probe` bounds each probe itself.
    """
    connector = aiohttp.TCPConnector(
        limit=connection_limit,
        limit_per_host=connection_limit_per_host,
        ttl_dns_cache=30,
        enable_cleanup_closed=_NEEDS_CLEANUP_CLOSED,
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        raise_for_status=False,
        timeout=aiohttp.ClientTimeout(),
    )


async def probe(
    target: ProbeTarget,
    session: aiohttp.ClientSession,
    *,
    clock: Callable[[], float],
    now: Callable[[], datetime],
) -> ProbeResult:
    """Probe ``target`` once; never raises for backend or network misbehaviour.

    ``clock`` is a monotonic clock in seconds (e.g. ``loop.time``) used for the latency,
    ``now`` returns the timezone-aware UTC wall time stamped on the result.  The whole probe,
    body included, is bounded by ``target.probe.timeout_seconds``.  Only
    :class:`asyncio.CancelledError` propagates.
    """
    if target.auth_error is not None:
        return ProbeResult(False, None, target.auth_error, now())
    ctx = _Context(target, session, now, _secrets(target.auth_header))
    handler = _HANDLERS[target.probe.type]
    started = clock()
    try:
        async with asyncio.timeout(target.probe.timeout_seconds):
            message = await handler(ctx)
    except BadAnswer as bad:
        latency = _elapsed_ms(clock, started)
        return _failed(ctx, bad.message, latency, bad.retry_after_s)
    except TimeoutError:
        return _failed(ctx, f"timeout after {target.probe.timeout_seconds}s", None)
    except Exception as exc:  # anything a hostile backend triggers must not kill the caller
        return _failed(ctx, error_message(exc), None)
    return _judge_latency(ctx, message, _elapsed_ms(clock, started))


# -- plumbing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    target: ProbeTarget
    session: aiohttp.ClientSession
    now: Callable[[], datetime]
    secrets: tuple[str, ...]


def _secrets(auth_header: tuple[str, str] | None) -> tuple[str, ...]:
    # The whole header value and the key after a "Bearer "-style prefix; longest first so the
    # full value is replaced before its tail.
    if auth_header is None:
        return ()
    value = auth_header[1].strip()
    candidates = {value, value.split(None, 1)[-1]} if value else set()
    return tuple(sorted((c for c in candidates if c), key=len, reverse=True))


def _elapsed_ms(clock: Callable[[], float], started: float) -> int:
    return max(0, round((clock() - started) * 1000))


def _failed(
    ctx: _Context, message: str, latency_ms: int | None, retry_after_s: float | None = None
) -> ProbeResult:
    # Redact again at the very end: exception texts may echo request data.
    return ProbeResult(False, latency_ms, redact(message, ctx.secrets), ctx.now(), retry_after_s)


def _judge_latency(ctx: _Context, message: str, latency_ms: int) -> ProbeResult:
    threshold = ctx.target.probe.latency_threshold_ms
    if threshold is not None and latency_ms > threshold:
        return _failed(ctx, f"slow answer: over {threshold}ms threshold", latency_ms)
    return ProbeResult(True, latency_ms, message, ctx.now())


def _headers(target: ProbeTarget) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if target.auth_header is not None:
        name, value = target.auth_header
        headers[name] = value
    return headers


async def _request(
    ctx: _Context, method: str, path: str, payload: Mapping[str, Any] | None = None
) -> Reply:
    # Redirects are not followed: a 3xx is an answer (HTTP) or a captive portal (OpenAI).
    async with ctx.session.request(
        method,
        ctx.target.url + path,
        headers=_headers(ctx.target),
        json=payload,
        allow_redirects=False,
    ) as resp:
        body = await _read_limited(resp)
        return Reply(resp.status, resp.content_type, body, resp.headers.get("Retry-After"))


async def _read_limited(resp: aiohttp.ClientResponse) -> bytes | None:
    if resp.content_length is not None and resp.content_length > MAX_BODY_BYTES:
        resp.close()  # drop the connection rather than drain a huge body
        return None
    body = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            resp.close()
            return None
    return bytes(body)


# -- one small function per probe type --------------------------------------------------------


async def _probe_http(ctx: _Context) -> str:
    path = ctx.target.probe.path
    reply = await _request(ctx, "GET", path)
    require_success(reply, path, redirect_ok=True, secrets=ctx.secrets, now=ctx.now)
    return f"HTTP {reply.status} from {path}"


async def _probe_openai_models(ctx: _Context) -> str:
    reply = await _request(ctx, "GET", MODELS_PATH)
    require_success(reply, MODELS_PATH, redirect_ok=False, secrets=ctx.secrets, now=ctx.now)
    served = served_ids(json_body(reply, MODELS_PATH), MODELS_PATH, ctx.secrets)
    if ctx.target.model not in served:
        raise missing_model(ctx.target.model, served, MODELS_PATH)
    return f"model {ctx.target.model} listed by {MODELS_PATH}"


async def _probe_openai_chat(ctx: _Context) -> str:
    payload = {"model": ctx.target.model, **CHAT_PROMPT}
    reply = await _request(ctx, "POST", CHAT_PATH, payload)
    require_success(reply, CHAT_PATH, redirect_ok=False, secrets=ctx.secrets, now=ctx.now)
    doc = json_body(reply, CHAT_PATH)
    if not is_completion(doc):
        raise shape_error(doc, CHAT_PATH, ctx.secrets)
    return f"model {ctx.target.model} answered {CHAT_PATH}"


async def _probe_tcp(ctx: _Context) -> str:
    url = URL(ctx.target.url)
    if not url.host or url.port is None:  # port is the scheme default when not explicit
        raise aiohttp.InvalidURL(ctx.target.url)
    _reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.close()
    # The connect is the answer; a reset while closing does not make the backend unhealthy.
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return f"TCP connect to port {url.port} succeeded"


_HANDLERS: Final[Mapping[ProbeType, Callable[[_Context], Awaitable[str]]]] = {
    ProbeType.HTTP: _probe_http,
    ProbeType.OPENAI_MODELS: _probe_openai_models,
    ProbeType.OPENAI_CHAT: _probe_openai_chat,
    ProbeType.TCP: _probe_tcp,
}
