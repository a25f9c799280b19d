"""The controller's gRPC server (port 7700): agent streams, debugging RPCs, health, reflection.

Services:

* ``stockade.v1.Distribution/Stream``: one bidirectional stream per agent,
  served by :meth:`controller.distributor.Distributor.run_stream`; this
  module only moves messages between the socket and the distributor and
  turns a bad first message into ``INVALID_ARGUMENT``.
* ``stockade.v1.ControllerDebug``: ``ListNodes`` (the distributor's
  ``nodes_status``), ``GetNodeState`` (a node's desired state),
  ``Explain`` (delegated to an :class:`ExplainSource` the controller
  runtime provides).  Read-only.
* ``grpc.health.v1.Health``: ``NOT_SERVING`` until the distributor is
  ready (``Distributor.set_ready(True)``), then ``SERVING``; back to
  ``NOT_SERVING`` when shutting down.
* server reflection, so ``grpcurl -plaintext HOST:7700 list`` works.

With ``credentials`` (``grpc.ssl_server_credentials``) the port serves TLS;
with a ``guard`` (``controller.agent_auth.GrpcGuard``) every stream is
admitted for the node its hello names and every debugging RPC is checked
(health and reflection stay open).  With a ``lifetime``
(``controller.stream_lifetime.StreamLifetime``) every agent stream ends
when its admission runs out (the token's expiry, the maximum stream age),
with ``UNAVAILABLE`` and trailing metadata ``stockade-reconnect: <reason>``
that the agent takes as "reconnect now"; counted in
``stockade_wire_streams_expired_total{reason}``.

Usage by the controller runtime::

    server = ControllerGrpcServer(dist, explain=oracle, listen="0.0.0.0:7700",
                                  credentials=creds, guard=guard, lifetime=lifetime)
    port = await server.start()
    ...
    await server.stop(grace=5)

It does not compute states, own the distributor's data, or serve HTTP.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Protocol

import grpc

from controller import metrics
from controller.distributor import Distributor
from controller.stream_lifetime import RECONNECT_METADATA, StreamLifetime
from stockade.v1 import stockade_pb2_grpc
from stockade.wire import codec, debug_codec, grpcutil
from stockade.wire.messages import Ack, Hello, WireError

log = logging.getLogger("stockade.grpc")

SERVICES = ("stockade.v1.Distribution", "stockade.v1.ControllerDebug")


class Guard(Protocol):
    """Who may call (``controller.agent_auth.GrpcGuard``).  Both methods abort
    the call (``context.abort``) when the caller is refused."""

    async def admit_stream(self, context: Any, node: str) -> Any: ...

    async def admit_debug(self, context: Any, node: str | None = None) -> Any: ...


class ExplainSource(Protocol):
    """What ``Explain`` needs from the controller runtime.

    ``explain("ns-a/pod-1", "ns-b/pod-2", 8080, "TCP")`` returns a JSON-able
    dict with at least ``"verdict"`` (e.g. ``"ALLOW"``/``"DENY"``) and
    optionally ``"reasons"``: the policies/rules that decided (strings or
    dicts).  It may be a coroutine function.  Raise ``KeyError`` for an
    unknown pod and ``ValueError`` for bad arguments."""

    def explain(self, src: str, dst: str, port: int, protocol: str) -> Any: ...


class _Distribution(stockade_pb2_grpc.DistributionServicer):
    def __init__(self, dist: Distributor, guard: Guard | None, lifetime: StreamLifetime | None) -> None:
        self.dist = dist
        self.guard = guard
        self.lifetime = lifetime

    async def Stream(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        first = await context.read()
        if first is grpc.aio.EOF:
            return
        try:
            hello = codec.decode_agent_message(first)
        except WireError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"first message: {e}")
        if not isinstance(hello, Hello) or not hello.node:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "first message must be a hello with a node name")
        assert isinstance(hello, Hello)
        identity = None
        if self.guard is not None:
            identity = await self.guard.admit_stream(context, hello.node)

        async def acks() -> AsyncIterator[Ack]:
            while True:
                m = await context.read()
                if m is grpc.aio.EOF:
                    return
                try:
                    a = codec.decode_agent_message(m)
                except WireError as e:
                    log.warning("node %s: dropping bad agent message: %s", hello.node, e)
                    continue
                if isinstance(a, Ack):
                    yield a
                else:
                    log.warning("node %s: ignoring a second hello", hello.node)

        now = time.time()
        expires = float(getattr(identity, "expires", 0.0) or 0.0)
        lifetime = self.lifetime
        end = lifetime.end(now, expires, random.random()) if lifetime is not None else None
        if end is None or lifetime is None:
            await self.dist.run_stream(hello, context.peer(), context.write, acks())
            return
        seconds, reason = end
        timer = asyncio.timeout(seconds)
        try:
            async with timer:
                await self.dist.run_stream(hello, context.peer(), context.write, acks())
        except TimeoutError:
            if not timer.expired():
                raise
            why = (f"the token it was admitted with expires at "
                   f"{datetime.fromtimestamp(expires, UTC).isoformat(timespec='seconds')}"
                   if reason == "token_expiry" else
                   f"it reached the maximum stream age ({lifetime.max_age:g}s)")
            metrics.STREAMS_EXPIRED.labels(reason).inc()
            log.info("node %s: ending the stream from %s after %.1fs: %s; the agent reconnects", hello.node,
                     context.peer(), time.time() - now, why)
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"stream ended ({reason}): {why}; reconnect to be "
                                f"admitted again",
                                trailing_metadata=((RECONNECT_METADATA, reason),))


def _add_distribution(servicer: _Distribution, server: grpc.aio.Server) -> None:
    """``stockade_pb2_grpc.add_DistributionServicer_to_server`` with one
    difference: the stream's responses may be serialized already.  The
    distributor serializes every message itself (a delta body is encoded
    once for all the nodes it reaches, and a message's size is then its
    ``len()``), so bytes pass through; a protobuf message is serialized as
    the generated code would."""
    handlers = {"Stream": grpc.stream_stream_rpc_method_handler(
        servicer.Stream, request_deserializer=codec.agent_message_from_wire, response_serializer=codec.to_wire)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("stockade.v1.Distribution", handlers),))
    server.add_registered_method_handlers("stockade.v1.Distribution", handlers)


class _Debug(stockade_pb2_grpc.ControllerDebugServicer):
    def __init__(self, dist: Distributor, explain: ExplainSource | None, guard: Guard | None) -> None:
        self.dist = dist
        self.explain = explain
        self.guard = guard

    async def ListNodes(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if self.guard is not None:
            await self.guard.admit_debug(context)
        return debug_codec.list_nodes_to_pb(self.dist.nodes_status())

    async def GetNodeState(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if not request.node:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "node: required")
        if self.guard is not None:
            await self.guard.admit_debug(context, request.node)
        d = self.dist.desired(request.node)
        if d is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"node {request.node!r}: no desired state")
        assert d is not None
        return debug_codec.node_state_to_pb(*d)

    async def Explain(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if self.guard is not None:
            await self.guard.admit_debug(context)
        if self.explain is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this controller has no explain source")
        for name in ("src", "dst"):
            v = getattr(request, name)
            if v.count("/") != 1 or not all(v.split("/")):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{name}: expected NAMESPACE/POD, got {v!r}")
        if not 0 < request.port < 65536:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"port: {request.port} is not 1-65535")
        proto = (request.protocol or "TCP").upper()
        if proto not in ("TCP", "UDP", "SCTP"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"protocol: {request.protocol!r} is not TCP/UDP/SCTP")
        assert self.explain is not None
        try:
            result = self.explain.explain(request.src, request.dst, request.port, proto)
            if inspect.isawaitable(result):
                result = await result
        except KeyError as e:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(e.args[0] if e.args else e))
        except ValueError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        return debug_codec.explain_to_pb(result)


class ControllerGrpcServer:
    """The controller's gRPC server; see the module docstring."""

    def __init__(self, dist: Distributor, explain: ExplainSource | None = None,
                 listen: str = "0.0.0.0:7700", credentials: grpc.ServerCredentials | None = None,
                 guard: Guard | None = None, lifetime: StreamLifetime | None = None) -> None:
        self.dist = dist
        self.listen = listen
        self.credentials = credentials
        self.server = grpcutil.new_server()
        _add_distribution(_Distribution(dist, guard, lifetime), self.server)
        stockade_pb2_grpc.add_ControllerDebugServicer_to_server(  # type: ignore[no-untyped-call]
            _Debug(dist, explain, guard), self.server)
        self.health = grpcutil.Health(self.server, SERVICES)
        grpcutil.enable_reflection(self.server, SERVICES)
        self.port = 0
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Bind and start; returns the bound port (useful with port 0)."""
        addr = grpcutil.bind_address(self.listen)
        if self.credentials is not None:
            self.port = self.server.add_secure_port(addr, self.credentials)
        else:
            self.port = self.server.add_insecure_port(addr)
        if self.port == 0:
            raise OSError(f"gRPC: cannot listen on {self.listen}")
        await self.health.set_serving(False)
        await self.server.start()
        self._watch = asyncio.create_task(self._follow_readiness(), name="grpc-health-follow")
        log.info("controller gRPC listening on %s (port %d)", self.listen, self.port)
        return self.port

    async def _follow_readiness(self) -> None:
        while True:
            await self.health.set_serving(self.dist.ready)
            await self.dist.ready_changed()

    async def stop(self, grace: float = 5.0) -> None:
        """NOT_SERVING, stop accepting, let streams end for ``grace`` seconds, then cancel."""
        if self._watch is not None:
            self._watch.cancel()
        await self.health.shutting_down()
        self.dist.close_streams()
        await grpcutil.stop_server(self.server, grace)
