"""The Anthropic dialect: ``GET /v1/models``, ``POST /v1/messages``, ``x-api-key`` and versions.

Wire format, as documented or observed:

- ``GET /v1/models`` answers ``{"data": [{"type": "model", "id", "display_name", "created_at"
  (RFC 3339)}], "has_more", "first_id", "last_id"}``, pages with ``limit`` (default 20,
  1..1000), ``after_id`` and ``before_id``; ``GET /v1/models/{model_id}`` answers one
  ModelInfo: https://platform.claude.com/docs/en/api/models and
  https://docs.anthropic.com/en/api/models-list.  An alias (``claude-sonnet-4-5``) is not
  listed but resolves, in ``/v1/models/{id}`` and in messages, to the latest dated id served
  (``claude-sonnet-4-5-20250929``): https://docs.anthropic.com/en/docs/about-claude/models.
- ``POST /v1/messages`` with ``{model, max_tokens, messages}`` (all three required) answers a
  Message ``{"id": "msg_...", "type": "message", "role": "assistant", "model", "content":
  [{"type": "text", "text"}], "stop_reason", "stop_sequence", "usage": {"input_tokens",
  "output_tokens"}}``: https://docs.anthropic.com/en/api/messages (a live answer quoted in
  https://github.com/ItzCrazyKns/Vane/issues/303).
- Every request needs a key and an ``anthropic-version``: ``2026-10-21`` (the latest, sent by
  SDK majors from Python 2.0.0 on), ``2023-06-01`` or the initial ``2023-01-01``
  (https://platform.claude.com/docs/en/api/versioning).  The key goes in ``x-api-key``, or
  in ``Authorization: Bearer`` as the 2.x SDKs send it; with both, ``x-api-key`` wins
  (https://platform.claude.com/docs/en/api/overview,
  https://codersera.com/blog/anthropic-api-2026-10-21-sdk-migration-guide-2026/,
  https://qiita.com/Synthorai/items/01a0067e88747257a4e6).  Without the version: 400
  ``anthropic-version: header is required`` (https://github.com/envoyproxy/ai-gateway/pull/1909);
  with an unknown one: 400 ``anthropic-version: "X" is not a valid version``
  (https://github.com/decolua/9router/issues/2357); a wrong key: 401 ``invalid x-api-key``
  (https://github.com/eyaltoledano/claude-task-master/issues/222; the wording for a wrong
  Bearer key is this fake's own).
- From ``2026-10-21`` on, ``temperature``, ``top_p`` and ``top_k`` are rejected even at their
  defaults: 400 ``temperature: Extra inputs are not permitted``
  (https://platform.claude.com/docs/en/api/migration-2026-10-21 and the qiita test above).
- Errors are ``{"type": "error", "error": {"type", "message"}, "request_id"}`` with 400
  ``invalid_request_error``, 401 ``authentication_error``, 403 ``permission_error``, 404
  ``not_found_error``, 413 ``request_too_large``, 429 ``rate_limit_error`` (with
  ``retry-after``), 500 ``api_error``, 529 ``overloaded_error``:
  https://docs.anthropic.com/en/api/errors (mirrored at
  https://documentation.datalab.to/platform/errors) and
  https://learn.microsoft.com/en-us/microsoft-cloud/dev/dev-proxy/concepts/anthropic-529-overloaded-error.
  Anthropic has no documented 503, so Fault.OUTAGE is its 529 ``overloaded_error``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, ClassVar

from aiohttp import web

from tests.fakes.dialects.base import BaseDialect, Dialect, count_words, json_object

__all__ = ["AnthropicDialect", "anthropic_error", "display_name"]

# A fixed release date: the fake's models have no history, and tests want stable answers.
_CREATED_AT = "2025-01-01T00:00:00Z"
_ROLES = ("user", "assistant")
# Sampling parameters, and the first API version that rejects them (dates compare as text).
_SAMPLING = ("temperature", "top_p", "top_k")
_NO_SAMPLING_FROM = "2026-10-21"


def anthropic_error(
    status: int, type_: str, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    """An error in Anthropic's shape, with a request id like the real ones carry."""
    request_id = f"req_{uuid.uuid4().hex[:24]}"
    body = {"type": "error", "error": {"type": type_, "message": message}, "request_id": request_id}
    return web.json_response(
        body, status=status, headers={"request-id": request_id, **(headers or {})}
    )


def _invalid(message: str) -> web.Response:
    return anthropic_error(400, "invalid_request_error", message)


def display_name(model: str) -> str:
    """A human-readable name: ``claude-sonnet-4-5-20250929`` -> ``Claude Sonnet 4.5``."""
    words = [w for w in model.split("-") if not re.fullmatch(r"\d{8}", w)]  # drop the date
    out: list[str] = []
    for word in words:
        if word.isdigit() and out and out[-1][-1:].isdigit():
            out[-1] += f".{word}"  # "4", "5" -> "4.5"
        else:
            out.append(word.capitalize())
    return " ".join(out) or model


