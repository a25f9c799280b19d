"""The desired state of one node, in a backend-neutral form, and its deltas.

This module is the contract between the three parts of Stockade:

* the controller's compiler produces one :class:`NodeState` per node;
* the wire (``proto/``) carries snapshots and :class:`NodeDelta` values;
* the node agent's dataplane renders a :class:`NodeState` into
  ``ipset restore`` / ``iptables-restore`` input and diffs it against the
  kernel.

Everything here is an immutable value: equal content means equal objects,
and :func:`digest` gives every controller replica the same fingerprint for
the same content.  Nothing here does I/O and nothing here knows about
Kubernetes objects; those live in ``controller.model``.

Iptables semantics are structured (:class:`Rule`), not strings, so that the
packet walker (``controller.walker``) can interpret exactly the rules that
the agent renders.  Rendering a rule to iptables arguments lives here too
(:func:`render_rule`) because the walker's tests and the agent's renderer
must agree on one spelling; the agent adds its own tagging comment.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from xxhash import xxh3_128_intdigest

from stockade.member_set import Members, changed

# Everything Stockade owns in the kernel carries this prefix: ipset names
# (``stk-``) and chain names (``STOCKADE-``).  The agent never reads or
# writes anything else.
SET_PREFIX = "stk"
CHAIN_PREFIX = "STOCKADE-"
MAX_SET_NAME = 31  # ipset's IPSET_MAXNAMELEN - 1
MAX_CHAIN_NAME = 28  # iptables' XT_EXTENSION_MAXNAMELEN - 1 for user chains
# Kernel limits on rule values (what iptables-restore refuses beyond them).
MAX_COMMENT = 255  # xt_comment: 256 bytes with the NUL
MAX_NFLOG_PREFIX = 63  # xt_NFLOG: 64 bytes with the NUL
MAX_NFLOG_GROUP = 65535  # a u16
MAX_IFACE = 15  # IFNAMSIZ - 1
CTSTATES: tuple[str, ...] = ("NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED", "SNAT", "DNAT")
SHORT = 80  # longest part of a name or value echoed in an error message

Family = Literal["inet", "inet6"]
SetType = Literal["hash:ip", "hash:net", "hash:ip,port"]
Proto = Literal["tcp", "udp", "sctp"]
Action = Literal["RETURN", "DROP", "JUMP", "MARK", "NFLOG"]
Direction = Literal["src", "dst"]
BuiltinChain = Literal["INPUT", "FORWARD", "OUTPUT"]

FAMILIES: tuple[Family, ...] = ("inet", "inet6")
SET_TYPES: tuple[str, ...] = ("hash:ip", "hash:net", "hash:ip,port")
PROTOS: tuple[str, ...] = ("tcp", "udp", "sctp")
ACTIONS: tuple[str, ...] = ("RETURN", "DROP", "JUMP", "MARK", "NFLOG")
BUILTIN_CHAINS: tuple[str, ...] = ("INPUT", "FORWARD", "OUTPUT")


class StateError(ValueError):
    """A NodeState or NodeDelta that is not well formed (names the field)."""


def short(value: object, limit: int = SHORT) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters of
    ``value`` (plus its length): names and values come from the controller
    and are echoed back in acks and logs, so a megabyte name must not make
    a megabyte error."""
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}\u2026 ({len(value)} chars)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}\u2026 ({len(text)} chars)"


@dataclass(frozen=True, slots=True)
class IPSet:
    """One ipset.

    ``members`` are in ipset's own canonical text form, as ``ipset save``
    prints them after ``add NAME``: ``198.18.0.5`` (hash:ip),
    ``198.18.0.0/16`` (hash:net), ``198.18.0.5,tcp:8080`` (hash:ip,port).
    ``nomatch`` (hash:net only) holds the ``except`` blocks: members that
    are explicitly excluded (``add NAME 198.18.1.0/24 nomatch``).
    ``counters`` asks for per-member packet/byte counters (used for the
    per-pod drop counts).  Both are frozensets, or (in the agent, after
    :func:`apply_delta`) :class:`~stockade.member_set.MemberSet` values
    that behave as frozensets and share their members with the set's
    previous version.
    """

    name: str
    type: SetType
    family: Family
    members: Members = frozenset()
    nomatch: Members = frozenset()
    counters: bool = False
    comment: str = ""  # what the set stands for (a selector, an ipBlock); not in the kernel

    def with_members(self, members: Members, nomatch: Members | None = None) -> IPSet:
        return IPSet(self.name, self.type, self.family, members,
                     self.nomatch if nomatch is None else nomatch, self.counters, self.comment)

    def header(self) -> tuple[str, str, bool]:
        """What cannot change without recreating the set."""
        return (self.type, self.family, self.counters)


