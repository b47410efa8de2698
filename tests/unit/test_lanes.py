"""Lanes: routing writes first, and the rest served in every gap between routing writes.

The loop's time is faked with looptime: waits are timed, not slept.
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


async def test_a_trickle_of_routing_writes_does_not_starve_the_rest() -> None:
    """A drift fight or a new leader's failover trickle: a routing write every 70 ms, each
    20 ms long. A Lease renewal or a Secret read waiting behind them is served in the first
    gap, not held until the trickle ends (it was, with the 0.1 s linger after each)."""
    lanes = Lanes(20)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    async def routing_writes() -> None:
        while not stop.is_set():
            await lanes.acquire(True)
            await asyncio.sleep(0.02)  # the write's round trip
            lanes.release(True)
            await asyncio.sleep(0.05)  # the next route's decision

    writer = asyncio.create_task(routing_writes())
    await asyncio.sleep(0.01)  # a routing write is in flight
    start = loop.time()
    await asyncio.wait_for(lanes.acquire(False), 1.0)
    waited = loop.time() - start
    lanes.release(False)
    stop.set()
    await writer
    assert waited == pytest.approx(0.01, abs=0.005)  # as soon as the write in flight ended


async def test_routing_writes_go_before_the_rest() -> None:
    lanes, log = Lanes(1), []
    await lanes.acquire(False)  # the only slot is taken
    status = asyncio.create_task(_request(lanes, False, log, "status"))
    await asyncio.sleep(0)
    route = asyncio.create_task(_request(lanes, True, log, "route"))
    await asyncio.sleep(0)
    lanes.release(False)
    await asyncio.gather(status, route)
    assert [name for name, _ in log] == ["route", "status"]


async def test_without_routing_writes_nothing_waits() -> None:
    lanes, log = Lanes(2), []
    start = asyncio.get_running_loop().time()
    await asyncio.gather(*(_request(lanes, False, log, f"status-{i}") for i in range(5)))
    assert all(t - start < 0.01 for _, t in log)


async def test_a_cancelled_waiter_does_not_hold_the_rest() -> None:
    lanes, log = Lanes(1), []
    await lanes.acquire(True)
    gone = asyncio.create_task(_request(lanes, False, log, "cancelled"))
    kept = asyncio.create_task(_request(lanes, False, log, "status"))
    await asyncio.sleep(0.01)
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    lanes.release(True)
    await asyncio.wait_for(kept, 1)
    assert [name for name, _ in log] == ["status"]


async def test_until_quiet_waits_for_routing_writes_in_flight_and_waiting() -> None:
    lanes = Lanes(1)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await lanes.until_quiet()  # nothing urgent: at once
    assert loop.time() == start and not lanes.urgent_busy
    await lanes.acquire(True)
    second = asyncio.create_task(lanes.acquire(True))  # waits for the only slot
    quiet = asyncio.create_task(lanes.until_quiet())
    await asyncio.sleep(1)
    lanes.release(True)  # the second write takes the slot: still busy
    await asyncio.sleep(1)
    assert second.done() and not quiet.done() and lanes.urgent_busy
    lanes.release(True)
    await asyncio.sleep(0)
    assert quiet.done() and loop.time() == start + 2


async def test_until_quiet_ends_when_the_last_routing_write_gives_up_waiting() -> None:
    lanes = Lanes(1)
    await lanes.acquire(False)  # the slot is taken by an ordinary request
    waiting = asyncio.create_task(lanes.acquire(True))
    quiet = asyncio.create_task(lanes.until_quiet())
    await asyncio.sleep(1)
    assert not quiet.done()
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    await asyncio.sleep(0)
    assert quiet.done()  # not held until the ordinary request's release
    lanes.release(False)


def test_lanes_need_a_slot() -> None:
    with pytest.raises(ValueError, match="at least one request in flight"):
        Lanes(0)


def test_the_default_in_flight_limit_is_the_settings_default() -> None:
    from modelroute.kube.lanes import MAX_IN_FLIGHT
    from modelroute.settings import Settings

    assert Settings().api_max_in_flight == MAX_IN_FLIGHT


async def test_a_lease_request_goes_ahead_of_the_routing_lane_waiters() -> None:
    lanes = Lanes(1)
    await lanes.acquire(True)
    order: list[str] = []

    async def request(name: str, first: bool) -> None:
        await lanes.acquire(True, first=first)
        order.append(name)
        lanes.release(True)

    reads = [asyncio.create_task(request(f"read-{n}", False)) for n in range(3)]
    await asyncio.sleep(0)
    lease = asyncio.create_task(request("lease", True))
    await asyncio.sleep(0)
    lanes.release(True)
    await asyncio.gather(*reads, lease)
    assert order == ["lease", "read-0", "read-1", "read-2"]


def test_the_default_routing_extra_is_the_settings_default() -> None:
    from modelroute.kube.lanes import ROUTING_EXTRA_IN_FLIGHT
    from modelroute.settings import Settings

    assert Settings().api_routing_extra_in_flight == ROUTING_EXTRA_IN_FLIGHT


def test_the_routing_extra_cannot_be_negative() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        Lanes(1, -1)


async def test_routing_writes_take_the_extra_slots_and_the_rest_stays_at_the_limit() -> None:
    """3 slots and 2 more for routing writes. Three status writes are in flight when a burst
    of seven routing writes begins: the routing writes take the 2 extra slots at once and
    every slot that frees, up to 5 in flight; the waiting status write goes only after the
    last routing write, and no more than 3 others are ever in flight."""
    lanes = Lanes(3, 2)
    assert lanes.capacity == 5
    loop = asyncio.get_running_loop()
    in_flight = {"routing": 0, "other": 0}
    peak = {"routing": 0, "other": 0, "together": 0}
    spans: dict[str, tuple[float, float]] = {}

    async def request(name: str, urgent: bool) -> None:
        kind = "routing" if urgent else "other"
        await lanes.acquire(urgent)
        start = loop.time()
        in_flight[kind] += 1
        peak[kind] = max(peak[kind], in_flight[kind])
        peak["together"] = max(peak["together"], sum(in_flight.values()))
        await asyncio.sleep(1)  # the round trip
        in_flight[kind] -= 1
        lanes.release(urgent)
        spans[name] = (start, loop.time())

    others = [asyncio.create_task(request(f"status-{n}", False)) for n in range(4)]
    await asyncio.sleep(0)
    routing = [asyncio.create_task(request(f"route-{n}", True)) for n in range(7)]
    await asyncio.gather(*others, *routing)
    assert peak == {"routing": 5, "other": 3, "together": 5}
    assert spans["route-0"][0] == spans["route-1"][0] == 0  # the extra slots, at once
    assert spans["route-6"][1] == 2  # 2 at 0 s, 3 at 1 s as the status writes ended, 2 more
    assert spans["status-3"][0] == max(end for _, end in (spans[f"route-{n}"] for n in range(7)))


async def test_without_an_extra_routing_writes_share_the_limit() -> None:
    lanes, log = Lanes(2, 0), []
    assert lanes.capacity == 2
    await lanes.acquire(False)
    await lanes.acquire(True)
    late = asyncio.create_task(_request(lanes, True, log, "route"))
    await asyncio.sleep(1)
    assert log == []  # both slots are taken
    lanes.release(False)
    await late
    assert log == [("route", 1.0)]
    lanes.release(True)
