"""Controller messages for the agent fuzz targets: random bytes and structured garbage.

What: :func:`good_state` is the agent's last good state (a small valid
state with every set type and rule feature); :func:`raw_streams` draws
lists of random byte strings to be read as serialized
``ControllerMessage``\\ s; :func:`garbage_streams` draws structurally valid
message sequences (snapshot or delta parts and their complete marker) whose
fields are garbage: unknown set types and families and actions (enum values
the proto does not define), invalid or oversized members, rules naming
missing sets and chains, names outside our prefix or with spaces and
newlines, oversized names, wrong node, wrong versions, deltas against the
wrong base, a wrong part count.  ``fix_digest`` in the drawn stream asks the
harness to give the update the digest of its real content (so the garbage
reaches validation and the kernel instead of failing the digest check).

What not: no assertions; only this module and ``stockade.wire.codec`` build
``stockade.v1`` messages for the fuzz tests.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from stockade.state import Chain, FamilyState, Hook, IPSet, NodeState, Rule, SetMatch
from stockade.v1 import stockade_pb2 as pb

NODE = "n1"


def good_state(pods: int = 3) -> NodeState:
    """The agent's state before the garbage arrives (valid, every feature)."""
    ips = frozenset(str(ipaddress.IPv4Address(0x0A000000 + i)) for i in range(pods))
    sets = {
        "stk-pods": IPSet("stk-pods", "hash:ip", "inet", ips, comment="local pods"),
        "stk-peers": IPSet("stk-peers", "hash:net", "inet", frozenset({"10.1.0.0/16"}), frozenset({"10.1.2.0/24"})),
        "stk-ports": IPSet("stk-ports", "hash:ip,port", "inet", frozenset({"10.0.0.1,tcp:80"})),
        "stk-v6": IPSet("stk-v6", "hash:ip", "inet6", frozenset({"fd00::1"})),
    }
    fwd = (Rule("RETURN", ctstate=("ESTABLISHED", "RELATED")),
           Rule("JUMP", target="STOCKADE-ING", sets=(SetMatch("stk-pods", ("dst",)),)))
    ing = (Rule("MARK", proto="tcp", dport=(80, 90), sets=(SetMatch("stk-peers", ("src",)),),
                set_mark=(0x10000, 0x10000), comment="ns/allow-web"),
           Rule("RETURN", mark=(0x10000, 0x10000, False)),
           Rule("NFLOG", nflog_group=5, nflog_prefix="stk-drop", limit="10/second"),
           Rule("DROP", physdev_is_bridged=True, in_iface="cbr0", out_iface="eth+"))
    v4 = FamilyState({"STOCKADE-FWD": Chain("STOCKADE-FWD", fwd), "STOCKADE-ING": Chain("STOCKADE-ING", ing)},
                     (Hook("FORWARD", "STOCKADE-FWD"),))
    v6 = FamilyState({"STOCKADE-FWD": Chain("STOCKADE-FWD", (Rule("RETURN"),))}, (Hook("FORWARD", "STOCKADE-FWD"),))
    return NodeState(NODE, sets, v4, v6)


BAD_SET_NAMES = ("nostk", "stk-" + "x" * 40, "stk x", "stk\nx", "", "stk-é", "stk-" + "y" * 300, "stk-a,b",
                 "stk-\"q", "stk--", "STK-up", "stk-new\x00", "stk-'", "stk-missing", "-stk", "stk-\t")
BAD_CHAIN_NAMES = ("STOCKADE-" + "X" * 30, "STOCKADE X", "STOCKADE-\n", "INPUT", "FORWARD", "nope", "",
                   "STOCKADE-é", "STOCKADE-" + "Z" * 300, "STOCKADE--j", "STOCKADE-\"", "STOCKADE-!", "STOCKADE-MISSING",
                   "ACCEPT", "DROP", "RETURN", "STOCKADE-'")
