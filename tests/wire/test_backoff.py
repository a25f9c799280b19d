"""Reconnect with jittered exponential backoff (virtual time: the sleep is injected)."""

from __future__ import annotations

import asyncio
import random

import pytest

from nodeagent.client import AgentClient, ClientSettings
from tests.wire.helpers import RecordingApplier, agent, controller, make_state


@pytest.mark.parametrize("failures, low, high", [
    pytest.param(0, 0.0625, 0.125, id="after-a-good-stream"),
    pytest.param(1, 0.25, 0.5, id="first-failure"),
    pytest.param(2, 0.5, 1.0, id="second"),
    pytest.param(4, 2.0, 4.0, id="fourth"),
    pytest.param(12, 5.0, 10.0, id="capped"),
])
def test_backoff_bounds(failures: int, low: float, high: float) -> None:
    c = AgentClient(ClientSettings("n1", ["x:1"], backoff_initial=0.5, backoff_max=10.0, jitter=0.5),
                    RecordingApplier(), rng=random.Random(7))
    for _ in range(50):
        assert low <= c.backoff(failures) <= high


async def test_unreachable_controller_backs_off_and_rotates_addresses() -> None:
    slept: list[float] = []
    c: AgentClient

    async def fake_sleep(d: float) -> None:
        slept.append(d)
        if len(slept) >= 6:
            c.stop()
        await asyncio.sleep(0)

    # two closed ports: nothing listens there
    c = AgentClient(ClientSettings("n1", ["127.0.0.1:9", "127.0.0.1:7"], backoff_initial=1.0, backoff_max=8.0,
                                   jitter=0.0, connect_timeout=0.05),
                    RecordingApplier(), sleep=fake_sleep)
    await asyncio.wait_for(c.run(), 10)
    assert slept == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert c.attempts == 6 and not c.connected
    assert "127.0.0.1:9" in c.last_error or "127.0.0.1:7" in c.last_error


async def test_reconnects_after_controller_restart_and_keeps_state() -> None:
    s = make_state()
    app = RecordingApplier()
    async with controller() as (dist, srv, addr):
        dist.publish("n1", s)
        port = srv.port
        async with agent([addr], app) as c:
            assert await dist.wait_acked("n1", 1, 5)
            await srv.stop(0.2)
            await asyncio.sleep(0.3)
            assert c.state == s  # nothing cleared while the controller is gone
            from controller.distributor import Distributor
            from controller.grpc_server import ControllerGrpcServer
            d2 = Distributor("r1")
            s2 = ControllerGrpcServer(d2, listen=f"127.0.0.1:{port}")
            await s2.start()
            d2.publish("n1", s)
            d2.set_ready(True)
            try:
                assert await d2.wait_acked("n1", 1, 5)
                assert app.applied == [s] and d2.in_syncs_sent == 1
            finally:
                await s2.stop(0.2)
