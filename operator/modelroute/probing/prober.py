"""Probe one backend once and describe the outcome.

This module only talks to the backend (aiohttp for HTTP, a bare socket for ``TCP``): no
Kubernetes, no global state, no sleeps.  Time comes from injected callables so the caller (and
the tests) decide what "now" means.

Every :class:`ProbeResult` message is meant for ``status.backends[].message``.  The operator
writes status only when it changes, so a message must be the same for repeated identical
failures: no timings, request ids or client ports, only HTTP status codes and configured values.
Secrets (the auth header value) never appear in a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import math
import os
import re
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
from yarl import URL

from modelroute.api.models import ProbeSpec, ProbeType

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

_DETAIL_CHARS = 120  # longest backend-provided error text copied into a message
_LISTED_MODELS = 5  # served ids named when the configured model is missing
_MODEL_ID_CHARS = 64
# A hostile or buggy Retry-After ("wait 10 years") must not stop probing for good.
_MAX_RETRY_AFTER_S = 86_400.0
_REDACTED = "[REDACTED]"
# Request ids and UUIDs change on every answer; keeping them would rewrite status each probe.
_VOLATILE = re.compile(
    r"\breq_[0-9A-Za-z]+|\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
)
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
    except _BadAnswer as bad:
        latency = _elapsed_ms(clock, started)
        return _failed(ctx, bad.message, latency, bad.retry_after_s)
    except TimeoutError:
        return _failed(ctx, f"timeout after {target.probe.timeout_seconds}s", None)
    except Exception as exc:  # anything a hostile backend triggers must not kill the caller
        return _failed(ctx, _error_message(exc), None)
    return _judge_latency(ctx, message, _elapsed_ms(clock, started))


# -- plumbing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    target: ProbeTarget
    session: aiohttp.ClientSession
    now: Callable[[], datetime]
    secrets: tuple[str, ...]


@dataclass(frozen=True)
class _Reply:
    status: int
    content_type: str
    body: bytes | None  # None: larger than MAX_BODY_BYTES, not kept
    retry_after: str | None


class _BadAnswer(Exception):
    """The backend answered, but not with a healthy answer."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


def _secrets(auth_header: tuple[str, str] | None) -> tuple[str, ...]:
    # The whole header value and the key after a "Bearer "-style prefix; longest first so the
    # full value is replaced before its tail.
    if auth_header is None:
        return ()
    value = auth_header[1].strip()
    candidates = {value, value.split(None, 1)[-1]} if value else set()
    return tuple(sorted((c for c in candidates if c), key=len, reverse=True))


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, _REDACTED)
    return text


def _elapsed_ms(clock: Callable[[], float], started: float) -> int:
    return max(0, round((clock() - started) * 1000))


def _failed(
    ctx: _Context, message: str, latency_ms: int | None, retry_after_s: float | None = None
) -> ProbeResult:
    # Redact again at the very end: exception texts may echo request data.
    return ProbeResult(False, latency_ms, _redact(message, ctx.secrets), ctx.now(), retry_after_s)


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
) -> _Reply:
    # Redirects are not followed: a 3xx is an answer (HTTP) or a captive portal (OpenAI).
    async with ctx.session.request(
        method,
        ctx.target.url + path,
        headers=_headers(ctx.target),
        json=payload,
        allow_redirects=False,
    ) as resp:
        body = await _read_limited(resp)
        return _Reply(resp.status, resp.content_type, body, resp.headers.get("Retry-After"))


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


# -- reading answers -----------------------------------------------------------------------


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _error_fields(reply: _Reply) -> tuple[str | None, str | None]:
    """(message, code) of an OpenAI-style error body, if the body is one."""
    try:
        doc = json.loads(reply.body) if reply.body else None
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(doc, dict):
        return None, None
    error = doc.get("error")
    if isinstance(error, dict):
        return _str_or_none(error.get("message")), _str_or_none(error.get("code"))
    # Some OpenAI-compatible servers send a bare string; FastAPI-based ones use "detail".
    return _str_or_none(error) or _str_or_none(doc.get("detail")), None


def _detail(ctx: _Context, text: str | None) -> str | None:
    if not text:
        return None
    # Redact before truncating: a key cut in half would no longer match.
    text = " ".join(_VOLATILE.sub("<id>", _redact(text, ctx.secrets)).split())
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 3] + "..."


def _with_detail(message: str, detail: str | None) -> str:
    return f"{message}: {detail}" if detail else message


def _require_success(ctx: _Context, reply: _Reply, path: str, *, redirect_ok: bool) -> None:
    status = reply.status
    if 200 <= status < 300 or (redirect_ok and 300 <= status < 400):
        return
    if status == 429:
        raise _rate_limited(ctx, reply)
    if 300 <= status < 400:
        raise _BadAnswer(f"HTTP {status} from {path}: redirect not followed (login page?)")
    detail = _detail(ctx, _error_fields(reply)[0])
    if status in (401, 403):
        raise _BadAnswer(_with_detail(f"unauthorized ({status}): check authSecretRef", detail))
    raise _BadAnswer(_with_detail(f"HTTP {status} from {path}", detail))


def _rate_limited(ctx: _Context, reply: _Reply) -> _BadAnswer:
    retry_after_s = _parse_retry_after(reply.retry_after, ctx.now())
    message = "rate limited (429)"
    if retry_after_s is not None:
        message += f", retry after {math.ceil(retry_after_s)}s"
    # Plain rate-limit texts carry changing counters; an exhausted quota is stable and is
    # the one an admin must act on (billing), so only that one is quoted.
    text, code = _error_fields(reply)
    if code == "insufficient_quota":
        message = _with_detail(message, _detail(ctx, text))
    return _BadAnswer(message, retry_after_s)


