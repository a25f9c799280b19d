"""``stockade.state.digest``, computed again in a fraction of the time.

The digest has two levels: sha256 over the node name, the hooks and the
content hash of every set and chain (``stockade.state.canonical_with``).
A set's hash costs milliseconds for tens of thousands of members, and both
the controller (every publish) and the agent (every delta it verifies)
need the digest.  States change by a few sets or chains at a time and
unchanged sets/chains are the *same objects* (immutable values shared
between versions), so :class:`DigestCache` keeps each set's and chain's
hash keyed by object identity and only hashes what is new; the top level
is a few kilobytes whatever the number of members.

The result is the same as ``stockade.state.digest`` (tests check that on
many states).  It does no I/O and keeps only the hashes used by the last
call (memory stays proportional to one state), or, when shared between
many states (the controller: one cache for all nodes, so a set shared by
many nodes is hashed once), keeps everything until
:meth:`DigestCache.retain` drops what the live states no longer use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from stockade.state import Chain, IPSet, NodeState, canonical_with, chain_hash, set_hash


class DigestCache:
    """``digest(state)`` equal to ``stockade.state.digest(state)``, with fragment reuse."""

    def __init__(self) -> None:
        self._frags: dict[int, tuple[Any, str]] = {}

    def _hash(self, obj: IPSet | Chain, new: dict[int, tuple[Any, str]]) -> str:
        k = id(obj)
        hit = self._frags.get(k)
        if hit is None or hit[0] is not obj:
            hit = (obj, set_hash(obj) if isinstance(obj, IPSet) else chain_hash(obj))
            new[k] = hit
        elif new is not self._frags:
            new[k] = hit
        return hit[1]

    def retain(self, states: Iterable[NodeState]) -> None:
        """Keep only the fragments of sets and chains used by ``states``."""
        live: dict[int, tuple[Any, str]] = {}
        for st in states:
            objs: list[Any] = [*st.sets.values(), *st.v4.chains.values(), *st.v6.chains.values()]
            for o in objs:
                hit = self._frags.get(id(o))
                if hit is not None and hit[0] is o:
                    live[id(o)] = hit
        self._frags = live

    def __len__(self) -> int:
        return len(self._frags)

    def digest(self, state: NodeState, evict: bool = True) -> str:
        """The digest of ``state``.  ``evict``: forget fragments this state
        does not use (one state per cache); False: keep them (shared cache)."""
        new: dict[int, tuple[Any, str]] = {} if evict else self._frags
        top = canonical_with(state, lambda o: self._hash(o, new), lambda o: self._hash(o, new))
        if evict:
            self._frags = new
        return hashlib.sha256(top).hexdigest()
