"""Random bytes on a real gRPC stream: the agent's loop survives and keeps its last good state.

The fuzz targets drive ``Assembler.feed`` and ``AgentClient.handle``
directly; bytes that do not even decode as a ``ControllerMessage`` never get
that far: gRPC fails the call.  Here a controller double (a generic gRPC
handler that writes raw bytes) sends a valid snapshot, then undecodable
bytes, over real sockets to a running ``AgentClient.run``: the stream must
end, the agent must reconnect (with its state, which the second stream
confirms with ``in_sync``) and never hand the garbage to its applier.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import grpc

from stockade.state import digest
from stockade.v1 import stockade_pb2 as pb
from stockade.wire import codec
from stockade.wire.messages import Hello
from tests.fuzz.wire_gen import good_state
from tests.wire.helpers import RecordingApplier, agent, until


def _garbage(rng: random.Random) -> list[bytes]:
    """Byte strings that are not ControllerMessages (each checked to fail decoding)."""
    out: list[bytes] = []
    while len(out) < 3:
        b = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        try:
            pb.ControllerMessage.FromString(b)
        except Exception:  # DecodeError: what we want
            out.append(b)
    return out


class _RawController:
    """Connection 1: a valid snapshot, then garbage bytes.  Later
    connections: ``in_sync`` for the agent's digest.  Records acks."""

    def __init__(self, garbage: list[bytes]) -> None:
        self.garbage = garbage
        self.connections = 0
        self.acks: list[Any] = []

    async def stream(self, requests: AsyncIterator[pb.AgentMessage], context: Any) -> AsyncIterator[bytes]:
        self.connections += 1
        hello = codec.decode_agent_message(await requests.__anext__())
        assert isinstance(hello, Hello)
        state = good_state()
        if self.connections == 1:
            for cm in codec.encode_snapshot(state, 1, digest(state)):
                yield cm.SerializeToString()
            self.acks.append(codec.decode_agent_message(await requests.__anext__()))
            for b in self.garbage:
                yield b
        else:
            assert hello.applied_digest == digest(state)
            yield codec.encode_in_sync(hello.node, 1, digest(state)).SerializeToString()
            self.acks.append(codec.decode_agent_message(await requests.__anext__()))
        async for m in requests:
            self.acks.append(codec.decode_agent_message(m))


@contextlib.asynccontextmanager
async def raw_controller(ctl: _RawController) -> AsyncIterator[str]:
    server = grpc.aio.server()
    handler = grpc.stream_stream_rpc_method_handler(ctl.stream, request_deserializer=pb.AgentMessage.FromString,
                                                    response_serializer=lambda b: b)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("stockade.v1.Distribution",
                                                                          {"Stream": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


async def test_undecodable_bytes_end_the_stream_and_the_agent_reconnects_with_its_state() -> None:
    ctl = _RawController(_garbage(random.Random(1)))
    app = RecordingApplier()
    async with raw_controller(ctl) as addr, agent([addr], app) as c:
        await until(lambda: ctl.connections >= 2 and len(ctl.acks) >= 2, timeout=10, what="a second stream")
        assert ctl.acks[0].ok and ctl.acks[1].ok, ctl.acks
        assert app.applied == [good_state()], "garbage reached the applier"
        assert c.state == good_state() and c.version == 1 and c.digest == digest(good_state())
        assert c.connects >= 2
        await asyncio.sleep(0)


async def test_undecodable_bytes_are_reported_as_such() -> None:
    ctl = _RawController(_garbage(random.Random(2)))
    async with raw_controller(ctl) as addr, agent([addr], RecordingApplier()) as c:
        await until(lambda: ctl.connections >= 2, timeout=10, what="a second stream")
        err = c.last_error.lower()
        assert "decod" in err or "deserializ" in err or "malformed" in err, c.last_error
