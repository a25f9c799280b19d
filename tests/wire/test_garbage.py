"""Garbage in: the agent keeps its last good state, says why in its ack, and asks for a snapshot."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from nodeagent.client import AgentClient, ClientSettings
from stockade.state import IPSet, NodeState, Rule, SetMatch, diff, digest
from stockade.v1 import stockade_pb2 as pb
from stockade.v1 import stockade_pb2_grpc
from stockade.wire import codec
from stockade.wire.messages import Ack, Delta, Snapshot
from tests.wire.helpers import RecordingApplier, agent, controller, make_state, until


def bad_state() -> NodeState:
    s = make_state(pods=2)
    chain = s.v4.chains["STOCKADE-ING"]
    broken = type(chain)(chain.name, (*chain.rules, Rule("DROP", sets=(SetMatch("stk-missing", ("src",)),))))
    return NodeState(s.node, s.sets, type(s.v4)({**s.v4.chains, chain.name: broken}, s.v4.hooks), s.v6)


async def test_invalid_state_keeps_last_good_and_recovers() -> None:
    async with controller(retry_base=0.05) as (dist, _srv, addr):
        good = make_state()
        dist.publish("n1", good)
        app = RecordingApplier()
        async with agent([addr], app) as c:
            assert await dist.wait_acked("n1", 1, 5)
            dist.publish("n1", bad_state())
            await until(lambda: "stk-missing" in dist.nodes_status()[0]["last_error"], what="error reported")
            st = dist.nodes_status()[0]
            assert not st["in_sync"] and st["applied_digest"] == digest(good)
            assert app.applied == [good] and c.state == good
            fixed = make_state(pods=6)
            v = dist.publish("n1", fixed)
            assert await dist.wait_acked("n1", v, 5)
            assert app.applied[-1] == fixed
            assert dist.nodes_status()[0]["last_error"] == ""
            assert dist.snapshots_sent >= 2  # recovery went through a fresh snapshot


async def test_kernel_failure_is_acked_and_retried_with_a_snapshot() -> None:
    async with controller(retry_base=0.05) as (dist, _srv, addr):
        dist.publish("n1", make_state())
        app = RecordingApplier()
        async with agent([addr], app):
            assert await dist.wait_acked("n1", 1, 5)
            app.fail = "ipset restore: line 3: Kernel error"
            v = dist.publish("n1", make_state(pods=8))
            await until(lambda: "Kernel error" in dist.nodes_status()[0]["last_error"], what="kernel error reported")
            app.fail = ""
            assert await dist.wait_acked("n1", v, 5)
            assert app.applied[-1] == make_state(pods=8)


def _client(applier: RecordingApplier) -> AgentClient:
    return AgentClient(ClientSettings("n1", ["127.0.0.1:1"]), applier)


async def _accept(c: AgentClient, s: NodeState, version: int = 1) -> None:
    a = await c.handle(Snapshot(s, version, digest(s)))
    assert a.ok, a.error


@pytest.mark.parametrize("mutate, why", [
    pytest.param(lambda d: d.__class__(d.delta, d.base_version + 5, d.base_digest, d.version, d.digest),
                 "does not fit version", id="base-version-mismatch"),
    pytest.param(lambda d: d.__class__(d.delta, d.base_version, "0" * 64, d.version, d.digest),
                 "does not fit version", id="base-digest-mismatch"),
    pytest.param(lambda d: d.__class__(d.delta, d.base_version, d.base_digest, d.version, "f" * 64),
                 "differs from the controller", id="result-digest-mismatch"),
    pytest.param(lambda d: d.__class__(diff(make_state(), bad_state()), d.base_version, d.base_digest, d.version,
                                       digest(bad_state())),
                 "stk-missing", id="delta-makes-invalid-state"),
])
async def test_bad_delta_is_rejected(mutate: Any, why: str) -> None:
    app = RecordingApplier()
    c = _client(app)
    s1, s2 = make_state(), make_state(pods=4)
    await _accept(c, s1)
    d = Delta(diff(s1, s2), 1, digest(s1), 2, digest(s2))
    ack: Ack = await c.handle(mutate(d))
    assert not ack.ok and ack.resync and why in ack.error
    assert c.state == s1 and c.version == 1 and ack.applied_digest == digest(s1) and ack.applied_version == 1
    assert app.applied == [s1]
    ok = await c.handle(d)  # the right delta still applies afterwards
    assert ok.ok and c.state == s2


@pytest.mark.parametrize("snap, why", [
    pytest.param(lambda: Snapshot(bad_state(), 2, digest(bad_state())), "stk-missing", id="invalid-state"),
    pytest.param(lambda: Snapshot(make_state(node="other"), 2, digest(make_state(node="other"))), "is for node",
                 id="other-node"),
    pytest.param(lambda: Snapshot(make_state(pods=5), 2, "0" * 64), "differs", id="wrong-digest"),
    pytest.param(lambda: Snapshot(NodeState("n1", {"stk-a": IPSet("stk-a", "hash:ip", "inet", frozenset({"300.1.1.1"}))}),
                                  2, "0"), "not a valid hash:ip", id="bad-member"),
])
async def test_bad_snapshot_is_rejected(snap: Any, why: str) -> None:
    app = RecordingApplier()
    c = _client(app)
    await _accept(c, make_state())
    ack = await c.handle(snap())
    assert not ack.ok and ack.resync and why in ack.error, ack.error
    assert c.state == make_state() and app.applied == [make_state()]


class _Scripted(stockade_pb2_grpc.DistributionServicer):
    """A controller that sends a fixed list of messages and records the agent's acks."""

    def __init__(self, script: list[pb.ControllerMessage]) -> None:
        self.script = script
        self.acks: list[Ack] = []

    async def Stream(self, request_iterator: Any, context: Any) -> None:
        await context.read()  # hello
        for m in self.script:
            await context.write(m)
        while True:
            m = await context.read()
            if m is grpc.aio.EOF:
                return
            a = codec.decode_agent_message(m)
            assert isinstance(a, Ack)
            self.acks.append(a)