BAD_MEMBERS = ("300.1.1.1", "1.2.3.4/33", "1.2.3.4\n5.6.7.8", "1.2.3.4,tcp:0", " 1.2.3.4", "01.2.3.4",
               "::ffff:1.2.3.4", "fe80::1%eth0", "10.2.0.1/16", "0.0.0.0/0", "::/0", "1.2.3.4,icmp:1", "",
               "x" * 300, "1.2.3.4 nomatch", "10.0.0.1,tcp:65536", "10.0.0.1,tcp:080", "10.0.0.1/32", "fd00::2",
               "10.0.0.9", "10.2.0.0/16", "10.0.0.1,tcp:443", "1.2.3.4,TCP:80", "1.2.3.4,tcp:+80", "1.2.3.4,tcp:8 0",
               "10.0.0.1,tcp:١٢", "١.2.3.4", "0.0.0.0", "255.255.255.255/0")
BAD_STRINGS = ("a b", "x\ny", "q\"uote", "back\\slash", "'", "é", "-j ACCEPT", "\x00", "COMMIT", "z" * 300,
               "--comment", "\r", "a\n-A FORWARD -j ACCEPT", "\t", "stk:deadbeef", "+", "eth0.100", "a" * 20)
BAD_BUILTINS = ("PREROUTING", "", "FORWARD\n", "forward", "STOCKADE-FWD", "POSTROUTING")
BAD_CTSTATES = ("BOGUS", "", "NEW,ESTABLISHED", "a b", "new", "DNAT", "UNTRACKED")
BAD_LIMITS = ("abc", "0/s", "1/fortnight", "10/second\n", "-1/s", "1 /s", "99999999999/s", "10/s/x")
BAD_ENUMS = (0, 7, 99, 2**31 - 1)
BAD_U32 = (0, 65536, 2**31, 2**32 - 1)
U64 = st.sampled_from((0, 1, 2, 3, 2**32, 2**63 - 1, 2**64 - 1))

_V4 = st.builds(lambda i: str(ipaddress.IPv4Address(0x0A000000 + i)), st.integers(0, 2**16))
_V6 = st.builds(lambda i: str(ipaddress.IPv6Address((0xFD00 << 112) + i)), st.integers(0, 2**16))


@st.composite
def valid_states(draw: st.DrawFn) -> NodeState:
    """GOOD with valid changes: pod set members, new sets of each type, a new
    chain (jumped to from STOCKADE-FWD) whose rules use them."""
    g = good_state()
    sets = dict(g.sets)
    sets["stk-pods"] = g.sets["stk-pods"].with_members(frozenset(draw(st.lists(_V4, min_size=0, max_size=6))))
    new_rules: list[Rule] = []
    for i in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(("ip4", "ip6", "net", "port")))
        name = f"stk-new{i}"
        if kind == "ip4":
            sets[name] = IPSet(name, "hash:ip", "inet", frozenset(draw(st.lists(_V4, max_size=4))))
            new_rules.append(Rule("RETURN", sets=(SetMatch(name, ("src",)),)))
        elif kind == "ip6":
            sets[name] = IPSet(name, "hash:ip", "inet6", frozenset(draw(st.lists(_V6, max_size=4))))
        elif kind == "net":
            sets[name] = IPSet(name, "hash:net", "inet", frozenset({"10.3.0.0/16"}), frozenset({"10.3.1.0/24"}))
            new_rules.append(Rule("DROP", proto="udp", dport=(53, 53), sets=(SetMatch(name, ("dst",), True),)))
        else:
            sets[name] = IPSet(name, "hash:ip,port", "inet", frozenset({"10.0.0.7,sctp:9"}), counters=True)
            new_rules.append(Rule("MARK", sets=(SetMatch(name, ("dst", "dst")),), set_mark=(0x20000, 0x20000),
                                  comment="ns/p ingress[0]"))
    if not new_rules:
        return NodeState(g.node, sets, g.v4, g.v6)
    chains = dict(g.v4.chains)
    chains["STOCKADE-NEW"] = Chain("STOCKADE-NEW", tuple(new_rules))
    fwd = g.v4.chains["STOCKADE-FWD"]
    chains["STOCKADE-FWD"] = Chain(fwd.name, (*fwd.rules, Rule("JUMP", target="STOCKADE-NEW")))
    return NodeState(g.node, sets, FamilyState(chains, g.v4.hooks), g.v6)