class AnthropicDialect(BaseDialect):
    """Anthropic's Messages and Models APIs.  ``versions`` restricts ``anthropic-version``."""

    dialect: ClassVar[Dialect] = Dialect.ANTHROPIC
    api_prefix: ClassVar[str] = "/v1/"
    default_models: ClassVar[tuple[str, ...]] = ("claude-sonnet-4-5",)
    default_versions: ClassVar[tuple[str, ...]] = ("2026-10-21", "2023-06-01", "2023-01-01")

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/models", self.handle_models)
        router.add_get("/v1/models/{model_id}", self.handle_model)
        router.add_post("/v1/messages", self.handle_messages)

    def admit(self, request: web.Request) -> web.Response | None:
        if self.api_key is not None:
            # Never echo the received key: the message ends up in operator logs/events.
            key = request.headers.get("x-api-key")
            authorization = request.headers.get("Authorization", "")
            if key is not None:
                if key != self.api_key:
                    return anthropic_error(401, "authentication_error", "invalid x-api-key")
            elif not authorization:
                return anthropic_error(401, "authentication_error", "x-api-key header is required")
            elif authorization != f"Bearer {self.api_key}":
                return anthropic_error(
                    401, "authentication_error", "invalid authentication credentials"
                )
        version = request.headers.get("anthropic-version")
        if not version:
            return _invalid("anthropic-version: header is required")
        if version not in self.versions:
            return _invalid(f'anthropic-version: "{version}" is not a valid version')
        return None

    # -- models --------------------------------------------------------------------------

    def _model_info(self, model: str) -> dict[str, Any]:
        return {
            "type": "model",
            "id": model,
            "display_name": display_name(model),
            "created_at": _CREATED_AT,
        }

    async def handle_models(self, request: web.Request) -> web.Response:
        models = list(self.source.served_models())
        raw_limit = request.query.get("limit", "20")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
            return _invalid("limit: Input should be greater than or equal to 1 and at most 1000")
        limit = int(raw_limit)
        before, after = request.query.get("before_id"), request.query.get("after_id")
        if before is not None:
            end = models.index(before) if before in models else 0  # unknown: nothing before
            page = models[max(end - limit, 0) : end]
            has_more = end - limit > 0
        else:
            if after is None:
                start = 0
            else:  # an unknown cursor ends the listing
                start = models.index(after) + 1 if after in models else len(models)
            page = models[start : start + limit]
            has_more = start + limit < len(models)
        return web.json_response(
            {
                "data": [self._model_info(m) for m in page],
                "has_more": has_more,
                "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None,
            }
        )

    def resolve(self, model: str) -> str | None:
        """The served id ``model`` names: itself, or the dated id it is an alias of."""
        served = self.source.served_models()
        if model in served:
            return model
        dated = [m for m in served if re.fullmatch(re.escape(model) + r"-\d{8}", m)]
        return max(dated) if dated else None  # an alias names the latest snapshot

    async def handle_model(self, request: web.Request) -> web.Response:
        model = request.match_info["model_id"]
        resolved = self.resolve(model)
        if resolved is None:
            return anthropic_error(404, "not_found_error", f"model: {model}")
        return web.json_response(self._model_info(resolved))

    # -- messages ------------------------------------------------------------------------

    async def handle_messages(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        if isinstance(body, str):
            return _invalid(body)
        for field in ("model", "max_tokens", "messages"):
            if field not in body:
                return _invalid(f"{field}: Field required")
        model, max_tokens, messages = body["model"], body["max_tokens"], body["messages"]
        if not isinstance(model, str) or not model:
            return _invalid("model: Input should be a valid string")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            return _invalid("max_tokens: Input should be a valid integer")
        if max_tokens < 1:
            return _invalid("max_tokens: Input should be greater than or equal to 1")
        if not isinstance(messages, list):
            return _invalid("messages: Input should be a valid list")
        if not messages:
            return _invalid("messages: at least one message is required")
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in _ROLES:
                return _invalid(f"messages.{index}.role: Input should be 'user' or 'assistant'")
        if request.headers.get("anthropic-version", "") >= _NO_SAMPLING_FROM:
            for param in _SAMPLING:
                if param in body:
                    return _invalid(f"{param}: Extra inputs are not permitted")
        resolved = self.resolve(model)
        if resolved is None:
            return anthropic_error(404, "not_found_error", f"model: {model}")
        return web.json_response(
            {
                "id": f"msg_{uuid.uuid4().hex[:24]}",
                "type": "message",
                "role": "assistant",
                "model": resolved,
                "content": [{"type": "text", "text": "pong"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": count_words(messages),
                    "output_tokens": 1,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                },
            }
        )

    # -- faults --------------------------------------------------------------------------

    def outage(self, request: web.Request, message: str | None = None) -> web.Response:
        return anthropic_error(529, "overloaded_error", message or "Overloaded")

    def server_error(self, request: web.Request) -> web.Response:
        return anthropic_error(500, "api_error", "Internal server error")

    def rate_limited(self, request: web.Request, retry_after: int) -> web.Response:
        return anthropic_error(
            429,
            "rate_limit_error",
            "This request would exceed the rate limit for your organization. Please retry "
            "after the time given in the retry-after header.",
            headers={"retry-after": str(retry_after)},
        )

    def unknown_route(self, request: web.Request) -> web.Response:
        return anthropic_error(404, "not_found_error", "Not Found")
