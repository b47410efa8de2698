"""The API dialects a fake backend can speak (one module each), and how to pick one."""

from __future__ import annotations

from collections.abc import Collection

from tests.fakes.dialects.anthropic import AnthropicDialect
from tests.fakes.dialects.azure import AzureOpenAIDialect
from tests.fakes.dialects.base import BaseDialect, Dialect, ModelSource
from tests.fakes.dialects.openai import OpenAIDialect

__all__ = [
    "AnthropicDialect",
    "AzureOpenAIDialect",
    "BaseDialect",
    "Dialect",
    "ModelSource",
    "OpenAIDialect",
    "dialect_class",
    "make_dialect",
]

_CLASSES: dict[Dialect, type[BaseDialect]] = {
    Dialect.OPENAI: OpenAIDialect,
    Dialect.AZURE_OPENAI: AzureOpenAIDialect,
    Dialect.ANTHROPIC: AnthropicDialect,
}


def dialect_class(dialect: Dialect | str) -> type[BaseDialect]:
    """The class speaking ``dialect`` (a :class:`Dialect` or its name, any case)."""
    return _CLASSES[Dialect(dialect)]


def make_dialect(
    dialect: Dialect | str,
    source: ModelSource,
    *,
    api_key: str | None = None,
    versions: Collection[str] | None = None,
    reasoning_models: Collection[str] | None = None,
) -> BaseDialect:
    """Build the dialect for a backend; options a dialect has no use for are an error."""
    cls = dialect_class(dialect)
    if issubclass(cls, OpenAIDialect):
        return cls(source, api_key=api_key, versions=versions, reasoning_models=reasoning_models)
    if reasoning_models is not None:
        raise ValueError(f"reasoning_models is an OpenAI/AzureOpenAI option, not {cls.dialect}")
    return cls(source, api_key=api_key, versions=versions)