def _parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date), >= 0."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return _seconds_until(value, now)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, _MAX_RETRY_AFTER_S)


def _seconds_until(http_date: str, now: datetime) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC without saying so
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - now).total_seconds()), _MAX_RETRY_AFTER_S)


def _json_body(reply: _Reply, path: str) -> Any:
    if reply.body is None:
        raise _BadAnswer(f"malformed answer from {path}: body over 1 MiB")
    try:
        return json.loads(reply.body)
    except (ValueError, RecursionError):  # RecursionError: deeply nested arrays
        if reply.content_type == "text/html" or reply.body.lstrip()[:1] == b"<":
            raise _BadAnswer(
                f"HTML page instead of JSON from {path} (captive portal or login page?)"
            ) from None
        raise _BadAnswer(f"malformed JSON from {path}") from None


def _shape_error(ctx: _Context, doc: Any, path: str) -> _BadAnswer:
    # Some gateways answer 200 with an error object; quote it rather than "bad shape".
    error = doc.get("error") if isinstance(doc, dict) else None
    text = _str_or_none(error.get("message")) if isinstance(error, dict) else _str_or_none(error)
    detail = _detail(ctx, text)
    return _BadAnswer(f"error from {path}: {detail}" if detail else f"unexpected {path} shape")


def _served_ids(ctx: _Context, doc: Any) -> list[str]:
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        raise _shape_error(ctx, doc, MODELS_PATH)
    return [i["id"] for i in data if isinstance(i, dict) and isinstance(i.get("id"), str)]


def _missing_model(model: str, served: list[str]) -> _BadAnswer:
    # Sorted: the backend's order may change between answers, the message must not.
    names = sorted({s[:_MODEL_ID_CHARS] for s in served})
    listed = ", ".join(names[:_LISTED_MODELS]) or "nothing"
    if len(names) > _LISTED_MODELS:
        listed += ", ..."
    return _BadAnswer(f"model {model} not listed by {MODELS_PATH} (serves: {listed})")


def _is_completion(doc: Any) -> bool:
    choices = doc.get("choices") if isinstance(doc, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return False
    first = choices[0]
    message = first.get("message")
    has_content = isinstance(message, dict) and isinstance(message.get("content"), str)
    return has_content or isinstance(first.get("finish_reason"), str)


# -- one small function per probe type --------------------------------------------------------


async def _probe_http(ctx: _Context) -> str:
    path = ctx.target.probe.path
    reply = await _request(ctx, "GET", path)
    _require_success(ctx, reply, path, redirect_ok=True)
    return f"HTTP {reply.status} from {path}"


async def _probe_openai_models(ctx: _Context) -> str:
    reply = await _request(ctx, "GET", MODELS_PATH)
    _require_success(ctx, reply, MODELS_PATH, redirect_ok=False)
    served = _served_ids(ctx, _json_body(reply, MODELS_PATH))
    if ctx.target.model not in served:
        raise _missing_model(ctx.target.model, served)
    return f"model {ctx.target.model} listed by {MODELS_PATH}"


async def _probe_openai_chat(ctx: _Context) -> str:
    payload = {"model": ctx.target.model, **CHAT_PROMPT}
    reply = await _request(ctx, "POST", CHAT_PATH, payload)
    _require_success(ctx, reply, CHAT_PATH, redirect_ok=False)
    doc = _json_body(reply, CHAT_PATH)
    if not _is_completion(doc):
        raise _shape_error(ctx, doc, CHAT_PATH)
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


# -- no answer at all ------------------------------------------------------------------------


def _os_reason(err: OSError | None) -> str:
    # os.strerror(errno) rather than str(err): asyncio's text embeds the address tuple and
    # aiohttp's repr may carry details that change between attempts.
    if err is None:
        return "unknown error"
    if err.errno is not None and err.errno > 0 and not isinstance(err, socket.gaierror):
        return os.strerror(err.errno)
    return err.strerror or str(err)[:_DETAIL_CHARS] or type(err).__name__


def _cert_reason(exc: aiohttp.ClientConnectorCertificateError) -> str:
    reason = getattr(exc.certificate_error, "verify_message", None)
    return reason if isinstance(reason, str) else type(exc.certificate_error).__name__


# Most specific first; the first matching class describes the failure.
_ERROR_MESSAGES: Final[tuple[tuple[type[Exception], Callable[[Any], str]], ...]] = (
    (aiohttp.InvalidURL, lambda e: "invalid URL"),  # never echo it: it may carry userinfo
    (
        aiohttp.ClientConnectorCertificateError,
        lambda e: f"TLS certificate verification failed: {_cert_reason(e)}",
    ),
    (aiohttp.ClientSSLError, lambda e: f"TLS handshake failed: {_os_reason(e.os_error)}"),
    (aiohttp.ClientConnectorDNSError, lambda e: f"DNS lookup failed: {_os_reason(e.os_error)}"),
    (aiohttp.ClientConnectorError, lambda e: f"connection failed: {_os_reason(e.os_error)}"),
    (aiohttp.ServerDisconnectedError, lambda e: "connection failed: server disconnected"),
    (aiohttp.ClientPayloadError, lambda e: "incomplete response body"),
    (socket.gaierror, lambda e: f"DNS lookup failed: {_os_reason(e)}"),
    (OSError, lambda e: f"connection failed: {_os_reason(e)}"),
    (aiohttp.ClientError, lambda e: f"request failed: {type(e).__name__}"),
)


def _error_message(exc: Exception) -> str:
    for cls, describe in _ERROR_MESSAGES:
        if isinstance(exc, cls):
            return describe(exc)
    return f"probe failed: {type(exc).__name__}"
