"""What the agent checks before it accepts a state: ``stockade.state_validation.validate``, faster.

``validate`` checks every member with the ``ipaddress`` module: about
2.5 µs a member, so 2.5 s for a 1,000,000-member set and ~60 ms for a
typical node (20,000 members), paid on every snapshot.  Here the
structure (names, types, families, rules, hooks) is checked by
``validate`` itself on member-less copies of the sets, and members by a
regular expression that accepts only canonical IPv4 text for the common
set types (``hash:ip`` and ``hash:ip,port``, family inet); anything the
expression does not accept, and every other set type or family, goes
through ``stockade.state_validation.check_member``, so the error messages are the
contract's own and nothing invalid is accepted.

For deltas, :func:`validate_after_delta` checks only members the delta
added (the rest were checked when the previous state was accepted), and
skips the structural check when the delta changes members only.
No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from stockade.state import IPSet, NodeDelta, NodeState, StateError, short
from stockade.state_validation import check_member, validate

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}"
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
_FAST = {
    ("hash:ip", "inet"): re.compile(_IPV4).fullmatch,
    ("hash:ip,port", "inet"): re.compile(rf"{_IPV4},(?:tcp|udp|sctp):{_PORT}").fullmatch,
}


def check_members(s: IPSet, members: Iterable[str], where: str) -> None:
    """Raise StateError (``check_member``'s message) for the first bad member."""
    fast = _FAST.get((s.type, s.family))
    if fast is not None and all(map(fast, members)):  # the loop stays in C
        return
    for m in members:
        if fast is None or not fast(m):
            check_member(s, m, where)


def _structure(state: NodeState, member_sets: dict[str, tuple[IPSet, Iterable[str], Iterable[str]]]) -> None:
    for name, s in state.sets.items():
        if s.nomatch and s.type != "hash:net":
            raise StateError(f"sets[{short(name)}].nomatch: only hash:net sets take nomatch members")
    shells = {n: s.with_members(frozenset(), frozenset()) for n, s in state.sets.items()}
    validate(NodeState(state.node, shells, state.v4, state.v6))
    for name, (s, members, nomatch) in member_sets.items():
        check_members(s, members, f"sets[{short(name)}].members")
        check_members(s, nomatch, f"sets[{short(name)}].nomatch")


def validate_state(state: NodeState) -> None:
    """Same verdict as ``stockade.state_validation.validate(state)``."""
    _structure(state, {n: (s, s.members, s.nomatch) for n, s in state.sets.items()})


def validate_after_delta(new: NodeState, delta: NodeDelta) -> None:
    """``validate(new)`` where ``new`` = a validated state + ``delta``: only
    the members the delta brings in are checked."""
    if not (delta.sets_upserted or delta.sets_removed or delta.chains_upserted or delta.chains_removed
            or delta.hooks):
        # members only (the common case: pods come and go): names, types and
        # rules are those of the validated state; only new members need a look
        for md in delta.set_members:
            cur = new.sets.get(md.name)
            if cur is None:
                raise StateError(f"set_members: no set {short(md.name)}")
            check_members(cur, md.added, f"sets[{short(md.name)}].members")
            check_members(cur, md.nomatch_added, f"sets[{short(md.name)}].nomatch")
            if md.nomatch_added and cur.type != "hash:net":
                raise StateError(f"sets[{short(md.name)}].nomatch: only hash:net sets take nomatch members")
        return
    checks: dict[str, tuple[IPSet, Iterable[str], Iterable[str]]] = {}
    for s in delta.sets_upserted:
        if s.name in new.sets:
            checks[s.name] = (s, s.members, s.nomatch)
    for md in delta.set_members:
        cur = new.sets.get(md.name)
        if cur is not None and md.name not in checks:
            checks[md.name] = (cur, md.added, md.nomatch_added)
    _structure(new, checks)