@contextlib.asynccontextmanager
async def scripted(script: list[pb.ControllerMessage]) -> AsyncIterator[tuple[_Scripted, str]]:
    server = grpc.aio.server()
    svc = _Scripted(script)
    stockade_pb2_grpc.add_DistributionServicer_to_server(svc, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield svc, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


def _garbled_delta() -> list[pb.ControllerMessage]:
    s1, s2 = make_state(), make_state(pods=4)
    msgs = codec.encode_delta(diff(s1, s2), 1, digest(s1), 2, digest(s2))
    msgs[0].delta_part.sets_upserted.add(name="stk-z", type=99, family=1)  # unknown set type
    return msgs


def _short_snapshot() -> list[pb.ControllerMessage]:
    s = make_state(pods=4)
    msgs = codec.encode_snapshot(s, 2, digest(s))
    msgs[-1].snapshot_complete.parts = 3  # announces more parts than were sent
    return msgs


def _mixed() -> list[pb.ControllerMessage]:
    s = make_state(pods=4)
    snap = codec.encode_snapshot(s, 2, digest(s))
    d = codec.encode_delta(diff(make_state(), s), 1, digest(make_state()), 2, digest(s))
    return [snap[0], d[0], d[-1]]


@pytest.mark.parametrize("garbage, why", [
    pytest.param(_garbled_delta, "unknown value 99", id="unknown-enum"),
    pytest.param(_short_snapshot, "announces 3 parts", id="part-count"),
    pytest.param(_mixed, "in the middle of a snapshot", id="interleaved-kinds"),
])
async def test_malformed_messages_over_the_wire(garbage: Any, why: str) -> None:
    s1 = make_state()
    script = [*codec.encode_snapshot(s1, 1, digest(s1)), *garbage()]
    async with scripted(script) as (svc, addr):
        app = RecordingApplier()
        async with agent([addr], app) as c:
            await until(lambda: len(svc.acks) >= 2, what="two acks")
            first, second = svc.acks[:2]
            assert first.ok and first.version == 1
            assert not second.ok and second.resync and why in second.error, second.error
            assert second.applied_digest == digest(s1)
            assert c.state == s1 and app.applied == [s1]
            await asyncio.sleep(0)


@pytest.mark.parametrize("fail", [
    pytest.param("x" * 1_000_000, id="apply-error"),
    pytest.param("", id="reject-error"),
])
async def test_ack_errors_are_capped(fail: str) -> None:
    """The last line of defence: however long the error, the ack carries at
    most MAX_ACK_ERROR characters (and says how long it was)."""
    from nodeagent.client import MAX_ACK_ERROR
    from stockade.wire.messages import Rejected

    app = RecordingApplier()
    app.fail = fail
    c = AgentClient(ClientSettings("n1", ["127.0.0.1:9"]), app)
    s = make_state()
    u: Any = Snapshot(s, 1, digest(s)) if fail else Rejected(1, "y" * 1_000_000)
    ack = await c.handle(u)
    assert not ack.ok and len(ack.error) <= MAX_ACK_ERROR and "chars)" in ack.error
    assert c.last_error == ack.error
