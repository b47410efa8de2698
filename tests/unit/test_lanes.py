"""Lanes: routing writes first, and the rest held while routing writes trickle in.

The loop's time is faked with looptime: the linger is timed, not slept.
"""

from __future__ import annotations

import asyncio

import pytest

from modelroute.kube.lanes import Lanes

pytestmark = pytest.mark.looptime


async def _request(lanes: Lanes, urgent: bool, log: list[tuple[str, float]], name: str) -> None:
    await lanes.acquire(urgent)
    log.append((name, asyncio.get_running_loop().time()))
    lanes.release(urgent)


async def test_the_rest_waits_the_linger_after_a_routing_write() -> None:
    lanes, log = Lanes(4, linger=0.1), []
    start = asyncio.get_running_loop().time()
    await _request(lanes, True, log, "route-1")
    status = asyncio.create_task(_request(lanes, False, log, "status"))
    await asyncio.sleep(0.05)
    await _request(lanes, True, log, "route-2")  # another routing write within the linger
    await status
    assert [name for name, _ in log] == ["route-1", "route-2", "status"]
    assert log[-1][1] - start == pytest.approx(0.15, abs=0.01)  # 0.1 s after the last routing write


async def test_without_routing_writes_nothing_waits() -> None:
    lanes, log = Lanes(2, linger=0.1), []
    start = asyncio.get_running_loop().time()
    await asyncio.gather(*(_request(lanes, False, log, f"status-{i}") for i in range(5)))
    assert all(t - start < 0.01 for _, t in log)


async def test_a_cancelled_waiter_does_not_hold_the_rest_after_the_linger() -> None:
    lanes, log = Lanes(1, linger=0.1), []
    await _request(lanes, True, log, "route")
    gone = asyncio.create_task(_request(lanes, False, log, "cancelled"))
    kept = asyncio.create_task(_request(lanes, False, log, "status"))
    await asyncio.sleep(0.01)
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    await asyncio.wait_for(kept, 1)
    assert [name for name, _ in log] == ["route", "status"]
