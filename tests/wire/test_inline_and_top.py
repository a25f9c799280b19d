"""Small updates in one message (inline *Complete marker) and the digest's
top level carried forward by deltas (``stockade.wire.digest.Top``)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.distributor import Distributor
from stockade.state import IPSet, NodeState, apply_delta, diff, digest
from stockade.v1 import stockade_pb2 as pb
from stockade.wire import codec
from stockade.wire.digest import Carried, DigestCache
from stockade.wire.messages import FEATURES, Ack, Delta, Hello, Rejected, Snapshot
from tests.wire.helpers import make_state, until
from tests.wire.test_codec import STATES, states
from tests.wire.test_distributor import start

DELTAS = [
    (make_state(), make_state(pods=9)),
    (make_state(pods=9), make_state(pods=2)),
    (make_state(extra_sets=3), make_state()),
    (make_state(), make_state(extra_sets=3, tag="-x")),
    (make_state(), NodeState("n1")),
    (NodeState("n1"), make_state()),
]


def wire(msgs: list[pb.ControllerMessage]) -> list[pb.ControllerMessage]:
    return [pb.ControllerMessage.FromString(m.SerializeToString()) for m in msgs]


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("budget", [codec.DEFAULT_BUDGET, 300])
def test_inline_snapshot_is_one_message_fewer_and_decodes_the_same(state: NodeState, budget: int) -> None:
    plain = codec.encode_snapshot(state, 7, digest(state), "r1", budget)
    inline = codec.encode_snapshot(state, 7, digest(state), "r1", budget, inline=True)
    assert len(inline) == len(plain) - 1
    assert all(m.WhichOneof("kind") == "snapshot_part" for m in inline)
    assert [m.snapshot_part.HasField("complete") for m in inline] == [False] * (len(inline) - 1) + [True]
    [a] = codec.decode_all(wire(plain))
    [b] = codec.decode_all(wire(inline))
    assert isinstance(b, Snapshot) and b == a and b.parts == len(inline)


@pytest.mark.parametrize("old, new", DELTAS)
@pytest.mark.parametrize("budget", [codec.DEFAULT_BUDGET, 200])
def test_inline_delta_decodes_the_same(old: NodeState, new: NodeState, budget: int) -> None:
    d = diff(old, new)
    plain = codec.encode_delta(d, 3, digest(old), 4, digest(new), "r1", budget)
    inline = codec.encode_delta(d, 3, digest(old), 4, digest(new), "r1", budget, inline=True)
    assert len(inline) == len(plain) - 1
    [a] = codec.decode_all(wire(plain))
    [b] = codec.decode_all(wire(inline))
    assert isinstance(b, Delta) and b == a and apply_delta(old, b.delta) == new


def test_single_member_change_is_one_message() -> None:
    old, new = make_state(pods=3), make_state(pods=4)
    assert len(codec.encode_delta(diff(old, new), 1, "a", 2, "b", inline=True)) == 1


def test_inline_marker_with_a_wrong_part_count_is_rejected_and_the_next_update_decodes() -> None:
    old, new = make_state(), make_state(pods=60)
    msgs = wire(codec.encode_delta(diff(old, new), 3, "a", 4, "b", budget=200, inline=True))
    assert len(msgs) > 1
    msgs[-1].delta_part.complete.parts += 1
    good = wire(codec.encode_delta(diff(old, new), 4, "b", 5, "c", inline=True))
    out = codec.decode_all(msgs + good)
    assert isinstance(out[0], Rejected) and "announces" in out[0].error and out[0].version == 4
    assert isinstance(out[1], Delta) and out[1].version == 5


def test_inline_marker_for_another_version_is_rejected() -> None:
    msgs = wire(codec.encode_delta(diff(make_state(), make_state(pods=9)), 3, "a", 4, "b", inline=True))
    msgs[-1].delta_part.complete.version = 5
    [r] = codec.decode_all(msgs)
    assert isinstance(r, Rejected) and "version 5" in r.error


def test_hello_features_round_trip() -> None:
    h = Hello("n1", "v", "d", (), FEATURES)
    assert codec.decode_agent_message(pb.AgentMessage.FromString(codec.encode_hello(h).SerializeToString())) == h


@pytest.mark.parametrize("features, per_delta", [((), 2), (FEATURES, 1)])
async def test_distributor_inlines_only_for_agents_that_ask(features: tuple[str, ...], per_delta: int) -> None:
    d = Distributor("r1")
    d.publish("n1", make_state(pods=1))
    d.set_ready(True)
    p, t = await start(d, Hello("n1", "v", "", (), features))
    await until(lambda: len(p.updates) == 1, what="snapshot")
    await p.acks.put(Ack(1, True, applied_digest=digest(make_state(pods=1)), applied_version=1))
    before = len(p.sent)
    d.publish("n1", make_state(pods=2))
    await until(lambda: len(p.updates) == 2, what="delta")
    assert isinstance(p.updates[1], Delta) and p.updates[1].digest == digest(make_state(pods=2))
    assert len(p.sent) - before == per_delta
    await p.acks.put(None)
    await asyncio.wait_for(t, 5)


# ------------------------------------------------------------------ Top


@st.composite
def sequences(draw: st.DrawFn) -> list[NodeState]:
    """States of one node in a row (sets and chains come, go and change)."""
    seq = draw(st.lists(states(), min_size=2, max_size=6))
    return [NodeState("n1", s.sets, s.v4, s.v6) for s in seq]


@settings(max_examples=200, deadline=None)
@given(sequences(), st.booleans())
def test_top_after_each_delta_equals_the_full_digest(seq: list[NodeState], shared: bool) -> None:
    cache = DigestCache()
    top = cache.top(seq[0], evict=not shared)
    assert top.digest == digest(seq[0])
    prev = seq[0]
    for cur in seq[1:]:
        d = diff(prev, cur)
        applied = apply_delta(prev, d)  # the agent's view: its own objects, not the controller's
        for st_ in (cur, applied):
            assert cache.top_after(top, d, st_).digest == digest(cur)
        top, prev = cache.top_after(top, d, cur), cur


def test_top_after_a_delta_that_does_not_fit_falls_back_to_the_full_digest() -> None:
    a, b, c = make_state(), make_state(extra_sets=3, tag="-x"), make_state(pods=9)
    cache = DigestCache()
    top_a = cache.top(a)
    wrong = diff(b, c)  # not a -> c
    assert cache.top_after(top_a, wrong, c).digest == digest(c)
    assert cache.top_after(top_a, diff(a, b), c).digest == digest(c), "state is not base + delta"


def test_top_after_hashes_only_what_the_delta_names() -> None:
    old = make_state(pods=50, extra_sets=10)
    new = NodeState(old.node, {**old.sets, "stk-pods": old.sets["stk-pods"].with_members(frozenset({"10.0.0.1"}))},
                    old.v4, old.v6)
    cache = DigestCache()
    top = cache.top(old, evict=False)
    n = len(cache)
    after = cache.top_after(top, diff(old, new), new)
    assert after.digest == digest(new)
    assert len(cache) == n + 1, "one new fragment: the changed set"
    assert after.head is top.head, "same counts and hooks: the header is reused, not rebuilt"
    assert after.sets.total != top.sets.total and after.chains[0] is top.chains[0], "only the sets' sum moved"


# ------------------------------------------------------------------ Carried (the agent's digest)


@st.composite
def member_sequences(draw: st.DrawFn) -> list[NodeState]:
    """One node whose sets' members (and nomatch entries) churn, sets come and go."""
    pool = [f"10.0.{i // 250}.{i % 250}" for i in range(600)]
    out = []
    for _ in range(draw(st.integers(2, 6))):
        sets = {}
        for i in draw(st.lists(st.integers(0, 3), unique=True, max_size=4)):
            mem = frozenset(draw(st.lists(st.sampled_from(pool), max_size=80)))
            nom = frozenset(draw(st.lists(st.sampled_from(pool[:20]), max_size=3))) if i == 3 else frozenset()
            sets[f"stk-s{i}"] = IPSet(f"stk-s{i}", "hash:net" if i == 3 else "hash:ip", "inet", mem, nom)
        base = draw(states())
        out.append(NodeState("n1", sets, base.v4, base.v6))
    return out


