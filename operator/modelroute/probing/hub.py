"""Shared probe loops: an identical probe runs once per interval, whoever needs its result.

Many routes often point at the same backend: every team's route to the same vendor egress, or
one in-house model behind several routes. A probe is identified by what it sends (URL, model,
provider dialect and its version, probe type and path, interval, timeout, latency threshold,
and which Secrets hold its key and CAs); routes that need the same probe subscribe to one loop
and each folds the result into its own health record with its own thresholds. One thousand
routes on one vendor cost one probe per interval, and all of them see an outage at the same
moment.

Deep probes (``probe.deep``: a rare generating probe beside the cheap one) are probes of
their own key (``ProbeKind.DEEP``) and are shared the same way: a thousand routes with the same
deep probe of one backend send one completion per deep interval.

Loops run at a fixed rate (:func:`~modelroute.probing.keys.next_start`) from a start that is
immediate for the first few loops started together, jittered for the rest (``StartSpread``).
Each loop has at most one probe in flight, so a hung backend occupies only its own loop: probes
of other backends never wait behind it. The shared HTTP session bounds connections per host,
not globally, for the same reason. A loop also remembers which token field a backend's chat
probe was last taken with (see ``dialects.TokenLimit``), so a server that refuses the default
costs one extra request once. Each loop counts its probes and their estimated tokens, and
times its cheap probes, under its ``target`` (one series per backend, however many routes).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import aiohttp

from modelroute.api.models import AuthSecretRef, ProbeSpec
from modelroute.core.cost import tokens_per_probe
from modelroute.core.types import ProbeFailure
from modelroute.kube.cache import ObjectCache
from modelroute.kube.secrets import secret_text
from modelroute.metrics import Metrics
from modelroute.probing import prober
from modelroute.probing.dialects import TokenLimit
from modelroute.probing.keys import ProbeKey as ProbeKey
from modelroute.probing.keys import ProbeKind, StartSpread, next_start
from modelroute.probing.session import TrustStore
from modelroute.probing.trust import ca_context

logger = logging.getLogger("modelroute.probing.hub")

Subscriber = Callable[[prober.ProbeResult], None]


class ProbeSource(Protocol):
    """Where routes get probe results from: :class:`ProbeHub`, or a test's scripted source."""

    def subscribe(self, key: ProbeKey, subscriber: Subscriber) -> None:
        """Deliver every result of ``key``'s probe to ``subscriber``."""
        ...

    def unsubscribe(self, key: ProbeKey, subscriber: Subscriber) -> None:
        """Stop delivering to ``subscriber``."""
        ...


@dataclass
class _Loop:
    task: asyncio.Task[None]
    subscribers: list[Subscriber]