def _slots(msgs: list[pb.ControllerMessage]) -> dict[str, list[Any]]:
    """Every sub-message of the encoded update a garbage field can go into."""
    out: dict[str, list[Any]] = {"set": [], "rule": [], "chain": [], "hook": [], "members": [], "part": [],
                                 "final": [msgs[-1]]}
    for m in msgs[:-1]:
        part: Any = m.snapshot_part if m.WhichOneof("kind") == "snapshot_part" else m.delta_part
        out["part"].append(part)
        sets = part.sets if m.WhichOneof("kind") == "snapshot_part" else part.sets_upserted
        chains = part.chains if m.WhichOneof("kind") == "snapshot_part" else part.chains_upserted
        out["set"].extend(sets)
        out["chain"].extend(chains)
        out["rule"].extend(r for c in chains for r in c.rules)
        out["hook"].extend(h for fh in part.hooks for h in fh.hooks)
        out["members"].extend(getattr(part, "set_members", []))
    return {k: v for k, v in out.items() if v}


def _break(draw: st.DrawFn, slots: dict[str, list[Any]]) -> None:
    """Put one garbage value into one drawn field of one drawn sub-message."""
    kind = draw(st.sampled_from(sorted(slots)))
    m = slots[kind][draw(st.integers(0, len(slots[kind]) - 1))]
    pick = draw
    if kind == "set":
        f = pick(st.sampled_from(("name", "type", "family", "members", "nomatch", "comment")))
        if f == "name":
            m.name = pick(st.sampled_from(BAD_SET_NAMES))
        elif f in ("type", "family"):
            setattr(m, f, pick(st.sampled_from((*BAD_ENUMS, 1, 2, 3))))
        elif f in ("members", "nomatch"):
            getattr(m, f).append(pick(st.sampled_from(BAD_MEMBERS)))
        else:
            m.comment = pick(st.sampled_from(BAD_STRINGS))
    elif kind == "rule":
        f = pick(st.sampled_from(("action", "target", "proto", "dport", "sets", "ctstate", "mark", "set_mark",
                                  "in_iface", "out_iface", "physdev", "nflog_group", "nflog_prefix", "limit",
                                  "comment")))
        if f in ("action", "proto", "physdev"):
            setattr(m, f, pick(st.sampled_from((*BAD_ENUMS, 1, 2, 3, 4, 5))))
        elif f == "target":
            m.target = pick(st.sampled_from((*BAD_CHAIN_NAMES, "STOCKADE-FWD", "STOCKADE-ING")))
        elif f == "dport":
            m.dport_first, m.dport_last = pick(st.sampled_from((*BAD_U32, 1, 80))), pick(st.sampled_from((*BAD_U32, 80)))
        elif f == "sets":
            m.sets.add(set=pick(st.sampled_from((*BAD_SET_NAMES, "stk-pods", "stk-v6", "stk-ports"))),
                       dirs=pick(st.lists(st.sampled_from((1, 2, *BAD_ENUMS)), max_size=3)), negate=pick(st.booleans()))
        elif f == "ctstate":
            m.ctstate.append(pick(st.sampled_from(BAD_CTSTATES)))
        elif f in ("mark", "set_mark"):
            getattr(m, f).value, getattr(m, f).mask = pick(st.sampled_from(BAD_U32)), pick(st.sampled_from(BAD_U32))
        elif f == "nflog_group":
            m.nflog_group = pick(st.sampled_from(BAD_U32))
        elif f == "limit":
            m.limit = pick(st.sampled_from(BAD_LIMITS))
        else:
            setattr(m, f, pick(st.sampled_from(BAD_STRINGS)))
    elif kind == "chain":
        if pick(st.booleans()):
            m.name = pick(st.sampled_from(BAD_CHAIN_NAMES))
        else:
            m.family = pick(st.sampled_from((*BAD_ENUMS, 1, 2)))
    elif kind == "hook":
        f = pick(st.sampled_from(("builtin", "target", "position")))
        if f == "builtin":
            m.builtin = pick(st.sampled_from(BAD_BUILTINS))
        elif f == "target":
            m.target = pick(st.sampled_from(BAD_CHAIN_NAMES))
        else:
            m.position = pick(st.sampled_from(BAD_U32))
    elif kind == "members":
        getattr(m, pick(st.sampled_from(("added", "removed", "nomatch_added", "nomatch_removed")))).append(
            pick(st.sampled_from(BAD_MEMBERS)))
        if pick(st.integers(0, 3)) == 0:
            m.name = pick(st.sampled_from(BAD_SET_NAMES))
    elif kind == "part":
        m.version = pick(U64)
    else:
        which = m.WhichOneof("kind")
        fin = getattr(m, which)
        f = pick(st.sampled_from(("node", "version", "parts") + (("base_version", "base_digest")
                                                                   if which == "delta_complete" else ())))
        if f == "node":
            fin.node = pick(st.sampled_from(("other", "", "n1\n", "N1", "n1 ")))
        elif f in ("version", "base_version"):
            setattr(fin, f, pick(U64))
        elif f == "parts":
            fin.parts = pick(st.sampled_from(BAD_U32))
        else:
            fin.base_digest = pick(st.sampled_from(("", "0" * 64, "GOOD" * 16)))


