"""Pure: remember a pure function's answer for the very same (immutable) argument objects.

A mass failover plans once per route, and the routes of one fleet pass the same objects again
and again: a worker's spec lives as long as the spec is unchanged, the status last written as
long as nothing new is written, and routes whose backends took one shared probe hold one
health record object. Answers that depend only on such objects are kept by the objects'
identity: no hashing of unhashable pydantic models, and each entry holds its arguments, so an
``id`` is never reused while its entry lives. Only for functions of frozen (immutable) inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Generic, TypeVar

__all__ = ["IdentityMemo"]

A = TypeVar("A")
B = TypeVar("B")
R = TypeVar("R")

#: Entries a memo keeps before it starts afresh (about one per route and object kind).
MAX_ENTRIES: Final = 20_000


class IdentityMemo(Generic[A, B, R]):
    """``function(a, b)``, computed once per pair of argument objects (by identity)."""

    def __init__(self, function: Callable[[A, B], R], limit: int = MAX_ENTRIES) -> None:
        self._function = function
        self._limit = limit
        self._entries: dict[tuple[int, int], tuple[A, B, R]] = {}

    def __call__(self, a: A, b: B) -> R:
        """The answer for these very objects, from the memo when they were seen before."""
        key = (id(a), id(b))
        entry = self._entries.get(key)
        if entry is not None and entry[0] is a and entry[1] is b:
            return entry[2]
        answer = self._function(a, b)
        if len(self._entries) >= self._limit:
            self._entries.clear()  # cheaper than LRU bookkeeping on every call
        self._entries[key] = (a, b, answer)
        return answer

    def __len__(self) -> int:
        return len(self._entries)
