"""What makes two probes the same (:class:`ProbeKey`), and when a probe loop runs next.

A key is everything a probe sends, whom it trusts, and its schedule; routes whose backends
need the same key share one probe loop (see :mod:`modelroute.probing.hub`). A backend has a
cheap key (its ``probe``) and, when ``probe.deep`` is set and its probe does not generate
already, a deep key: a generating probe at the deep interval, retried at the cheap interval
while it fails.

:attr:`ProbeKey.target` names the probed backend in metrics: ``<host>:<port>/<model>``, from
the base URL's host and port (the scheme's default port when none is written) and the model.
No scheme, user info, path or query: nothing of a URL that could carry a secret, and it is
bounded by the backends configured, not by traffic.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass

from yarl import URL

from modelroute.api.models import (
    AuthSecretRef,
    Backend,
    CaBundleSecretRef,
    ProbeSpec,
    ProbeType,
    Provider,
)


class ProbeKind(enum.StrEnum):
    """The ``kind`` label of the probe metrics."""

    CHEAP = "cheap"  # the backend's probe: drives fast detection
    DEEP = "deep"  # the rare generating probe beside it


@dataclass(frozen=True)
class ProbeKey:
    """Everything that makes two probes the same request on the same schedule."""

    namespace: str  # where the auth Secret lives
    url: str
    model: str
    provider: Provider
    provider_version: str | None
    type: ProbeType  # canonical: OpenAIModels and Models are one probe
    path: str
    interval_seconds: int
    timeout_seconds: int
    latency_threshold_ms: int | None
    auth: AuthSecretRef | None
    kind: ProbeKind = ProbeKind.CHEAP
    #: Seconds between probes while the last one failed (deep probes: the cheap interval).
    retry_seconds: int | None = None
    #: The Secret of extra CAs the probe trusts: routes trusting different CAs for one URL must
    #: not share a loop (one would see the other's verdict); the same Secret still shares.
    ca: CaBundleSecretRef | None = None

    @classmethod
    def for_backend(cls, namespace: str, backend: Backend, probe: ProbeSpec) -> ProbeKey:
        """The key of ``backend``'s probe with its effective settings."""
        return cls(
            namespace=namespace,
            url=backend.probe_url(namespace),
            model=backend.model,
            provider=backend.provider,
            provider_version=backend.provider_version,
            type=probe.type.canonical,
            path=probe.path,
            interval_seconds=probe.interval_seconds,
            timeout_seconds=probe.timeout_seconds,
            latency_threshold_ms=probe.latency_threshold_ms,
            auth=(
                backend.auth_secret_ref.for_provider(backend.provider)
                if backend.auth_secret_ref is not None
                else None
            ),
            ca=backend.ca_bundle_secret_ref,
        )

    @classmethod
    def deep_for_backend(
        cls, namespace: str, backend: Backend, probe: ProbeSpec
    ) -> ProbeKey | None:
        """The key of ``backend``'s deep probe, or None when it has none."""
        deep = probe.effective_deep
        if deep is None:
            return None
        return dataclasses.replace(
            cls.for_backend(namespace, backend, probe),
            type=deep.type.probe_type,
            path="/",
            interval_seconds=deep.interval_seconds,
            timeout_seconds=deep.timeout_seconds,
            latency_threshold_ms=None,  # a completion's latency is not the backend's health
            kind=ProbeKind.DEEP,
            retry_seconds=probe.interval_seconds,
        )

    def probe_spec(self) -> ProbeSpec:
        """The settings the prober needs (thresholds are each subscriber's own business)."""
        return ProbeSpec(
            type=self.type,
            path=self.path,
            interval_seconds=self.interval_seconds,
            timeout_seconds=self.timeout_seconds,
            latency_threshold_ms=self.latency_threshold_ms,
        )

    @functools.cached_property
    def target(self) -> str:
        """The probed backend in metrics: ``<host>:<port>/<model>`` (see the module doc);
        computed once per key (every probe result is counted under it)."""
        url = URL(self.url)
        return f"{url.host or ''}:{url.port or ''}/{self.model}"


def next_start(
    key: ProbeKey,
    scheduled: float,
    now: float,
    failed: bool,
    retry_after_s: float | None,
    max_retry_after_s: float,
) -> float:
    """When the loop of ``key`` probes next, on the monotonic clock.

    ``scheduled`` is when the probe that just finished was due, ``now`` when it finished.
    Fixed rate: the schedule does not drift by the probe's own duration, and a probe that
    overran its slot is followed at once rather than by a burst. A failed deep probe is
    retried at the cheap interval, so a recovery is seen about as fast as an outage; a 429's
    ``Retry-After`` (capped) pushes the next probe back.
    """
    interval = key.interval_seconds
    if failed and key.retry_seconds is not None:
        interval = min(interval, key.retry_seconds)
    next_at = max(scheduled + interval, now)
    if retry_after_s:
        next_at = max(next_at, now + min(retry_after_s, max_retry_after_s))
    return next_at


#: Loops whose first probe goes at once in any one jitter window; later ones are spread.
START_BURST = 16


class StartSpread:
    """How long a new loop waits before its first probe.

    The jitter spreads the first probes of many loops started together (thousands at a
    start-up), so they do not time out in one bunch. A few loops make no bunch: the first
    :data:`START_BURST` loops of each window of ``jitter_s`` probe at once. Why: a restarted
    operator's routes on one shared vendor wait on that one loop, and its random delay (up to
    the interval) was added to the time every route took to see an outage (issue 13,
    scenario 5).
    """

    def __init__(self, jitter_s: float, rand: Callable[[float, float], float]) -> None:
        """``rand(a, b)``: a uniform random number in ``[a, b]`` (``random.uniform``)."""
        self._jitter = jitter_s
        self._rand = rand
        self._window_start: float | None = None
        self._started = 0  # loops started in the current window

    def delay(self, now: float, interval_s: float) -> float:
        """Seconds before the first probe of a loop started at ``now`` (monotonic clock)."""
        if self._window_start is None or now - self._window_start >= self._jitter:
            self._window_start, self._started = now, 0
        self._started += 1
        if self._started <= START_BURST:
            return 0.0
        return self._rand(0.0, min(self._jitter, interval_s))
