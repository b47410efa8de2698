"""Pure: remember a pure function's answer for the very same (immutable) argument object.

A mass failover plans once per route, and the routes of one fleet pass the same objects again
and again: a worker's spec lives as long as the spec is unchanged, the status last written as
long as nothing new is written, and routes whose backends took one shared probe hold one
health record object. Answers that depend only on such an object (and a small hashable value,
e.g. a backend's name, which each route parsed into a string object of its own) are kept by
the object's identity: no hashing of unhashable pydantic models. Only for frozen (immutable)
inputs.

An entry holds its object weakly (specs and health records take weak references): it goes when
the object dies, so a memo keeps no dead spec alive, and, gone before the object's memory is
freed, it can never answer for a later object given the same ``id``. An object without weak
references (a tuple, a list) is held, so its ``id`` is not reused while its entry lives; the
count limit bounds those.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from functools import partial
from typing import Final, Generic, TypeVar

__all__ = ["IdentityMemo"]

A = TypeVar("A")
B = TypeVar("B")
R = TypeVar("R")

#: Entries a memo keeps before it starts afresh: a backstop (weak entries go with their object).
MAX_ENTRIES: Final = 20_000


class _Held(Generic[A]):
    """A strong reference that reads like a weak one: for objects that take no weak ones."""

    __slots__ = ("_obj",)

    def __init__(self, obj: A) -> None:
        self._obj = obj

    def __call__(self) -> A:
        return self._obj


class IdentityMemo(Generic[A, B, R]):
    """``function(a, b)``, computed once per object ``a`` (by identity) and value ``b``."""

    def __init__(self, function: Callable[[A, B], R], limit: int = MAX_ENTRIES) -> None:
        self._function = function
        self._limit = limit
        self._entries: dict[tuple[int, B], tuple[Callable[[], A | None], R]] = {}

    def __call__(self, a: A, b: B) -> R:
        """The answer for this very ``a`` and a ``b`` equal to an earlier one, from the memo."""
        key = (id(a), b)
        entry = self._entries.get(key)
        if entry is not None and entry[0]() is a:
            return entry[1]
        answer = self._function(a, b)
        if len(self._entries) >= self._limit:
            self._entries.clear()  # cheaper than LRU bookkeeping on every call
        held: Callable[[], A | None]
        try:
            held = weakref.ref(a, partial(self._drop, key))
        except TypeError:  # no weak references to this type
            held = _Held(a)
        self._entries[key] = (held, answer)
        return answer

    def _drop(self, key: tuple[int, B], ref: weakref.ref[A]) -> None:
        # Called as the object dies; the entry may already be another's (after a clear).
        entry = self._entries.get(key)
        if entry is not None and entry[0] is ref:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
