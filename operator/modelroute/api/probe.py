"""Probe settings of the ModelRoute API: how, how often and how strictly a backend is probed.

Kept apart from :mod:`modelroute.api.models` (which re-exports these names) so each module stays
small; the field names and semantics are those of ``shared/design/modelroute-api.md``.
"""

from __future__ import annotations

import enum
from typing import Annotated

from pydantic import Field

from modelroute.api.base import ApiModel


class ProbeType(enum.StrEnum):
    """How a backend's health is probed.

    ``Models`` and ``Chat`` speak the backend's ``provider`` dialect; ``OpenAIModels`` and
    ``OpenAIChat`` are their older names and mean exactly the same for every provider.
    """

    HTTP = "HTTP"
    OPENAI_MODELS = "OpenAIModels"
    OPENAI_CHAT = "OpenAIChat"
    TCP = "TCP"
    MODELS = "Models"
    CHAT = "Chat"

    @property
    def canonical(self) -> ProbeType:
        """The provider-neutral name of this type (``OpenAIModels`` is ``Models``)."""
        return _PROBE_ALIASES.get(self, self)


_PROBE_ALIASES = {ProbeType.OPENAI_MODELS: ProbeType.MODELS, ProbeType.OPENAI_CHAT: ProbeType.CHAT}

#: Probe types that make the model generate (they cost tokens; a deep probe must be one).
GENERATING_TYPES = frozenset({ProbeType.CHAT, ProbeType.OPENAI_CHAT})


class DeepProbeType(enum.StrEnum):
    """A probe type that makes the model generate: the only kinds a deep probe may be."""

    CHAT = "Chat"
    OPENAI_CHAT = "OpenAIChat"

    @property
    def probe_type(self) -> ProbeType:
        """The same type as a :class:`ProbeType` (canonical: ``Chat``)."""
        return ProbeType(self.value).canonical


class DeepProbeSpec(ApiModel):
    """A rare probe beside the cheap one, catching a backend that lists its model but cannot
    generate. A failed deep probe makes the backend unhealthy at once (as if it had failed
    ``failureThreshold`` cheap probes) and keeps it so until a deep probe passes; while it
    fails it is retried every cheap ``intervalSeconds``."""

    type: DeepProbeType = Field(
        default=DeepProbeType.CHAT,
        description="Chat (a one-token completion in the provider's dialect; OpenAIChat is its "
        "older name): a probe type that generates.",
    )
    interval_seconds: Annotated[int, Field(ge=30, le=86_400)] = Field(
        default=300,
        description="Seconds between the starts of two deep probes (at least the probe's "
        "intervalSeconds); while the last one failed, the probe's intervalSeconds.",
    )
    timeout_seconds: Annotated[int, Field(ge=1, le=300)] = Field(
        default=10, description="Seconds before a deep probe counts as failed."
    )


_PROBE_FIELD_DOCS = {
    "type": "HTTP (GET path, 2xx/3xx), Models (the provider's model listing has the model), "
    "Chat (a one-token completion in the provider's dialect), TCP (connect); OpenAIModels and "
    "OpenAIChat are older names of Models and Chat.",
    "path": "Path for HTTP probes.",
    "interval_seconds": "Seconds between the starts of two probes.",
    "timeout_seconds": "Seconds before a probe counts as failed.",
    "failure_threshold": "Consecutive failures that make a healthy backend unhealthy.",
    "success_threshold": "Consecutive successes that make an unhealthy backend healthy.",
    "latency_threshold_ms": "A slower answer (milliseconds) counts as a failure.",
    "deep": "A rare probe that makes the model generate, beside the cheap one (e.g. {type: "
    "Chat, intervalSeconds: 300}); skipped for a backend whose probe already generates.",
}


class ProbeSpec(ApiModel):
    """Route-level probe settings; every field has a default."""

    type: ProbeType = Field(default=ProbeType.OPENAI_MODELS, description=_PROBE_FIELD_DOCS["type"])
    path: Annotated[str, Field(max_length=2048, pattern=r"^/")] = Field(
        default="/", description=_PROBE_FIELD_DOCS["path"]
    )
    interval_seconds: Annotated[int, Field(ge=1, le=3600)] = Field(
        default=5, description=_PROBE_FIELD_DOCS["interval_seconds"]
    )
    timeout_seconds: Annotated[int, Field(ge=1, le=300)] = Field(
        default=2, description=_PROBE_FIELD_DOCS["timeout_seconds"]
    )
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = Field(
        default=3, description=_PROBE_FIELD_DOCS["failure_threshold"]
    )
    success_threshold: Annotated[int, Field(ge=1, le=100)] = Field(
        default=2, description=_PROBE_FIELD_DOCS["success_threshold"]
    )
    latency_threshold_ms: Annotated[int, Field(ge=1, le=600_000)] | None = Field(
        default=None, description=_PROBE_FIELD_DOCS["latency_threshold_ms"]
    )
    deep: DeepProbeSpec | None = Field(default=None, description=_PROBE_FIELD_DOCS["deep"])

    @property
    def effective_deep(self) -> DeepProbeSpec | None:
        """The deep probe to run beside this one: none when this probe generates already."""
        return None if self.type in GENERATING_TYPES else self.deep

    def overridden_by(self, override: ProbeOverride | None) -> ProbeSpec:
        """Return these settings with the fields the backend sets replaced."""
        if override is None:
            return self
        # Attributes, not a dump: a backend's deep block stays a model and replaces the
        # route's as a whole.
        values = {name: getattr(override, name) for name in type(override).model_fields}
        changes = {name: value for name, value in values.items() if value is not None}
        return self.model_copy(update=changes) if changes else self


class ProbeOverride(ApiModel):
    """Per-backend probe settings: the fields set here replace the route-level ones."""

    type: ProbeType | None = Field(default=None, description=_PROBE_FIELD_DOCS["type"])
    path: Annotated[str, Field(max_length=2048, pattern=r"^/")] | None = Field(
        default=None, description=_PROBE_FIELD_DOCS["path"]
    )
    interval_seconds: Annotated[int, Field(ge=1, le=3600)] | None = Field(
        default=None, description=_PROBE_FIELD_DOCS["interval_seconds"]
    )
    timeout_seconds: Annotated[int, Field(ge=1, le=300)] | None = Field(
        default=None, description=_PROBE_FIELD_DOCS["timeout_seconds"]
    )
    failure_threshold: Annotated[int, Field(ge=1, le=100)] | None = Field(
        default=None, description=_PROBE_FIELD_DOCS["failure_threshold"]
    )
    success_threshold: Annotated[int, Field(ge=1, le=100)] | None = Field(
        default=None, description=_PROBE_FIELD_DOCS["success_threshold"]
    )
    latency_threshold_ms: Annotated[int, Field(ge=1, le=600_000)] | None = Field(
        default=None, description=_PROBE_FIELD_DOCS["latency_threshold_ms"]
    )
    deep: DeepProbeSpec | None = Field(
        default=None,
        description=_PROBE_FIELD_DOCS["deep"] + " Replaces the route's deep probe as a whole.",
    )
