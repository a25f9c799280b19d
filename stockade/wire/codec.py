"""stockade.state / stockade.wire.messages <-> protobuf, and chunking.

This is the only module that builds or reads ``stockade.v1`` message
types.  Encoding splits a snapshot or delta into parts of at most
``budget`` bytes (estimated while building, checked against gRPC's 4 MB
default with a wide margin): a set whose members do not fit is split into
several partial sets with the same name, a chain with too many rules into
several partial chains; the :class:`Assembler` joins them back in order and
returns a complete :class:`~stockade.wire.messages.Snapshot` or
:class:`~stockade.wire.messages.Delta` only when the ``*Complete`` marker
arrived with the announced number of parts.

The controller sends deltas through :class:`SharedDeltas`: a delta body
that reaches hundreds of nodes is packed and serialized once, and each
node's messages are those bytes plus a few bytes of its own (version,
marker); :func:`to_wire` lets already serialized messages through.

Decoding is strict: an unknown enum value, a part for another version, a
marker whose part count does not match, a part of the wrong kind in the
middle of an assembly all raise :class:`WireError` naming what is wrong
(names and values cut by ``stockade.state.short``: errors go back in acks).
It does not validate the *content* (``stockade.state_validation.validate``) nor
compare digests: the agent's client does that, because it owns the
decision to reject.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from stockade.identity_cache import IdentityCache
from stockade.state import (
    FAMILIES,
    Chain,
    Family,
    FamilyState,
    Hook,
    IPSet,
    NodeDelta,
    NodeState,
    Rule,
    SetMatch,
    SetMembersDelta,
    short,
)
from stockade.v1 import stockade_pb2 as pb
from stockade.wire.messages import Ack, Delta, Hello, HostCheck, InSync, Rejected, Snapshot, Update, WireError

# Parts stay under this many bytes (gRPC's default receive limit is 4 MiB).
DEFAULT_BUDGET = 1 << 20
GRPC_DEFAULT_LIMIT = 4 << 20

_FAMILY: dict[str, Any] = {"inet": pb.FAMILY_INET, "inet6": pb.FAMILY_INET6}
_FAMILY_R: dict[Any, Family] = {pb.FAMILY_INET: "inet", pb.FAMILY_INET6: "inet6"}
_SETTYPE: dict[str, Any] = {"hash:ip": pb.SET_TYPE_HASH_IP, "hash:net": pb.SET_TYPE_HASH_NET,
                            "hash:ip,port": pb.SET_TYPE_HASH_IP_PORT}
_SETTYPE_R: dict[int, Any] = {v: k for k, v in _SETTYPE.items()}
_ACTION: dict[str, Any] = {"RETURN": pb.ACTION_RETURN, "DROP": pb.ACTION_DROP, "JUMP": pb.ACTION_JUMP,
                           "MARK": pb.ACTION_MARK, "NFLOG": pb.ACTION_NFLOG}
_ACTION_R: dict[int, Any] = {v: k for k, v in _ACTION.items()}
_PROTO: dict[str | None, Any] = {None: pb.PROTOCOL_ANY, "tcp": pb.PROTOCOL_TCP, "udp": pb.PROTOCOL_UDP,
                                 "sctp": pb.PROTOCOL_SCTP}
_PROTO_R: dict[int, Any] = {v: k for k, v in _PROTO.items()}
_DIR: dict[str, Any] = {"src": pb.DIRECTION_SRC, "dst": pb.DIRECTION_DST}
_DIR_R: dict[int, Any] = {v: k for k, v in _DIR.items()}
_PHYS: dict[bool | None, Any] = {None: pb.PHYSDEV_ANY, True: pb.PHYSDEV_BRIDGED, False: pb.PHYSDEV_NOT_BRIDGED}
_PHYS_R: dict[Any, bool | None] = {v: k for k, v in _PHYS.items()}


_MISSING = object()


def _enum(table: Mapping[Any, Any], value: Any, where: str) -> Any:
    try:
        return table[value]
    except KeyError:
        raise WireError(f"{where}: unknown value {short(value)}") from None


def _bad(where: str, what: str, value: Any) -> WireError:
    return WireError(f"{where}.{what}: unknown value {short(value)}")


# --------------------------------------------------------------------------
# single objects


def rule_to_pb(r: Rule) -> pb.Rule:
    m = pb.Rule(action=_ACTION[r.action], target=r.target, proto=_PROTO[r.proto],
                ctstate=r.ctstate, in_iface=r.in_iface, out_iface=r.out_iface,
                physdev=_PHYS[r.physdev_is_bridged], nflog_group=r.nflog_group,
                nflog_prefix=r.nflog_prefix, limit=r.limit, comment=r.comment)
    if r.dport is not None:
        m.dport_first, m.dport_last = r.dport
    for s in r.sets:
        m.sets.add(set=s.set, dirs=[_DIR[d] for d in s.dirs], negate=s.negate)
    if r.mark is not None:
        m.mark.value, m.mark.mask, m.mark.negate = r.mark
    if r.set_mark is not None:
        m.set_mark.value, m.set_mark.mask = r.set_mark
    return m


def rule_from_pb(m: pb.Rule, where: str | Callable[[], str]) -> Rule:
    """``where`` (a string, or a function returning one: only called on
    error) locates the rule in error messages."""
    def loc() -> str:
        return where if isinstance(where, str) else where()

    dport = None
    if m.dport_first or m.dport_last:
        dport = (m.dport_first, m.dport_last)
    sets: tuple[SetMatch, ...] = ()
    if m.sets:
        matches = []
        for sm in m.sets:
            dirs = tuple(_DIR_R.get(d, _MISSING) for d in sm.dirs)
            if _MISSING in dirs:
                raise _bad(loc(), "sets.dirs", list(sm.dirs))
            matches.append(SetMatch(sm.set, dirs, sm.negate))
        sets = tuple(matches)
    action = _ACTION_R.get(m.action)
    if action is None:
        raise _bad(loc(), "action", m.action)
    proto = _PROTO_R.get(m.proto, _MISSING)
    if proto is _MISSING:
        raise _bad(loc(), "proto", m.proto)
    physdev = _PHYS_R.get(m.physdev, _MISSING)
    if physdev is _MISSING:
        raise _bad(loc(), "physdev", m.physdev)
    return Rule(
        action=action, target=m.target, proto=proto, dport=dport, sets=sets,
        ctstate=tuple(m.ctstate) if m.ctstate else (),
        mark=(m.mark.value, m.mark.mask, m.mark.negate) if m.HasField("mark") else None,
        set_mark=(m.set_mark.value, m.set_mark.mask) if m.HasField("set_mark") else None,
        in_iface=m.in_iface, out_iface=m.out_iface, physdev_is_bridged=physdev,  # type: ignore[arg-type]
        nflog_group=m.nflog_group, nflog_prefix=m.nflog_prefix, limit=m.limit, comment=m.comment)


def _set_header(s: IPSet) -> pb.IPSet:
    return pb.IPSet(name=s.name, type=_SETTYPE[s.type], family=_FAMILY[s.family],
                    counters=s.counters, comment=s.comment)


def _hooks_pb(fam: Family, hooks: Iterable[Hook]) -> pb.FamilyHooks:
    return pb.FamilyHooks(family=_FAMILY[fam], hooks=[pb.Hook(builtin=h.builtin, target=h.target,
                                                                 position=h.position) for h in hooks])


def _hooks_from_pb(m: pb.FamilyHooks, where: str) -> tuple[Family, tuple[Hook, ...]]:
    fam: Family = _enum(_FAMILY_R, m.family, f"{where}.family")
    return fam, tuple(Hook(h.builtin, h.target, h.position) for h in m.hooks)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# chunking


class _Packer:
    """Fills parts up to ``budget`` bytes.  ``new_msg`` makes an empty
    ``ControllerMessage``; ``part_of`` returns its part (filled in place)."""

    def __init__(self, budget: int, new_msg: Any, part_of: Any) -> None:
        self.budget = budget
        self.new_msg = new_msg
        self.part_of = part_of
        self.msgs: list[Any] = [new_msg()]
        self.size = 0

    def _next(self) -> None:
        self.msgs.append(self.new_msg())
        self.size = 0

    def room(self, need: int) -> Any:
        """The current part if ``need`` more bytes fit, else a fresh one."""
        if self.size + need > self.budget and self.size > 0:
            self._next()
        self.size += need
        return self.part_of(self.msgs[-1])

    def add_members(self, field_name: str, make: Any, members: Iterable[str]) -> None:
        """Spread ``members`` over partial copies of the message ``make(part)`` returns."""
        lst = members if isinstance(members, list) else list(members)
        if not lst:
            return
        total = sum(map(len, lst)) + 3 * len(lst)
        if total + 64 <= self.budget - self.size or (total + 64 <= self.budget and self.size > 0):
            getattr(make(self.room(64)), field_name).extend(lst)  # fast path: fits in one part
            self.size += total
            return
        cur: Any = None
        start = 0
        for i, mem in enumerate(lst):
            need = len(mem) + 3
            if cur is None or self.size + need > self.budget:
                if cur is not None:
                    getattr(cur, field_name).extend(lst[start:i])
                    start = i
                    self._next()
                cur = make(self.room(64))
            self.size += need
        getattr(cur, field_name).extend(lst[start:])

    def add_chain(self, repeated_field: str, fam: Family, c: Chain) -> None:
        cur = getattr(self.room(len(c.name) + 16), repeated_field).add(family=_FAMILY[fam], name=c.name)
        for r in c.rules:
            rb = _RULE_BYTES.get(r, _serialized_rule)
            need = len(rb) + 4
            if self.size + need > self.budget:
                self._next()
                cur = getattr(self.room(len(c.name) + 16), repeated_field).add(family=_FAMILY[fam], name=c.name)
            cur.rules.add().MergeFromString(rb)
            self.size += need


# Rule objects are shared between the chains of many nodes (a policy edit
# re-writes ~50-rule chains on every node it reaches, from a few thousand
# distinct rules): each one's serialized form, by identity.  Merging those
# bytes into a message costs ~0.6 us, building the message ~2.9.  Only the
# encoding side (the controller) uses it.
_RULE_BYTES: IdentityCache[Rule, bytes] = IdentityCache(16384)


def _serialized_rule(r: Rule) -> bytes:
    b: bytes = rule_to_pb(r).SerializeToString()
    return b


def _add_set(p: _Packer, field_name: str, s: IPSet) -> None:
    """A full set (header + members + nomatch) into ``field_name`` of the parts."""
    header = _set_header(s)

    def make(part: Any) -> Any:
        m = getattr(part, field_name).add()
        m.CopyFrom(header)
        return m

    if not s.members and not s.nomatch:
        make(p.room(64 + len(s.name) + len(s.comment)))
        return
    p.add_members("members", make, s.members)
    p.add_members("nomatch", make, s.nomatch)


def encode_snapshot(state: NodeState, version: int, digest: str, replica: str = "",
                    budget: int = DEFAULT_BUDGET, inline: bool = False) -> list[pb.ControllerMessage]:
    """``SnapshotPart``s then one ``SnapshotComplete`` (``inline``: the
    marker rides in the last part instead)."""
    def new_msg() -> pb.ControllerMessage:
        m = pb.ControllerMessage()
        m.snapshot_part.version = version
        return m

    p = _Packer(budget, new_msg, lambda m: m.snapshot_part)
    for name in sorted(state.sets):
        _add_set(p, "sets", state.sets[name])
    for fam in FAMILIES:
        fs = state.family(fam)
        for cname in sorted(fs.chains):
            p.add_chain("chains", fam, fs.chains[cname])
    first = p.msgs[0].snapshot_part
    for fam in FAMILIES:
        first.hooks.append(_hooks_pb(fam, state.family(fam).hooks))
    msgs = p.msgs
    done = pb.SnapshotComplete(node=state.node, version=version, digest=digest, parts=len(msgs), replica=replica)
    if inline:
        msgs[-1].snapshot_part.complete.CopyFrom(done)
    else:
        msgs.append(pb.ControllerMessage(snapshot_complete=done))
    return msgs


def _delta_body(d: NodeDelta, budget: int, version: int) -> list[pb.ControllerMessage]:
    """The ``DeltaPart``s of ``d`` (``version`` in each; 0: left unset), no marker."""
    def new_msg() -> pb.ControllerMessage:
        m = pb.ControllerMessage()
        m.delta_part.version = version
        return m

    p = _Packer(budget, new_msg, lambda m: m.delta_part)
    for s in d.sets_upserted:
        _add_set(p, "sets_upserted", s)
    if d.sets_removed:
        p.room(sum(len(n) + 3 for n in d.sets_removed)).sets_removed.extend(d.sets_removed)
    for md in d.set_members:
        def make(part: Any, name: str = md.name) -> Any:
            return part.set_members.add(name=name)
        for fname, members in (("added", md.added), ("removed", md.removed),
                               ("nomatch_added", md.nomatch_added), ("nomatch_removed", md.nomatch_removed)):
            p.add_members(fname, make, members)
    for fam, c in d.chains_upserted:
        p.add_chain("chains_upserted", fam, c)
    for fam, cname in d.chains_removed:
        p.room(len(cname) + 8).chains_removed.add(family=_FAMILY[fam], name=cname)
    for fam, hooks in d.hooks:
        p.room(64 * (len(hooks) + 1)).hooks.append(_hooks_pb(fam, hooks))
    msgs: list[pb.ControllerMessage] = p.msgs
    return msgs


def _delta_complete(d: NodeDelta, base_version: int, base_digest: str, version: int, digest: str,
                    replica: str, parts: int) -> pb.DeltaComplete:
    return pb.DeltaComplete(node=d.node, base_version=base_version, base_digest=base_digest, version=version,
                            digest=digest, parts=parts, replica=replica)


def encode_delta(d: NodeDelta, base_version: int, base_digest: str, version: int, digest: str,
                 replica: str = "", budget: int = DEFAULT_BUDGET, inline: bool = False) -> list[pb.ControllerMessage]:
    """``DeltaPart``s then one ``DeltaComplete`` (``inline``: the marker
    rides in the last part instead: a small delta is one message)."""
    msgs = _delta_body(d, budget, version)
    done = _delta_complete(d, base_version, base_digest, version, digest, replica, len(msgs))
    if inline:
        msgs[-1].delta_part.complete.CopyFrom(done)
    else:
        msgs.append(pb.ControllerMessage(delta_complete=done))
    return msgs


class SharedDeltas:
    """Serialized deltas whose body is encoded once for every node it reaches.

    A change that reaches hundreds of nodes gives each of them a
    ``NodeDelta`` made of the *same* objects (the upserted ``IPSet``s and
    ``Chain``s are shared between the nodes' states, and
    ``stockade.state.diff`` memoizes ``SetMembersDelta``s).  Only the
    version and the ``DeltaComplete`` marker differ per node.  So the body
    (every part without its version) is packed and serialized once, keyed
    by the identities of those components, and each node's message is
    ``body part + ControllerMessage{delta_part{version [, complete]}}``:
    concatenated serialized messages parse as their merge (the protobuf
    encoding's rule for repeated, message and scalar fields alike), so the
    agent decodes exactly what :func:`encode_delta` would have given it.

    An entry keeps its components alive, so an identity in its key cannot
    be reused by another object while the entry exists.  At most
    ``max_entries`` bodies and ``max_bytes`` bytes are kept; the oldest go
    first (the bound is small because an entry may keep sets alive that no
    state uses any more; one change's body is usually a few kB).
    ``hits``/``misses`` count lookups (tests, benchmarks).
    """

    def __init__(self, budget: int = DEFAULT_BUDGET, max_entries: int = 256, max_bytes: int = 16 << 20) -> None:
        self.budget = budget
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        # key -> (the components, kept alive; the serialized body parts)
        self._bodies: dict[tuple[Any, ...], tuple[tuple[Any, ...], list[bytes]]] = {}
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._bodies)

    def body(self, d: NodeDelta) -> list[bytes]:
        """The serialized parts of ``d`` without version or marker (shared: do not modify)."""
        key = (tuple(map(id, d.sets_upserted)), d.sets_removed, tuple(map(id, d.set_members)),
               tuple([(f, id(c)) for f, c in d.chains_upserted]), d.chains_removed, d.hooks)
        hit = self._bodies.get(key)
        if hit is not None:
            self.hits += 1
            return hit[1]
        self.misses += 1
        parts = [m.SerializeToString() for m in _delta_body(d, self.budget, 0)]
        size = sum(map(len, parts))
        if size > self.max_bytes:
            return parts
        while self._bodies and (len(self._bodies) >= self.max_entries or self._bytes + size > self.max_bytes):
            _, old = self._bodies.pop(next(iter(self._bodies)))  # the oldest
            self._bytes -= sum(map(len, old))
        self._bodies[key] = ((d.sets_upserted, d.set_members, d.chains_upserted), parts)
        self._bytes += size
        return parts

    def encode(self, d: NodeDelta, base_version: int, base_digest: str, version: int, digest: str,
               replica: str = "", inline: bool = False) -> list[bytes]:
        """What :func:`encode_delta` returns, serialized (same parts, same marker)."""
        body = self.body(d)
        marker = pb.ControllerMessage()  # this node's own fields, set one by one (cheaper than keywords)
        done = marker.delta_part.complete if inline else marker.delta_complete
        done.node, done.base_version, done.base_digest = d.node, base_version, base_digest
        done.version, done.digest, done.parts, done.replica = version, digest, len(body), replica
        if inline:
            marker.delta_part.version = version
            if len(body) == 1:  # the usual case: one message
                return [body[0] + marker.SerializeToString()]
        tail = pb.ControllerMessage()
        tail.delta_part.version = version
        per_part = tail.SerializeToString()
        if inline:
            out = [b + per_part for b in body[:-1]]
            out.append(body[-1] + marker.SerializeToString())
        else:
            out = [b + per_part for b in body]
            out.append(marker.SerializeToString())
        return out


def to_wire(m: pb.ControllerMessage | bytes) -> bytes:
    """A controller message as gRPC sends it: already serialized bytes pass through."""
    return m if isinstance(m, bytes) else m.SerializeToString()


agent_message_from_wire: Callable[[bytes], pb.AgentMessage] = pb.AgentMessage.FromString
"""An agent's serialized message, parsed (the controller stream's request deserializer)."""


def encode_in_sync(node: str, version: int, digest: str, replica: str = "") -> pb.ControllerMessage:
    return pb.ControllerMessage(in_sync=pb.InSync(node=node, version=version, digest=digest, replica=replica))


# --------------------------------------------------------------------------
# reassembly (agent side)


class _SetAcc:
    """Members of one set gathered from several parts."""

    __slots__ = ("header", "members", "nomatch")

    def __init__(self, header: tuple[str, Any, Family, bool, str]) -> None:
        self.header = header
        self.members: list[str] = []
        self.nomatch: list[str] = []

    def build(self) -> IPSet:
        name, typ, fam, counters, comment = self.header
        return IPSet(name, typ, fam, frozenset(self.members), frozenset(self.nomatch), counters, comment)


def _gather_sets(sets: Iterable[pb.IPSet], acc: dict[str, _SetAcc], where: str) -> None:
    for m in sets:
        typ, fam = _SETTYPE_R.get(m.type), _FAMILY_R.get(m.family)
        if typ is None:
            raise _bad(f"{where}[{short(m.name)}]", "type", m.type)
        if fam is None:
            raise _bad(f"{where}[{short(m.name)}]", "family", m.family)
        header = (m.name, typ, fam, m.counters, m.comment)
        a = acc.get(m.name)
        if a is None:
            a = acc[m.name] = _SetAcc(header)
        elif a.header != header:
            raise WireError(f"{where}[{short(m.name)}]: parts of one set disagree on its header")
        a.members.extend(m.members)
        a.nomatch.extend(m.nomatch)


class _RuleWhere:
    """A rule's location, formatted only when an error names it."""

    __slots__ = ("index", "name", "where")

    def __init__(self, where: str, name: str, index: int) -> None:
        self.where, self.name, self.index = where, name, index

    def __call__(self) -> str:
        return f"{self.where}[{short(self.name)}].rules[{self.index}]"


def _gather_chains(chains: Iterable[pb.Chain], acc: dict[tuple[Family, str], list[Rule]], where: str) -> None:
    for c in chains:
        fam: Family = _enum(_FAMILY_R, c.family, f"{where}[{short(c.name)}].family")
        rules = acc.setdefault((fam, c.name), [])
        base = len(rules)
        for i, r in enumerate(c.rules, base):
            rules.append(rule_from_pb(r, _RuleWhere(where, c.name, i)))


class Assembler:
    """Joins parts into complete updates; one per stream.

    ``feed`` returns ``None`` while an update is incomplete, then the
    :class:`Snapshot`, :class:`Delta` or :class:`InSync`.  A malformed part
    makes the rest of that update be skipped; its final marker then
    yields a :class:`Rejected` naming the first error.
    """

    _FINAL = ("snapshot_complete", "delta_complete", "in_sync")

    def __init__(self) -> None:
        self._error = ""
        self.reset()

    def feed(self, msg: pb.ControllerMessage) -> Update | None:
        which = msg.WhichOneof("kind")
        final = which in self._FINAL or which is None or _inline_complete(msg, which) is not None
        if self._error:
            if not final:
                return None
            err = self._error
            self.reset()
            return Rejected(_final_version(msg), err)
        try:
            return self._feed(msg, which)
        except WireError as e:
            if final:
                self.reset()
                return Rejected(_final_version(msg), str(e))
            self._error = str(e)
            return None

    def reset(self) -> None:
        self._error = ""
        self._kind = ""
        self._version = 0
        self._parts = 0
        self._sets: dict[str, _SetAcc] = {}
        self._chains: dict[tuple[Family, str], list[Rule]] = {}
        self._hooks: dict[Family, tuple[Hook, ...]] = {}
        self._removed: list[str] = []
        self._members: dict[str, list[list[str]]] = {}
        self._chains_removed: list[tuple[Family, str]] = []

    def _start(self, kind: str, version: int) -> None:
        if self._kind and (self._kind != kind or self._version != version):
            raise WireError(f"{kind} part for version {version} in the middle of a {self._kind} "
                            f"for version {self._version}")
        self._kind, self._version = kind, version
        self._parts += 1

    def _finish(self, kind: str, version: int, parts: int) -> None:
        if self._kind not in ("", kind) or (self._kind and self._version != version):
            raise WireError(f"{kind} complete for version {version} while assembling a {self._kind} "
                            f"for version {self._version}")
        if parts != self._parts:
            raise WireError(f"{kind} complete for version {version} announces {parts} parts, "
                            f"{self._parts} arrived")

    def _feed(self, msg: pb.ControllerMessage, which: str | None) -> Update | None:
        done: Any  # the *Complete marker: a message of its own or inside the last part
        if which == "snapshot_part":
            sp = msg.snapshot_part
            self._start("snapshot", sp.version)
            _gather_sets(sp.sets, self._sets, "snapshot.sets")
            _gather_chains(sp.chains, self._chains, "snapshot.chains")
            for h in sp.hooks:
                fam, hooks = _hooks_from_pb(h, "snapshot.hooks")
                self._hooks[fam] = self._hooks.get(fam, ()) + hooks
            done = _inline_complete(msg, which)
            if done is None:
                return None
            which = "snapshot_complete"
        elif which == "delta_part":
            dp = msg.delta_part
            self._start("delta", dp.version)
            _gather_sets(dp.sets_upserted, self._sets, "delta.sets_upserted")
            self._removed.extend(dp.sets_removed)
            for md in dp.set_members:
                acc = self._members.setdefault(md.name, [[], [], [], []])
                acc[0].extend(md.added)
                acc[1].extend(md.removed)
                acc[2].extend(md.nomatch_added)
                acc[3].extend(md.nomatch_removed)
            _gather_chains(dp.chains_upserted, self._chains, "delta.chains_upserted")
            for cr in dp.chains_removed:
                self._chains_removed.append((_enum(_FAMILY_R, cr.family, "delta.chains_removed.family"), cr.name))
            for h in dp.hooks:
                fam, hooks = _hooks_from_pb(h, "delta.hooks")
                self._hooks[fam] = self._hooks.get(fam, ()) + hooks
            done = _inline_complete(msg, which)
            if done is None:
                return None
            which = "delta_complete"
        else:
            done = getattr(msg, which) if which in self._FINAL else None
        try:
            if which == "snapshot_complete":
                sc = done
                self._finish("snapshot", sc.version, sc.parts)
                fams = {fam: FamilyState({n: Chain(n, tuple(r)) for (f, n), r in self._chains.items() if f == fam},
                                         self._hooks.get(fam, ())) for fam in ("inet", "inet6")}
                state = NodeState(sc.node, {n: a.build() for n, a in self._sets.items()},
                                  fams["inet"], fams["inet6"])
                return Snapshot(state, sc.version, sc.digest, sc.replica, sc.parts)
            if which == "delta_complete":
                dc = done
                self._finish("delta", dc.version, dc.parts)
                delta = NodeDelta(
                    dc.node,
                    sets_upserted=tuple(a.build() for a in self._sets.values()),
                    sets_removed=tuple(self._removed),
                    set_members=tuple(SetMembersDelta(n, frozenset(a), frozenset(r), frozenset(na), frozenset(nr))
                                      for n, (a, r, na, nr) in self._members.items()),
                    chains_upserted=tuple((f, Chain(n, tuple(r))) for (f, n), r in self._chains.items()),
                    chains_removed=tuple(self._chains_removed),
                    hooks=tuple(self._hooks.items()))
                return Delta(delta, dc.base_version, dc.base_digest, dc.version, dc.digest, dc.replica, dc.parts)
            if which == "in_sync":
                if self._kind:
                    raise WireError(f"in_sync in the middle of a {self._kind} for version {self._version}")
                i = msg.in_sync
                return InSync(i.node, i.version, i.digest, i.replica)
            raise WireError(f"controller message without a known kind ({which!r})")
        finally:
            if which in ("snapshot_complete", "delta_complete", "in_sync"):
                self.reset()


def _inline_complete(msg: pb.ControllerMessage, which: str | None) -> Any:
    """The *Complete marker carried inside a part, or None."""
    if which == "snapshot_part" and msg.snapshot_part.HasField("complete"):
        return msg.snapshot_part.complete
    if which == "delta_part" and msg.delta_part.HasField("complete"):
        return msg.delta_part.complete
    return None


def _final_version(msg: pb.ControllerMessage) -> int:
    which = msg.WhichOneof("kind")
    if which is None:
        return 0
    return int(getattr(msg, which).version)


def decode_all(msgs: Iterable[pb.ControllerMessage]) -> list[Update]:
    """Every complete update in ``msgs`` (tests, tools)."""
    a = Assembler()
    return [u for m in msgs if (u := a.feed(m)) is not None]


# --------------------------------------------------------------------------
# agent -> controller


def encode_hello(h: Hello) -> pb.AgentMessage:
    return pb.AgentMessage(hello=pb.Hello(
        node=h.node, agent_version=h.agent_version, applied_digest=h.applied_digest,
        host_checks=[pb.HostCheck(name=c.name, ok=c.ok, detail=c.detail) for c in h.host_checks],
        features=h.features))


def encode_ack(a: Ack) -> pb.AgentMessage:
    return pb.AgentMessage(ack=pb.Ack(
        version=a.version, ok=a.ok, error=a.error, applied_digest=a.applied_digest,
        applied_version=a.applied_version, apply_seconds=a.apply_seconds, counts=a.counts,
        writes=a.writes, resync=a.resync, drift_repairs=a.drift_repairs))


def decode_agent_message(m: pb.AgentMessage) -> Hello | Ack:
    which = m.WhichOneof("kind")
    if which == "hello":
        h = m.hello
        return Hello(h.node, h.agent_version, h.applied_digest,
                     tuple(HostCheck(c.name, c.ok, c.detail) for c in h.host_checks), tuple(h.features))
    if which == "ack":
        a = m.ack
        return Ack(a.version, a.ok, a.error, a.applied_digest, a.applied_version, a.apply_seconds,
                   dict(a.counts), a.writes, a.resync, a.drift_repairs)
    raise WireError(f"agent message without a known kind ({which!r})")
