"""Probe one backend once and describe the outcome.

This module only talks to the backend (aiohttp for HTTP, a bare socket for ``TCP``): no
Kubernetes, no global state, no sleeps.  Time comes from injected callables so the caller (and
the tests) decide what "now" means.  It holds the public API (:class:`ProbeResult`,
:class:`ProbeTarget`, :func:`probe`; :func:`new_session` is re-exported from
:mod:`~modelroute.probing.session`), sending and size-bounded reading,
and one small function per probe type.  What a ``Models`` or ``Chat`` probe sends, and how its
answer reads, is the provider's :mod:`~modelroute.probing.dialects`; judging, wording and
classifying an HTTP answer is :mod:`~modelroute.probing.answers`; naming a failure to answer at
all (DNS, connect, TLS) is :mod:`~modelroute.probing.errors`.

Every :class:`ProbeResult` message is meant for ``status.backends[].message``.  The operator
writes status only when it changes, so a message must be the same for repeated identical
failures: no timings, request ids or client ports, only HTTP status codes and configured values.
Secrets (the auth header value) never appear in a message.  A failure's ``reason`` is its class
(:class:`~modelroute.core.types.ProbeFailure`); no answer at all is ``Unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import aiohttp
from yarl import URL

from modelroute.api.models import ProbeSpec, ProbeType, Provider
from modelroute.core.types import ProbeFailure
from modelroute.probing.answers import (
    BadAnswer,
    Reply,
    json_body,
    output_limit_reached,
    redact,
    rejects_parameter,
    require_success,
    shape_error,
)
from modelroute.probing.dialects import Call, Dialect, TokenLimit, dialect_for
from modelroute.probing.errors import error_message, error_reason
from modelroute.probing.session import new_session, proxy_route

__all__ = ["ProbeResult", "ProbeTarget", "new_session", "probe"]

USER_AGENT: Final = "modelroute-operator-prober"
#: Largest body read from a backend; a backend streaming forever must not eat memory.
MAX_BODY_BYTES: Final = 1 << 20


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
    #: The failure's class; ``None`` for a success.
    reason: ProbeFailure | None = None
    #: A chat probe's token field the backend last took (or was last sent): the next probe's
    #: :attr:`ProbeTarget.token_limit`.  ``None`` for other probes.
    token_limit: TokenLimit | None = None


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
    #: The API dialect ``Models`` and ``Chat`` probes speak.
    provider: Provider = Provider.OPENAI
    #: Azure's api-version or Anthropic's anthropic-version; ``None``: the dialect's default.
    provider_version: str | None = None
    #: The token field a chat probe sends first; ``None``: the dialect's default.
    token_limit: TokenLimit | None = None
    #: TLS trust for this backend (its ``caBundleSecretRef``); ``None``: the session's own.
    ssl_context: ssl.SSLContext | None = None


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
        return ProbeResult(
            False, None, target.auth_error, now(), reason=ProbeFailure.SECRET_MISSING
        )
    dialect = dialect_for(target.provider, target.provider_version)
    ctx = _Context(target, session, now, _secrets(target.auth_header), dialect)
    handler = _HANDLERS[target.probe.type.canonical]
    started = clock()
    try:
        async with asyncio.timeout(target.probe.timeout_seconds):
            message = await handler(ctx)
    except BadAnswer as bad:
        latency = _elapsed_ms(clock, started)
        return _failed(ctx, bad.message, bad.reason, latency, bad.retry_after_s)
    except TimeoutError:
        return _failed(ctx, f"timeout after {target.probe.timeout_seconds}s", _UNAVAILABLE, None)
    except Exception as exc:  # anything a hostile backend triggers must not kill the caller
        return _failed(ctx, error_message(exc), error_reason(exc), None)
    return _judge_latency(ctx, message, _elapsed_ms(clock, started))


# -- plumbing ------------------------------------------------------------------------------

_UNAVAILABLE: Final = ProbeFailure.UNAVAILABLE


@dataclass
class _Context:
    target: ProbeTarget
    session: aiohttp.ClientSession
    now: Callable[[], datetime]
    secrets: tuple[str, ...]
    dialect: Dialect
    #: Set by a chat probe: the token field it sent last.
    token_limit: TokenLimit | None = None


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
    ctx: _Context,
    message: str,
    reason: ProbeFailure,
    latency_ms: int | None,
    retry_after_s: float | None = None,
) -> ProbeResult:
    # Redact again at the very end: exception texts may echo request data.
    text, limit = redact(message, ctx.secrets), ctx.token_limit
    return ProbeResult(False, latency_ms, text, ctx.now(), retry_after_s, reason, limit)


def _judge_latency(ctx: _Context, message: str, latency_ms: int) -> ProbeResult:
    threshold = ctx.target.probe.latency_threshold_ms
    if threshold is not None and latency_ms > threshold:
        message, reason = f"slow answer: over {threshold}ms threshold", ProbeFailure.SLOW_RESPONSE
        return _failed(ctx, message, reason, latency_ms)
    return ProbeResult(True, latency_ms, message, ctx.now(), token_limit=ctx.token_limit)


def _headers(ctx: _Context) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **ctx.dialect.headers()}
    if ctx.target.auth_header is not None:
        name, value = ctx.target.auth_header
        headers[name] = value
    return headers


async def _request(ctx: _Context, call: Call) -> Reply:
    # Redirects are not followed: a 3xx is an answer (HTTP) or a captive portal (the others).
    proxy, proxy_auth = proxy_route(ctx.session, ctx.target.url)
    async with ctx.session.request(
        call.method,
        ctx.target.url + call.path,
        headers=_headers(ctx),
        json=call.payload,
        allow_redirects=False,
        proxy=proxy,
        proxy_auth=proxy_auth,
        # True: the session's context. aiohttp pools connections per context, so a connection
        # verified against one backend's CA is never reused for a probe that trusts less.
        ssl=ctx.target.ssl_context or True,
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
    reply = await _request(ctx, Call("GET", path))
    # A 404 here is a wrong path, not a missing model.
    bad_path = ProbeFailure.BAD_RESPONSE
    require_success(
        reply, path, redirect_ok=True, secrets=ctx.secrets, now=ctx.now, not_found=bad_path
    )
    return f"HTTP {reply.status} from {path}"


async def _probe_models(ctx: _Context) -> str:
    model = ctx.target.model
    call = ctx.dialect.models_call(model)
    reply = await _request(ctx, call)
    require_success(reply, call.path, redirect_ok=False, secrets=ctx.secrets, now=ctx.now)
    return ctx.dialect.read_models(json_body(reply, call.path), model, call.path, ctx.secrets)


async def _probe_chat(ctx: _Context) -> str:
    model, limits = ctx.target.model, ctx.dialect.token_limits
    wanted = ctx.target.token_limit
    limit = wanted if wanted in limits else (limits[0] if limits else None)
    call = ctx.dialect.chat_call(model, limit)
    reply = await _request(ctx, call)
    if limit is not None and rejects_parameter(reply, limit.value):
        # A server that refuses the field we sent gets the other one, once; the probe loop
        # starts with the one taken from then on (ProbeResult.token_limit).
        limit = next(other for other in limits if other is not limit)
        call = ctx.dialect.chat_call(model, limit)
        reply = await _request(ctx, call)
    ctx.token_limit = limit
    if output_limit_reached(reply):
        return f"model {model} answered {call.path} (stopped at the token limit)"
    require_success(reply, call.path, redirect_ok=False, secrets=ctx.secrets, now=ctx.now)
    doc = json_body(reply, call.path)
    if not ctx.dialect.is_completion(doc):
        raise shape_error(doc, call.path, ctx.secrets)
    return f"model {model} answered {call.path}"


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
    ProbeType.MODELS: _probe_models,
    ProbeType.CHAT: _probe_chat,
    ProbeType.TCP: _probe_tcp,
}
