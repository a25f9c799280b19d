"""``stockade.state.digest``, computed again in a fraction of the time.

The digest has two levels: sha256 over a small header (node name, counts,
hooks) and the sums of the content hashes of the sets and of each
family's chains (``stockade.state.canonical``).
A set's hash costs milliseconds for tens of thousands of members, and both
the controller (every publish) and the agent (every delta it verifies)
need the digest.  States change by a few sets or chains at a time and
unchanged sets/chains are the *same objects* (immutable values shared
between versions), so :class:`DigestCache` keeps each set's and chain's
hash keyed by object identity and only hashes what is new.

The top level can also be carried forward: :class:`Top` keeps, for one
state, each set's and chain's hash and the sums, and
:meth:`DigestCache.top_after` derives the next state's top from the
previous one and the :class:`~stockade.state.NodeDelta` between them:
only what the delta names is hashed, and the sums move by the old and
new hashes of those names.  A single member change in a state of 160 sets
and chains then costs one set hash (itself carried, see
``stockade.state.member_sum``) and a sha256 of a few hundred bytes: this
is what the controller does for each node a change reaches, and what
each agent does for every delta it verifies.

The result is the same as ``stockade.state.digest`` (tests check that on
many states and delta sequences).  It does no I/O and keeps only the hashes used by the last
call (memory stays proportional to one state), or, when shared between
many states (the controller: one cache for all nodes, so a set shared by
many nodes is hashed once), keeps everything until
:meth:`DigestCache.retain` drops what the live states no longer use.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from stockade.identity_cache import IdentityCache
from stockade.state import (
    FAMILIES,
    MEMBER_SUM_MOD,
    Chain,
    Family,
    Hook,
    IPSet,
    NodeDelta,
    NodeState,
    Rule,
    chain_hash,
    hash_sum,
    member_sum,
    rule_text,
    set_hash_of,
    top_bytes,
    top_head,
)


class _Section:
    """One part of the top level (the sets, or one family's chains): each
    name's hash and the :func:`~stockade.state.hash_sum` of them all."""

    __slots__ = ("hashes", "total")

    def __init__(self, hashes: dict[str, str], total: int | None = None) -> None:
        self.hashes = hashes
        self.total = hash_sum(hashes.values()) if total is None else total

    def patched(self, changed: dict[str, str], removed: Iterable[str]) -> _Section:
        """This section with ``changed`` names (re)hashed and ``removed``
        names gone: the sum moves by what changed only."""
        removed = [n for n in removed if n in self.hashes]
        if not changed and not removed:
            return self
        hashes = dict(self.hashes)
        total = self.total
        for n in removed:
            total -= int(hashes.pop(n)[:32], 16)
        for n, h in changed.items():
            old = hashes.get(n)
            if old != h:
                if old is not None:
                    total -= int(old[:32], 16)
                total += int(h[:32], 16)
                hashes[n] = h
        return _Section(hashes, total % MEMBER_SUM_MOD)


class Top:
    """The digest's top level for one state (see the module docstring):
    ``digest`` is ``stockade.state.digest`` of that state.  ``head``: the
    header of a state with the same counts and hooks, when known."""

    __slots__ = ("chains", "digest", "head", "hooks", "node", "sets")

    def __init__(self, node: str, sets: _Section, chains: tuple[_Section, _Section],
                 hooks: tuple[tuple[Hook, ...], tuple[Hook, ...]], head: str | None = None) -> None:
        self.node, self.sets, self.chains, self.hooks = node, sets, chains, hooks
        if head is None:
            head = top_head(node, len(sets.hashes),
                            {fam: (len(chains[i].hashes), hooks[i]) for i, fam in enumerate(FAMILIES)})
        self.head = head
        body = top_bytes(head, sets.total, [c.total for c in chains])
        self.digest = hashlib.sha256(body).hexdigest()

    def fits(self, state: NodeState) -> bool:
        """Whether ``state`` has the names this top was made of (a cheap guard)."""
        return (state.node == self.node and len(state.sets) == len(self.sets.hashes)
                and all(len(state.family(fam).chains) == len(self.chains[i].hashes)
                        for i, fam in enumerate(FAMILIES)))


RULES_KEPT = 16384  # rule texts a DigestCache keeps (cleared when full)


class DigestCache:
    """``digest(state)`` equal to ``stockade.state.digest(state)``, with fragment reuse."""

    def __init__(self, cache_rules: bool = False) -> None:
        self._frags: dict[int, tuple[Any, str]] = {}
        # per set name: the last set object hashed and its member sums, so the
        # next version of that set is hashed from what changed
        self._sums: dict[str, _Sums] = {}
        # ``cache_rules`` (the controller): rule objects are shared between the
        # chains of many nodes (a policy edit re-writes ~50-rule chains on
        # each node it reaches), so keep their canonical text by identity, at
        # most RULES_KEPT of them (an agent decodes new rule objects every
        # time: nothing to gain, only objects kept alive)
        self._rule_text: Callable[[Rule], str] | None = None
        if cache_rules:
            self._rule_text = functools.partial(IdentityCache[Rule, str](RULES_KEPT).get, make=rule_text)

    def _hash(self, obj: IPSet | Chain, new: dict[int, tuple[Any, str]]) -> str:
        k = id(obj)
        hit = self._frags.get(k)
        if hit is None or hit[0] is not obj:
            hit = (obj, self._set_hash(obj) if isinstance(obj, IPSet)
                   else chain_hash(obj, self._rule_text))
            new[k] = hit
        elif new is not self._frags:
            new[k] = hit
        return hit[1]

    def _set_hash(self, s: IPSet) -> str:
        sums = _sums_after(self._sums.get(s.name), s)
        self._sums[s.name] = sums
        return set_hash_of(s, sums[1], sums[2])

    def retain(self, states: Iterable[NodeState]) -> None:
        """Keep only the fragments of sets and chains used by ``states``."""
        states = list(states)
        live: dict[int, tuple[Any, str]] = {}
        for st in states:
            objs: list[Any] = [*st.sets.values(), *st.v4.chains.values(), *st.v6.chains.values()]
            for o in objs:
                hit = self._frags.get(id(o))
                if hit is not None and hit[0] is o:
                    live[id(o)] = hit
        self._frags = live
        names = {n for st in states for n in st.sets}
        self._sums = {n: v for n, v in self._sums.items() if n in names}

    def __len__(self) -> int:
        return len(self._frags)

    def top(self, state: NodeState, evict: bool = True) -> Top:
        """The :class:`Top` of ``state``, computed over every set and chain
        (``evict`` as for :meth:`digest`)."""
        new: dict[int, tuple[Any, str]] = {} if evict else self._frags
        sets = _Section({n: self._hash(s, new) for n, s in state.sets.items()})
        chains = tuple(_Section({n: self._hash(c, new) for n, c in state.family(fam).chains.items()})
                       for fam in FAMILIES)
        if evict:
            self._frags = new
            self._sums = {n: self._sums[n] for n in state.sets if n in self._sums}
        return Top(state.node, sets, (chains[0], chains[1]), (state.v4.hooks, state.v6.hooks))

    def top_after(self, base: Top, delta: NodeDelta, state: NodeState) -> Top:
        """The :class:`Top` of ``state``, which is ``base``'s state with
        ``delta`` applied: only the sets and chains the delta names are
        hashed, through the shared fragment cache (the controller: one set
        change reaches hundreds of nodes; an agent carries its one state
        with :class:`Carried`).  Falls back to :meth:`top` when the delta
        does not fit ``base``."""
        def h(obj: IPSet | Chain) -> str:
            return self._hash(obj, self._frags)
        top = _carry(base, delta, state, h, h)
        return top if top is not None else self.top(state, evict=False)

    def digest(self, state: NodeState, evict: bool = True) -> str:
        """The digest of ``state``.  ``evict``: forget fragments this state
        does not use (one state per cache); False: keep them (shared cache)."""
        return self.top(state, evict).digest


def _carry(base: Top, delta: NodeDelta, state: NodeState, set_h: Callable[[IPSet], str],
           chain_h: Callable[[Chain], str]) -> Top | None:
    """``base`` carried through ``delta`` to ``state`` (only what the delta
    names is hashed), or None when the delta does not fit."""
    if delta.node != base.node or state.node != base.node:
        return None
    sets = state.sets
    try:
        changed = {s.name: set_h(sets[s.name]) for s in delta.sets_upserted}
        for m in delta.set_members:
            changed[m.name] = set_h(sets[m.name])
        chains = base.chains
        if delta.chains_upserted or delta.chains_removed:
            chains = (_chains_after(base.chains[0], "inet", delta, state, chain_h),
                      _chains_after(base.chains[1], "inet6", delta, state, chain_h))
    except KeyError:  # the delta names something the state lacks: not base + delta
        return None
    sec = base.sets.patched(changed, delta.sets_removed)
    hooks = (state.v4.hooks, state.v6.hooks)
    same_shape = (len(sec.hashes) == len(base.sets.hashes) and hooks == base.hooks
                  and all(len(c.hashes) == len(b.hashes) for c, b in zip(chains, base.chains, strict=True)))
    top = Top(state.node, sec, chains, hooks, base.head if same_shape else None)
    return top if top.fits(state) else None


def _chains_after(sec: _Section, fam: Family, delta: NodeDelta, state: NodeState,
                  chain_h: Callable[[Chain], str]) -> _Section:
    chains = state.family(fam).chains
    changed = {c.name: chain_h(chains[c.name]) for f, c in delta.chains_upserted if f == fam}
    return sec.patched(changed, [n for f, n in delta.chains_removed if f == fam])


_Sums = tuple[IPSet, int, int]  # a set and the member sums of its members and of its nomatch entries


def _sums_after(prev: _Sums | None, s: IPSet) -> _Sums:
    """``s``'s member sums, from ``prev`` (an earlier version of the same
    set) when few members changed: frozenset differences run in C, a
    member's hash does not."""
    if prev is not None:
        old = prev[0]
        if old is s:
            return prev
        if old.header() == s.header():
            added, removed = s.members - old.members, old.members - s.members
            if len(added) + len(removed) <= len(s.members) // 4:
                n_added, n_removed = s.nomatch - old.nomatch, old.nomatch - s.nomatch
                return (s, (prev[1] + member_sum(added) - member_sum(removed)) % MEMBER_SUM_MOD,
                        (prev[2] + member_sum(n_added) - member_sum(n_removed)) % MEMBER_SUM_MOD)
    return (s, member_sum(s.members), member_sum(s.nomatch))


class Carried:
    """One node's digest carried from state to state through its deltas
    (the agent: one per stream).  Besides the :class:`Top` it keeps every
    set's member sums (``stockade.state.member_sum``), so a member change
    re-hashes its set from the members the delta names alone.  Values are
    immutable: :meth:`after` returns a new one, which the agent keeps only
    if the state it describes is applied."""

    __slots__ = ("_sums", "top")

    def __init__(self, top: Top, sums: dict[str, _Sums]) -> None:
        self.top, self._sums = top, sums

    @property
    def digest(self) -> str:
        return self.top.digest

    @classmethod
    def of(cls, state: NodeState) -> Carried:
        """Computed over the whole state (a snapshot)."""
        sums: dict[str, _Sums] = {n: (s, member_sum(s.members), member_sum(s.nomatch)) for n, s in state.sets.items()}
        sets = _Section({n: set_hash_of(*o) for n, o in sums.items()})
        chains = tuple(_Section({n: chain_hash(c) for n, c in state.family(fam).chains.items()})
                       for fam in FAMILIES)
        return cls(Top(state.node, sets, (chains[0], chains[1]), (state.v4.hooks, state.v6.hooks)), sums)

    def after(self, base: NodeState, delta: NodeDelta, state: NodeState) -> Carried:
        """For ``state`` = ``base`` (the state this value describes) with
        ``delta`` applied; computed in full when the delta does not fit."""
        sums = dict(self._sums)
        members = {m.name: m for m in delta.set_members}

        def set_h(s: IPSet) -> str:
            md, hit = members.get(s.name), sums.get(s.name)
            if md is not None and hit is not None and hit[0] is base.sets.get(s.name):
                o: _Sums = (s, (hit[1] + member_sum(md.added) - member_sum(md.removed)) % MEMBER_SUM_MOD,
                            (hit[2] + member_sum(md.nomatch_added) - member_sum(md.nomatch_removed)) % MEMBER_SUM_MOD)
            else:
                o = (s, member_sum(s.members), member_sum(s.nomatch))
            sums[s.name] = o
            return set_hash_of(*o)

        top = _carry(self.top, delta, state, set_h, chain_hash)
        if top is None:
            return Carried.of(state)
        for n in delta.sets_removed:
            sums.pop(n, None)
        return Carried(top, sums)
