"""controller.heap: freeze after settling, maintenance waits for idle moments."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from controller import heap


@pytest.fixture(autouse=True)
def _unfreeze() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_settle_freezes_what_is_alive_and_collects_cycles() -> None:
    gc.unfreeze()
    class Node:
        pass
    a, b = Node(), Node()
    a.other, b.other = b, a  # type: ignore[attr-defined]
    del a, b  # cyclic garbage: only the collector frees it
    keep = [object() for _ in range(1000)]
    before = gc.get_freeze_count()
    heap.settle()
    assert gc.get_freeze_count() >= before + len(keep)
    assert not any(type(o).__name__ == "Node" for o in gc.get_objects()), "the cycle was collected, not frozen"


async def test_maintain_waits_until_idle() -> None:
    calls: list[str] = []
    busy = [True]

    def idle() -> bool:
        calls.append("asked")
        return not busy[0]

    gc.unfreeze()
    task = asyncio.create_task(heap.maintain(0.01, idle, poll=0.01))
    await asyncio.sleep(0.1)
    assert gc.get_freeze_count() == 0, "never settles while busy"
    assert len(calls) >= 2
    busy[0] = False
    for _ in range(100):
        if gc.get_freeze_count() > 0:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert gc.get_freeze_count() > 0


async def test_maintain_freezes_often_and_settles_rarely(monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[str] = []
    monkeypatch.setattr(heap, "settle", lambda: steps.append("settle") or 0.0)
    monkeypatch.setattr(heap, "freeze", lambda: steps.append("freeze"))
    task = asyncio.create_task(heap.maintain(0.2, lambda: True, freeze_every=0.02, poll=0.01,
                                             chores=lambda: steps.append("chores")))
    await asyncio.sleep(0.5)
    task.cancel()
    assert steps.count("freeze") >= 5
    assert steps.count("chores") == steps.count("freeze") + steps.count("settle")
    assert steps.index("chores") < min(steps.index("freeze"), steps.index("settle"))
    assert 1 <= steps.count("settle") <= 3


async def test_maintain_with_everything_off_returns() -> None:
    await asyncio.wait_for(heap.maintain(0, lambda: True, 0), 1)


def test_young_threshold_changes_only_the_youngest_generation() -> None:
    before = gc.get_threshold()
    try:
        heap.young_threshold(12_345)
        assert gc.get_threshold() == (12_345, before[1], before[2])
    finally:
        gc.set_threshold(*before)
