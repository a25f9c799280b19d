"""A persistent set of ipset members: a shared base frozenset plus small overlays.

Why: the agent applies every delta to its state (``stockade.state.apply_delta``),
and a frozenset can only change by being copied: adding one member to a
30,000-member set copies all 30,000 (some 600 µs, cache-cold), on every
node, for every pod change in the cluster.  A :class:`MemberSet` is
``(base - removed) | added`` with ``base`` shared between versions, so a
change copies the overlays (small) instead of the base.  When the overlays
grow past :func:`overlay_limit` of the base (about the square root of its
size, which minimises overlay copies plus amortised rebuilds), the next
version is compacted: its content becomes a fresh base.  That compacted
version remembers its overlays relative to the base it left (``_prev``),
so it can still be compared with and subtracted from the versions before
it without a walk over the members.

Semantics are frozenset[str]'s: iteration, ``len``, ``in``, ``==``/``!=``
with frozensets, sets and other MemberSets (either side), the same hash as
the frozenset of the same content, ``-`` ``|`` ``&`` ``^`` ``<=`` ``<``
``>=`` ``>`` and ``isdisjoint`` with frozensets and MemberSets (either
side).  Every operator returns a plain frozenset (as frozenset's own do);
the persistent update is :func:`changed`.  (With a ``set`` on the left a
reflected operator returns a ``set``, as ``set - frozenset`` does.)

Cost: between two versions that share a base (or one step across a
compaction), ``==``, ``<=``, ``-`` and ``^`` are computed from the
overlays alone (a changed member costs O(1), the set's size does not
count).  Everything else walks the members, in C (CPython's set
operations on the base, or the content materialised as a frozenset
first), never in a Python loop.  ``|`` and ``&`` return the whole set, so
they cost its size whatever the operands.

Not here: anything about ipset syntax or the state; the controller keeps
plain frozensets (only the agent's delta path creates MemberSets).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from typing import Any, TypeAlias, TypeVar, cast

__all__ = ["MemberSet", "Members", "changed", "frozen", "overlay_limit"]

_T = TypeVar("_T")
_R = TypeVar("_R")
_EMPTY: frozenset[str] = frozenset()
# A base's identity for all time (``id()`` of a dead base may be reused):
# the one thing a compacted version keeps of the base it left.
_tags = itertools.count(1)

MIN_OVERLAY = 32  # overlays up to this many members are always fine (copying them is ~0.2 µs)


def overlay_limit(base_size: int, tag: int = 0) -> int:
    """How many overlay members (added + removed) a version of a
    ``base_size``-member base may carry before it is compacted.  A change
    copies the overlay (~O(overlay), cache-warm), a compaction copies the
    whole set (~O(base), cache-cold, several times dearer per member): the
    sum over a run of changes is least near ``c * sqrt(base)``.  ``tag``
    (the base's) spreads the limit over 0.5-1.5x of that, so copies of one
    set with the same history (many agents in one process, as in
    ``benchmarks/wire_bench.py``) do not all compact on the same change."""
    spread = 512 + ((tag * 0x9E3779B1) >> 7 & 1023)  # 512..1535, a fixed function of the tag
    return max(MIN_OVERLAY, 4 * math.isqrt(base_size)) * spread >> 10


class MemberSet(AbstractSet[str]):
    """``(base - removed) | added``: see the module docstring.  Made by
    :func:`changed`; never mutated (``_hashed`` is filled in once, lazily)."""

    __slots__ = ("_add", "_base", "_hashed", "_len", "_prev", "_rem", "_tag")

    _base: frozenset[str]  # shared between versions
    _tag: int  # identifies _base (see _tags)
    _add: frozenset[str]  # members not in _base (disjoint from it)
    _rem: frozenset[str]  # members of _base that are not members (a subset of it)
    _len: int
    _hashed: int | None  # the frozenset hash of the content, once computed
    # after a compaction: (tag of the base left, added, removed relative to it)
    _prev: tuple[int, frozenset[str], frozenset[str]] | None

    def __init__(self, base: frozenset[str], added: frozenset[str] = _EMPTY, removed: frozenset[str] = _EMPTY,
                 *, tag: int = 0, prev: tuple[int, frozenset[str], frozenset[str]] | None = None) -> None:
        """``(base - removed) | added``; ``added`` must be disjoint from
        ``base`` and ``removed`` a subset of it (:func:`changed` keeps
        that; checked here only by length)."""
        self._base, self._add, self._rem = base, added, removed
        self._tag = tag or next(_tags)
        self._len = len(base) - len(removed) + len(added)
        self._hashed = None
        self._prev = prev
        if self._len < len(added):
            raise ValueError("MemberSet: removed must be a subset of base")

    # ------------------------------------------------------------ the basics
    def __len__(self) -> int:
        return self._len

    def __contains__(self, x: object) -> bool:
        return x in self._add or (x in self._base and x not in self._rem)

    def __iter__(self) -> Iterator[str]:
        base, add, rem = self._base, self._add, self._rem
        it: Iterable[str] = itertools.filterfalse(rem.__contains__, base) if rem else base
        return itertools.chain(it, add) if add else iter(it)

    def __repr__(self) -> str:
        return f"MemberSet({set(self)!r})" if self._len else "MemberSet()"

    def __reduce__(self) -> tuple[Any, ...]:
        return (MemberSet, (self._base, self._add, self._rem))

    def frozen(self) -> frozenset[str]:
        """The content as a plain frozenset (a copy of the base unless the
        overlays are empty); C-level."""
        base, add, rem = self._base, self._add, self._rem
        if rem:
            return base.difference(rem).union(add) if add else base.difference(rem)
        return base.union(add) if add else base

    def __hash__(self) -> int:
        h = self._hashed
        if h is None:
            h = self._hashed = hash(self.frozen())
        return h

    # ------------------------------------------------------ overlay algebra
    def _pair(self, other: AbstractSet[Any]) -> tuple[frozenset[str], frozenset[str], frozenset[str],
                                                      frozenset[str]] | None:
        """``(added, removed)`` of ``self`` and of ``other`` relative to one
        common base, or None when they have none (within one compaction)."""
        if isinstance(other, MemberSet):
            if other._base is self._base:
                return self._add, self._rem, other._add, other._rem
            sp, op = self._prev, other._prev
            if sp is not None and sp[0] == other._tag:
                return sp[1], sp[2], other._add, other._rem
            if op is not None and op[0] == self._tag:
                return self._add, self._rem, op[1], op[2]
            if sp is not None and op is not None and sp[0] == op[0]:
                return sp[1], sp[2], op[1], op[2]
            return None
        if other is self._base:
            return self._add, self._rem, _EMPTY, _EMPTY
        return None

    # ------------------------------------------------------------ comparing
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AbstractSet):
            return NotImplemented
        if len(other) != self._len:
            return False
        p = self._pair(other)
        if p is not None:
            return p[0] == p[2] and p[1] == p[3]
        return self._within(_flat(other))

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def _within(self, o: frozenset[Any] | set[Any]) -> bool:
        """``self <= o``, C-level: the added members are in ``o`` and the
        base members ``o`` lacks were all removed."""
        return self._add.issubset(o) and self._base.difference(o).issubset(self._rem)

    def __le__(self, other: AbstractSet[Any]) -> bool:
        if not isinstance(other, AbstractSet):
            return NotImplemented
        if self._len > len(other):
            return False
        p = self._pair(other)
        if p is not None:  # self - other = (a1 - a2) | (r2 - r1) is empty
            return p[0].issubset(p[2]) and p[3].issubset(p[1])
        return self._within(_flat(other))

    def __lt__(self, other: AbstractSet[Any]) -> bool:
        if not isinstance(other, AbstractSet):
            return NotImplemented
        return self._len < len(other) and self.__le__(other)

    def __ge__(self, other: AbstractSet[Any]) -> bool:
        if not isinstance(other, AbstractSet):
            return NotImplemented
        if self._len < len(other):
            return False
        p = self._pair(other)
        if p is not None:  # other - self = (a2 - a1) | (r1 - r2) is empty
            return p[2].issubset(p[0]) and p[1].issubset(p[3])
        o = _flat(other)
        rest = o.difference(self._add)
        return rest.issubset(self._base) and rest.isdisjoint(self._rem)

    def __gt__(self, other: AbstractSet[Any]) -> bool:
        if not isinstance(other, AbstractSet):
            return NotImplemented
        return self._len > len(other) and self.__ge__(other)

    def isdisjoint(self, other: Iterable[Any]) -> bool:
        o = _flat(other) if isinstance(other, AbstractSet) else frozenset(other)
        return self._add.isdisjoint(o) and self._base.intersection(o).issubset(self._rem)

    # ------------------------------------------------------------- algebra
    def __sub__(self, other: AbstractSet[Any]) -> frozenset[str]:
        if not isinstance(other, AbstractSet):
            return NotImplemented
        p = self._pair(other)
        if p is not None:
            return _minus(*p)
        o = _flat(other)
        return self._base.difference(self._rem, o).union(self._add.difference(o))

    def __rsub__(self, other: AbstractSet[_T]) -> frozenset[_T]:
        return _like(other, self._rsub(other))

    def _rsub(self, other: AbstractSet[_T]) -> frozenset[_T]:
        if not isinstance(other, AbstractSet):
            return NotImplemented
        p = self._pair(other)
        if p is not None:
            return _minus(p[2], p[3], p[0], p[1])  # type: ignore[return-value]
        o: frozenset[_T] | set[_T] = _flat(other)
        return frozenset(o.difference(self._add, self._base)).union(self._rem.intersection(o))  # type: ignore[arg-type]

    def __xor__(self, other: AbstractSet[_T]) -> frozenset[str | _T]:
        if not isinstance(other, AbstractSet):
            return NotImplemented
        p = self._pair(other)
        if p is not None:
            a1, r1, a2, r2 = p
            return _minus(a1, r1, a2, r2).union(_minus(a2, r2, a1, r1))
        return self.frozen().symmetric_difference(_flat(other))

    def __rxor__(self, other: AbstractSet[Any]) -> frozenset[Any]:
        return _like(other, self.__xor__(other))

    def __or__(self, other: AbstractSet[_T]) -> frozenset[str | _T]:
        if not isinstance(other, AbstractSet):
            return NotImplemented
        if isinstance(other, MemberSet) and other._base is self._base:
            return self._base.difference(self._rem.intersection(other._rem)).union(self._add, other._add)
        return self._base.difference(self._rem).union(self._add, _flat(other))

    def __ror__(self, other: AbstractSet[Any]) -> frozenset[Any]:
        return _like(other, self.__or__(other))

    def __and__(self, other: AbstractSet[Any]) -> frozenset[str]:
        if not isinstance(other, AbstractSet):
            return NotImplemented
        o = _flat(other)
        return self._base.intersection(o).difference(self._rem).union(self._add.intersection(o))

    def __rand__(self, other: AbstractSet[Any]) -> frozenset[str]:
        return _like(other, self.__and__(other))


Members: TypeAlias = frozenset[str] | MemberSet
"""What an ipset's members are: a frozenset (the controller, a decoded
snapshot) or a :class:`MemberSet` (the agent, after a delta)."""


def _like(other: object, result: _R) -> _R:
    """A reflected operation's result in the left operand's type: ``set``
    for a set on the left (as ``set - frozenset`` gives), else the
    frozenset (or NotImplemented) as it is."""
    if isinstance(other, set) and isinstance(result, frozenset):
        return cast(_R, set(result))
    return result


def _flat(s: AbstractSet[Any]) -> frozenset[Any] | set[Any]:
    """``s`` as a built-in set, so CPython's set operations run in C."""
    if isinstance(s, (frozenset, set)):
        return s
    if isinstance(s, MemberSet):
        return s.frozen()
    return frozenset(s)


