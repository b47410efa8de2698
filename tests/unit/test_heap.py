"""The heap keeper: freeze after a full collection, unfreeze every period."""

from __future__ import annotations

from modelroute.control.heap import HeapKeeper


def test_freezes_after_each_full_collection_and_unfreezes_every_period() -> None:
    calls: list[str] = []
    collections = [0]
    keeper = HeapKeeper(
        unfreeze_seconds=100.0,
        full_collections=lambda: collections[0],
        freeze=lambda: calls.append("freeze"),
        unfreeze=lambda: calls.append("unfreeze"),
    )
    keeper.tick(0.0)
    assert calls == []  # no full collection yet: nothing has proved long-lived
    collections[0] = 1
    keeper.tick(5.0)
    assert calls == ["freeze"]
    keeper.tick(10.0)
    assert calls == ["freeze"]  # nothing new
    collections[0] = 3
    keeper.tick(15.0)
    assert calls == ["freeze", "freeze"]
    keeper.tick(100.0)
    assert calls == ["freeze", "freeze", "unfreeze"]
    keeper.tick(105.0)
    assert calls[-1] == "unfreeze"  # no collection since: stays unfrozen
    collections[0] = 4  # the full collection that visited everything
    keeper.tick(110.0)
    assert calls[-1] == "freeze"


def test_the_real_gc_functions_work() -> None:
    import gc

    keeper = HeapKeeper(unfreeze_seconds=1e9)
    gc.collect()
    try:
        keeper.tick(0.0)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
