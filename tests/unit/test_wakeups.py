"""A route's timed wake-ups (control/wakeups.py). The loop's time is faked with looptime:
the waits below take no real time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from modelroute.control.wakeups import Wakeups

pytestmark = pytest.mark.looptime


async def settle(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def test_quiet_changes_wake_once_after_the_delay_and_keep_the_first_time() -> None:
    dirty = asyncio.Event()
    wakeups = Wakeups(dirty)
    wakeups.quiet(30, at=10.0)
    await settle(5)
    wakeups.quiet(30, at=15.0)  # a second change: same timer, first time kept
    await settle(24.9)
    assert not dirty.is_set()
    await settle(0.2)
    assert dirty.is_set()
    assert wakeups.reconciling() == 10.0
    assert wakeups.reconciling() is None  # taken in by that plan


async def test_a_plan_drops_the_quiet_timer_and_later_changes_start_afresh() -> None:
    dirty = asyncio.Event()
    wakeups = Wakeups(dirty)
    wakeups.quiet(30, at=10.0)
    assert wakeups.reconciling() == 10.0
    await settle(31)
    assert not dirty.is_set()  # that plan took it in
    wakeups.quiet(30, at=12.0)  # came while that plan ran: owed to the next one
    await settle(30.1)
    assert dirty.is_set()
    assert wakeups.reconciling() == 12.0


async def test_hurry_wakes_at_once_only_when_a_quiet_plan_is_owed() -> None:
    dirty = asyncio.Event()
    wakeups = Wakeups(dirty)
    wakeups.hurry()
    assert not dirty.is_set()  # nothing owed: nothing to plan
    wakeups.quiet(60.0, at=10.0)
    wakeups.hurry()
    assert dirty.is_set()
    assert wakeups.reconciling() == 10.0  # the change's time goes with the plan


async def test_a_recheck_replaces_the_previous_one_and_a_past_one_wakes_at_once() -> None:
    dirty = asyncio.Event()
    wakeups = Wakeups(dirty)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    wakeups.recheck(now + timedelta(seconds=5), now)
    wakeups.recheck(now + timedelta(seconds=60), now)  # replaces the 5 s one
    await settle(10)
    assert not dirty.is_set()
    wakeups.recheck(now - timedelta(seconds=1), now)  # ended while the plan ran
    await settle(0.01)
    assert dirty.is_set()


async def test_cancel_stops_every_timer() -> None:
    dirty = asyncio.Event()
    wakeups = Wakeups(dirty)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    wakeups.quiet(1, at=1.0)
    wakeups.retry(1)
    wakeups.recheck(now + timedelta(seconds=1), now)
    wakeups.cancel()
    await settle(5)
    assert not dirty.is_set()
