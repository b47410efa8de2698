"""Leader election with a coordination.k8s.io/v1 Lease, as controller-runtime does it.

With more than one replica, only the holder of the Lease runs route workers (probes, routing,
status); the others keep watching, so a takeover starts every route at once. kopf's own peering
is not used: it pauses kopf's handlers, not the operator's probe loops.

Timing: the leader renews every ``renew_seconds``; it steps down when it could not renew for
``renew_deadline_seconds`` (shorter than the lease), so it stops acting before anyone else may
take over, which happens once the lease has not been renewed for ``lease_seconds``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from modelroute.kube.client import ApiError, KubeApi

logger = logging.getLogger("modelroute.kube.leader")

MICROTIME = "%Y-%m-%dT%H:%M:%S.%fZ"
# The holder's --label-selector, on the Lease: operators of different shards must not share one.
SELECTOR_ANNOTATION = "modelroute.dev/label-selector"


class LeaseAction(enum.StrEnum):
    """What to do with the Lease now."""

    ACQUIRE = "acquire"  # free or expired: take it
    RENEW = "renew"  # ours: renew it
    WAIT = "wait"  # someone else holds a live lease


def decide(lease_spec: dict[str, Any] | None, identity: str, *, expired: bool) -> LeaseAction:
    """Pure: the action for ``identity`` given the Lease's spec (None when it does not exist).

    ``expired`` says whether the holder's record has stayed unchanged for the lease duration,
    as measured by this replica (see :class:`LeaderElector`), never by comparing clocks.
    """
    if lease_spec is None:
        return LeaseAction.ACQUIRE
    holder = lease_spec.get("holderIdentity")
    if holder == identity:
        return LeaseAction.RENEW
    if not holder or expired:
        return LeaseAction.ACQUIRE
    return LeaseAction.WAIT


@dataclass(frozen=True)
class LeaseConfig:
    """Where the Lease lives, who we are, and the timings (seconds)."""

    namespace: str
    name: str
    identity: str
    lease_seconds: int = 15
    renew_deadline_seconds: float = 10.0
    renew_seconds: float = 2.0
    # The routes this operator serves (its --label-selector, "" for all), recorded on the Lease
    # so that an operator of another shard electing in the same Lease is noticed.
    label_selector: str = ""


class LeaderElector:
    """Acquires and renews the Lease; calls ``on_started``/``on_stopped`` on transitions."""

    def __init__(
        self,
        kube: KubeApi,
        config: LeaseConfig,
        *,
        now: Callable[[], datetime],
        on_started: Callable[[], Awaitable[None]],
        on_stopped: Callable[[], Awaitable[None]],
    ) -> None:
        self._kube = kube
        self._config = config
        self._now = now
        self._on_started = on_started
        self._on_stopped = on_stopped
        self.leading = False
        self._last_renewed: float | None = None
        # The holder's (identity, renewTime) as last seen, and when (monotonic): expiry is
        # timed by this replica's own clock, as client-go does, so clock skew between nodes
        # cannot shorten a lease.
        self._observed: tuple[Any, Any] | None = None
        self._observed_at = 0.0
        self._warned_selector: str | None = None

    async def run(self) -> None:
        """Loop until cancelled; step down (and release the Lease) on the way out."""
        clock = asyncio.get_running_loop().time
        try:
            while True:
                held = await self._attempt(clock())
                if held:
                    self._last_renewed = clock()
                if held and not self.leading:
                    self.leading = True
                    logger.info("became the leader", extra={"lease": self._config.name})
                    await self._on_started()
                elif held is False and self.leading:
                    await self._step_down("another replica holds the lease")
                elif held is None and self.leading and self._deadline_passed(clock()):
                    await self._step_down("could not renew the lease in time")
                await asyncio.sleep(self._config.renew_seconds)
        finally:
            if self.leading:
                await self._step_down("shutting down")
                await self._release()

    async def _attempt(self, now: float) -> bool | None:
        """``_try_once`` bounded by the renew deadline: a request stuck in the client (a
        hung connection, a full request lane) counts as "could not renew", so a leader that
        cannot renew always steps down before another replica may take over."""
        timeout = self._config.renew_deadline_seconds
        if self.leading and self._last_renewed is not None:
            timeout = max(0.0, self._last_renewed + timeout - now)
        try:
            # Not wait_for: on 3.11 it drops a cancel that lands as the attempt finishes, and
            # a cancelled elector would go on renewing the Lease.
            async with asyncio.timeout(timeout):
                return await self._try_once()
        except TimeoutError:
            logger.warning("lease: no answer within the renew deadline")
            return None

    def _expired(self, spec: dict[str, Any] | None) -> bool:
        now = asyncio.get_running_loop().time()
        record = (spec.get("holderIdentity"), spec.get("renewTime")) if spec else None
        if record != self._observed:
            self._observed, self._observed_at = record, now
        duration = int((spec or {}).get("leaseDurationSeconds") or 0)
        return now - self._observed_at >= duration

    def _deadline_passed(self, now: float) -> bool:
        return (
            self._last_renewed is None
            or now - self._last_renewed >= self._config.renew_deadline_seconds
        )

    async def _step_down(self, why: str) -> None:
        self.leading = False
        logger.warning("stopped leading: %s", why, extra={"lease": self._config.name})
        await self._on_stopped()

    async def _try_once(self) -> bool | None:
        """One acquire-or-renew attempt: True when we hold the Lease afterwards, False when
        another replica holds it, None when the API could not tell (errors, races)."""
        cfg = self._config
        try:
            lease = await self._kube.get_lease(cfg.namespace, cfg.name)
            spec = lease.get("spec") if lease else None
            action = decide(spec, cfg.identity, expired=self._expired(spec))
            if action is LeaseAction.WAIT:
                self._check_shard(lease)
                return False
            await self._write(lease, action)
            return True
        except ApiError as exc:
            if exc.status != 409:  # 409: another replica won the race; not worth a warning
                logger.warning("lease %s/%s: %s", cfg.namespace, cfg.name, exc)
            return None
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("lease: API unreachable: %s", exc)
            return None

    async def _write(self, lease: dict[str, Any] | None, action: LeaseAction) -> None:
        cfg = self._config
        stamp = self._now().strftime(MICROTIME)
        spec = dict((lease or {}).get("spec") or {})
        if action is LeaseAction.ACQUIRE:
            spec.update(
                holderIdentity=cfg.identity,
                acquireTime=stamp,
                leaseTransitions=int(spec.get("leaseTransitions") or 0) + (1 if lease else 0),
            )
        spec.update(renewTime=stamp, leaseDurationSeconds=cfg.lease_seconds)
        metadata: dict[str, Any] = {
            "name": cfg.name,
            "namespace": cfg.namespace,
            "annotations": {SELECTOR_ANNOTATION: cfg.label_selector},
        }
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }
        if lease is None:
            await self._kube.create_lease(cfg.namespace, body)
        else:
            # resourceVersion makes the update conditional: two candidates cannot both win.
            metadata["resourceVersion"] = lease["metadata"]["resourceVersion"]
            await self._kube.replace_lease(cfg.namespace, cfg.name, body)

    def _check_shard(self, lease: dict[str, Any] | None) -> None:
        """Warn (once per selector seen) when the holder serves other routes than we do: then
        only one of the two shards is ever served. Leases written before the annotation
        existed say nothing, and are trusted."""
        annotations = ((lease or {}).get("metadata") or {}).get("annotations") or {}
        theirs = annotations.get(SELECTOR_ANNOTATION)
        if theirs is None or theirs == self._config.label_selector:
            return
        if theirs != self._warned_selector:
            self._warned_selector = theirs
            # A warning, not an error: a rollout that changes a Deployment's selector shows it
            # for a moment (the old Pod leads until it stops).
            logger.warning(
                "lease %s is held by an operator serving label selector %r, this one serves %r: "
                "while it leads, routes only this one selects are not served. Expected during "
                "a rollout that changes the selector; otherwise give each shard its own "
                "--leader-election-lease",
                self._config.name,
                theirs or "(all)",
                self._config.label_selector or "(all)",
                extra={"lease": self._config.name},
            )

    async def _release(self) -> None:
        """Let a standby take over at once instead of after the lease expires."""
        cfg = self._config
        try:
            lease = await self._kube.get_lease(cfg.namespace, cfg.name)
            if lease is None or lease.get("spec", {}).get("holderIdentity") != cfg.identity:
                return
            spec = dict(lease["spec"])
            spec.update(holderIdentity=None, leaseDurationSeconds=1)
            body = {**lease, "spec": spec}
            await self._kube.replace_lease(cfg.namespace, cfg.name, body)
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("could not release the lease: %s", exc)
