"""A background prober: real connections on fixed pairs, all the time.

:class:`ProbeWatch` keeps probing a few *forbidden* pairs (that no state
reached during a fault test allows) and a few *allowed* pairs while a fault
is injected, and records every outcome with its time.  A forbidden pair
that answers even once is an open window: the fault tests assert that
``forbidden_allowed`` stays 0.  Allowed pairs are recorded too (how long
service was interrupted), but a slow answer on a loaded machine is not a
policy failure, so they are reported rather than asserted strictly.

Each forbidden pair runs ``loops`` staggered probe loops, so a pair is
tried several times per probe timeout.  It does not decide what is
forbidden (the test does) and it injects nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from stockade.lab.cluster import Lab

Pair = tuple[str, str, int]  # (source pod key, destination pod key, TCP port)


@dataclass
class PairRecord:
    """Outcomes of one pair: counters, and the wall-clock times of the
    outcomes that matter (an allow on a forbidden pair, a deny on an
    allowed one)."""

    pair: Pair
    forbidden: bool
    tries: int = 0
    allowed: int = 0
    denied: int = 0
    errors: int = 0
    bad_times: list[float] = field(default_factory=list)  # monotonic times of the unexpected outcomes
    last_error: str = ""


@dataclass
class ProbeWatch:
    lab: Lab
    forbidden: list[Pair]
    allowed: list[Pair]
    timeout: float = 0.4
    loops: int = 2  # concurrent loops per forbidden pair
    records: dict[Pair, PairRecord] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        for p in self.forbidden:
            self.records[p] = PairRecord(p, True)
        for p in self.allowed:
            self.records[p] = PairRecord(p, False)

    async def _loop(self, rec: PairRecord, offset: float) -> None:
        src, dst, port = rec.pair
        probe = self.lab.probe_of(src, dst, port, "TCP")
        await asyncio.sleep(offset)
        while not self._stop.is_set():
            out = await self.lab.prober.probe(probe, self.timeout)
            rec.tries += 1
            if out.observed == "allow":
                rec.allowed += 1
                if rec.forbidden:
                    rec.bad_times.append(time.monotonic())
            elif out.observed == "deny":
                rec.denied += 1
                if not rec.forbidden:
                    rec.bad_times.append(time.monotonic())
                    await asyncio.sleep(0.05)  # a drop already waited its timeout; a refusal is instant
            else:
                rec.errors += 1
                rec.last_error = out.error
                await asyncio.sleep(0.05)
            if not rec.forbidden:
                await asyncio.sleep(0.1)  # allowed pairs answer at once: do not spin

    def start(self) -> None:
        for rec in self.records.values():
            n = self.loops if rec.forbidden else 1
            for k in range(n):
                self._tasks.append(asyncio.create_task(
                    self._loop(rec, k * self.timeout / n), name=f"watch-{rec.pair[0]}-{rec.pair[1]}-{k}"))

    async def stop(self) -> None:
        self._stop.set()
        try:
            async with asyncio.timeout(self.timeout + 5.0):
                await asyncio.gather(*self._tasks, return_exceptions=True)
        except TimeoutError:
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # ---- results
    @property
    def forbidden_allowed(self) -> int:
        return sum(r.allowed for r in self.records.values() if r.forbidden)

    @property
    def forbidden_tries(self) -> int:
        return sum(r.tries for r in self.records.values() if r.forbidden)

    @property
    def allowed_denied(self) -> int:
        return sum(r.denied for r in self.records.values() if not r.forbidden)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.records.values())

    def summary(self) -> str:
        return (f"forbidden probes {self.forbidden_tries}, let through {self.forbidden_allowed}; "
                f"allowed probes {sum(r.tries for r in self.records.values() if not r.forbidden)}, "
                f"dropped {self.allowed_denied}; errors {self.errors}")

    def failures(self) -> list[str]:
        """Human-readable forbidden pairs that got through (empty: none)."""
        return [f"{r.pair[0]} -> {r.pair[1]}:{r.pair[2]} answered {r.allowed} of {r.tries} times"
                for r in self.records.values() if r.forbidden and r.allowed]


@contextlib.asynccontextmanager
async def watching(lab: Lab, forbidden: list[Pair], allowed: list[Pair],
                   timeout: float = 0.4) -> AsyncIterator[ProbeWatch]:
    """Probe throughout the block; the watch is always stopped."""
    w = ProbeWatch(lab, forbidden, allowed, timeout)
    w.start()
    try:
        yield w
    finally:
        await w.stop()
