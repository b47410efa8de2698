"""Pure: what a route's probes cost per day, from its spec alone (``status.probeCost``).

Only generating probes (``Chat``, ``OpenAIChat``) cost tokens. Their request is one user
message, ``ping``, with an output limit of one token (see ``probing.dialects``): about 8 input
tokens once the vendor's chat template frames it (role markers, start and end of the turn)
and 1 output token. The estimate is that, 9 tokens per generating probe; a vendor's bill may
differ by a few tokens per probe (system prompts some vendors add, reasoning models' hidden
tokens), never by an order of magnitude. A retry with the other token field (a 400 costs
nothing) is not counted.
"""

from __future__ import annotations

from typing import Final

from modelroute.api.models import ModelRouteSpec, ProbeType
from modelroute.api.probe import GENERATING_TYPES
from modelroute.api.status import ProbeCost
from modelroute.core.memo import IdentityMemo

SECONDS_PER_DAY: Final = 86_400
#: Estimated input tokens of one generating probe: "ping" in the chat template.
INPUT_TOKENS: Final = 8
#: Output tokens of one generating probe: its output limit.
OUTPUT_TOKENS: Final = 1


def tokens_per_probe(probe_type: ProbeType) -> int:
    """Estimated tokens (input + output) one probe of ``probe_type`` costs."""
    return INPUT_TOKENS + OUTPUT_TOKENS if probe_type in GENERATING_TYPES else 0


def probe_cost(spec: ModelRouteSpec) -> ProbeCost:
    """Probes per day and their estimated tokens (see :func:`_probe_cost`), once per spec
    object: every plan of a route asks again with the same spec."""
    return _per_spec(spec, None)


def _probe_cost(spec: ModelRouteSpec, _: None) -> ProbeCost:
    """Probes per day and their estimated tokens, over every backend's cheap and deep probe.

    Each backend counts on its own, as if no probe were shared with another route, and a
    deep probe at its own interval (its faster retries while failing are not counted: a
    backend that cannot generate is seldom billed for it).
    """
    requests = tokens = 0.0
    for backend in spec.backends:
        probe = spec.effective_probe(backend)
        per_day = SECONDS_PER_DAY / probe.interval_seconds
        requests += per_day
        tokens += per_day * tokens_per_probe(probe.type)
        deep = probe.effective_deep
        if deep is not None:
            deep_per_day = SECONDS_PER_DAY / deep.interval_seconds
            requests += deep_per_day
            tokens += deep_per_day * tokens_per_probe(deep.type.probe_type)
    return ProbeCost(requests_per_day=round(requests), estimated_tokens_per_day=round(tokens))


_per_spec = IdentityMemo(_probe_cost)