def _minus(a1: frozenset[str], r1: frozenset[str], a2: frozenset[str], r2: frozenset[str]) -> frozenset[str]:
    """``x - y`` for ``x = (B - r1) | a1`` and ``y = (B - r2) | a2``: from
    ``a1`` only what ``y`` did not add, from ``B`` what ``y`` removed and ``x`` did not."""
    return a1.difference(a2).union(r2.difference(r1))


def frozen(members: Members) -> frozenset[str]:
    """``members`` as a plain frozenset (itself when it is one)."""
    return members.frozen() if isinstance(members, MemberSet) else members


def changed(cur: Members, added: AbstractSet[str], removed: AbstractSet[str]) -> Members:
    """``(cur - removed) | added``, sharing ``cur``'s base: costs the sizes
    of ``added``, ``removed`` and the overlays, not of the set, except when
    the overlays outgrow :func:`overlay_limit` and the result is compacted
    (one C-level copy).  ``cur`` itself when nothing changes."""
    if isinstance(cur, MemberSet):
        base, add, rem, tag = cur._base, cur._add, cur._rem, cur._tag
    else:
        if not added and not removed:
            return cur
        base, add, rem, tag = cur, _EMPTY, _EMPTY, next(_tags)
    if removed:
        if add and not add.isdisjoint(removed):
            add = add.difference(removed)
        gone = base.intersection(removed)  # C: walks the smaller of the two
        if gone and not gone.issubset(rem):
            rem = rem.union(gone)
    if added:
        if rem and not rem.isdisjoint(added):
            rem = rem.difference(added)
        new = frozenset(added).difference(base)
        if new and not new.issubset(add):
            add = add.union(new)
    if isinstance(cur, MemberSet):
        if add is cur._add and rem is cur._rem:
            return cur
    elif not add and not rem:
        return cur
    if not add and not rem:
        return base  # back to the base's content: the base itself
    if len(add) + len(rem) > overlay_limit(len(base), tag):
        # compact: the content becomes a fresh base; the overlays relative to
        # the old one are kept so the previous version is still one step away
        fresh = base.difference(rem).union(add) if rem else base.union(add)
        return MemberSet(fresh, prev=(tag, add, rem) if isinstance(cur, MemberSet) else None)
    return MemberSet(base, add, rem, tag=tag)
