"""Leader election: the pure lease decision, and electors racing for one Lease."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from modelroute.kube.leader import (
    MICROTIME,
    SELECTOR_ANNOTATION,
    LeaderElector,
    LeaseAction,
    LeaseConfig,
    decide,
)
from tests.fakes.kube import FakeKube

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def _spec(holder: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"leaseDurationSeconds": 15, "renewTime": NOW.strftime(MICROTIME)}
    if holder is not None:
        spec["holderIdentity"] = holder
    return spec


@pytest.mark.parametrize(
    ("lease", "expired", "expected"),
    [
        pytest.param(None, False, LeaseAction.ACQUIRE, id="no-lease"),
        pytest.param(_spec("me"), False, LeaseAction.RENEW, id="ours"),
        pytest.param(_spec("me"), True, LeaseAction.RENEW, id="ours-even-if-late"),
        pytest.param(_spec("other"), False, LeaseAction.WAIT, id="held-by-other"),
        pytest.param(_spec("other"), True, LeaseAction.ACQUIRE, id="expired"),
        pytest.param(_spec(None), False, LeaseAction.ACQUIRE, id="released"),
    ],
)
def test_decide(lease: dict[str, Any] | None, expired: bool, expected: LeaseAction) -> None:
    assert decide(lease, "me", expired=expired) is expected


class Candidate:
    """One replica: an elector whose transitions are recorded."""

    def __init__(
        self,
        kube: FakeKube,
        identity: str,
        now: Callable[[], datetime],
        selector: str = "",
        renew_deadline: float = 10.0,
    ) -> None:
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
            # The product's default unless a test is about the deadline: a 0.2 s stall of a
            # loaded machine made a healthy leader step down in the middle of other tests.
            renew_deadline_seconds=renew_deadline,
            renew_seconds=0.01,
            label_selector=selector,
        )
        self.elector = LeaderElector(kube, config, now=now, on_started=started, on_stopped=stopped)
        self.task = asyncio.create_task(self.elector.run())

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def _until(predicate: Callable[[], object]) -> None:
    async with asyncio.timeout(30):  # a hang guard only: wide, for a loaded CI machine
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


@pytest.mark.looptime  # the 0.2 s deadline on a fake clock: no real stall can trip it early
async def test_a_leader_cut_off_from_the_api_steps_down_after_the_deadline() -> None:
    kube = FakeKube()
    a = Candidate(kube, "a", lambda: datetime.now(UTC), renew_deadline=0.2)
    await _until(lambda: a.elector.leading)

    kube.lease_error = TimeoutError()
    loop = asyncio.get_running_loop()
    cut_at = loop.time()
    await _until(lambda: not a.elector.leading)
    # Not at the first failed renewal: only once the renew deadline (0.2 s) has passed.
    assert loop.time() - cut_at >= 0.15
    assert a.transitions == ["started", "stopped"]
    await a.stop()


async def test_expiry_is_timed_locally_not_by_the_holders_clock() -> None:
    kube = FakeKube()
    # A holder whose clock runs an hour ahead: its renewTime lies in our future. Comparing
    # clocks would never expire it; watching the record not change for the duration does.
    future = datetime(2099, 1, 1, tzinfo=UTC).strftime(MICROTIME)
    await kube.create_lease(
        "ops",
        {
            "metadata": {"name": "mr", "namespace": "ops"},
            "spec": {"holderIdentity": "zombie", "renewTime": future, "leaseDurationSeconds": 1},
        },
    )
    a = Candidate(kube, "a", lambda: datetime.now(UTC))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await _until(lambda: a.elector.leading)
    assert loop.time() - started >= 0.9  # a full lease duration of seeing no renewal
    assert kube.leases[("ops", "mr")]["spec"]["holderIdentity"] == "a"
    await a.stop()


def _now() -> datetime:
    return datetime.now(UTC)


async def test_the_lease_records_the_holders_selector(caplog: pytest.LogCaptureFixture) -> None:
    kube = FakeKube()
    a = Candidate(kube, "a", _now, "modelroute.dev/shard=a")
    await _until(lambda: a.elector.leading)
    lease = kube.leases[("ops", "mr")]
    assert lease["metadata"]["annotations"] == {SELECTOR_ANNOTATION: "modelroute.dev/shard=a"}
    # A replica of the same shard waits quietly.
    with caplog.at_level(logging.WARNING, "modelroute.kube.leader"):
        same = Candidate(kube, "a2", _now, "modelroute.dev/shard=a")
        await asyncio.sleep(0.1)
        assert caplog.records == []
        # An operator of another shard in the same Lease is told, once, why it never leads.
        other = Candidate(kube, "b", _now, "modelroute.dev/shard=b")
        await asyncio.sleep(0.1)
    (record,) = caplog.records
    assert "held by an operator serving label selector 'modelroute.dev/shard=a'" in record.message
    assert "this one serves 'modelroute.dev/shard=b'" in record.message
    assert "give each shard its own --leader-election-lease" in record.message
    assert not other.elector.leading and not same.elector.leading
    for candidate in (a, same, other):
        await candidate.stop()


async def test_a_lease_without_the_annotation_is_trusted(caplog: pytest.LogCaptureFixture) -> None:
    kube = FakeKube()
    now = datetime.now(UTC).strftime(MICROTIME)
    await kube.create_lease(
        "ops",
        {
            "metadata": {"name": "mr", "namespace": "ops"},  # an older operator's Lease
            "spec": {"holderIdentity": "old", "renewTime": now, "leaseDurationSeconds": 15},
        },
    )
    with caplog.at_level(logging.WARNING, "modelroute.kube.leader"):
        b = Candidate(kube, "b", _now, "modelroute.dev/shard=b")
        await asyncio.sleep(0.1)
    assert caplog.records == [] and not b.elector.leading
    await b.stop()


class _StuckLeaseKube(FakeKube):
    """A client whose Lease requests hang once ``stuck`` is set (a hung connection, or a
    request waiting for a lane slot that never comes)."""

    def __init__(self) -> None:
        super().__init__()
        self.stuck = False

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.stuck:
            await asyncio.Event().wait()
        return await super().get_lease(namespace, name)


@pytest.mark.looptime
async def test_a_leader_whose_renewal_hangs_steps_down_by_the_deadline() -> None:
    kube = _StuckLeaseKube()
    stopped, stopped_at = asyncio.Event(), list[float]()

    async def started() -> None:
        pass

    async def stop() -> None:
        stopped_at.append(asyncio.get_running_loop().time())
        stopped.set()

    config = LeaseConfig(namespace="ops", name="mr", identity="a")  # 15 s lease, 10 s deadline
    elector = LeaderElector(
        kube, config, now=lambda: datetime.now(UTC), on_started=started, on_stopped=stop
    )
    task = asyncio.create_task(elector.run())
    await _until(lambda: elector.leading)
    loop = asyncio.get_running_loop()
    renewed_at = loop.time()
    kube.stuck = True
    try:
        await asyncio.wait_for(stopped.wait(), 60)
    finally:
        kube.stuck = False  # the release on the way out must not hang too
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # Within the deadline of the last renewal (plus at most one renew period before the
    # first hung attempt), well before the 15 s lease lets another replica take over.
    assert stopped_at[0] - renewed_at <= config.renew_deadline_seconds + config.renew_seconds
