"""A delta's body serialized once for every node it reaches (``codec.SharedDeltas``),
and the controller's stream sending already-serialized messages.

What an agent decodes from ``body bytes + per-node bytes`` must be exactly
what ``codec.encode_delta``'s messages decode to, for every delta shape,
split into parts or not, with the marker inline or as a message of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from hypothesis import given, settings

from controller.distributor import Distributor
from stockade import state
from stockade.state import Chain, FamilyState, Hook, IPSet, NodeState, Rule, apply_delta, diff, digest
from stockade.v1 import stockade_pb2 as pb
from stockade.v1 import stockade_pb2_grpc
from stockade.wire import codec
from stockade.wire.messages import FEATURES, Ack, Delta, Hello, Snapshot
from tests.wire.helpers import controller, ips, make_state, until
from tests.wire.test_codec import DELTAS, states
from tests.wire.test_distributor import start

BUDGETS = [pytest.param(codec.DEFAULT_BUDGET, id="default"), pytest.param(200, id="tiny-parts")]
INLINE = [pytest.param(False, id="marker-message"), pytest.param(True, id="marker-inline")]


def parsed(data: list[bytes]) -> list[pb.ControllerMessage]:
    return [pb.ControllerMessage.FromString(b) for b in data]


def same_as_encode_delta(old: NodeState, new: NodeState, budget: int, inline: bool,
                         shared: codec.SharedDeltas | None = None) -> list[bytes]:
    """Encode old -> new both ways; assert the messages and the decoded delta are the same."""
    d = diff(old, new)
    args = (d, 3, digest(old), 4, digest(new), "r1")
    want = codec.encode_delta(*args, budget=budget, inline=inline)
    got = (codec.SharedDeltas(budget) if shared is None else shared).encode(*args, inline=inline)
    assert parsed(got) == want, "each message parses to the one encode_delta builds"
    assert codec.decode_all(parsed(got)) == codec.decode_all(want)
    [u] = codec.decode_all(parsed(got))
    assert isinstance(u, Delta) and u.parts == len(want) - (0 if inline else 1)
    assert (u.base_version, u.base_digest, u.version, u.digest, u.replica) == (3, digest(old), 4, digest(new), "r1")
    assert apply_delta(old, u.delta) == new
    return got


@pytest.mark.parametrize("inline", INLINE)
@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("old, new", DELTAS)
def test_shared_body_decodes_as_encode_delta(old: NodeState, new: NodeState, budget: int, inline: bool) -> None:
    same_as_encode_delta(old, new, budget, inline)


@pytest.mark.parametrize("inline", INLINE)
def test_split_delta_keeps_its_parts(inline: bool) -> None:
    """A set too big for one part is split; the per-node bytes go on every part."""
    old = make_state(pods=3)
    new = make_state(pods=400)
    got = same_as_encode_delta(old, new, 300, inline)
    assert len(got) > 5
    assert all(m.delta_part.version == 4 for m in parsed(got)[:len(got) - (0 if inline else 1)])


@settings(max_examples=150, deadline=None)
@given(states(), states())
def test_random_deltas_decode_as_encode_delta(a: NodeState, b: NodeState) -> None:
    old, new = NodeState("n1", a.sets, a.v4, a.v6), NodeState("n1", b.sets, b.v4, b.v6)
    for budget in (codec.DEFAULT_BUDGET, 250):
        for inline in (False, True):
            same_as_encode_delta(old, new, budget, inline)


def shared_pair() -> tuple[NodeState, NodeState, NodeState, NodeState]:
    """Two nodes' states before and after one change, sharing the changed set and chain objects."""
    peers0 = IPSet("stk-peers", "hash:ip", "inet", ips(5))
    peers1 = IPSet("stk-peers", "hash:ip", "inet", ips(6))
    extra = IPSet("stk-new", "hash:ip", "inet", ips(2, "10.5.0.0"))
    ch = Chain("STOCKADE-X", (Rule("RETURN", comment="x"),))

    def node(name: str, peers: IPSet, more: bool) -> NodeState:
        own = IPSet(f"stk-own-{name}", "hash:ip", "inet", ips(3, "10.7.0.0"))
        sets = {"stk-peers": peers, own.name: own, **({extra.name: extra} if more else {})}
        return NodeState(name, sets, FamilyState({ch.name: ch} if more else {}))

    return node("a", peers0, False), node("a", peers1, True), node("b", peers0, False), node("b", peers1, True)


