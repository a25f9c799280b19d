"""Graceful, bounded shutdown of the controller's gRPC server with agents connected."""

from __future__ import annotations

import asyncio
import time

from controller.distributor import Distributor
from controller.grpc_server import ControllerGrpcServer
from tests.wire.helpers import RecordingApplier, agent, make_state, until


async def test_controller_server_stops_promptly_with_streams_open() -> None:
    dist = Distributor("r1")
    srv = ControllerGrpcServer(dist, listen="127.0.0.1:0")
    port = await srv.start()
    dist.set_ready(True)
    appliers = {f"n{i}": RecordingApplier() for i in range(3)}
    for node in appliers:
        dist.publish(node, make_state(node=node))
    async with agent([f"127.0.0.1:{port}"], appliers["n0"], node="n0") as c0, \
            agent([f"127.0.0.1:{port}"], appliers["n1"], node="n1"), \
            agent([f"127.0.0.1:{port}"], appliers["n2"], node="n2"):
        for node in appliers:
            assert await dist.wait_acked(node, 1, 5)
        assert dist.stats()["connected"] == 3
        grace = 10.0
        t0 = time.monotonic()
        await srv.stop(grace)
        took = time.monotonic() - t0
        # streams are ended by the distributor, not by waiting out the grace period
        assert took < grace / 2, f"stop took {took:.1f}s"
        await until(lambda: not c0.connected, what="agent saw the stream end")
        assert dist.stats()["connected"] == 0
        await asyncio.sleep(0.1)
        # agents keep what they enforce
        assert all(len(a.applied) == 1 for a in appliers.values())
        assert c0.state == make_state(node="n0")


async def test_stop_before_start_of_streams_and_twice_is_harmless() -> None:
    dist = Distributor("r1")
    srv = ControllerGrpcServer(dist, listen="127.0.0.1:0")
    await srv.start()
    await srv.stop(0.5)
    await srv.stop(0.5)