@settings(max_examples=200, deadline=None)
@given(st.one_of(sequences(), member_sequences()))
def test_carried_digest_equals_the_full_digest_after_every_delta(seq: list[NodeState]) -> None:
    c = Carried.of(seq[0])
    assert c.digest == digest(seq[0])
    prev = seq[0]
    for cur in seq[1:]:
        d = diff(prev, cur)
        applied = apply_delta(prev, d)  # the agent's own objects
        nxt = c.after(prev, d, applied)
        assert nxt.digest == digest(cur)
        c, prev = nxt, applied


def test_carried_is_not_fooled_by_a_base_it_does_not_describe() -> None:
    a, b = make_state(pods=5), make_state(pods=9)
    c = Carried.of(a)
    other = make_state(pods=7)  # not the state c describes: its order must not be reused
    d = diff(other, b)
    assert c.after(other, d, apply_delta(other, d)).digest == digest(b)


def test_carried_keeps_the_previous_value_intact() -> None:
    a, b = make_state(pods=5), make_state(pods=9)
    c = Carried.of(a)
    c.after(a, diff(a, b), b)
    assert c.digest == digest(a)
    assert c.after(a, diff(a, b), b).digest == digest(b)


async def test_distributor_does_not_hold_a_sent_message() -> None:
    """A snapshot is one large message: the write loop must not keep it
    (1,000 idle streams each holding their last snapshot took 1.1 GB in
    wire_bench before this was fixed)."""
    import sys

    d = Distributor("r1")
    d.publish("n1", make_state(pods=50))
    d.set_ready(True)
    p, t = await start(d, Hello("n1", "v", "", (), FEATURES))
    await until(lambda: len(p.updates) == 1, what="snapshot")
    await asyncio.sleep(0.01)  # the write loop is parked, waiting for the ack
    assert len(p.sent) == 1
    refs = sys.getrefcount(p.sent[0])  # outside the assert: pytest's rewriting holds temporaries
    assert refs == 2, "only the test's list (and getrefcount's argument) refer to it"
    await p.acks.put(None)
    await asyncio.wait_for(t, 5)


