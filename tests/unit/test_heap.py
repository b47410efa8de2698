"""The heap keeper: freeze at the end of each full collection, unfreeze every period."""

from __future__ import annotations

import gc
import weakref
from typing import Any

from modelroute.control.heap import HeapKeeper

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
