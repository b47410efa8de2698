"""Judge what a backend answered over HTTP, and word and classify the failure when unhealthy.

:mod:`modelroute.probing.prober` sends the request and reads the body; this module only looks at
what came back (a :class:`Reply`): status codes, rate limits and ``Retry-After``, error bodies
(OpenAI's and Azure's ``{"error": {"message", "code"}}``, Anthropic's ``{"type": "error",
"error": {"type", "message"}}``, FastAPI's ``detail``), JSON and its shape, the served model ids,
and the two 400s a one-token chat probe must read as something else than a failure (a token
parameter the server does not take; a reasoning model that spent its one token thinking).  It
does no I/O, so the rules that make a message stable and secret-free live in one place.

A failed check raises (or returns, for the caller to raise) :class:`BadAnswer`, whose message
follows the prober's rules: the same for repeated identical failures (request ids and UUIDs are
masked, served ids are sorted) and never a secret (every backend-provided text is redacted with
the ``secrets`` the caller passes).  Its ``reason`` is the failure's class
(:class:`~modelroute.core.types.ProbeFailure`): 401/403 ``AuthFailed``, 404 ``ModelNotServed``
(for model-aware probes), 429 ``RateLimited``, 408 and 5xx ``Unavailable``, anything else that
is not the expected answer ``BadResponse``.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from modelroute.core.types import ProbeFailure

__all__ = [
    "DETAIL_CHARS",
    "BadAnswer",
    "Reply",
    "json_body",
    "missing_model",
    "output_limit_reached",
    "redact",
    "rejects_parameter",
    "require_success",
    "served_ids",
    "shape_error",
]

#: Longest backend-provided error text copied into a message.
DETAIL_CHARS: Final = 120
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


@dataclass(frozen=True)
class Reply:
    """One HTTP answer, as much of it as the checks here read."""

    status: int
    content_type: str
    body: bytes | None  # None: larger than the prober's body limit, not kept
    retry_after: str | None


class BadAnswer(Exception):
    """The backend answered, but not with a healthy answer."""

    def __init__(
        self, message: str, reason: ProbeFailure, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.retry_after_s = retry_after_s


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every one of ``secrets`` replaced; pass them longest first."""
    for secret in secrets:
        text = text.replace(secret, _REDACTED)
    return text


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _error_object(reply: Reply) -> tuple[Any, Any]:
    """(the decoded body, its ``error`` member) when the body is a JSON object."""
    try:
        doc = json.loads(reply.body) if reply.body else None
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(doc, dict):
        return None, None
    return doc, doc.get("error")


def _error_fields(reply: Reply) -> tuple[str | None, str | None]:
    """(message, code) of an OpenAI-, Azure- or Anthropic-style error body, if it is one."""
    doc, error = _error_object(reply)
    if doc is None:
        return None, None
    if isinstance(error, dict):
        return _str_or_none(error.get("message")), _str_or_none(error.get("code"))
    # Some OpenAI-compatible servers send a bare string; FastAPI-based ones use "detail".
    return _str_or_none(error) or _str_or_none(doc.get("detail")), None


def _detail(text: str | None, secrets: tuple[str, ...]) -> str | None:
    if not text:
        return None
    # Redact before truncating: a key cut in half would no longer match.
    text = " ".join(_VOLATILE.sub("<id>", redact(_valid(text), secrets)).split())
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 3] + "..."


def _valid(text: str) -> str:
    # JSON may escape a lone surrogate ("\\ud83d", half an emoji): not valid text, and an API
    # request carrying it would fail to encode; "?" stands in for it.
    return text.encode("utf-8", "replace").decode("utf-8")


def _with_detail(message: str, detail: str | None) -> str:
    return f"{message}: {detail}" if detail else message


def require_success(
    reply: Reply,
    path: str,
    *,
    redirect_ok: bool,
    secrets: tuple[str, ...],
    now: Callable[[], datetime],
    not_found: ProbeFailure = ProbeFailure.MODEL_NOT_SERVED,
) -> None:
    """Raise :class:`BadAnswer` unless ``reply`` has a success status (or a 3xx, if allowed).

    ``now`` is called only for a 429, to turn an HTTP-date ``Retry-After`` into seconds.
    ``not_found`` is the class of a 404: the model is not served, for a model-aware probe.
    """
    status = reply.status
    if 200 <= status < 300 or (redirect_ok and 300 <= status < 400):
        return
    if status == 429:
        raise _rate_limited(reply, secrets, now())
    if 300 <= status < 400:
        raise BadAnswer(
            f"HTTP {status} from {path}: redirect not followed (login page?)",
            ProbeFailure.BAD_RESPONSE,
        )
    if status in (401, 403):
        # The body is not quoted: vendors echo parts of a wrong key in it ("sk-ab...1234").
        raise BadAnswer(f"unauthorized ({status}): check authSecretRef", ProbeFailure.AUTH_FAILED)
    detail = _detail(_error_fields(reply)[0], secrets)
    reason = not_found if status == 404 else _status_class(status)
    raise BadAnswer(_with_detail(f"HTTP {status} from {path}", detail), reason)


