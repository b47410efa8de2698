"""Pure: remember a pure function's answer for the very same (immutable) argument object.

A mass failover plans once per route, and the routes of one fleet pass the same objects again
and again: a worker's spec lives as long as the spec is unchanged, the status last written as
long as nothing new is written, and routes whose backends took one shared probe hold one
health record object. Answers that depend only on such an object (and a small hashable value,
e.g. a backend's name, which each route parsed into a string object of its own) are kept by
the object's identity: no hashing of unhashable pydantic models, and each entry holds its
object, so an ``id`` is never reused while its entry lives. Only for frozen (immutable) inputs.
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
    """``function(a, b)``, computed once per object ``a`` (by identity) and value ``b``."""

    def __init__(self, function: Callable[[A, B], R], limit: int = MAX_ENTRIES) -> None:
        self._function = function
        self._limit = limit
        self._entries: dict[tuple[int, B], tuple[A, R]] = {}

    def __call__(self, a: A, b: B) -> R:
        """The answer for this very ``a`` and a ``b`` equal to an earlier one, from the memo."""
        key = (id(a), b)
        entry = self._entries.get(key)
        if entry is not None and entry[0] is a:
            return entry[1]
        answer = self._function(a, b)
        if len(self._entries) >= self._limit:
            self._entries.clear()  # cheaper than LRU bookkeeping on every call
        self._entries[key] = (a, answer)
        return answer

    def __len__(self) -> int:
        return len(self._entries)
