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
grow because of it.  :func:`maintain` keeps it so at moments the caller
says are idle: every ``freeze_every`` seconds (10) a plain freeze moves
what later changes made (their states) to the permanent generation too,
without a walk; every ``settle_every`` seconds (600) a full settle, which
also reclaims cyclic garbage a plain freeze may have kept: one full walk
per ten minutes, not one per few hundred changes.

No I/O; the only state is the interpreter's collector.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger("stockade.heap")


def young_threshold(objects: int) -> None:
    """Collect the youngest generation only after ``objects`` new container
    objects (CPython's default: 700).  Most of what a change allocates
    (per-node deltas, digests, messages) is garbage within milliseconds: with
    a larger threshold it dies before a collection has to walk it, and less
    is promoted for the older generations to walk again (wire_bench:
    controller CPU per change 47.5 -> 40.2 ms at 20,000)."""
    _, g1, g2 = gc.get_threshold()
    gc.set_threshold(objects, g1, g2)


def settle() -> float:
    """Collect everything, then freeze what is left; returns the seconds it took."""
    t = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    took = time.perf_counter() - t
    log.info("heap settled: %d objects frozen in %.0f ms", gc.get_freeze_count(), took * 1000)
    return took


def freeze() -> None:
    """Freeze what is alive now without collecting first (cheap: no walk)."""
    gc.freeze()


async def maintain(settle_every: float, idle: Callable[[], bool], freeze_every: float = 0.0,
                   poll: float = 1.0, chores: Callable[[], None] | None = None) -> None:
    """At the first idle moment (``idle()`` true) after every ``freeze_every``
    seconds, :func:`freeze`; after every ``settle_every`` seconds, :func:`settle`
    (which also reclaims any cyclic garbage a plain freeze kept).  0 turns
    a step off.  ``chores`` (e.g. sweeping caches) runs first at each of
    those idle moments, so what it frees is not frozen."""
    loop = asyncio.get_running_loop()
    next_settle = loop.time() + settle_every if settle_every > 0 else float("inf")
    step = min(x for x in (settle_every, freeze_every, float("inf")) if x > 0)
    if step == float("inf"):
        return
    while True:
        await asyncio.sleep(step)
        while not idle():
            await asyncio.sleep(poll)
        if chores is not None:
            chores()
        if loop.time() >= next_settle:
            settle()
            next_settle = loop.time() + settle_every
        elif freeze_every > 0:
            freeze()
