"""``stockade.state.digest``, computed again in a fraction of the time.

The digest is sha256 over the canonical JSON of the whole node state; for
a state with tens of thousands of members that costs milliseconds, and
both the controller (every publish) and the agent (every delta it
verifies) need it.  States change by a few sets or chains at a time and
unchanged sets/chains are the *same objects* (immutable values shared
between versions), so :class:`DigestCache` keeps each set's and chain's
JSON fragment keyed by object identity and only renders what is new.

The result is byte-for-byte the same as ``stockade.state.digest`` (tests
check that on many states); if ``stockade.state.canonical`` ever changes
shape, those tests fail.  It does no I/O and keeps only the fragments
used by the last call (memory stays proportional to one state), or, when
shared between many states (the controller: one cache for all nodes, so a
set shared by many nodes is rendered once), keeps everything until
:meth:`DigestCache.retain` drops what the live states no longer use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from stockade.state import FAMILIES, Chain, IPSet, NodeState, _rule_obj

_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


class DigestCache:
    """``digest(state)`` equal to ``stockade.state.digest(state)``, with fragment reuse."""

    def __init__(self) -> None:
        self._frags: dict[int, tuple[Any, bytes]] = {}

    def _frag(self, obj: IPSet | Chain, new: dict[int, tuple[Any, bytes]]) -> bytes:
        k = id(obj)
        hit = self._frags.get(k)
        if hit is None or hit[0] is not obj:
            if isinstance(obj, IPSet):
                body: object = [obj.type, obj.family, obj.counters, sorted(obj.members), sorted(obj.nomatch)]
            else:
                body = [_rule_obj(r) for r in obj.rules]
            hit = (obj, (_dumps(obj.name) + ":" + _dumps(body)).encode())
            new[k] = hit
        elif new is not self._frags:
            new[k] = hit
        return hit[1]

    def retain(self, states: Iterable[NodeState]) -> None:
        """Keep only the fragments of sets and chains used by ``states``."""
        live: dict[int, tuple[Any, bytes]] = {}
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
        new: dict[int, tuple[Any, bytes]] = {} if evict else self._frags
        h = hashlib.sha256()
        h.update(b'{"families":{')
        for i, fam in enumerate(FAMILIES):
            fs = state.family(fam)
            h.update(b"," if i else b"")
            h.update(f'"{fam}":{{"chains":{{'.encode())
            h.update(b",".join(self._frag(fs.chains[n], new) for n in sorted(fs.chains)))
            h.update(b'},"hooks":')
            h.update(_dumps([[x.builtin, x.target, x.position] for x in fs.hooks]).encode())
            h.update(b"}")
        h.update(b'},"node":')
        h.update(_dumps(state.node).encode())
        h.update(b',"sets":{')
        h.update(b",".join(self._frag(state.sets[n], new) for n in sorted(state.sets)))
        h.update(b"}}")
        if evict:
            self._frags = new
        return h.hexdigest()
