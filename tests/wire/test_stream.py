"""End to end over real sockets: controller distributor + gRPC server <-> agent client."""

from __future__ import annotations

import asyncio

from stockade.state import IPSet, digest
from tests.wire.helpers import RecordingApplier, agent, controller, ips, make_state, until


async def test_snapshot_then_deltas_then_acks() -> None:
    async with controller() as (dist, _srv, addr):
        s1 = make_state()
        v1 = dist.publish("n1", s1)
        app = RecordingApplier()
        async with agent([addr], app) as c:
            assert await dist.wait_acked("n1", v1, 5)
            assert app.applied == [s1]
            assert c.version == v1 and c.digest == digest(s1)
            s2 = make_state(pods=5)
            v2 = dist.publish("n1", s2)
            assert await dist.wait_acked("n1", v2, 5)
            assert app.applied[-1] == s2
            st = dist.nodes_status()[0]
            assert st["connected"] and st["in_sync"] and st["lag"] == 0
            assert st["applied_version"] == v2 and st["applied_digest"] == digest(s2)
            assert dist.snapshots_sent == 1 and dist.deltas_sent == 1


async def test_nothing_sent_before_ready() -> None:
    async with controller(ready=False) as (dist, _srv, addr):
        dist.publish("n1", make_state())
        app = RecordingApplier()
        async with agent([addr], app) as c:
            await until(lambda: c.connected, what="connected")
            await asyncio.sleep(0.2)
            assert app.applied == [] and dist.stats()["bytes_sent"] == 0
            dist.set_ready(True)
            assert await dist.wait_acked("n1", 1, 5)
            assert len(app.applied) == 1


async def test_reconnect_with_same_digest_writes_nothing() -> None:
    s1 = make_state()
    async with controller() as (dist, _srv, addr):
        dist.publish("n1", s1)
        app = RecordingApplier()
        async with agent([addr], app) as c:
            assert await dist.wait_acked("n1", 1, 5)
            held = (c.state, c.version, c.digest)
    # a different replica with the same content (its own version counter)
    async with controller(replica="r2") as (dist2, _srv, addr2):
        dist2.publish("n1", make_state(pods=1))
        v = dist2.publish("n1", s1)
        async with agent([addr2], app, initial=held) as c2:
            assert await dist2.wait_acked("n1", v, 5)
            assert len(app.applied) == 1, "no kernel write when the digest matches"
            assert dist2.in_syncs_sent == 1 and dist2.snapshots_sent == 0
            assert c2.version == v
            s3 = make_state(pods=7)
            v3 = dist2.publish("n1", s3)
            assert await dist2.wait_acked("n1", v3, 5)
            assert app.applied[-1] == s3 and dist2.deltas_sent == 1


async def test_slow_agent_gets_latest_state_coalesced() -> None:
    async with controller() as (dist, _srv, addr):
        dist.publish("n1", make_state(pods=1))
        app = RecordingApplier(delay=0.3)
        async with agent([addr], app):
            await until(lambda: len(app.applied) == 1, what="first apply")
            for i in range(2, 40):
                last = dist.publish("n1", make_state(pods=i))
            assert await dist.wait_acked("n1", last, 5)
            # one update in flight while 38 versions were published: at most
            # two more applies, the last being the latest state
            assert len(app.applied) <= 3
            assert app.applied[-1] == make_state(pods=39)


async def test_agent_moves_between_replicas_without_kernel_change() -> None:
    s = make_state(pods=4)
    async with controller(replica="a") as (da, srv_a, addr_a), controller(replica="b") as (db, _sb, addr_b):
        da.publish("n1", s)
        db.publish("n1", s)
        app = RecordingApplier()
        async with agent([addr_a, addr_b], app) as c:
            assert await da.wait_acked("n1", 1, 5)
            await srv_a.stop(0.2)  # replica a goes away
            assert await db.wait_acked("n1", 1, 5)
            assert c.controller == addr_b
            assert len(app.applied) == 1 and db.in_syncs_sent == 1


async def test_new_stream_of_same_node_replaces_old() -> None:
    async with controller() as (dist, _srv, addr):
        dist.publish("n1", make_state())
        a1, a2 = RecordingApplier(), RecordingApplier()
        async with agent([addr], a1) as c1:
            assert await dist.wait_acked("n1", 1, 5)
            async with agent([addr], a2):
                await until(lambda: len(a2.applied) == 1, what="second agent applied")
                # the first agent's stream was ended (it reconnects and takes
                # over in turn: two agents for one node fight, but the
                # controller only ever serves one stream per node)
                await until(lambda: c1.connects >= 2, what="first stream ended")
                assert dist.stats()["connected"] == 1


async def test_large_set_over_the_wire_is_chunked() -> None:
    big = make_state()
    big = type(big)(big.node, {**big.sets, "stk-big": IPSet("stk-big", "hash:ip", "inet", ips(200_000, "11.0.0.0"))},
                    big.v4, big.v6)
    async with controller() as (dist, _srv, addr):
        dist.publish("n1", big)
        app = RecordingApplier()
        async with agent([addr], app):
            assert await dist.wait_acked("n1", 1, 20)
            assert app.applied == [big]
            assert dist.stats()["bytes_sent"] > 2_000_000
