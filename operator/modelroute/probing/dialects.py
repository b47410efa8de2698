"""The API dialects probes speak, one per ``backends[].provider``: paths, headers, bodies, answers.

A :class:`Dialect` says which request a ``Models`` or ``Chat`` probe sends (a :class:`Call`),
which headers besides the auth header go with it, and how to read the answer.  The prober does
the I/O, the status checks and the failure wording (:mod:`modelroute.probing.answers`); the
auth header's name and prefix default by provider in ``api.models.AUTH_DEFAULTS``.

Wire formats relied on (public documentation, as read for this module):

- OpenAI: ``GET /v1/models`` lists ``{"data": [{"id": ...}]}``; ``POST /v1/chat/completions``.
  ``max_tokens`` "is now deprecated in favor of max_completion_tokens, and is not compatible with
  o1 series models" (platform.openai.com/docs/api-reference/chat/create, quoted in
  simonw/llm#724); reasoning models answer it with 400 ``{"error": {"code":
  "unsupported_parameter", "param": "max_tokens"}}`` and refuse a non-default ``temperature``
  (BerriAI/litellm#26987, sierra-research/tau2-bench#358).  So the probe sends
  ``max_completion_tokens: 1`` and no ``temperature``.  Not every OpenAI-compatible server takes
  that field: pydantic servers with ``extra="forbid"`` answer 400 ``extra_forbidden`` "Extra
  inputs are not permitted" (voideditor/void#128), older Azure api-versions "Unrecognized
  request argument".  A probe refused for the field it sent retries once with ``max_tokens``,
  and the probe loop remembers the field that was taken (see :class:`TokenLimit`).  Servers
  that silently ignore it (llama.cpp: ggml-org/llama.cpp#13700) answer at more length, within
  the probe's timeout.  A reasoning model may spend its one token thinking and answer 400
  "Could not finish the message because max_tokens or model output limit was reached"
  (BerriAI/litellm#26987): that proves the model ran, so it counts as an answer.
- Azure OpenAI (learn.microsoft.com/en-us/rest/api/azureopenai): every request carries
  ``?api-version=`` (default ``2024-10-21``, the GA data-plane inference version) and the key in
  ``api-key``.  Chat: ``POST {endpoint}/openai/deployments/{deployment}/chat/completions``, the
  backend's ``model`` being the deployment name; reasoning deployments take
  ``max_completion_tokens`` and no ``temperature`` (learn.microsoft.com/azure/foundry/openai/
  how-to/chatgpt).  Models: ``GET {endpoint}/openai/models`` lists the *models* the resource may
  use (base and fine-tuned; .../rest/api/azureopenai/models/list), not its deployments; the
  data-plane deployment listing was retired after ``2023-03-15-preview``, deployments being
  listed by the ARM control plane only (learn.microsoft.com/en-us/answers/questions/1371786),
  which an ``api-key`` cannot reach.  So an Azure ``Models`` probe proves the endpoint and the
  key, and says that only a ``Chat`` probe proves the deployment.
- Anthropic (docs.anthropic.com/en/api): ``x-api-key`` and ``anthropic-version`` (default
  ``2023-06-01``) on every request.  ``POST /v1/messages`` with ``model``, ``messages`` and the
  required ``max_tokens`` (1 here) answers ``{"type": "message", "content": [...],
  "stop_reason": ...}``.  ``GET /v1/models`` pages ``{"data": [{"id", "type": "model",
  "display_name", "created_at"}], "has_more", "first_id", "last_id"}`` and lists model ids, not
  the aliases routes often name (the contract's ``claude-sonnet-4-5``);
  ``GET /v1/models/{model_id}`` takes an id *or alias* and answers that model (or 404
  ``not_found_error``), so the ``Models`` probe asks for the one model.  Errors are
  ``{"type": "error", "error": {"type", "message"}}`` with 401/403/404/429/500 and 529
  ``overloaded_error`` (docs.anthropic.com/en/api/errors).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import quote

from modelroute.api.models import Provider
from modelroute.probing.answers import missing_model, served_ids, shape_error

__all__ = [
    "ANTHROPIC_VERSION",
    "AZURE_API_VERSION",
    "Call",
    "Dialect",
    "TokenLimit",
    "dialect_for",
]

AZURE_API_VERSION: Final = "2024-10-21"
ANTHROPIC_VERSION: Final = "2023-06-01"
#: The cheapest prompt that still proves the model answers.
PROMPT: Final = ({"role": "user", "content": "ping"},)


class TokenLimit(enum.StrEnum):
    """The body field that caps an OpenAI-style chat probe at one token."""

    #: What OpenAI reasoning models (o-series, GPT-5) and current servers take: the default.
    MAX_COMPLETION_TOKENS = "max_completion_tokens"
    #: The older field, for servers that refuse the newer one.
    MAX_TOKENS = "max_tokens"


@dataclass(frozen=True)
class Call:
    """One HTTP request of a probe."""

    method: str
    #: Path and query after the backend's base URL; also how messages name the request.
    path: str
    payload: Mapping[str, Any] | None = None


class Dialect(Protocol):
    """How probes talk to one provider's API."""

    @property
    def token_limits(self) -> tuple[TokenLimit, ...]:
        """Fields a chat probe may cap its answer with, the default first; empty: fixed body."""
        ...

    def headers(self) -> Mapping[str, str]:
        """Headers every request carries besides the auth header (e.g. a version)."""
        ...

    def models_call(self, model: str) -> Call:
        """The request of a ``Models`` probe for ``model``."""
        ...

    def read_models(self, doc: Any, model: str, path: str, secrets: tuple[str, ...]) -> str:
        """The success message for a ``Models`` answer ``doc``; :class:`BadAnswer` if not."""
        ...

    def chat_call(self, model: str, limit: TokenLimit | None) -> Call:
        """The request of a one-token ``Chat`` probe of ``model``, capped with ``limit``."""
        ...

    def is_completion(self, doc: Any) -> bool:
        """Whether ``doc`` is a well-formed answer to :meth:`chat_call`."""
        ...


