"""Short garbage-collector pauses for a process with a large, long-lived heap.

The controller keeps the whole cluster model and every node's desired
state in memory: millions of objects that live as long as the process.
CPython's cyclic collector walks every tracked object on each full
(oldest-generation) collection, and those come every few hundred changes;
in ``benchmarks/wire_bench.py`` the controller made 15 full collections of
up to 305 ms each, and each one lands on whatever change is being sent.

:func:`settle` (called once the controller is ready, the big initial
model built) makes one full collection, then ``gc.freeze()``: every object
alive now moves to the permanent generation, which collections skip.
Frozen objects are still freed by reference counting when dropped (the
model is made of immutable values without cycles), so the heap does not
grow because of it.  :func:`maintain` repeats this every ``interval``
seconds at a moment the caller says is idle: the objects made since (the
states of later changes) join the permanent generation, and cyclic garbage
among frozen objects, if any, is reclaimed then: one pause per interval,
not one per few hundred changes.

No I/O; the only state is the interpreter's collector.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger("stockade.heap")


def settle() -> float:
    """Collect everything, then freeze what is left; returns the seconds it took."""
    t = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    took = time.perf_counter() - t
    log.info("heap settled: %d objects frozen in %.0f ms", gc.get_freeze_count(), took * 1000)
    return took


async def maintain(interval: float, idle: Callable[[], bool], poll: float = 1.0) -> None:
    """Every ``interval`` seconds, :func:`settle` at the first moment ``idle()`` is true."""
    while True:
        await asyncio.sleep(interval)
        while not idle():
            await asyncio.sleep(poll)
        settle()
