"""The stream over TLS with a token, and the controller's guard on streams and debugging RPCs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import grpc
import pytest

from controller.distributor import Distributor
from controller.grpc_server import ControllerGrpcServer
from nodeagent.channel_auth import ChannelSecurity
from nodeagent.client import AgentClient, ClientSettings
from stockade.v1 import stockade_pb2, stockade_pb2_grpc
from tests.wire.helpers import RecordingApplier, agent, make_state, until

certs = pytest.importorskip("controller.certs")


class RecordingGuard:
    """Admits every node but ``evil``; records who asked."""

    def __init__(self) -> None:
        self.streams: list[tuple[str, str]] = []
        self.debug: list[str | None] = []

    async def admit_stream(self, context: Any, node: str) -> None:
        md = dict(context.invocation_metadata())
        self.streams.append((node, md.get("authorization", "")))
        if node == "evil":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "token is not bound to node evil")

    async def admit_debug(self, context: Any, node: str | None = None) -> None:
        self.debug.append(node)
        if node == "secret":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "only your own node")


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Any, Path, Path]:
    now = dt.datetime.now(dt.UTC)
    ca = certs.new_ca(now)
    serving = certs.new_serving_cert(ca, now, ["stockade-controller.stockade-system.svc"])
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(ca.cert_pem)
    token = tmp_path / "token"
    token.write_text("tok-123\n")
    return serving, ca_file, token


async def test_tls_stream_with_token_and_guard(tls_files: tuple[Any, Path, Path]) -> None:
    serving, ca_file, token = tls_files
    dist = Distributor("r1")
    guard = RecordingGuard()
    srv = ControllerGrpcServer(dist, listen="127.0.0.1:0", guard=guard,
                               credentials=grpc.ssl_server_credentials([(serving.key_pem, serving.cert_pem)]))
    port = await srv.start()
    dist.set_ready(True)
    dist.publish("n1", make_state())
    sec = ChannelSecurity(ca_file=str(ca_file), server_name="stockade-controller.stockade-system.svc",
                          token_file=str(token))
    app = RecordingApplier()
    c = AgentClient(ClientSettings("n1", [f"127.0.0.1:{port}"], "t", backoff_initial=0.05, connect_timeout=2,
                                   security=sec), app)
    import asyncio
    task = asyncio.create_task(c.run())
    try:
        assert await dist.wait_acked("n1", 1, 10)
        assert guard.streams == [("n1", "Bearer tok-123")]
        assert app.applied == [make_state()]
    finally:
        c.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await srv.stop(0.5)


async def test_plaintext_agent_cannot_talk_to_a_tls_controller(tls_files: tuple[Any, Path, Path]) -> None:
    serving, _ca, _tok = tls_files
    dist = Distributor("r1")
    srv = ControllerGrpcServer(dist, listen="127.0.0.1:0",
                               credentials=grpc.ssl_server_credentials([(serving.key_pem, serving.cert_pem)]))
    port = await srv.start()
    dist.set_ready(True)
    dist.publish("n1", make_state())
    try:
        async with agent([f"127.0.0.1:{port}"]) as c:
            await until(lambda: c.attempts >= 2, what="failed attempts")
            assert not c.connected and c.state is None
    finally:
        await srv.stop(0.5)


async def test_guard_refuses_a_stream_and_debug_calls() -> None:
    dist = Distributor("r1")
    guard = RecordingGuard()
    srv = ControllerGrpcServer(dist, listen="127.0.0.1:0", guard=guard)
    port = await srv.start()
    dist.set_ready(True)
    dist.publish("evil", make_state(node="evil"))
    dist.publish("secret", make_state(node="secret"))
    try:
        async with agent([f"127.0.0.1:{port}"], node="evil") as c:
            await until(lambda: "PERMISSION_DENIED" in c.last_error, what="refusal")
            assert c.state is None and dist.stats()["connected"] == 0
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = stockade_pb2_grpc.ControllerDebugStub(ch)
            r = await stub.ListNodes(stockade_pb2.ListNodesRequest(), timeout=5)
            assert {n.node for n in r.nodes} == {"evil", "secret"}
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await stub.GetNodeState(stockade_pb2.GetNodeStateRequest(node="secret"), timeout=5)
            assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert guard.debug == [None, "secret"]
    finally:
        await srv.stop(0.5)