def _chat_body(limit: TokenLimit | None) -> dict[str, Any]:
    # No temperature: reasoning models reject any but the default, and one token needs none.
    return {"messages": list(PROMPT), (limit or TokenLimit.MAX_COMPLETION_TOKENS).value: 1}


def _is_chat_completion(doc: Any) -> bool:
    """A first choice with content, or one that ended (a reasoning model may say nothing)."""
    choices = doc.get("choices") if isinstance(doc, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return False
    first = choices[0]
    message = first.get("message")
    has_content = isinstance(message, dict) and isinstance(message.get("content"), str)
    return has_content or isinstance(first.get("finish_reason"), str)


class OpenAIDialect:
    """OpenAI and OpenAI-compatible servers (vLLM, gateways): ``/v1/models``, chat completions."""

    token_limits: tuple[TokenLimit, ...] = (TokenLimit.MAX_COMPLETION_TOKENS, TokenLimit.MAX_TOKENS)

    def headers(self) -> Mapping[str, str]:
        """None besides auth."""
        return {}

    def models_call(self, model: str) -> Call:
        """``GET /v1/models``."""
        return Call("GET", "/v1/models")

    def read_models(self, doc: Any, model: str, path: str, secrets: tuple[str, ...]) -> str:
        """Healthy when ``model`` is among the listed ids."""
        served = served_ids(doc, path, secrets)
        if model not in served:
            raise missing_model(model, served, path)
        return f"model {model} listed by {path}"

    def chat_call(self, model: str, limit: TokenLimit | None) -> Call:
        """``POST /v1/chat/completions`` naming the model in the body."""
        return Call("POST", "/v1/chat/completions", {"model": model, **_chat_body(limit)})

    def is_completion(self, doc: Any) -> bool:
        """A chat completion."""
        return _is_chat_completion(doc)


@dataclass(frozen=True)
class AzureOpenAIDialect:
    """Azure OpenAI: deployment paths, ``api-version`` on every request."""

    api_version: str = AZURE_API_VERSION
    token_limits: tuple[TokenLimit, ...] = (
        TokenLimit.MAX_COMPLETION_TOKENS,
        TokenLimit.MAX_TOKENS,
    )

    @property
    def _query(self) -> str:
        return f"?api-version={quote(self.api_version, safe='')}"

    def headers(self) -> Mapping[str, str]:
        """None besides auth (``api-key``)."""
        return {}

    def models_call(self, model: str) -> Call:
        """``GET /openai/models``: what the resource may deploy, not its deployments."""
        return Call("GET", "/openai/models" + self._query)

    def read_models(self, doc: Any, model: str, path: str, secrets: tuple[str, ...]) -> str:
        """Healthy when the listing is well-formed: the endpoint and the key work."""
        served_ids(doc, path, secrets)  # the shape check; deployment names are not listed
        return f"{path} answered; only a Chat probe checks deployment {model}"

    def chat_call(self, model: str, limit: TokenLimit | None) -> Call:
        """``POST /openai/deployments/{model}/chat/completions``; the path names the model."""
        path = f"/openai/deployments/{quote(model, safe='')}/chat/completions{self._query}"
        return Call("POST", path, _chat_body(limit))

    def is_completion(self, doc: Any) -> bool:
        """A chat completion."""
        return _is_chat_completion(doc)


@dataclass(frozen=True)
class AnthropicDialect:
    """Anthropic: ``anthropic-version``, ``/v1/models/{id}``, ``/v1/messages``."""

    version: str = ANTHROPIC_VERSION
    token_limits: tuple[TokenLimit, ...] = ()

    def headers(self) -> Mapping[str, str]:
        """``anthropic-version``."""
        return {"anthropic-version": self.version}

    def models_call(self, model: str) -> Call:
        """``GET /v1/models/{model}``, which resolves an alias (unlike the paged listing)."""
        return Call("GET", f"/v1/models/{quote(model, safe='')}")

    def read_models(self, doc: Any, model: str, path: str, secrets: tuple[str, ...]) -> str:
        """Healthy on a model object; names the id an alias resolved to."""
        found = doc.get("id") if isinstance(doc, dict) else None
        if not isinstance(found, str) or doc.get("type") != "model":
            raise shape_error(doc, path, secrets)
        if found == model:
            return f"model {model} listed by {path}"
        return f"model {model} listed by {path} as {found[:64]}"

    def chat_call(self, model: str, limit: TokenLimit | None) -> Call:
        """``POST /v1/messages`` with the required ``max_tokens``, 1."""
        payload = {"model": model, "max_tokens": 1, "messages": list(PROMPT)}
        return Call("POST", "/v1/messages", payload)

    def is_completion(self, doc: Any) -> bool:
        """A message (its content may be empty when the one token was a stop)."""
        return (
            isinstance(doc, dict)
            and doc.get("type") == "message"
            and isinstance(doc.get("content"), list)
        )


def dialect_for(provider: Provider, version: str | None = None) -> Dialect:
    """The dialect of ``provider``; ``version`` is Azure's api-version or anthropic-version."""
    if provider is Provider.AZURE_OPENAI:
        return AzureOpenAIDialect(version or AZURE_API_VERSION)
    if provider is Provider.ANTHROPIC:
        return AnthropicDialect(version or ANTHROPIC_VERSION)
    return OpenAIDialect()
