"""The survivors of a full collection are frozen; the freezer thaws on schedule."""

from __future__ import annotations

import gc

from modelroute import gctune


class Node:
    """An object that can sit in a reference cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


def test_a_full_collection_freezes_its_survivors_and_frees_garbage_cycles() -> None:
    gctune.install()
    try:
        alive = Node()
        gc.collect()
        assert gc.get_freeze_count() > 0
        frozen = gc.get_freeze_count()
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle made after the freeze: still collected
        del a, b
        assert gc.collect() >= 2
        assert gc.get_freeze_count() >= frozen
        assert alive.other is None  # alive throughout, frozen or not
    finally:
        gctune.uninstall()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold()[0] < gctune.YOUNG_THRESHOLD
    assert not any(isinstance(cb, gctune._Freezer) for cb in gc.callbacks)


def test_install_is_idempotent_and_a_due_thaw_unfreezes() -> None:
    gctune.install(thaw_seconds=0.0)  # every full collection thaws instead of freezing
    gctune.install(thaw_seconds=0.0)
    try:
        assert sum(isinstance(cb, gctune._Freezer) for cb in gc.callbacks) == 1
        assert gc.get_threshold()[0] == gctune.YOUNG_THRESHOLD
        gc.freeze()
        gc.collect()
        assert gc.get_freeze_count() == 0
    finally:
        gctune.uninstall()
