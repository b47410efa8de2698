"""The OpenAI dialect: ``GET /v1/models``, ``POST /v1/chat/completions``, Bearer keys.

Wire format, as documented or observed (see also the summary in
:mod:`tests.fakes.openai_backend`):

- Models list ``{"object": "list", "data": [{"id", "object": "model", "created",
  "owned_by"}]}`` and chat completion ``{"id": "chatcmpl-...", "object": "chat.completion",
  "created", "model", "choices": [{"index", "message", "finish_reason"}], "usage"}``:
  https://platform.openai.com/docs/api-reference/models/list and
  https://platform.openai.com/docs/api-reference/chat/create.
- Errors ``{"error": {"message", "type", "param", "code"}}``, e.g. 404 ``model_not_found``,
  401 ``invalid_api_key``, 429 ``rate_limit_exceeded`` with ``Retry-After``.  An unknown path
  is a 404 ``Invalid URL (METHOD /path)``.
- Reasoning models (o1, o3, o4, gpt-5 families) take ``max_completion_tokens`` and reject
  ``max_tokens`` ("o1 series only supports max_completion_tokens", OpenAI staff:
  https://community.openai.com/t/why-was-max-tokens-changed-to-max-completion-tokens/938077/4;
  the message "Unsupported parameter: 'max_tokens' is not supported with this model. Use
  'max_completion_tokens' instead.": https://blogs.chatoverflow.dev/u/ansht/gpt-5x-renamed-maxtokens-to-maxcompletiontokens).
  They accept only the default ``temperature`` (1): the per-model parameter table and the
  ``unsupported_value`` error shape ``{"message": "Unsupported value: '<param>' does not
  support ... with this model.", "type": "invalid_request_error", "param", "code":
  "unsupported_value"}`` are in
  https://community.openai.com/t/developer-role-not-accepted-for-o1-o1-mini-o3-mini/1110750
  and https://platform.openai.com/docs/guides/reasoning.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Collection
from typing import Any, ClassVar

from aiohttp import web

from tests.fakes.dialects.base import BaseDialect, Dialect, ModelSource, count_words, json_object

__all__ = ["REASONING_PREFIXES", "OpenAIDialect", "openai_error"]

#: Model ids starting with one of these are reasoning models unless told otherwise.
REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")


def openai_error(
    status: int,
    message: str,
    type_: str | None,
    code: str | None,
    *,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _invalid(message: str, *, param: str | None = None, code: str | None = None) -> web.Response:
    return openai_error(400, message, "invalid_request_error", code, param=param)


class OpenAIDialect(BaseDialect):
    """OpenAI's API, as the operator's ``OpenAIModels`` and ``OpenAIChat`` probes use it."""

    dialect: ClassVar[Dialect] = Dialect.OPENAI
    api_prefix: ClassVar[str] = "/v1/"
    default_models: ClassVar[tuple[str, ...]] = ("gpt-4o",)

    def __init__(
        self,
        source: ModelSource,
        *,
        api_key: str | None = None,
        versions: Collection[str] | None = None,
        reasoning_models: Collection[str] | None = None,
    ) -> None:
        """:param reasoning_models: ids that get the reasoning-model rules; ``None`` means
        every id starting with one of :data:`REASONING_PREFIXES`.
        """
        super().__init__(source, api_key=api_key, versions=versions)
        if isinstance(reasoning_models, str):
            reasoning_models = (reasoning_models,)
        self.reasoning_models = None if reasoning_models is None else frozenset(reasoning_models)

    def is_reasoning_model(self, model: str) -> bool:
        """True if ``model`` takes ``max_completion_tokens`` and only the default temperature."""
        if self.reasoning_models is not None:
            return model in self.reasoning_models
        return model.startswith(REASONING_PREFIXES)

    # -- requests ------------------------------------------------------------------------

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/models", self.handle_models)
        router.add_post("/v1/chat/completions", self.handle_chat)

    def admit(self, request: web.Request) -> web.Response | None:
        if self.api_key is None:
            return None
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            # Never echo the received key: the message ends up in operator logs/events.
            return openai_error(
                401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key"
            )
        return None

    async def handle_models(self, request: web.Request) -> web.Response:
        created = int(time.time())
        data = [
            {"id": model, "object": "model", "created": created, "owned_by": self.source.name}
            for model in self.source.served_models()
        ]
        return web.json_response({"object": "list", "data": data})

    async def handle_chat(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        if isinstance(body, str):
            return _invalid(body)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _invalid("you must provide a model parameter", param="model")
        rejected = self.check_messages(body)
        if rejected is not None:
            return rejected
        if model not in self.source.served_models():
            return openai_error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
                param="model",
            )
        return self.check_parameters(model, body) or self.completion(model, body["messages"])

    def check_messages(self, body: dict[str, Any]) -> web.Response | None:
        """A 400 unless ``messages`` is a non-empty array."""
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _invalid("'messages' must be a non-empty array", param="messages")
        return None

    def check_parameters(self, model: str, body: dict[str, Any]) -> web.Response | None:
        """A 400 for the sampling parameters ``model`` does not support, as OpenAI words it."""
        if not self.is_reasoning_model(model):
            return None
        if body.get("max_tokens") is not None:
            return _invalid(
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.",
                param="max_tokens",
                code="unsupported_parameter",
            )
        temperature = body.get("temperature")
        if temperature is not None and temperature != 1:
            return _invalid(
                f"Unsupported value: 'temperature' does not support {json.dumps(temperature)} "
                "with this model. Only the default (1) value is supported.",
                param="temperature",
                code="unsupported_value",
            )
        return None

    def completion(self, model: str, messages: list[Any]) -> web.Response:
        """A successful chat completion answering "pong"."""
        prompt_tokens = count_words(messages)
        return web.json_response(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "pong"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": 1,
                    "total_tokens": prompt_tokens + 1,
                },
            }
        )

    # -- faults --------------------------------------------------------------------------

    def outage(self, request: web.Request, message: str | None = None) -> web.Response:
        return openai_error(
            503,
            message or "The server is temporarily unavailable (injected outage)",
            "server_error",
            None if message else "service_unavailable",
        )

    def server_error(self, request: web.Request) -> web.Response:
        return openai_error(
            500, "The server had an error while processing your request", "server_error", None
        )

    def rate_limited(self, request: web.Request, retry_after: int) -> web.Response:
        return openai_error(
            429,
            "Rate limit reached for requests",
            "requests",
            "rate_limit_exceeded",
            headers={"Retry-After": str(retry_after)},
        )

    def unknown_route(self, request: web.Request) -> web.Response:
        return openai_error(
            404, f"Invalid URL ({request.method} {request.path})", "invalid_request_error", None
        )
