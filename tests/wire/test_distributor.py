"""Distributor without sockets: versions, no-op publishes, removal, the readiness gate, acks, metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from controller.distributor import Distributor
from nodeagent.client import resolve
from stockade.state import digest
from stockade.v1 import stockade_pb2 as pb
from stockade.wire import codec
from stockade.wire.messages import Ack, Delta, Hello, InSync, Snapshot
from tests.wire.helpers import make_state, until


class Pipe:
    """Stands in for the gRPC stream: collects sent messages, feeds acks."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.acks: asyncio.Queue[Ack | None] = asyncio.Queue()
        self.asm = codec.Assembler()
        self.updates: list[Any] = []

    async def send(self, m: bytes) -> None:
        self.sent.append(m)
        u = self.asm.feed(pb.ControllerMessage.FromString(m))
        if u is not None:
            self.updates.append(u)

    async def stream(self) -> AsyncIterator[Ack]:
        while True:
            a = await self.acks.get()
            if a is None:
                return
            yield a


async def start(dist: Distributor, hello: Hello) -> tuple[Pipe, asyncio.Task[None]]:
    p = Pipe()
    t = asyncio.create_task(dist.run_stream(hello, "test-peer", p.send, p.stream()))
    await asyncio.sleep(0)
    return p, t


def test_versions_and_no_op_publish() -> None:
    d = Distributor("r1")
    assert d.publish("n1", make_state()) == 1
    assert d.publish("n1", make_state()) == 1, "same content: no new version"
    assert d.publish("n1", make_state(pods=4)) == 2
    state, version, dig = d.desired("n1")  # type: ignore[misc]
    assert version == 2 and dig == digest(make_state(pods=4)) and state == make_state(pods=4)
    with pytest.raises(ValueError, match="not 'n2'"):
        d.publish("n2", make_state())


def test_remove_node_without_agent_forgets_it() -> None:
    d = Distributor()
    d.publish("n1", make_state())
    d.remove_node("n1")
    d.remove_node("never-seen")
    assert d.desired("n1") is None and d.nodes_status() == []


@pytest.mark.parametrize("agent_digest, kind", [
    pytest.param("", Snapshot, id="fresh-agent-gets-snapshot"),
    pytest.param("stale", Snapshot, id="other-digest-gets-snapshot"),
    pytest.param(digest(make_state()), InSync, id="same-digest-gets-in-sync"),
])
async def test_first_update_depends_on_hello_digest(agent_digest: str, kind: type) -> None:
    d = Distributor("r1")
    d.publish("n1", make_state())
    d.set_ready(True)
    p, t = await start(d, Hello("n1", "v", agent_digest))
    await until(lambda: p.updates, what="first update")
    assert isinstance(p.updates[0], kind) and p.updates[0].version == 1
    await p.acks.put(None)
    await asyncio.wait_for(t, 5)
    assert d.nodes_status()[0]["connected"] is False


async def test_gate_window_of_one_and_coalescing() -> None:
    d = Distributor("r1")
    d.publish("n1", make_state(pods=1))
    p, t = await start(d, Hello("n1", "v", ""))
    await asyncio.sleep(0.05)
    assert p.sent == [], "nothing before ready"
    d.set_ready(True)
    await until(lambda: len(p.updates) == 1, what="snapshot")
    for i in range(2, 10):
        d.publish("n1", make_state(pods=i))
    await asyncio.sleep(0.05)
    assert len(p.updates) == 1, "no second update before the first is acked"
    await p.acks.put(Ack(1, True, applied_digest=digest(make_state(pods=1)), applied_version=1, apply_seconds=0.01))
    await until(lambda: len(p.updates) == 2, what="coalesced delta")
    u = p.updates[1]
    assert isinstance(u, Delta) and (u.base_version, u.version) == (1, 9) and u.digest == digest(make_state(pods=9))
    await p.acks.put(Ack(9, True, applied_digest=u.digest, applied_version=9))
    assert await d.wait_acked("n1", 9, 5)
    st = d.nodes_status()[0]
    assert st["in_sync"] and st["lag"] == 0 and st["peer"] == "test-peer" and st["replica"] == "r1"
    await p.acks.put(None)
    await asyncio.wait_for(t, 5)


async def test_failed_ack_sends_a_snapshot_after_a_pause() -> None:
    d = Distributor("r1", retry_base=0.1)
    d.publish("n1", make_state())
    d.set_ready(True)
    p, t = await start(d, Hello("n1", "v", ""))
    await until(lambda: len(p.updates) == 1, what="snapshot")
    await p.acks.put(Ack(1, False, "kernel said no", "", 0, resync=True))
    await until(lambda: d.nodes_status()[0]["last_error"] == "kernel said no", what="error recorded")
    assert len(p.updates) == 1
    await until(lambda: len(p.updates) == 2, timeout=2, what="snapshot again")
    assert isinstance(p.updates[1], Snapshot)
    await p.acks.put(Ack(1, True, applied_digest=digest(make_state()), applied_version=1))
    assert await d.wait_acked("n1", 1, 5)
    assert d.nodes_status()[0]["last_error"] == ""
    await p.acks.put(None)
    await asyncio.wait_for(t, 5)


async def test_wait_acked_and_sent_time_out_without_creating_nodes() -> None:
    d = Distributor()
    assert await d.wait_acked("n1", 1, 0.05) is False
    assert await d.wait_sent("n1", 1, 0.05) is False
    assert d.nodes_status() == []


async def test_wait_sent_before_ack() -> None:
    d = Distributor("r1")
    d.publish("n1", make_state())
    d.set_ready(True)
    p, t = await start(d, Hello("n1", "v", ""))
    assert await d.wait_sent("n1", 1, 5)
    assert d.nodes_status()[0]["sent_version"] == 1 and d.nodes_status()[0]["applied_version"] == 0
    await p.acks.put(None)
    await asyncio.wait_for(t, 5)


async def test_host_checks_and_drift_in_status_and_metrics() -> None:
    from stockade.wire.messages import HostCheck

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = sample("stockade_wire_bytes_sent_total")
    messages, snapshots = sample("stockade_wire_messages_sent_total"), sample("stockade_wire_updates_sent_total",
                                                                                kind="snapshot")
    d = Distributor("r1")
    d.publish("n1", make_state())
    d.set_ready(True)
    p, t = await start(d, Hello("n1", "0.1.0", "", (HostCheck("bridge-nf-call-iptables", False, "missing"),)))
    await until(lambda: p.updates, what="snapshot")
    await p.acks.put(Ack(1, True, applied_digest=digest(make_state()), applied_version=1, drift_repairs=3,
                         counts={"sets": 4}))
    assert await d.wait_acked("n1", 1, 5)
    st = d.nodes_status()[0]
    assert st["host_checks"] == [{"name": "bridge-nf-call-iptables", "ok": False, "detail": "missing"}]
    assert st["drift_repairs"] == 3 and st["counts"] == {"sets": 4} and st["agent_version"] == "0.1.0"
    assert sample("stockade_wire_bytes_sent_total") - before == d.bytes_sent == sum(map(len, p.sent)) > 0
    assert sample("stockade_wire_messages_sent_total") - messages == len(p.sent)
    assert sample("stockade_wire_updates_sent_total", kind="snapshot") - snapshots == 1
    await p.acks.put(None)
    await asyncio.wait_for(t, 5)


async def test_resolve_expands_names() -> None:
    got = await resolve(["localhost:7700", "127.0.0.1:7701", "no-such-host.invalid:7700"])
    assert "127.0.0.1:7700" in got and "127.0.0.1:7701" in got and "no-such-host.invalid:7700" in got
