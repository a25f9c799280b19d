"""What the fuzz targets and oversized inputs found in code this package does not own.

Each test states the behaviour that should hold and is marked
``xfail(strict=True)`` with the precise bug: when the owner fixes it the
test passes and strict xfail turns that into a failure, so the marker gets
removed (and the test keeps guarding the fix).  Bugs found in
``controller/parse.py`` and ``stockade/cases.py`` were fixed there; their
regression tests are in ``test_regressions.py``.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from typing import Any

import pytest

from nodeagent.validate import validate_incoming
from stockade.state import Chain, FamilyState, IPSet, NodeState, Rule, SetMatch, StateError, digest
from stockade.state_validation import validate
from stockade.v1 import stockade_pb2 as pb
from stockade.wire import codec
from stockade.wire.messages import Rejected, Snapshot
from tests.fuzz.targets import GOOD, _Agent, _kernel_snapshot, _quiet
from tests.fuzz.test_oversized import big_state


def _with_rule(rule: Rule, extra_sets: dict[str, IPSet] | None = None) -> NodeState:
    ing = GOOD.v4.chains["STOCKADE-ING"]
    chains = {**GOOD.v4.chains, ing.name: Chain(ing.name, (*ing.rules, rule))}
    return NodeState(GOOD.node, {**GOOD.sets, **(extra_sets or {})}, FamilyState(chains, GOOD.v4.hooks), GOOD.v6)


def test_validate_incoming_checks_a_big_set_in_bounded_memory() -> None:
    state = big_state(frozenset([f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(100_000)]))
    tracemalloc.start()
    try:
        validate_incoming(state)
        peak = tracemalloc.get_traced_memory()[1] / (1 << 20)
    finally:
        tracemalloc.stop()
    assert peak < 20, f"validate_incoming of 100,000 members allocated {peak:.0f} MiB at peak"


HUGE_NAME = "stk-" + "y" * 1_000_000


def _ack_error(u: Any) -> str:
    async def go() -> str:
        a = _Agent()
        await a.start()
        with _quiet("stockade"):
            ack = await a.client.handle(u)
        assert not ack.ok
        return ack.error
    return asyncio.run(go())


def test_a_snapshot_with_a_megabyte_set_name_is_refused_with_a_short_error() -> None:
    sets = {**GOOD.sets, HUGE_NAME: IPSet(HUGE_NAME, "hash:ip", "inet")}
    bad = NodeState(GOOD.node, sets, GOOD.v4, GOOD.v6)
    err = _ack_error(Snapshot(bad, 2, digest(bad)))
    assert len(err) < 4096, f"ack error of {len(err)} characters"


def test_a_malformed_part_with_a_megabyte_name_is_refused_with_a_short_error() -> None:
    m = pb.ControllerMessage()
    m.snapshot_part.version = 2
    m.snapshot_part.sets.add(name=HUGE_NAME, type=0, family=1)
    end = pb.ControllerMessage(snapshot_complete=pb.SnapshotComplete(node="n1", version=2, digest="d", parts=1))
    asm = codec.Assembler()
    assert asm.feed(m) is None
    u = asm.feed(end)
    assert isinstance(u, Rejected)
    err = _ack_error(u)
    assert len(err) < 4096, f"ack error of {len(err)} characters"


REFUSED_BY_THE_KERNEL = [
    pytest.param(_with_rule(Rule("DROP", comment="a\nb", sets=(SetMatch("stk-new", ("src",)),)),
                            {"stk-new": IPSet("stk-new", "hash:ip", "inet", frozenset({"10.9.9.9"}))}),
                 id="newline-in-comment"),
    pytest.param(_with_rule(Rule("NFLOG", nflog_prefix="x\ry", nflog_group=1, sets=(SetMatch("stk-new", ("src",)),)),
                            {"stk-new": IPSet("stk-new", "hash:ip", "inet", frozenset({"10.9.9.9"}))}),
                 id="carriage-return-in-nflog-prefix"),
    pytest.param(_with_rule(Rule("DROP", sets=(SetMatch("stk-new", ("src",)), SetMatch("stk-z z", ("dst",)))),
                            {"stk-new": IPSet("stk-new", "hash:ip", "inet", frozenset({"10.9.9.9"})),
                             "stk-z z": IPSet("stk-z z", "hash:ip", "inet", frozenset({"10.9.9.8"}))}),
                 id="space-in-set-name"),
]


@pytest.mark.parametrize("bad", REFUSED_BY_THE_KERNEL)
def test_an_update_the_kernel_refuses_is_refused_before_touching_the_kernel(bad: NodeState) -> None:
    async def go() -> tuple[bool, bool]:
        a = _Agent()
        await a.start()
        before = _kernel_snapshot(a.kernel)
        with _quiet("stockade"):
            ack = await a.client.handle(Snapshot(bad, 2, digest(bad)))
        await a.dp.flush_persisted()
        return ack.ok, _kernel_snapshot(a.kernel) == before
    ok, unchanged = asyncio.run(go())
    assert ok or unchanged, "the update was refused, yet the kernel changed"


@pytest.mark.parametrize("rule", [
    pytest.param(Rule("NFLOG", nflog_group=70_000), id="nflog-group"),
    pytest.param(Rule("NFLOG", nflog_group=1, nflog_prefix="p" * 100), id="nflog-prefix"),
    pytest.param(Rule("DROP", comment="c" * 300), id="comment-length"),
    pytest.param(Rule("DROP", in_iface="i" * 20), id="iface-length"),
    pytest.param(Rule("DROP", ctstate=("BOGUS",)), id="ctstate"),
    pytest.param(Rule("NFLOG", nflog_group=1, limit="abc"), id="limit"),
])
def test_validate_refuses_what_the_kernel_refuses(rule: Rule) -> None:
    with pytest.raises(StateError):
        validate(_with_rule(rule))
