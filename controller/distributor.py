"""Hands each node agent the latest desired state of its node, and tracks its acks.

The controller's single writer task calls :meth:`Distributor.publish`
whenever a node's desired state changed.  The distributor keeps, per node,
only the *latest* state with its version (a counter per node, this replica's
own), digest and the delta from the previous state.  Each connected agent
has one stream session (:meth:`Distributor.run_stream`, driven by
``controller.grpc_server``) that sends:

    hello(digest) --> digest == desired digest ?  InSync(version)
                                                : Snapshot parts + SnapshotComplete
    then, each time the state moved on and the previous update was acked:
                      Delta(sent version -> latest version) parts + DeltaComplete

At most one update is in flight per agent (window of one), so a slow agent
never builds a backlog: when it acks, it gets one delta from what it has to
the latest state, however many versions were published meanwhile
(coalescing).  A failed ack (bad state, digest mismatch, kernel error)
makes the session send a fresh snapshot after a bounded, growing pause.
Nothing is sent before :meth:`set_ready` (the readiness gate: the
controller has listed every watch and computed every node once).

What it does not do: compile states, speak gRPC or protobuf (the codec
builds the messages; ``controller.grpc_server`` moves them), or persist
anything.  All methods run on the controller's event loop; ``publish`` is
synchronous so the writer task never waits for a slow agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric

from stockade import backoff
from stockade.state import NodeDelta, NodeState, diff
from stockade.wire import codec
from stockade.wire.digest import DigestCache, Top
from stockade.wire.messages import INLINE_COMPLETE, Ack, Hello, HostCheck

log = logging.getLogger("stockade.distributor")



class _SentTotals:
    """What every distributor of this process sent: plain counts, exported as
    the counters ``stockade_wire_bytes_sent``, ``stockade_wire_messages_sent``
    and ``stockade_wire_updates_sent{kind}`` when scraped.  The write loop
    runs once per node reached by a change; a prometheus ``Counter`` would
    take a lock per increment there."""

    def __init__(self) -> None:
        self.bytes = 0
        self.messages = 0
        self.updates = {"snapshot": 0, "delta": 0, "in_sync": 0}

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily("stockade_wire_bytes_sent", "Bytes of controller messages sent to agents",
                                  value=self.bytes)
        yield CounterMetricFamily("stockade_wire_messages_sent", "Controller messages sent to agents",
                                  value=self.messages)
        updates = CounterMetricFamily("stockade_wire_updates_sent", "Updates sent to agents by kind", labels=["kind"])
        for kind, n in self.updates.items():
            updates.add_metric([kind], n)
        yield updates


SENT = _SentTotals()
REGISTRY.register(SENT)
CONNECTED = Gauge("stockade_wire_connected_agents", "Agents with an open stream to this replica")
APPLY_SECONDS = Histogram("stockade_wire_agent_apply_seconds", "Apply time reported in agents' acks",
                          buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
PUBLISH_TO_ACK = Histogram("stockade_wire_publish_to_ack_seconds", "From publish to the agent's ack of that version",
                           buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
ACK_ERRORS = Counter("stockade_wire_ack_errors", "Acks reporting that a version was not applied")

Send = Callable[[bytes], Awaitable[None]]  # writes one serialized ControllerMessage

_PUBLISH_TIMES_KEPT = 64  # publish times remembered per node for the latency metric


@dataclass(eq=False)
class _Session:
    """One agent stream.  ``inflight``: version sent and not yet acked."""

    peer: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    inflight: int | None = None
    sent_version: int = 0  # the version of the last update the write loop started sending
    need_snapshot: bool = True
    agent_digest: str = ""  # what the agent last said it enforces
    inline: bool = False  # the agent takes the *Complete marker inside the last part
    failures: int = 0
    retry_at: float = 0.0


@dataclass(eq=False)
class _Node:
    """What the distributor knows about one node.

    Desired side: ``state`` (None: never published or removed), ``version``,
    ``digest``, ``delta`` = (base version, delta to ``version``), computed
    from ``base`` (the previous version and state) when first needed.
    Agent side: the latest hello and ack fields, for ``nodes_status``."""

    name: str
    state: NodeState | None = None
    version: int = 0
    digest: str = ""
    delta: tuple[int, NodeDelta] | None = None
    base: tuple[int, NodeState] | None = None  # the previous version, until ``delta`` is computed from it
    top: Top | None = None  # the digest's top level of version ``top_version`` (carried forward by deltas)
    top_version: int = 0
    published_at: dict[int, float] = field(default_factory=dict)
    session: _Session | None = None
    agent_version: str = ""
    host_checks: tuple[HostCheck, ...] = ()
    acked_version: int = 0
    acked_digest: str = ""
    last_ack_unix: float = 0.0
    last_apply_seconds: float = 0.0
    last_error: str = ""
    drift_repairs: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    peer: str = ""
    sent_version: int = 0  # the last version whose update was completely written to the stream
    # set (and dropped) at the next ack / completely written update; made only
    # when someone waits (wait_acked, wait_sent), not once per update
    ack_event: asyncio.Event | None = None
    sent_event: asyncio.Event | None = None


class Distributor:
    """Per-node latest desired state, streamed to agents (see the module docstring).

    ``replica`` names this controller replica in messages and status.
    ``retry_base``/``retry_max`` bound the pause before a snapshot is re-sent
    after a failed ack.  ``max_concurrent_snapshots`` bounds how many
    snapshots are encoded and written at the same time (memory).  ``budget`` is the codec's part size.
    """

    def __init__(self, replica: str = "", *, budget: int = codec.DEFAULT_BUDGET,
                 retry_base: float = 0.5, retry_max: float = 30.0, max_concurrent_snapshots: int = 32,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.replica = replica
        self.budget = budget
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.clock = clock
        self._nodes: dict[str, _Node] = {}
        self._ready = asyncio.Event()
        self._ready_change = asyncio.Event()
        self._closing = False
        # snapshots being encoded/written at once (bounds memory when a
        # thousand agents connect together); deltas and in-sync never wait
        self._snapshot_slots = asyncio.Semaphore(max_concurrent_snapshots)
        self.snapshots_sent = 0
        self.deltas_sent = 0
        self.in_syncs_sent = 0
        self.bytes_sent = 0
        self._digests = DigestCache(cache_rules=True)  # shared by all nodes; swept at idle moments (sweep_if_grown)
        self._digests_kept = 0
        self._deltas = codec.SharedDeltas(budget)  # a change's delta body, serialized once for all its nodes

    # ---------------------------------------------------------------- writer side

    def _node(self, name: str) -> _Node:
        n = self._nodes.get(name)
        if n is None:
            n = self._nodes[name] = _Node(name)
        return n

    def publish(self, node: str, state: NodeState, digest: str | None = None) -> int:
        """Make ``state`` the desired state of ``node``; returns its version.

        Computes the delta from the previous state; content equal to the
        previous state is a no-op.  The digest (``stockade.state.digest``;
        pass it if known) is computed when first needed, by the node's
        stream, so a change that touches hundreds of nodes starts reaching
        the first agents at once instead of after every digest was
        computed.  Wakes the node's stream.  Never blocks."""
        if state.node != node:
            raise ValueError(f"publish: state is for node {state.node!r}, not {node!r}")
        n = self._node(node)
        if n.state is not None and (state is n.state or (digest and digest == n.digest) or state == n.state):
            return n.version
        if len(self._digests) > max(4 * self._digests_kept, 200_000):
            self.sweep()  # a bound for memory; the controller sweeps when idle (sweep_if_grown)
        # the delta from the previous version is computed when first needed (by
        # the node's stream), so a change reaching hundreds of nodes starts
        # being sent while the rest are still being published
        n.base = (n.version, n.state) if n.state is not None else None
        n.delta = None
        n.state, n.version, n.digest = state, n.version + 1, digest or ""
        n.published_at[n.version] = self.clock()
        if len(n.published_at) > _PUBLISH_TIMES_KEPT:
            del n.published_at[min(n.published_at)]
        if n.session is not None:
            n.session.wake.set()
        return n.version

    def sweep(self) -> None:
        """Forget the hashes of sets and chains no node's state uses any more.
        It walks every node's state (~0.1 s for 1,000 nodes)."""
        self._digests.retain(x.state for x in self._nodes.values() if x.state is not None)
        self._digests_kept = len(self._digests)

    def sweep_if_grown(self) -> None:
        """:meth:`sweep` if the hash cache grew by half since the last sweep
        (for idle moments: a change makes a few new objects, shared by every
        node it reaches, so this is rare)."""
        if len(self._digests) > 1.5 * self._digests_kept + 1000:
            self.sweep()

    @staticmethod
    def _delta(n: _Node) -> tuple[int, NodeDelta] | None:
        """(previous version, delta from it to the current state), computed once."""
        if n.delta is None and n.base is not None and n.state is not None:
            n.delta = (n.base[0], diff(n.base[1], n.state))
            n.base = None
        return n.delta

    def _dig(self, n: _Node) -> str:
        """The digest of ``n``'s desired state ("" when it has none), computed
        once: from the previous version's top level and the delta when that
        is at hand (only what the delta names is hashed), else in full."""
        if not n.digest and n.state is not None:
            d = self._delta(n)
            if n.top is not None and d is not None and d[0] == n.top_version:
                top = self._digests.top_after(n.top, d[1], n.state)
            else:
                top = self._digests.top(n.state, evict=False)
            n.top, n.top_version, n.digest = top, n.version, top.digest
        return n.digest

    def remove_node(self, node: str) -> None:
        """The node is gone: forget its desired state (its agent, if still
        connected, keeps enforcing what it has and gets nothing more)."""
        n = self._nodes.get(node)
        if n is None:
            return
        if n.session is None:
            del self._nodes[node]
        else:
            n.state, n.base, n.delta, n.top = None, None, None, None

    def set_ready(self, ready: bool = True) -> None:
        """Open (or close) the readiness gate: nothing is sent while closed."""
        if ready:
            self._ready.set()
        else:
            self._ready.clear()
        old, self._ready_change = self._ready_change, asyncio.Event()
        old.set()
        for n in self._nodes.values():
            if n.session is not None:
                n.session.wake.set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def ready_changed(self) -> None:
        """Return at the next ``set_ready`` call."""
        await self._ready_change.wait()

    def close_streams(self) -> None:
        """End every agent stream (shutdown): their ``run_stream`` calls return
        promptly and the agents reconnect elsewhere, keeping what they enforce.
        Streams opened afterwards end at once."""
        self._closing = True
        for n in self._nodes.values():
            if n.session is not None:
                n.session.closed = True
                n.session.wake.set()

    def desired(self, node: str) -> tuple[NodeState, int, str] | None:
        """(state, version, digest) of ``node``, or None."""
        n = self._nodes.get(node)
        if n is None or n.state is None:
            return None
        return n.state, n.version, self._dig(n)

    def nodes(self) -> list[str]:
        return sorted(self._nodes)

    def nodes_status(self) -> list[dict[str, Any]]:
        """One dict per node (sorted by name): connection, desired and acked
        version/digest, lag, last apply, last error, host checks, drift repairs."""
        now = time.time()
        out = []
        for name in sorted(self._nodes):
            n = self._nodes[name]
            in_sync = n.state is not None and n.acked_digest == self._dig(n)
            out.append({
                "node": name,
                "connected": n.session is not None,
                "replica": self.replica if n.session is not None else "",
                "peer": n.peer,
                "agent_version": n.agent_version,
                "removed": n.state is None,
                "desired_version": n.version,
                "desired_digest": self._dig(n),
                "sent_version": n.sent_version,
                "applied_version": n.acked_version,
                "applied_digest": n.acked_digest,
                "in_sync": in_sync,
                "lag": 0 if in_sync else max(0, n.version - n.acked_version),
                "last_apply_unix": n.last_ack_unix,
                "last_apply_age_seconds": (now - n.last_ack_unix) if n.last_ack_unix else None,
                "last_apply_seconds": n.last_apply_seconds,
                "last_error": n.last_error,
                "host_checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in n.host_checks],
                "drift_repairs": n.drift_repairs,
                "counts": dict(n.counts),
            })
        return out

    async def wait_acked(self, node: str, version: int, timeout: float) -> bool:
        """True once ``node``'s agent acked ``version`` (or later), False after ``timeout`` seconds."""
        return await self._wait(node, version, timeout, "acked_version", "ack_event")

    async def wait_sent(self, node: str, version: int, timeout: float) -> bool:
        """True once the update to ``version`` (or later) was completely written
        to ``node``'s stream, False after ``timeout`` seconds (benchmarks: the
        controller's fan-out time, without the agents' apply time)."""
        return await self._wait(node, version, timeout, "sent_version", "sent_event")

    async def _wait(self, node: str, version: int, timeout: float, attr: str, event: str) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            n = self._nodes.get(node)  # an unknown node is not created by waiting for it
            if n is not None and getattr(n, attr) >= version:
                return True
            left = deadline - loop.time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                if n is None:
                    await asyncio.sleep(min(left, 0.05))
                else:
                    ev = getattr(n, event)
                    if ev is None:
                        ev = asyncio.Event()
                        setattr(n, event, ev)
                    await asyncio.wait_for(ev.wait(), left)

    def stats(self) -> dict[str, int]:
        return {"snapshots_sent": self.snapshots_sent, "deltas_sent": self.deltas_sent,
                "in_syncs_sent": self.in_syncs_sent, "bytes_sent": self.bytes_sent,
                "delta_bodies_encoded": self._deltas.misses, "delta_bodies_reused": self._deltas.hits,
                "connected": sum(1 for n in self._nodes.values() if n.session is not None)}

    # ---------------------------------------------------------------- stream side

    async def run_stream(self, hello: Hello, peer: str, send: Send, acks: AsyncIterator[Ack]) -> None:
        """Serve one agent stream until the agent goes away, a newer stream
        of the same node replaces this one, or the task is cancelled.
        ``send`` writes one serialized ``ControllerMessage`` (bytes, see
        ``codec.to_wire``); ``acks`` yields the agent's acks."""
        if not hello.node:
            raise ValueError("hello: node name is empty")
        if self._closing:
            return
        n = self._node(hello.node)
        old = n.session
        s = _Session(peer, agent_digest=hello.applied_digest, inline=INLINE_COMPLETE in hello.features)
        n.session, n.peer, n.agent_version, n.host_checks = s, peer, hello.agent_version, hello.host_checks
        if old is not None:
            old.closed = True
            old.wake.set()
            log.info("node %s: new stream from %s replaces the one from %s", hello.node, peer, old.peer)
        else:
            CONNECTED.inc()
        log.info("node %s: agent %s connected from %s (applied digest %s)", hello.node,
                 hello.agent_version, peer, hello.applied_digest[:12] or "-")
        reader = asyncio.create_task(self._read_acks(n, s, acks), name=f"acks-{hello.node}")
        try:
            await self._write_loop(n, s, send)
        finally:
            s.closed = True
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            if n.session is s:
                n.session = None
                CONNECTED.dec()
                log.info("node %s: agent stream from %s closed", hello.node, peer)
                if n.state is None and hello.node in self._nodes:
                    del self._nodes[hello.node]

    async def _read_acks(self, n: _Node, s: _Session, acks: AsyncIterator[Ack]) -> None:
        try:
            async for a in acks:
                self._on_ack(n, s, a)
        finally:
            s.closed = True
            s.wake.set()

    def _on_ack(self, n: _Node, s: _Session, a: Ack) -> None:
        if n.session is not s:
            return  # a replaced stream's late ack says nothing about the current agent
        if s.inflight is not None and a.version == s.inflight:
            s.inflight = None
        s.agent_digest = a.applied_digest
        n.last_ack_unix = time.time()
        n.drift_repairs = a.drift_repairs
        if a.counts:
            n.counts = a.counts  # the decoded ack's own dict
        if a.ok:
            s.failures = 0
            n.acked_version, n.acked_digest = a.version, a.applied_digest
            n.last_apply_seconds = a.apply_seconds
            n.last_error = ""
            APPLY_SECONDS.observe(a.apply_seconds)
            t0 = n.published_at.get(a.version)
            if t0 is not None:
                PUBLISH_TO_ACK.observe(self.clock() - t0)
            for v in [v for v in n.published_at if v <= a.version]:
                del n.published_at[v]
            wake = n.version != s.sent_version  # else the write loop has nothing to send: let it sleep
        else:
            ACK_ERRORS.inc()
            n.last_error = a.error or "agent reported a failure without a reason"
            n.acked_version = a.applied_version if a.applied_digest and a.applied_digest == self._dig(n) else n.acked_version
            n.acked_digest = a.applied_digest
            s.need_snapshot = True
            s.inflight = None
            s.failures += 1
            s.retry_at = self.clock() + backoff.exponential(self.retry_base, self.retry_max, s.failures - 1)
            log.warning("node %s: agent did not apply version %d: %s (snapshot again in %.1fs)",
                        n.name, a.version, n.last_error, s.retry_at - self.clock())
            wake = True
        if n.ack_event is not None:
            n.ack_event.set()
            n.ack_event = None
        if wake:
            s.wake.set()

    async def _write_loop(self, n: _Node, s: _Session, send: Send) -> None:
        sent_version, sent_state, sent_digest = 0, None, ""
        while not s.closed:
            wait: float | None = None
            if not self._ready.is_set() or n.state is None or s.inflight is not None:
                wait = None
            elif s.need_snapshot and s.failures and self.clock() < s.retry_at:
                wait = s.retry_at - self.clock()
            elif s.need_snapshot or n.version != sent_version:
                big = s.need_snapshot and s.agent_digest != self._dig(n)
                async with self._snapshot_slots if big else contextlib.nullcontext():
                    if s.closed or n.state is None:
                        continue
                    state, version, dig = n.state, n.version, self._dig(n)
                    msgs: list[Any]  # protobuf messages or (deltas) already serialized bytes
                    if s.need_snapshot:
                        if s.agent_digest == dig:
                            msgs = [codec.encode_in_sync(n.name, version, dig, self.replica)]
                            kind = "in_sync"
                            self.in_syncs_sent += 1
                        else:
                            msgs = codec.encode_snapshot(state, version, dig, self.replica, self.budget, s.inline)
                            kind = "snapshot"
                            self.snapshots_sent += 1
                    else:
                        assert sent_state is not None
                        d = self._delta(n)
                        if d is not None and d[0] == sent_version:
                            delta = d[1]
                        else:
                            delta = diff(sent_state, state)
                        msgs = self._deltas.encode(delta, sent_version, sent_digest, version, dig,
                                                   self.replica, s.inline)
                        kind = "delta"
                        self.deltas_sent += 1
                    s.inflight, s.need_snapshot, s.sent_version = version, False, version
                    sent_version, sent_state, sent_digest = version, state, dig
                    SENT.updates[kind] += 1
                    size = count = 0
                    for m in msgs:
                        data = codec.to_wire(m)  # serialized here: its size is then len(), not ByteSize()
                        await send(data)
                        size += len(data)
                        count += 1
                        if s.closed:
                            break
                    # neither the list nor the loop variables may outlive the send: a
                    # snapshot is one message of up to a MiB, times a thousand streams
                    del msgs, m, data
                    self.bytes_sent += size
                    SENT.bytes += size
                    SENT.messages += count
                    if s.closed:
                        return
                    n.sent_version = version
                    if n.sent_event is not None:
                        n.sent_event.set()
                        n.sent_event = None
                continue
            s.wake.clear()
            if wait is None:
                await s.wake.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(s.wake.wait(), wait)
