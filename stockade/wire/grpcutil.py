"""Shared gRPC plumbing for the controller's and the agent's servers.

``grpc.aio`` servers with the same channel options on both sides (keepalive
so a vanished peer is noticed in tens of seconds, not hours), plus
``grpc.health.v1`` and server reflection so ``grpcurl -plaintext HOST:PORT
list|describe`` works against either process.  Also parsing of
``HOST:PORT`` flags.

It does not know about Stockade's services; callers add their servicers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 4 << 20),
    ("grpc.max_send_message_length", 4 << 20),
    ("grpc.so_reuseport", 0),
]
CLIENT_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 4 << 20),
    ("grpc.enable_retries", 0),
]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def parse_hostport(text: str, default_port: int | None = None) -> tuple[str, int]:
    """``"HOST:PORT"`` (``[v6]:PORT`` too) -> (host, port); clear error otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep:
        if default_port is None:
            raise ValueError(f"{text!r}: expected HOST:PORT")
        host, port = text, str(default_port)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: expected HOST:PORT with a port number 0-65535")
    return host, int(port)


def bind_address(text: str) -> str:
    """A listen flag as grpc wants it (``[::1]:7700`` for IPv6 hosts)."""
    host, port = parse_hostport(text)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def new_server(reuse_port: bool = False) -> grpc.aio.Server:
    """A server with the shared options.  ``reuse_port``: let a second
    process bind the same port (the agent during a DaemonSet surge update,
    where the new pod starts beside the old one on the host network); the
    controller keeps it off so a port already in use is an error."""
    options = [o for o in SERVER_OPTIONS if o[0] != "grpc.so_reuseport"]
    options.append(("grpc.so_reuseport", 1 if reuse_port else 0))
    return grpc.aio.server(options=options)


class Health:
    """``grpc.health.v1`` for a set of service names ("" is the whole server)."""

    def __init__(self, server: grpc.aio.Server, services: Iterable[str]) -> None:
        self.servicer = health.aio.HealthServicer()
        self.services = ["", *services]
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)
        self._serving: bool | None = None

    async def set_serving(self, serving: bool) -> None:
        if serving == self._serving:
            return
        self._serving = serving
        for name in self.services:
            await self.servicer.set(name, SERVING if serving else NOT_SERVING)

    async def shutting_down(self) -> None:
        await self.servicer.enter_graceful_shutdown()


def enable_reflection(server: grpc.aio.Server, service_full_names: Iterable[str]) -> None:
    names = [*service_full_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)


async def stop_server(server: grpc.aio.Server, grace: float) -> None:
    """Stop accepting, give open calls ``grace`` seconds, then cancel them (bounded)."""
    await asyncio.wait_for(server.stop(grace), grace + 5.0)
