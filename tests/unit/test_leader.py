"""Leader election: the pure lease decision, and electors racing for one Lease."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelroute.leader import MICROTIME, LeaderElector, LeaseAction, LeaseConfig, decide
from tests.fakes.kube import FakeKube

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def _spec(holder: str | None, renewed_ago: float | None, duration: int = 15) -> dict[str, Any]:
    spec: dict[str, Any] = {"leaseDurationSeconds": duration}
    if holder is not None:
        spec["holderIdentity"] = holder
    if renewed_ago is not None:
        spec["renewTime"] = (NOW - timedelta(seconds=renewed_ago)).strftime(MICROTIME)
    return spec


@pytest.mark.parametrize(
    ("lease", "expected"),
    [
        pytest.param(None, LeaseAction.ACQUIRE, id="no-lease"),
        pytest.param(_spec("me", 1), LeaseAction.RENEW, id="ours"),
        pytest.param(_spec("me", 100), LeaseAction.RENEW, id="ours-even-if-late"),
        pytest.param(_spec("other", 1), LeaseAction.WAIT, id="held-by-other"),
        pytest.param(_spec("other", 14.9), LeaseAction.WAIT, id="just-before-expiry"),
        pytest.param(_spec("other", 15), LeaseAction.ACQUIRE, id="expired-at-boundary"),
        pytest.param(_spec("other", 60), LeaseAction.ACQUIRE, id="long-expired"),
        pytest.param(_spec(None, 1), LeaseAction.ACQUIRE, id="released"),
        pytest.param(_spec("other", None), LeaseAction.ACQUIRE, id="no-renew-time"),
    ],
)
def test_decide(lease: dict[str, Any] | None, expected: LeaseAction) -> None:
    assert decide(lease, "me", NOW) is expected


class Candidate:
    """One replica: an elector whose transitions are recorded."""

    def __init__(self, kube: FakeKube, identity: str, now: Callable[[], datetime]) -> None:
        self.transitions: list[str] = []

        async def started() -> None:
            self.transitions.append("started")

        async def stopped() -> None:
            self.transitions.append("stopped")

        config = LeaseConfig(
            namespace="ops",
            name="mr",
            identity=identity,
            lease_seconds=15,
            renew_deadline_seconds=0.2,
            renew_seconds=0.01,
        )
        self.elector = LeaderElector(kube, config, now=now, on_started=started, on_stopped=stopped)
        self.task = asyncio.create_task(self.elector.run())

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def _until(predicate: Callable[[], object]) -> None:
    async with asyncio.timeout(5):
        while not predicate():  # noqa: ASYNC110  (state in fakes; nothing to wait on)
            await asyncio.sleep(0.01)


async def test_one_of_two_leads_and_the_other_takes_over_on_release() -> None:
    kube = FakeKube()
    a = Candidate(kube, "a", lambda: datetime.now(UTC))
    await _until(lambda: a.elector.leading)
    b = Candidate(kube, "b", lambda: datetime.now(UTC))
    await asyncio.sleep(0.1)  # many retry periods: b must stay a standby
    assert (a.elector.leading, b.elector.leading) == (True, False)
    assert kube.leases[("ops", "mr")]["spec"]["holderIdentity"] == "a"

    await a.stop()  # a clean shutdown releases the Lease: b need not wait for expiry
    assert a.transitions == ["started", "stopped"]
    await _until(lambda: b.elector.leading)
    assert kube.leases[("ops", "mr")]["spec"]["holderIdentity"] == "b"
    assert kube.leases[("ops", "mr")]["spec"]["leaseTransitions"] == 1
    await b.stop()


async def test_a_leader_that_cannot_renew_steps_down() -> None:
    kube = FakeKube()
    a = Candidate(kube, "a", lambda: datetime.now(UTC))
    await _until(lambda: a.elector.leading)
    # Another replica took the Lease over (e.g. after a network partition healed late).
    lease = kube.leases[("ops", "mr")]
    lease["spec"]["holderIdentity"] = "b"
    lease["spec"]["renewTime"] = datetime.now(UTC).strftime(MICROTIME)
    await _until(lambda: not a.elector.leading)
    assert a.transitions == ["started", "stopped"]
    await a.stop()
    assert kube.leases[("ops", "mr")]["spec"]["holderIdentity"] == "b"  # not released: not ours


async def test_a_leader_cut_off_from_the_api_steps_down_after_the_deadline() -> None:
    kube = FakeKube()
    a = Candidate(kube, "a", lambda: datetime.now(UTC))
    await _until(lambda: a.elector.leading)

    async def unreachable(namespace: str, name: str) -> dict[str, Any] | None:
        raise TimeoutError

    kube.get_lease = unreachable  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    cut_at = loop.time()
    await _until(lambda: not a.elector.leading)
    # Not at the first failed renewal: only once the renew deadline (0.2 s) has passed.
    assert loop.time() - cut_at >= 0.15
    assert a.transitions == ["started", "stopped"]
    await a.stop()
