"""The single writer: readiness gate, batching, publishing, invalid policies.

The engine here is a recording double (the real one is exercised end to end
in test_e2e); the distributor is the real one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from controller.distributor import Distributor
from controller.model import Namespace, Node
from controller.runtime import InvalidPolicy, Writer
from controller.settings import Settings
from controller.watch import KINDS, Change, Listed
from stockade.state import NodeState


class RecordingEngine:
    """Records calls; flush() returns an empty NodeState for every node
    touched since the last flush."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.nodes: set[str] = set()
        self.dirty: set[str] = set()
        self.flushes = 0

    def __getattr__(self, name: str) -> Any:
        def rec(arg: object) -> None:
            self.calls.append((name, arg))
            if name == "set_node":
                assert isinstance(arg, Node)
                self.nodes.add(arg.name)
                self.dirty.add(arg.name)
            elif name == "remove_node":
                self.nodes.discard(str(arg))
            else:
                self.dirty |= self.nodes
        return rec

    def set_invalid_policy(self, key: str, errors: list[str]) -> None:
        self.calls.append(("set_invalid_policy", (key, tuple(errors))))

    def flush(self) -> dict[str, NodeState]:
        self.flushes += 1
        out = {n: NodeState(n) for n in sorted(self.dirty)}
        self.dirty.clear()
        return out

    def stats(self) -> dict[str, int]:
        return {"nodes": len(self.nodes)}


def ch(kind: Any, key: str, value: object | None) -> Change:
    return Change(kind, key, value, 0.0)


def make() -> tuple[Writer, RecordingEngine, Distributor]:
    eng = RecordingEngine()
    dist = Distributor("r1")
    return Writer(eng, dist, Settings(replica_id="r1")), eng, dist


async def test_nothing_published_until_every_kind_listed() -> None:
    w, eng, dist = make()
    w.apply([[ch("Node", "n1", Node("n1")), Listed("Node", 1)]])
    w.apply([[ch("Namespace", "a", Namespace("a", {})), Listed("Namespace", 1)], [Listed("Pod", 0)]])
    assert not w.ready and not dist.ready and eng.flushes == 0 and dist.nodes() == []
    w.apply([[Listed("NetworkPolicy", 0)]])
    assert w.ready and dist.ready and w.ready_event.is_set()
    assert eng.flushes == 1 and dist.nodes() == ["n1"]


async def test_after_ready_each_batch_flushes_and_publishes() -> None:
    w, eng, dist = make()
    w.apply([[Listed(k, 0) for k in KINDS]])
    w.apply([[ch("Node", "n1", Node("n1"))], [ch("Node", "n2", Node("n2"))]])
    assert eng.flushes == 2 and dist.nodes() == ["n1", "n2"]
    w.apply([[ch("Node", "n2", None)]])
    assert dist.desired("n2") is None and dist.desired("n1") is not None


async def test_invalid_policy_goes_to_engine_as_invalid_and_is_counted() -> None:
    w, eng, _ = make()
    w.apply([[ch("NetworkPolicy", "a/bad", InvalidPolicy("a/bad", ("spec.x: unknown field",)))]])
    assert ("set_invalid_policy", ("a/bad", ("spec.x: unknown field",))) in eng.calls
    assert w.invalid == {"a/bad": ("spec.x: unknown field",)}
    w.apply([[ch("NetworkPolicy", "a/bad", None)]])
    assert w.invalid == {} and ("remove_policy", "a/bad") in eng.calls


async def test_run_drains_the_queue_into_one_batch() -> None:
    w, eng, _ = make()
    for k in KINDS:
        w.sink([Listed(k, 0)])
    for i in range(10):
        w.sink([ch("Node", f"n{i}", Node(f"n{i}"))])
    task = asyncio.create_task(w.run())
    try:
        await asyncio.wait_for(w.ready_event.wait(), 2)
        for _ in range(5):
            await asyncio.sleep(0)
        assert w.batches == 1 and w.changes == 10
        assert eng.flushes == 1  # readiness flush covers all ten nodes
    finally:
        task.cancel()
