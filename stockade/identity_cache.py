"""Values computed from immutable objects, remembered by the objects' identity.

The controller's states share objects: one rule, set or chain object
serves the states of hundreds of nodes, so what is derived from it (its
serialized bytes, its canonical text) is worth computing once.  Equal
content is not looked for (hashing a value costs about what deriving from
it does): only the same object hits.  Each entry keeps its object alive,
so an id in the cache cannot be reused by another object while the entry
exists.  At most ``limit`` entries: when full, all are dropped (the
objects of the changes in flight come back at once).  Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class IdentityCache(Generic[K, V]):
    __slots__ = ("_entries", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: dict[int, tuple[K, V]] = {}

    def get(self, key: K, make: Callable[[K], V]) -> V:
        """``make(key)``, computed once while ``key`` is cached."""
        hit = self._entries.get(id(key))
        if hit is not None:
            return hit[1]
        value = make(key)
        if len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[id(key)] = (key, value)
        return value

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
