"""The tiny server every lab pod (and outside host) runs: echo on its ports.

``python -m stockade.lab.podserver [--bind ADDR] PROTO:PORT...`` binds every
listed port (``tcp:80``, ``udp:53``, ``sctp:9000``) in the network namespace
it was started in, prints one line ``ready <pid>`` on stdout once all of
them are bound, and echoes: TCP and SCTP streams byte for byte until the
peer closes, UDP datagrams back to their sender.  It runs until SIGTERM or
SIGINT.

A port that cannot be bound because the kernel lacks the protocol (SCTP on
kernels without the module) is reported on stderr as ``unsupported
PROTO:PORT`` and skipped; any other bind failure is fatal (exit 1), since a
probed port that nobody serves would turn "deny" into "refused".

It answers the prober only; it has no notion of policy and logs nothing per
connection.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import sys
from typing import cast

PROTOS = {"tcp": (socket.SOCK_STREAM, socket.IPPROTO_TCP),
          "udp": (socket.SOCK_DGRAM, socket.IPPROTO_UDP),
          "sctp": (socket.SOCK_STREAM, getattr(socket, "IPPROTO_SCTP", 132))}
UNSUPPORTED = (errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT, errno.EAFNOSUPPORT)


def parse_port(spec: str) -> tuple[str, int]:
    proto, _, port = spec.lower().partition(":")
    if proto not in PROTOS or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port spec {spec!r} (want tcp:N, udp:N or sctp:N)")
    return proto, int(port)


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.transport.sendto(data, addr)


async def _echo_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def bind(proto: str, port: int, addr: str = "0.0.0.0") -> socket.socket:
    kind, ipproto = PROTOS[proto]
    s = socket.socket(socket.AF_INET, kind, ipproto)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        if kind == socket.SOCK_STREAM:
            s.listen(128)
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


async def serve(specs: list[tuple[str, int]], addr: str = "0.0.0.0") -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    servers: list[asyncio.AbstractServer] = []
    transports: list[asyncio.BaseTransport] = []
    for proto, port in specs:
        try:
            s = bind(proto, port, addr)
        except OSError as e:
            if e.errno in UNSUPPORTED:
                print(f"unsupported {proto}:{port}: {e.strerror}", file=sys.stderr, flush=True)
                continue
            print(f"cannot bind {proto}:{port}: {e}", file=sys.stderr, flush=True)
            return 1
        if proto == "udp":
            dt, _ = await loop.create_datagram_endpoint(_Echo, sock=s)
            transports.append(dt)
        else:
            servers.append(await asyncio.start_server(_echo_stream, sock=s))
    print(f"ready {os.getpid()}", flush=True)
    await stop.wait()
    for srv in servers:
        srv.close()
    for tr in transports:
        tr.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    addr = "0.0.0.0"
    if args[:1] == ["--bind"]:
        addr, args = args[1], args[2:]
    try:
        specs = [parse_port(a) for a in args]
    except ValueError as e:
        print(f"podserver: {e}", file=sys.stderr)
        return 2
    return asyncio.run(serve(specs, addr))


if __name__ == "__main__":
    sys.exit(main())
