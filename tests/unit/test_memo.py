"""core.memo: answers kept by the identity of the (immutable) arguments."""

from __future__ import annotations

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