def test_shared_cache_hashes_a_new_version_of_a_set_from_what_changed() -> None:
    """The controller's cache carries a set's member sums from its previous
    version (same name) when few members changed: still the full digest."""
    from stockade.state import member_sum

    big = make_state(pods=400)
    cache = DigestCache()
    assert cache.digest(big, evict=False) == digest(big)
    pods = big.sets["stk-pods"]
    for change in (pods.members | {"10.9.9.9"}, pods.members - {sorted(pods.members)[7]}):
        nxt = NodeState(big.node, {**big.sets, "stk-pods": pods.with_members(frozenset(change))}, big.v4, big.v6)
        assert cache.digest(nxt, evict=False) == digest(nxt)
    assert member_sum(["a", "b", "c"]) == member_sum(["c", "a", "b"]) != member_sum(["a", "b"])


def test_distributor_sweep_keeps_only_live_hashes() -> None:
    d = Distributor("r1")
    for i in range(1, 6):
        d.publish("n1", make_state(pods=i, extra_sets=i))
        d.desired("n1")  # computes the digest
    before = len(d._digests)
    d.sweep()
    st = make_state(pods=5, extra_sets=5)
    live = len(st.sets) + len(st.v4.chains) + len(st.v6.chains)
    after = len(d._digests)
    assert after <= live < before, "only fragments of objects the live state holds remain"
    d.sweep_if_grown()  # nothing new: no sweep needed, nothing lost
    assert len(d._digests) == after and d.desired("n1")[2] == digest(st)  # type: ignore[index]
