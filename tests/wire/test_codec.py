"""Codec: state <-> protobuf round trips, chunking, strict reassembly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockade.state import (
    Chain,
    FamilyState,
    Hook,
    IPSet,
    NodeDelta,
    NodeState,
    Rule,
    SetMatch,
    SetMembersDelta,
    apply_delta,
    diff,
    digest,
)
from stockade.v1 import stockade_pb2 as pb
from stockade.wire import codec
from stockade.wire.digest import DigestCache
from stockade.wire.messages import Ack, Delta, Hello, HostCheck, InSync, Rejected, Snapshot
from tests.wire.helpers import ips, make_state

RULES = [
    pytest.param(Rule("RETURN"), id="bare"),
    pytest.param(Rule("JUMP", target="STOCKADE-X"), id="jump"),
    pytest.param(Rule("DROP", proto="udp", dport=(53, 53)), id="port"),
    pytest.param(Rule("DROP", proto="sctp", dport=(1000, 2000)), id="range"),
    pytest.param(Rule("RETURN", sets=(SetMatch("stk-a", ("dst", "dst"), negate=True),)), id="set-ip-port-negated"),
    pytest.param(Rule("MARK", set_mark=(0x10000, 0x10000)), id="set-mark"),
    pytest.param(Rule("RETURN", mark=(0, 0x10000, True)), id="mark-zero-negated"),
    pytest.param(Rule("RETURN", mark=(0, 0, False)), id="mark-all-zero-still-present"),
    pytest.param(Rule("NFLOG", nflog_group=3, nflog_prefix="p", limit="5/second"), id="nflog"),
    pytest.param(Rule("DROP", physdev_is_bridged=False), id="physdev-not-bridged"),
    pytest.param(Rule("DROP", physdev_is_bridged=True, in_iface="cbr0", out_iface="eth+"), id="ifaces"),
    pytest.param(Rule("RETURN", ctstate=("ESTABLISHED", "RELATED"), comment="ns/p ingress[0] \u00e9"), id="ctstate-comment"),
]


@pytest.mark.parametrize("rule", RULES)
def test_rule_round_trip(rule: Rule) -> None:
    back = codec.rule_from_pb(pb.Rule.FromString(codec.rule_to_pb(rule).SerializeToString()), "r")
    assert back == rule


STATES = [
    pytest.param(NodeState("n1"), id="empty"),
    pytest.param(make_state(), id="small"),
    pytest.param(make_state(pods=500, extra_sets=40), id="many-sets"),
    pytest.param(NodeState("n1", {"stk-e": IPSet("stk-e", "hash:net", "inet", counters=True, comment="c")}),
                 id="empty-set-with-counters"),
]


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("budget", [pytest.param(codec.DEFAULT_BUDGET, id="default"),
                                    pytest.param(300, id="tiny-parts")])
def test_snapshot_round_trip(state: NodeState, budget: int) -> None:
    msgs = codec.encode_snapshot(state, 7, digest(state), "r1", budget)
    wire = [pb.ControllerMessage.FromString(m.SerializeToString()) for m in msgs]
    [snap] = codec.decode_all(wire)
    assert isinstance(snap, Snapshot)
    assert snap.state == state and snap.version == 7 and snap.digest == digest(state) and snap.replica == "r1"
    assert snap.parts == len(msgs) - 1


DELTAS = [
    pytest.param(make_state(), make_state(pods=9), id="members-added"),
    pytest.param(make_state(pods=9), make_state(pods=2), id="members-removed"),
    pytest.param(make_state(extra_sets=3), make_state(), id="sets-removed"),
    pytest.param(make_state(), make_state(extra_sets=3, tag="-x"), id="sets-and-chain-upserted"),
    pytest.param(make_state(), NodeState("n1"), id="everything-removed"),
    pytest.param(NodeState("n1"), make_state(), id="from-empty"),
]


@pytest.mark.parametrize("old, new", DELTAS)
@pytest.mark.parametrize("budget", [pytest.param(codec.DEFAULT_BUDGET, id="default"),
                                    pytest.param(200, id="tiny-parts")])
def test_delta_round_trip(old: NodeState, new: NodeState, budget: int) -> None:
    d = diff(old, new)
    msgs = codec.encode_delta(d, 3, digest(old), 4, digest(new), "r1", budget)
    [got] = codec.decode_all(pb.ControllerMessage.FromString(m.SerializeToString()) for m in msgs)
    assert isinstance(got, Delta)
    assert (got.base_version, got.base_digest, got.version, got.digest) == (3, digest(old), 4, digest(new))
    assert apply_delta(old, got.delta) == new


def test_removing_all_hooks_is_explicit() -> None:
    old = make_state()
    new = NodeState("n1", old.sets, FamilyState(old.v4.chains, ()), old.v6)
    [got] = codec.decode_all(codec.encode_delta(diff(old, new), 1, "a", 2, "b"))
    assert isinstance(got, Delta)
    assert got.delta.hooks == (("inet", ()),)
    assert apply_delta(old, got.delta).v4.hooks == ()


def test_million_member_set_is_chunked_under_the_grpc_limit() -> None:
    big = IPSet("stk-big", "hash:ip", "inet", ips(1_000_000, "10.0.0.0"))
    state = NodeState("n1", {"stk-big": big})
    msgs = codec.encode_snapshot(state, 1, "d")
    sizes = [m.ByteSize() for m in msgs]
    assert len(msgs) > 5 and max(sizes) < codec.GRPC_DEFAULT_LIMIT // 2
    [snap] = codec.decode_all(pb.ControllerMessage.FromString(m.SerializeToString()) for m in msgs)
    assert isinstance(snap, Snapshot) and snap.state.sets["stk-big"] == big
    # a delta that adds a million members to an existing set is chunked too
    d = NodeDelta("n1", set_members=(SetMembersDelta("stk-big", added=ips(1_000_000, "11.0.0.0")),))
    dm = codec.encode_delta(d, 1, "a", 2, "b")
    assert len(dm) > 5 and max(m.ByteSize() for m in dm) < codec.GRPC_DEFAULT_LIMIT // 2
    [got] = codec.decode_all(dm)
    assert isinstance(got, Delta) and got.delta.set_members[0].added == d.set_members[0].added


def test_long_chain_is_split_and_rejoined_in_order() -> None:
    rules = tuple(Rule("DROP", proto="tcp", dport=(p, p), comment=f"rule {p}") for p in range(1, 3000))
    state = NodeState("n1", v4=FamilyState({"STOCKADE-L": Chain("STOCKADE-L", rules)}, (Hook("INPUT", "STOCKADE-L"),)))
    msgs = codec.encode_snapshot(state, 1, "d", budget=10_000)
    assert len(msgs) > 5
    [snap] = codec.decode_all(msgs)
    assert isinstance(snap, Snapshot) and snap.state == state


def _snap_msgs() -> list[pb.ControllerMessage]:
    s = make_state(pods=200)
    return codec.encode_snapshot(s, 5, digest(s), budget=500)


BROKEN = [
    pytest.param(lambda m: m[:1] + m[2:], "parts", id="missing-part"),
    pytest.param(lambda m: [*m[:1], m[1], *m[1:]], "parts", id="duplicated-part"),
    pytest.param(lambda m: [m[0], pb.ControllerMessage(snapshot_part=pb.SnapshotPart(version=6)), *m[1:]],
                 "version 6", id="part-of-other-version"),
    pytest.param(lambda m: [pb.ControllerMessage(snapshot_part=pb.SnapshotPart(
        version=5, sets=[pb.IPSet(name="stk-pods", type=pb.SET_TYPE_HASH_NET, family=pb.FAMILY_INET)])), *m],
                 "disagree on its header", id="set-header-conflict"),
    pytest.param(lambda m: [pb.ControllerMessage(snapshot_part=pb.SnapshotPart(
        version=5, chains=[pb.Chain(family=7, name="STOCKADE-A")])), *m], "unknown value 7", id="bad-family"),
    pytest.param(lambda m: [pb.ControllerMessage(snapshot_part=pb.SnapshotPart(
        version=5, chains=[pb.Chain(family=1, name="STOCKADE-A", rules=[pb.Rule(action=42)])])), *m],
                 "rules[0].action: unknown value 42", id="bad-action"),
    pytest.param(lambda m: [*m[:-1], pb.ControllerMessage(), m[-1]], "without a known kind", id="empty-message"),
]


@pytest.mark.parametrize("breaker, why", BROKEN)
def test_malformed_snapshot_is_rejected_once(breaker: object, why: str) -> None:
    msgs = breaker(_snap_msgs())  # type: ignore[operator]
    out = codec.decode_all(msgs)
    rejected = [u for u in out if isinstance(u, Rejected)]
    assert rejected and why in rejected[0].error, out
    assert not any(isinstance(u, Snapshot) for u in out)


def test_assembler_recovers_after_a_rejected_update() -> None:
    a = codec.Assembler()
    bad = _snap_msgs()[1:]
    good = _snap_msgs()
    out = [u for m in [*bad, *good] if (u := a.feed(m)) is not None]
    assert isinstance(out[0], Rejected) and isinstance(out[1], Snapshot)


def test_in_sync_round_trip() -> None:
    [u] = codec.decode_all([codec.encode_in_sync("n1", 9, "abc", "r2")])
    assert u == InSync("n1", 9, "abc", "r2")


@pytest.mark.parametrize("msg", [
    pytest.param(Hello("n1", "0.1.0", "abc", (HostCheck("ipset", True, "v7.17"), HostCheck("nft", False, "missing"))),
                 id="hello"),
    pytest.param(Ack(3, True, "", "abc", 3, 0.25, {"sets": 4, "members": 10}, 2, False, 1), id="ack-ok"),
    pytest.param(Ack(4, False, "bad", "abc", 3, 0.0, {}, 0, True, 0), id="ack-error"),
])
def test_agent_messages_round_trip(msg: Hello | Ack) -> None:
    enc = codec.encode_hello(msg) if isinstance(msg, Hello) else codec.encode_ack(msg)
    assert codec.decode_agent_message(pb.AgentMessage.FromString(enc.SerializeToString())) == msg


# ---------------------------------------------------------------- digest cache

members = st.frozensets(st.integers(0, 2**16).map(lambda i: f"10.0.{i >> 8}.{i & 255}"), max_size=20)


@st.composite
def states(draw: st.DrawFn) -> NodeState:
    sets = {}
    for i in range(draw(st.integers(0, 4))):
        sets[f"stk-s{i}"] = IPSet(f"stk-s{i}", "hash:ip", "inet", draw(members), counters=draw(st.booleans()))
    chains = {}
    for i in range(draw(st.integers(0, 3))):
        rules = tuple(Rule("DROP", proto="tcp", dport=(p, p), comment=draw(st.text(max_size=5)))
                      for p in draw(st.lists(st.integers(1, 65535), max_size=4)))
        chains[f"STOCKADE-C{i}"] = Chain(f"STOCKADE-C{i}", rules)
    hooks = tuple(Hook("FORWARD", n) for n in chains)
    return NodeState(draw(st.sampled_from(["n1", "node-\u00e9"])), sets, FamilyState(chains, hooks),
                     FamilyState(dict(list(chains.items())[:1])))


@settings(max_examples=150, deadline=None)
@given(st.lists(states(), min_size=1, max_size=5))
def test_digest_cache_equals_state_digest(seq: list[NodeState]) -> None:
    own, shared = DigestCache(), DigestCache()
    for s in seq:
        assert own.digest(s) == digest(s)
        assert shared.digest(s, evict=False) == digest(s)
    shared.retain(seq[-1:])
    assert shared.digest(seq[-1]) == digest(seq[-1])


def test_digest_cache_reuses_unchanged_sets() -> None:
    c = DigestCache()
    s1 = make_state(pods=50, extra_sets=10)
    c.digest(s1)
    s2 = NodeState(s1.node, {**s1.sets, "stk-pods": s1.sets["stk-pods"].with_members(ips(51))}, s1.v4, s1.v6)
    assert c.digest(s2) == digest(s2)
    assert len(c) == len(s2.sets) + len(s2.v4.chains) + len(s2.v6.chains)
