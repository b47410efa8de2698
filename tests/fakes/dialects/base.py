"""What every dialect of the fake backend provides, and helpers they share.

A dialect is the API a vendor speaks: its paths, its authentication and version headers, its
request and response shapes, and the shape of its errors.  :class:`FakeBackend` owns the
server, the faults and the counters; it asks its dialect for the routes, for the verdict on
a request's credentials (:meth:`BaseDialect.admit`), and for the answer to each fault.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Collection
from typing import Any, ClassVar, Protocol

from aiohttp import web

__all__ = ["BaseDialect", "Dialect", "ModelSource", "count_words", "json_object"]


class Dialect(enum.StrEnum):
    """The API dialects the fakes speak: the values of a ModelRoute's ``backends[].provider``."""

    OPENAI = "OpenAI"
    AZURE_OPENAI = "AzureOpenAI"
    ANTHROPIC = "Anthropic"

    @classmethod
    def _missing_(cls, value: object) -> Dialect | None:
        # The CLI and hand-written tests may say "anthropic" or "azureopenai".
        if isinstance(value, str):
            for member in cls:
                if member.value.lower() == value.lower():
                    return member
        return None


class ModelSource(Protocol):
    """The part of the backend a dialect reads: its name and the models it serves now."""

    name: str

    def served_models(self) -> tuple[str, ...]:
        """Model ids listed right now (WRONG_MODELS swaps them for an unrelated one)."""
        ...


class BaseDialect(abc.ABC):
    """Routes, authentication and error shapes of one vendor API.

    Subclasses set the class attributes and implement the abstract methods.  Error answers
    must never echo a credential: they end up in operator logs and events.
    """

    #: The dialect this class speaks.
    dialect: ClassVar[Dialect]
    #: Requests under this path prefix are API calls: :meth:`admit` vets them, and an
    #: unknown path under it is answered by :meth:`unknown_route` in the dialect's shape.
    api_prefix: ClassVar[str]
    #: Models served when the backend is given none.
    default_models: ClassVar[tuple[str, ...]]
    #: Accepted values of the version header or query parameter (empty: no versioning).
    default_versions: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        source: ModelSource,
        *,
        api_key: str | None = None,
        versions: Collection[str] | None = None,
    ) -> None:
        """:param versions: accepted version values; ``None`` means :attr:`default_versions`."""
        if versions is not None and not self.default_versions:
            raise ValueError(f"the {self.dialect} dialect has no API versions to restrict")
        if isinstance(versions, str):
            versions = (versions,)
        self.source = source
        self.api_key = api_key
        self.versions: frozenset[str] = frozenset(
            self.default_versions if versions is None else versions
        )

    @abc.abstractmethod
    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Register the API's handlers (``/healthz``, ``/`` and control are the backend's)."""

    @abc.abstractmethod
    def admit(self, request: web.Request) -> web.Response | None:
        """Vet an API request's credentials and version; ``None`` lets it through."""

    @abc.abstractmethod
    def outage(self, request: web.Request, message: str | None = None) -> web.Response:
        """Answer for Fault.OUTAGE (and for requests cut short by a stopping backend)."""

    @abc.abstractmethod
    def server_error(self, request: web.Request) -> web.Response:
        """Answer for Fault.SERVER_ERROR: a 500."""

    @abc.abstractmethod
    def rate_limited(self, request: web.Request, retry_after: int) -> web.Response:
        """Answer for Fault.RATE_LIMITED: a 429 that says when to retry."""

    @abc.abstractmethod
    def unknown_route(self, request: web.Request) -> web.Response:
        """Answer for a path (or method) under :attr:`api_prefix` that the API lacks."""

    def is_api_path(self, path: str) -> bool:
        """True for paths that belong to the vendor API (not ``/healthz``, ``/``, control)."""
        return path.startswith(self.api_prefix)


async def json_object(request: web.Request) -> dict[str, Any] | str:
    """The request body as a JSON object, or a sentence saying what is wrong with it."""
    try:
        body = await request.json()
    except ValueError:
        return "We could not parse the JSON body of your request"
    if not isinstance(body, dict):
        return "The request body must be a JSON object"
    return body


def count_words(messages: list[Any]) -> int:
    """A deterministic stand-in for a prompt's token count (at least 1).

    Counts whitespace-separated words of string contents and of text content blocks, so
    tests can check that usage is present and consistent without a tokenizer.
    """
    words = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            words += len(content.split())
        elif isinstance(content, list):
            for block in content:
                text = block.get("text") if isinstance(block, dict) else None
                if isinstance(text, str):
                    words += len(text.split())
    return max(words, 1)
