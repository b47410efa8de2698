"""core.memo: answers kept by the identity of the (immutable) arguments."""

from __future__ import annotations

import gc

from modelroute.core.memo import IdentityMemo


def test_the_same_object_with_an_equal_value_is_answered_once() -> None:
    calls: list[tuple[str, ...]] = []

    def joined(a: tuple[str, ...], b: str) -> str:
        calls.append(a)
        return b.join(a)

    memo = IdentityMemo(joined)
    names = ("vendor", "inhouse")
    assert memo(names, "/") == "vendor/inhouse"
    assert memo(names, "".join(["/"])) == "vendor/inhouse"  # b by value
    assert len(calls) == 1
    assert memo(names, ",") == "vendor,inhouse"  # another value: asked again
    copy = tuple(list(names))  # equal, not the same object: asked again
    assert memo(copy, "/") == "vendor/inhouse"
    assert len(calls) == 3


def test_an_entry_keeps_its_arguments_so_an_id_is_never_mistaken() -> None:
    memo: IdentityMemo[list[int], None, int] = IdentityMemo(lambda a, _: len(a))
    for size in range(50):
        # Each list dies after its call unless the memo holds it: a reused id would answer
        # with another list's length.
        assert memo(list(range(size)), None) == size


def test_the_memo_starts_afresh_at_its_limit() -> None:
    memo: IdentityMemo[object, None, tuple[object, None]] = IdentityMemo(
        lambda a, b: (a, b), limit=3
    )
    keep = [object() for _ in range(4)]
    for key in keep:
        memo(key, None)
    assert len(memo) == 1  # cleared when the fourth came
    assert memo(keep[3], None) == (keep[3], None)


class _Spec:
    """Takes weak references, as ModelRouteSpec and HealthRecord do."""

    def __init__(self, size: int) -> None:
        self.size = size


def test_an_entry_goes_with_its_object_so_no_dead_spec_is_kept_alive() -> None:
    memo: IdentityMemo[_Spec, str, int] = IdentityMemo(lambda a, _: a.size)
    live = [_Spec(n) for n in range(10)]
    for spec in live:
        assert memo(spec, "vendor") == spec.size
        assert memo(spec, "inhouse") == spec.size
    assert len(memo) == 20
    del live[5:], spec
    gc.collect()  # not needed in CPython (reference counting); no harm either
    assert len(memo) == 10
    assert [memo(spec, "vendor") for spec in live] == list(range(5))
    assert len(memo) == 10  # answered from the memo, nothing added


def test_an_object_with_a_reused_id_is_never_answered_for_a_dead_one() -> None:
    memo: IdentityMemo[_Spec, None, int] = IdentityMemo(lambda a, _: a.size)
    seen: set[int] = set()
    for size in range(200):
        spec = _Spec(size)  # the last one dies here: its memory (and id) is often reused
        seen.add(id(spec))
        assert memo(spec, None) == size
    assert len(seen) < 200  # ids were reused, so the check above meant something
    assert len(memo) == 1