@dataclass(frozen=True, slots=True)
class SetMatch:
    """``-m set [!] --match-set NAME src|dst[,dst]``."""

    set: str
    dirs: tuple[Direction, ...]  # ("src",), ("dst",), or ("dst", "dst") for hash:ip,port
    negate: bool = False


@dataclass(frozen=True, slots=True)
class Rule:
    """One iptables rule: all matches AND-ed, then one action.

    ``mark``: ``(value, mask, negate)`` for ``-m mark [!] --mark value/mask``.
    ``ctstate``: ``-m conntrack --ctstate A,B``.
    ``dport``: ``(first, last)``; first == last for one port.  Needs ``proto``.
    Action arguments: ``target`` (JUMP), ``set_mark`` ``(value, mask)``
    (MARK: ``--set-xmark value/mask``... rendered as ``--or-mark``-like
    ``--set-xmark value/value`` so only the given bits change),
    ``nflog_group``/``nflog_prefix`` (NFLOG) with ``limit`` ("10/second").
    ``comment`` is free text kept in the kernel (``-m comment``), so an
    operator reading ``iptables-save`` sees which policy a rule comes from.
    """

    action: Action
    target: str = ""
    proto: Proto | None = None
    dport: tuple[int, int] | None = None
    sets: tuple[SetMatch, ...] = ()
    ctstate: tuple[str, ...] = ()
    mark: tuple[int, int, bool] | None = None
    set_mark: tuple[int, int] | None = None
    in_iface: str = ""  # -i (may end in '+'); empty: any
    out_iface: str = ""  # -o
    physdev_is_bridged: bool | None = None  # -m physdev [!] --physdev-is-bridged
    nflog_group: int = 0
    nflog_prefix: str = ""
    limit: str = ""
    comment: str = ""


@dataclass(frozen=True, slots=True)
class Chain:
    """A chain Stockade owns, in table ``filter``; rules in order."""

    name: str
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class Hook:
    """A jump from a built-in chain to one of ours, kept at the top."""

    builtin: BuiltinChain
    target: str
    position: int = 1  # 1-based order among Stockade's own hooks in that chain