def _status_class(status: int) -> ProbeFailure:
    if status == 408 or status >= 500:  # 529 is Anthropic's "overloaded"
        return ProbeFailure.UNAVAILABLE
    return ProbeFailure.BAD_RESPONSE


def _rate_limited(reply: Reply, secrets: tuple[str, ...], now: datetime) -> BadAnswer:
    retry_after_s = _parse_retry_after(reply.retry_after, now)
    # The Retry-After value is not in the message: it changes with every answer, and a changed
    # message is a status write (the probe loop honours it; the metrics show the failures).
    message = "rate limited (429)"
    if retry_after_s is not None:
        message += ", next probe after the Retry-After pause"
    # Plain rate-limit texts carry changing counters; an exhausted quota is stable and is
    # the one an admin must act on (billing), so only that one is quoted.
    text, code = _error_fields(reply)
    if code == "insufficient_quota":
        message = _with_detail(message, _detail(text, secrets))
    return BadAnswer(message, ProbeFailure.RATE_LIMITED, retry_after_s)


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


def json_body(reply: Reply, path: str) -> Any:
    """The decoded JSON body of ``reply``; :class:`BadAnswer` if it is missing, HTML or bad."""
    bad = ProbeFailure.BAD_RESPONSE
    if reply.body is None:
        raise BadAnswer(f"answer from {path} over the 1 MiB probe limit (not read)", bad)
    if reply.content_type == "text/event-stream" or reply.body.startswith(b"data:"):
        # The probe did not ask for a stream; a client that did not either cannot read this.
        raise BadAnswer(
            f"event stream (SSE) instead of JSON from {path}: the server streams unasked", bad
        )
    try:
        return json.loads(reply.body)
    except (ValueError, RecursionError):  # RecursionError: deeply nested arrays
        if reply.content_type == "text/html" or reply.body.lstrip()[:1] == b"<":
            raise BadAnswer(
                f"HTML page instead of JSON from {path} (captive portal or login page?)", bad
            ) from None
        raise BadAnswer(f"malformed JSON from {path}", bad) from None


def shape_error(doc: Any, path: str, secrets: tuple[str, ...]) -> BadAnswer:
    """The failure for a JSON ``doc`` from ``path`` that is not the expected document."""
    # Some gateways answer 200 with an error object; quote it rather than "bad shape".
    error = doc.get("error") if isinstance(doc, dict) else None
    text = _str_or_none(error.get("message")) if isinstance(error, dict) else _str_or_none(error)
    detail = _detail(text, secrets)
    message = f"error from {path}: {detail}" if detail else f"unexpected {path} shape"
    return BadAnswer(message, ProbeFailure.BAD_RESPONSE)


def served_ids(doc: Any, path: str, secrets: tuple[str, ...]) -> list[str]:
    """The model ids listed by a ``/v1/models`` document fetched from ``path``."""
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        raise shape_error(doc, path, secrets)
    return [i["id"] for i in data if isinstance(i, dict) and isinstance(i.get("id"), str)]


def missing_model(model: str, served: list[str], path: str) -> BadAnswer:
    """The failure for ``model`` not being among the ids ``served`` by ``path``."""
    # Sorted: the backend's order may change between answers, the message must not.
    names = sorted({_valid(s[:_MODEL_ID_CHARS]) for s in served})
    listed = ", ".join(names[:_LISTED_MODELS]) or "nothing"
    if len(names) > _LISTED_MODELS:
        listed += ", ..."
    return BadAnswer(
        f"model {model} not listed by {path} (serves: {listed})", ProbeFailure.MODEL_NOT_SERVED
    )


def rejects_parameter(reply: Reply, param: str) -> bool:
    """Whether ``reply`` is a 400 (or FastAPI's 422) refusing the request parameter ``param``.

    OpenAI names it: ``{"error": {"code": "unsupported_parameter", "param": "max_tokens"}}``
    (reasoning models).  Servers validating with pydantic say ``extra_forbidden`` / "Extra
    inputs are not permitted" next to the field name (older vLLM, FastAPI apps).
    """
    if reply.status not in (400, 422) or not reply.body:
        return False
    _doc, error = _error_object(reply)
    named = error.get("param") if isinstance(error, dict) else None
    if isinstance(named, str) and named:
        return named == param
    text = reply.body.decode("utf-8", "replace").lower()
    return param in text and any(marker in text for marker in _REFUSALS)


_REFUSALS: Final = (
    "unsupported",
    "not supported",
    "extra inputs are not permitted",
    "extra_forbidden",
    "unrecognized",  # Azure: "Unrecognized request argument supplied: ..."
    "unknown field",  # serde's deny_unknown_fields
)


def output_limit_reached(reply: Reply) -> bool:
    """Whether ``reply`` is the 400 of a reasoning model that spent its token budget thinking.

    "Could not finish the message because max_tokens or model output limit was reached"
    (BerriAI/litellm#26987): the model was found, ran and was stopped by our one-token limit,
    which is all a health probe asks of it.
    """
    if reply.status != 400:
        return False
    text, _code = _error_fields(reply)
    return text is not None and "output limit was reached" in text.lower()