@pytest.mark.parametrize("inline", INLINE)
def test_nodes_reached_by_one_change_share_one_body(inline: bool) -> None:
    a0, a1, b0, b1 = shared_pair()
    shared = codec.SharedDeltas()
    # the memo is global, bounded and cleared when full: start from an empty
    # one, so what earlier tests left cannot fill it between the two diffs
    state._MEMBER_DELTAS.clear()
    da, db = diff(a0, a1), diff(b0, b1)
    assert da.set_members[0] is db.set_members[0], "diff memoizes the shared member delta"
    got_a = shared.encode(da, 1, digest(a0), 2, digest(a1), "r1", inline)
    got_b = shared.encode(db, 7, digest(b0), 8, digest(b1), "r1", inline)
    assert (shared.misses, shared.hits, len(shared)) == (1, 1, 1)
    for old, new, got, versions in ((a0, a1, got_a, (1, 2)), (b0, b1, got_b, (7, 8))):
        [u] = codec.decode_all(parsed(got))
        assert isinstance(u, Delta) and u.delta.node == new.node
        assert (u.base_version, u.version, u.digest) == (versions[0], versions[1], digest(new))
        assert apply_delta(old, u.delta) == new


def test_equal_but_distinct_components_are_encoded_again() -> None:
    """The key is the components' identities: an equal delta built from other
    objects is a miss, and still decodes right."""
    old, new = make_state(pods=3), make_state(pods=4)
    shared = codec.SharedDeltas()
    same_as_encode_delta(old, new, codec.DEFAULT_BUDGET, True, shared)
    same_as_encode_delta(make_state(pods=3), make_state(pods=4), codec.DEFAULT_BUDGET, True, shared)
    assert shared.misses == 2 and shared.hits == 0


def test_bodies_kept_are_bounded() -> None:
    shared = codec.SharedDeltas(max_entries=3)
    base = make_state(pods=1)
    kept = []
    for i in range(2, 8):
        new = make_state(pods=i)
        kept.append(new)  # alive, so no identity can be reused by a later object
        shared.encode(diff(base, new), 1, "a", 2, "b")
        assert len(shared) <= 3
    assert shared.misses == 6
    small = codec.SharedDeltas(max_bytes=1)  # nothing fits: encoded every time, never kept
    d = diff(base, kept[0])
    small.encode(d, 1, "a", 2, "b")
    small.encode(d, 1, "a", 2, "b")
    assert len(small) == 0 and small.misses == 2


def test_to_wire_passes_bytes_and_serializes_messages() -> None:
    m = codec.encode_in_sync("n1", 3, "d", "r1")
    assert codec.to_wire(m) == m.SerializeToString()
    b = m.SerializeToString()
    assert codec.to_wire(b) is b


async def test_distributor_sends_bytes_and_shares_the_body_between_nodes() -> None:
    a0, a1, b0, b1 = shared_pair()
    d = Distributor("r1")
    d.publish("a", a0)
    d.publish("b", b0)
    d.set_ready(True)
    pa, ta = await start(d, Hello("a", "v", "", (), FEATURES))
    pb_, tb = await start(d, Hello("b", "v", "", (), ()))
    await until(lambda: len(pa.updates) == 1 and len(pb_.updates) == 1, what="snapshots")
    await pa.acks.put(Ack(1, True, applied_digest=digest(a0), applied_version=1))
    await pb_.acks.put(Ack(1, True, applied_digest=digest(b0), applied_version=1))
    await until(lambda: d.nodes_status()[0]["applied_version"] == 1 == d.nodes_status()[1]["applied_version"],
                what="acks")
    d.publish("a", a1)
    d.publish("b", b1)
    await until(lambda: len(pa.updates) == 2 and len(pb_.updates) == 2, what="deltas")
    assert all(isinstance(m, bytes) for m in pa.sent + pb_.sent)
    assert isinstance(pa.updates[0], Snapshot)
    for p, old, new in ((pa, a0, a1), (pb_, b0, b1)):
        u = p.updates[1]
        assert isinstance(u, Delta) and u.digest == digest(new) and apply_delta(old, u.delta) == new
    assert d.stats()["delta_bodies_reused"] == 1 and d.stats()["delta_bodies_encoded"] == 1
    assert d.stats()["bytes_sent"] == sum(map(len, pa.sent + pb_.sent))
    for p in (pa, pb_):
        await p.acks.put(None)
    await asyncio.wait_for(asyncio.gather(ta, tb), 5)