@dataclass(frozen=True)
class Stream:
    """What the controller sends after the good state (version 1):
    ``messages`` in order; ``fix_digest``: the harness replaces the
    update's digest with the digest of its real content."""

    messages: tuple[pb.ControllerMessage, ...]
    fix_digest: bool

    def __repr__(self) -> str:  # hypothesis prints failing examples; keep them readable
        kinds = [m.WhichOneof("kind") for m in self.messages]
        return f"Stream({kinds}, fix_digest={self.fix_digest}, bytes={sum(m.ByteSize() for m in self.messages)})"


@st.composite
def garbage_streams(draw: st.DrawFn) -> Stream:
    """A valid snapshot or delta (GOOD -> a drawn valid state, version 2),
    with 0..3 garbage fields put in; sometimes a stray marker in the middle."""
    from stockade.state import diff, digest  # the generator only; the harness recomputes digests
    from stockade.wire import codec

    new = draw(valid_states())
    good = good_state()
    if draw(st.booleans()):
        msgs = codec.encode_snapshot(new, 2, digest(new))
    else:
        msgs = codec.encode_delta(diff(good, new), 1, digest(good), 2, digest(new))
    msgs = [_copy(m) for m in msgs]
    slots = _slots(msgs)
    for _ in range(draw(st.sampled_from((0, 1, 1, 1, 1, 2, 2, 3)))):
        _break(draw, slots)
    if draw(st.integers(0, 14)) == 0:  # a marker of the other kind, or an in_sync, in the middle
        other = pb.ControllerMessage()
        if draw(st.booleans()):
            other.in_sync.node, other.in_sync.version, other.in_sync.digest = NODE, 1, digest(good)
        else:
            other.snapshot_complete.version = 2
        msgs.insert(draw(st.integers(0, len(msgs))), other)
    return Stream(tuple(msgs), fix_digest=draw(st.integers(0, 5)) > 0)


def _copy(m: pb.ControllerMessage) -> pb.ControllerMessage:
    c = pb.ControllerMessage()
    c.CopyFrom(m)
    return c


def raw_streams() -> st.SearchStrategy[list[bytes]]:
    """Random byte strings, some of them valid encodings bent by a byte."""
    def bent(data: bytes, i: int, x: int) -> bytes:
        if not data:
            return data
        j = i % len(data)
        return data[:j] + bytes([data[j] ^ x]) + data[j + 1:]

    valid = st.builds(lambda v: pb.ControllerMessage(snapshot_complete=pb.SnapshotComplete(
        node=NODE, version=v, digest="d", parts=1)).SerializeToString(), U64)
    one = st.one_of(st.binary(max_size=200), st.builds(bent, valid, st.integers(0, 100), st.integers(1, 255)))
    return st.lists(one, min_size=1, max_size=6)