class ProbeHub:
    """Runs one probe loop per distinct :class:`ProbeKey` while anyone subscribes to it."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        secrets: ObjectCache,
        metrics: Metrics,
        now: Callable[[], datetime],
        start_jitter_seconds: float,
        max_retry_after_seconds: float,
        trust: TrustStore | None = None,
    ) -> None:
        self._session = session
        self._trust = trust if trust is not None else TrustStore()  # caBundleSecretRef contexts
        self._secrets = secrets
        self._metrics = metrics
        self._now = now
        self._spread = StartSpread(start_jitter_seconds, random.uniform)
        self._max_retry_after = max_retry_after_seconds
        self._loops: dict[ProbeKey, _Loop] = {}
        self._targets: Counter[str] = Counter()  # live loops per metrics target

    def __len__(self) -> int:
        return len(self._loops)

    def subscribe(self, key: ProbeKey, subscriber: Subscriber) -> None:
        """Deliver every result of ``key``'s probe to ``subscriber``, starting its loop if new."""
        loop = self._loops.get(key)
        if loop is None:
            name = f"probe:{key.kind}:{key.url}:{key.model}"
            loop = self._loops[key] = _Loop(asyncio.create_task(self._run(key), name=name), [])
            self._targets[key.target] += 1
        loop.subscribers.append(subscriber)

    def unsubscribe(self, key: ProbeKey, subscriber: Subscriber) -> None:
        """Stop delivering to ``subscriber``; the loop stops with its last subscriber."""
        loop = self._loops.get(key)
        if loop is None:
            return
        if subscriber in loop.subscribers:
            loop.subscribers.remove(subscriber)
        if not loop.subscribers:
            del self._loops[key]
            loop.task.cancel()
            self._targets[key.target] -= 1
            if not self._targets[key.target]:
                # No loop probes it any more: its series would only go stale.
                del self._targets[key.target]
                self._metrics.forget_target(key.target)

    async def close(self) -> None:
        """Cancel every loop, wait for them, and close the HTTP session."""
        loops, self._loops = list(self._loops.values()), {}
        for loop in loops:
            loop.task.cancel()
        await asyncio.gather(*(loop.task for loop in loops), return_exceptions=True)
        await self._session.close()

    async def _run(self, key: ProbeKey) -> None:
        clock = asyncio.get_running_loop().time
        probe = key.probe_spec()
        next_at = clock() + self._spread.delay(clock(), key.interval_seconds)
        token_limit: TokenLimit | None = None
        while True:
            delay = next_at - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            self._metrics.probe_lag.observe(max(0.0, clock() - next_at))
            target = await self._target(key, probe, token_limit)
            result = await prober.probe(target, self._session, clock=clock, now=self._now)
            token_limit = result.token_limit or token_limit
            self._count(key, result)
            self._deliver(key, result)
            next_at = next_start(
                key, next_at, clock(), not result.ok, result.retry_after_s, self._max_retry_after
            )

    def _count(self, key: ProbeKey, result: prober.ProbeResult) -> None:
        """The probe in the per-target metrics."""
        metrics, target = self._metrics, key.target
        metrics.probe_requests.labels(target, key.kind.value).inc()
        if result.ok or result.reason is ProbeFailure.SLOW_RESPONSE:  # a completion came back
            tokens = tokens_per_probe(key.type)
            if tokens:
                metrics.probe_tokens.labels(target).inc(tokens)
        # Cheap probes only: a completion's latency would blur the distribution the latency
        # threshold and dashboards read.
        if key.kind is ProbeKind.CHEAP and result.latency_ms is not None:
            metrics.probe_duration.labels(target).observe(result.latency_ms / 1000)

    def _deliver(self, key: ProbeKey, result: prober.ProbeResult) -> None:
        loop = self._loops.get(key)
        for subscriber in list(loop.subscribers if loop else ()):
            try:
                subscriber(result)
            except Exception:
                # One subscriber's bug must not starve the others of results.
                logger.exception("probe subscriber failed", extra={"url": key.url})

    async def _target(
        self, key: ProbeKey, probe: ProbeSpec, token_limit: TokenLimit | None
    ) -> prober.ProbeTarget:
        header, error = None, None
        if key.auth is not None:
            header, error = await self._auth_header(key.namespace, key.auth)
        context = None
        if key.ca is not None and error is None:
            context, error = await ca_context(self._secrets, self._trust, key.namespace, key.ca)
        return prober.ProbeTarget(
            url=key.url,
            model=key.model,
            probe=probe,
            auth_header=header,
            auth_error=error,
            provider=key.provider,
            provider_version=key.provider_version,
            token_limit=token_limit,
            ssl_context=context,
        )

    async def _auth_header(
        self, namespace: str, ref: AuthSecretRef
    ) -> tuple[tuple[str, str] | None, str | None]:
        """The header carrying the key from the Secret, or why there is none."""
        value, error = await secret_text(self._secrets, namespace, ref.name, ref.key)
        if value is None:
            return None, error
        # Secrets made with `echo ... | kubectl create secret` often end in a newline.
        # for_backend filled in the provider's defaults, so header and prefix are set here.
        return (ref.header or "Authorization", (ref.prefix or "") + value.strip()), None
