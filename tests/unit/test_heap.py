"""The heap keeper: freeze at the end of each full collection, unfreeze every period; and the
C allocator's fixed mmap threshold."""

from __future__ import annotations

import gc
import platform
import weakref
from typing import Any

import pytest

from modelroute.control.heap import HeapKeeper, map_large_blocks

FULL_END: tuple[str, dict[str, Any]] = ("stop", {"generation": 2})


def test_freezes_at_the_end_of_each_full_collection_and_unfreezes_every_period() -> None:
    calls: list[str] = []
    now = [0.0]
    callbacks: list[Any] = []
    keeper = HeapKeeper(
        unfreeze_seconds=100.0,
        clock=lambda: now[0],
        freeze=lambda: calls.append("freeze"),
        unfreeze=lambda: calls.append("unfreeze"),
        callbacks=callbacks,
    )
    keeper.install()
    keeper.install()
    assert callbacks == [keeper]  # once
    keeper("start", {"generation": 2})
    keeper("stop", {"generation": 0})
    keeper("stop", {"generation": 1})
    assert calls == []  # only the end of a full collection: nothing dead is left then
    now[0] = 5.0
    keeper(*FULL_END)
    assert calls == ["freeze"]
    now[0] = 100.0
    keeper(*FULL_END)
    assert calls == ["freeze", "unfreeze"]  # this one is not frozen: the next walks it all
    now[0] = 110.0
    keeper(*FULL_END)
    assert calls[-1] == "freeze"
    keeper.uninstall()
    assert callbacks == [] and calls[-1] == "unfreeze"


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_cyclic_garbage_made_before_a_full_collection_is_not_frozen() -> None:
    """The earlier keeper froze up to 5 s after a full collection: a cycle dropped in that
    window was frozen and kept up to the unfreeze period. Frozen at the collection's end, it
    is collected by that very collection."""
    keeper = HeapKeeper(unfreeze_seconds=1e9)
    keeper.install()
    try:
        gc.collect()
        assert gc.get_freeze_count() > 0  # the real gc functions are called
        cycle = _Cycle()
        gone = weakref.ref(cycle)
        del cycle  # garbage now, freed only by a collection
        gc.collect()
        assert gone() is None
    finally:
        keeper.uninstall()
    assert keeper not in gc.callbacks and gc.get_freeze_count() == 0


def test_the_mmap_threshold_is_fixed_through_mallopt() -> None:
    calls: list[tuple[int, int]] = []

    def mallopt(param: int, value: int) -> int:
        calls.append((param, value))
        return 1

    assert map_large_blocks(131072, lambda: mallopt, environ={})
    assert calls == [(-3, 131072)]  # M_MMAP_THRESHOLD


def test_the_mmap_threshold_is_left_alone_when_off_set_by_the_environment_or_missing() -> None:
    calls: list[tuple[int, int]] = []

    def mallopt(param: int, value: int) -> int:
        calls.append((param, value))
        return 0  # refused

    assert not map_large_blocks(0, lambda: mallopt, environ={})
    assert not map_large_blocks(131072, lambda: mallopt, environ={"MALLOC_MMAP_THRESHOLD_": "1"})
    tunables = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=65536"}
    assert not map_large_blocks(131072, lambda: mallopt, environ=tunables)
    assert calls == []
    assert not map_large_blocks(131072, lambda: None, environ={})  # no glibc
    assert not map_large_blocks(131072, lambda: mallopt, environ={})  # glibc said no
    assert calls == [(-3, 131072)]


def test_a_threshold_glibc_would_not_take_is_refused_with_its_range() -> None:
    with pytest.raises(ValueError, match="must be 0 to 33554432 bytes, not 33554433"):
        map_large_blocks(32 * 1024 * 1024 + 1, lambda: None, environ={})
    with pytest.raises(ValueError, match="not -1"):
        map_large_blocks(-1, lambda: None, environ={})


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_glibc_takes_the_threshold() -> None:
    """The real call, on the C library this process runs on (glibc here, as in the image).
    Set to glibc's own starting value, so the test process's allocator changes only in not
    sliding the threshold up."""
    assert map_large_blocks(131072, environ={})