@pytest.mark.parametrize("features", [pytest.param((), id="older-agent"), pytest.param(FEATURES, id="inline")])
async def test_grpc_stream_carries_the_serialized_messages(features: tuple[str, ...]) -> None:
    """Over a real socket, with the generated client stub: an older agent
    (no "inline-complete") gets every marker as a message of its own."""
    s1, s2 = make_state(pods=3), make_state(pods=40, extra_sets=2)
    async with controller() as (dist, _srv, addr):
        dist.publish("n1", s1)
        acks: asyncio.Queue[pb.AgentMessage | None] = asyncio.Queue()
        await acks.put(codec.encode_hello(Hello("n1", "v", "", (), features)))

        async def requests() -> AsyncIterator[pb.AgentMessage]:
            while (m := await acks.get()) is not None:
                yield m

        async with grpc.aio.insecure_channel(addr) as ch:
            call = stockade_pb2_grpc.DistributionStub(ch).Stream(requests())  # type: ignore[no-untyped-call]
            asm, kinds, updates = codec.Assembler(), [], []
            while len(updates) < 2:
                m = await asyncio.wait_for(call.read(), 5)
                kinds.append(m.WhichOneof("kind"))
                u = asm.feed(m)
                if u is None:
                    continue
                updates.append(u)
                if len(updates) == 1:
                    assert isinstance(u, Snapshot) and u.state == s1
                    await acks.put(codec.encode_ack(Ack(u.version, True, applied_digest=u.digest,
                                                        applied_version=u.version)))
                    assert await dist.wait_acked("n1", u.version, 5)
                    dist.publish("n1", s2)
            call.cancel()
        await acks.put(None)
    d = updates[1]
    assert isinstance(d, Delta) and d.digest == digest(s2) and apply_delta(s1, d.delta) == s2
    if features:
        assert kinds == ["snapshot_part", "delta_part"]
    else:
        assert kinds == ["snapshot_part", "snapshot_complete", "delta_part", "delta_complete"]


def test_same_components_with_other_removals_or_hooks_get_their_own_body() -> None:
    """Removals and hooks are part of the key: a node whose delta shares
    every upserted object but removes a set, or changes its hooks, must not
    get another node's body."""
    a0, a1, b0, b1 = shared_pair()
    gone = IPSet("stk-gone", "hash:ip", "inet", ips(1, "10.8.0.0"))
    b0 = NodeState("b", {**b0.sets, gone.name: gone}, b0.v4)
    c0 = NodeState("c", {k.replace("-b", "-c"): v for k, v in b0.sets.items() if k != gone.name},
                   FamilyState(b0.v4.chains, (Hook("FORWARD", "STOCKADE-X"),)))
    c1 = NodeState("c", {k.replace("-b", "-c"): v for k, v in b1.sets.items()}, b1.v4)
    shared = codec.SharedDeltas()
    for old, new in ((a0, a1), (b0, b1), (c0, c1)):
        d = diff(old, new)
        assert d.set_members[0] is diff(a0, a1).set_members[0]
        [u] = codec.decode_all(parsed(shared.encode(d, 1, digest(old), 2, digest(new), "r1", True)))
        assert isinstance(u, Delta) and apply_delta(old, u.delta) == new
    assert shared.misses == 3
