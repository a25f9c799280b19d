from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from nodeagent.dataplane import Dataplane, DataplaneSettings
from nodeagent.fake_kernel import FakeKernel


class FakeClock:
    """Virtual time: sleep() returns once advance() passed the deadline."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._waiters: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self.now + seconds, fut))
        await fut

    async def advance(self, seconds: float) -> None:
        for _ in range(20):  # let tasks reach their sleep first
            await asyncio.sleep(0)
        self.now += seconds
        for when, fut in list(self._waiters):
            if when <= self.now and not fut.done():
                fut.set_result(None)
                self._waiters.remove((when, fut))
        for _ in range(20):
            await asyncio.sleep(0)


@pytest.fixture
def fake() -> FakeKernel:
    return FakeKernel()


@pytest.fixture
def make_dp(tmp_path: object, fake: FakeKernel) -> Callable[..., Dataplane]:
    def make(kernel: FakeKernel | None = None, clock: FakeClock | None = None, **kw: object) -> Dataplane:
        settings = DataplaneSettings(**{"backend": "nft", "state_dir": str(tmp_path), **kw})  # type: ignore[arg-type]
        return Dataplane(kernel or fake, settings, clock=clock)
    return make