@dataclass(frozen=True, slots=True)
class FamilyState:
    """Chains and hooks for one address family (iptables or ip6tables)."""

    chains: Mapping[str, Chain] = field(default_factory=dict)
    hooks: tuple[Hook, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeState:
    """Everything one node must enforce.

    ``sets`` is keyed by name; set names are unique across families (the
    kernel has one ipset namespace).  ``v4``/``v6`` hold the chains of
    ``iptables`` and ``ip6tables``.  ``version`` is the controller's
    counter for this node; it is not part of the content or the digest.
    """

    node: str
    sets: Mapping[str, IPSet] = field(default_factory=dict)
    v4: FamilyState = field(default_factory=FamilyState)
    v6: FamilyState = field(default_factory=FamilyState)

    def family(self, family: Family) -> FamilyState:
        return self.v4 if family == "inet" else self.v6


@dataclass(frozen=True, slots=True)
class SetMembersDelta:
    """Members added to / removed from an existing set (same header)."""

    name: str
    added: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()
    nomatch_added: frozenset[str] = frozenset()
    nomatch_removed: frozenset[str] = frozenset()

    def size(self) -> int:
        """How many member writes the change takes."""
        return len(self.added) + len(self.removed) + len(self.nomatch_added) + len(self.nomatch_removed)


@dataclass(frozen=True, slots=True)
class NodeDelta:
    """old -> new for one node.  Removals are explicit, never "update with empty".

    ``sets_upserted``: sets that are new or whose header changed (full
    definition).  ``set_members``: member changes of sets that exist on both
    sides with the same header.  ``chains_upserted``/``chains_removed`` are
    per family ("inet"/"inet6").  ``hooks``: the full new hook list of a
    family, present only when it changed.
    """

    node: str
    sets_upserted: tuple[IPSet, ...] = ()
    sets_removed: tuple[str, ...] = ()
    set_members: tuple[SetMembersDelta, ...] = ()
    chains_upserted: tuple[tuple[Family, Chain], ...] = ()
    chains_removed: tuple[tuple[Family, str], ...] = ()
    hooks: tuple[tuple[Family, tuple[Hook, ...]], ...] = ()

    def is_empty(self) -> bool:
        return not (self.sets_upserted or self.sets_removed or self.set_members
                    or self.chains_upserted or self.chains_removed or self.hooks)


# --------------------------------------------------------------------------
# Canonical form and digest


def _rule_obj(r: Rule) -> list[object]:
    return [r.action, r.target, r.proto, list(r.dport) if r.dport else None,
            [[s.set, list(s.dirs), s.negate] for s in r.sets], list(r.ctstate),
            list(r.mark) if r.mark else None, list(r.set_mark) if r.set_mark else None,
            r.in_iface, r.out_iface, r.physdev_is_bridged, r.nflog_group, r.nflog_prefix,
            r.limit, r.comment]


# A set's content hash must be cheap to carry through a member change: a
# set holds thousands of members, and one pod's change reaches hundreds of
# nodes, each of which re-hashes the sets it changed.  So the members enter
# as a sum of their own hashes (128-bit XXH3, summed mod 2**128: equal
# member sets give equal sums, and a change moves the sum by the hashes of
# what was added and removed only).  XXH3 rather than a cryptographic hash:
# an agent hashes every member of every snapshot it receives, and XXH3-128
# costs ~160 ns a member here against ~520 for BLAKE2b.  The sum is a
# consistency check between controller and agent (who talk over an
# authenticated channel), not a defence against crafted collisions.
MEMBER_SUM_MOD = 1 << 128


def member_sum(members: Iterable[str]) -> int:
    """Sum of the members' 128-bit XXH3 hashes (of their UTF-8 bytes), mod 2**128 (C-level loop)."""
    return sum(map(xxh3_128_intdigest, map(str.encode, members))) % MEMBER_SUM_MOD


def set_hash(s: IPSet) -> str:
    """sha256 of one set's canonical content (name included)."""
    return set_hash_of(s, member_sum(s.members), member_sum(s.nomatch))


def set_hash_of(s: IPSet, members_sum: int, nomatch_sum: int) -> str:
    """:func:`set_hash` given the :func:`member_sum` of ``s``'s members and
    of its nomatch entries (carried through deltas by ``stockade.wire.digest``).
    The name is length-prefixed; the other fields cannot hold a ``|``."""
    body = (f"{len(s.name)}:{s.name}|{s.type}|{s.family}|{int(s.counters)}|{len(s.members)}|{len(s.nomatch)}|"
            f"{members_sum:032x}|{nomatch_sum:032x}")
    return hashlib.sha256(body.encode()).hexdigest()


def rule_text(r: Rule) -> str:
    """One rule's canonical JSON (a part of :func:`chain_hash`'s input)."""
    return json.dumps(_rule_obj(r), separators=(",", ":"))


def chain_hash(c: Chain, text: Callable[[Rule], str] | None = None) -> str:
    """sha256 of one chain's canonical content (name included): the compact
    JSON of ``[name, [rule, ...]]``.  ``text``: a cached :func:`rule_text`
    (the controller: one rule object serves many nodes' chains); without
    it the whole chain is one ``json.dumps`` (cheaper than one a rule)."""
    if text is None:
        body = json.dumps([c.name, [_rule_obj(r) for r in c.rules]], separators=(",", ":"))
    else:
        body = f"[{json.dumps(c.name)},[{','.join(map(text, c.rules))}]]"
    return hashlib.sha256(body.encode()).hexdigest()


def hash_sum(hashes: Iterable[str]) -> int:
    """Sum of the first 128 bits of hex content hashes, mod 2**128: the
    top level's sets and chains enter as a sum (like a set's members), so
    a state that changed a few of them is digested from those alone."""
    return sum(int(h[:32], 16) for h in hashes) % MEMBER_SUM_MOD


def top_head(node: str, sets: int, families: Mapping[Family, tuple[int, Sequence[Hook]]]) -> str:
    """The digest top level's header: node name, number of sets, and per
    family (in name order) the number of chains and the hooks."""
    return json.dumps([node, sets, [[fam, n, [[h.builtin, h.target, h.position] for h in hooks]]
                                    for fam, (n, hooks) in sorted(families.items())]], separators=(",", ":"))


def top_bytes(head: str, set_sum: int, chain_sums: Sequence[int]) -> bytes:
    """The digest's top-level bytes: the header (:func:`top_head`), then
    the :func:`hash_sum` of the sets' hashes and of each family's chains'
    hashes (``chain_sums`` in :data:`FAMILIES` order), 32 hex digits a
    line.  The counts in the header and the names inside every set and
    chain hash pin down which objects the sums are over."""
    return "\n".join([head, f"{set_sum:032x}", *[f"{x:032x}" for x in chain_sums]]).encode()


def canonical(state: NodeState) -> bytes:
    """Deterministic bytes for the content of ``state`` (not its version):
    the node name, hooks, and the sums of the content hashes of its sets
    and of its chains.  Two levels keep a digest cheap to recompute when a
    few sets change in a state of tens of thousands of members, and sums
    keep it cheap when a few of a state's hundreds of sets and chains
    change (``stockade.wire.digest`` caches the per-object hashes and
    carries the sums forward through deltas)."""
    head = top_head(state.node, len(state.sets),
                    {fam: (len(state.family(fam).chains), state.family(fam).hooks) for fam in FAMILIES})
    return top_bytes(head, hash_sum(set_hash(s) for s in state.sets.values()),
                     [hash_sum(chain_hash(c) for c in state.family(fam).chains.values()) for fam in FAMILIES])


def digest(state: NodeState) -> str:
    """sha256 of :func:`canonical`; identical in every controller replica."""
    return hashlib.sha256(canonical(state)).hexdigest()


EMPTY_DIGEST_NODE = ""  # the digest an agent reports before it applied anything


# --------------------------------------------------------------------------
# Delta: diff and apply


# The same set change shows up on many nodes (one cluster-wide set object
# shared by their states): remember the last member deltas by identity.
_MEMBER_DELTAS: dict[tuple[int, int], tuple[IPSet, IPSet, SetMembersDelta]] = {}


def _members_delta(o: IPSet, s: IPSet) -> SetMembersDelta | None:
    """The member change from ``o`` to ``s`` (same header), None when their
    members and nomatch entries are equal.  A change is remembered by
    identity and looked up before anything is compared: the controller
    diffs every node holding a changed set against the same two objects,
    and comparing thousands of members per node cost as much as the rest
    of the diff.  (Equal pairs are not remembered: they would crowd out the
    changes while a change is still reaching its nodes.)"""
    hit = _MEMBER_DELTAS.get((id(o), id(s)))
    if hit is not None and hit[0] is o and hit[1] is s:
        return hit[2]
    if o.members == s.members and o.nomatch == s.nomatch:
        return None
    d = SetMembersDelta(s.name, s.members - o.members, o.members - s.members,
                        s.nomatch - o.nomatch, o.nomatch - s.nomatch)
    if len(_MEMBER_DELTAS) >= 512:
        _MEMBER_DELTAS.clear()
    _MEMBER_DELTAS[(id(o), id(s))] = (o, s, d)
    return d


def diff(old: NodeState, new: NodeState) -> NodeDelta:
    """The delta that turns ``old`` into ``new`` (same node)."""
    if old.node != new.node:
        raise StateError(f"diff: node {short(old.node)} != {short(new.node)}")
    ups: list[IPSet] = []
    members: list[SetMembersDelta] = []
    for name, s in new.sets.items():
        o = old.sets.get(name)
        if o is s:
            continue
        if o is None or o.header() != s.header():
            ups.append(s)
        elif (md := _members_delta(o, s)) is not None:
            members.append(md)
    removed = tuple(sorted(old.sets.keys() - new.sets.keys()))
    cups: list[tuple[Family, Chain]] = []
    crem: list[tuple[Family, str]] = []
    hooks: list[tuple[Family, tuple[Hook, ...]]] = []
    for fam in FAMILIES:
        of, nf = old.family(fam), new.family(fam)
        if of.chains is not nf.chains:  # shared (unchanged) chain maps: nothing to compare
            for cname, c in nf.chains.items():
                oc = of.chains.get(cname)
                if oc is not c and oc != c:
                    cups.append((fam, c))
            crem.extend((fam, n) for n in sorted(of.chains) if n not in nf.chains)
        if of.hooks != nf.hooks:
            hooks.append((fam, nf.hooks))
    return NodeDelta(new.node, tuple(sorted(ups, key=lambda s: s.name)), removed,
                     tuple(sorted(members, key=lambda m: m.name)),
                     tuple(sorted(cups, key=lambda fc: (fc[0], fc[1].name))), tuple(crem),
                     tuple(hooks))


def apply_delta(state: NodeState, delta: NodeDelta) -> NodeState:
    """``state`` with ``delta`` applied.  Raises StateError when the delta
    does not fit (a member change for a set that does not exist, ...).
    Changed sets get :class:`~stockade.member_set.MemberSet` members that
    share the unchanged ones with ``state``'s (see :func:`stockade.member_set.changed`)."""
    if delta.node != state.node:
        raise StateError(f"delta for node {short(delta.node)} applied to {short(state.node)}")
    sets = dict(state.sets)
    for n in delta.sets_removed:
        if n not in sets:
            raise StateError(f"sets_removed: no set {short(n)}")
        del sets[n]
    for s in delta.sets_upserted:
        sets[s.name] = s
    for md in delta.set_members:
        cur = sets.get(md.name)
        if cur is None:
            raise StateError(f"set_members: no set {short(md.name)}")
        sets[md.name] = cur.with_members(changed(cur.members, md.added, md.removed),
                                         changed(cur.nomatch, md.nomatch_added, md.nomatch_removed))
    fams: dict[str, FamilyState] = {}
    for fam in FAMILIES:
        fs = state.family(fam)
        chains = dict(fs.chains)
        for f, cname in delta.chains_removed:
            if f == fam:
                if cname not in chains:
                    raise StateError(f"chains_removed: no {fam} chain {short(cname)}")
                del chains[cname]
        for f, c in delta.chains_upserted:
            if f == fam:
                chains[c.name] = c
        hooks = fs.hooks
        for f, h in delta.hooks:
            if f == fam:
                hooks = h
        fams[fam] = FamilyState(chains, hooks)
    return NodeState(state.node, sets, fams["inet"], fams["inet6"])


# --------------------------------------------------------------------------
# Rendering one rule as iptables arguments (shared spelling)


def render_rule(r: Rule) -> list[str]:
    """The arguments after ``-A CHAIN`` for ``r``, in the order
    ``iptables-save`` prints them back (so read-back compares equal)."""
    a: list[str] = []
    if r.in_iface:
        a += ["-i", r.in_iface]
    if r.out_iface:
        a += ["-o", r.out_iface]
    if r.proto:
        a += ["-p", r.proto]
    if r.physdev_is_bridged is not None:
        a += ["-m", "physdev"] + (["!"] if not r.physdev_is_bridged else []) + ["--physdev-is-bridged"]
    if r.dport is not None:
        lo, hi = r.dport
        a += ["-m", r.proto or "tcp", "--dport", str(lo) if lo == hi else f"{lo}:{hi}"]
    for sm in r.sets:
        a += ["-m", "set"] + (["!"] if sm.negate else []) + ["--match-set", sm.set, ",".join(sm.dirs)]
    if r.ctstate:
        a += ["-m", "conntrack", "--ctstate", ",".join(sorted(r.ctstate, key=_ctstate_key))]
    if r.mark is not None:
        v, m, neg = r.mark
        # iptables-save omits a full mask: "--mark 0x1", not "0x1/0xffffffff"
        a += ["-m", "mark"] + (["!"] if neg else []) + ["--mark", f"{v:#x}" if m == 0xFFFFFFFF else f"{v:#x}/{m:#x}"]
    if r.limit:
        a += ["-m", "limit", "--limit", _canonical_limit(r.limit)]
    if r.comment:
        a += ["-m", "comment", "--comment", r.comment]
    if r.action == "JUMP":
        a += ["-j", r.target]
    elif r.action == "MARK":
        assert r.set_mark is not None
        v, m = r.set_mark
        a += ["-j", "MARK", "--set-xmark", f"{v:#x}/{m:#x}"]
    elif r.action == "NFLOG":
        a += ["-j", "NFLOG"]
        if r.nflog_prefix:
            a += ["--nflog-prefix", r.nflog_prefix]
        a += ["--nflog-group", str(r.nflog_group)]
    else:
        a += ["-j", r.action]
    return a


# The order in which iptables-save prints conntrack states, whatever order
# they were given in.
_CTSTATE_ORDER = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT")


def _ctstate_key(st: str) -> int:
    return _CTSTATE_ORDER.index(st) if st in _CTSTATE_ORDER else len(_CTSTATE_ORDER)


def _canonical_limit(limit: str) -> str:
    """``10/second`` -> ``10/sec``: the unit spelling iptables-save prints
    (sec, min, hour, day; iptables accepts any prefix of the long unit)."""
    rate, sep, unit = limit.partition("/")
    if not sep:
        return limit
    for canon in ("sec", "min", "hour", "day"):
        if unit and unit[0] == canon[0]:
            return f"{rate}/{canon}"
    return limit


def count(state: NodeState) -> dict[str, int]:
    """Sizes for status pages and acknowledgements."""
    return {
        "sets": len(state.sets),
        "members": sum(len(s.members) + len(s.nomatch) for s in state.sets.values()),
        "chains": len(state.v4.chains) + len(state.v6.chains),
        "rules": sum(len(c.rules) for fam in FAMILIES for c in state.family(fam).chains.values()),
    }


def sets_of(states: Iterable[NodeState]) -> set[str]:
    return {n for s in states for n in s.sets}
