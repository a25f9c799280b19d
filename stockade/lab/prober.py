"""Real packets: does a connection from one lab namespace to an address work?

TCP: connect, send a token, read the same token back (data both ways).
UDP: send a datagram (resent every ``UDP_RESEND`` seconds), expect the echo.
SCTP: reported as an error when the kernel has no SCTP (it cannot be probed).

Outcomes: ``allow`` when the echo came back within the timeout; ``deny``
when nothing came back (a policy drop); an *error* when the attempt failed
in a way a drop cannot cause (connection refused: every probed port is
served; no route; no SCTP) -- the runner counts those as failed.

Many probes run concurrently on one asyncio loop; sockets are opened inside
the source namespace by :class:`stockade.lab.nssocket.NsSockets`.  This
module does not know about cases, pods or expectations.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from dataclasses import dataclass
from typing import Literal

from stockade.lab.nssocket import NsSockets

Observed = Literal["allow", "deny"]
DEFAULT_TIMEOUT = 1.0  # seconds without an answer that count as a drop
UDP_RESEND = 0.25


@dataclass(frozen=True, slots=True)
class Outcome:
    observed: Observed | None  # None when the probe could not be run
    error: str = ""
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Probe:
    netns: str  # where the connection starts
    dst: str  # destination IPv4 address
    port: int
    protocol: str  # "TCP" | "UDP" | "SCTP"
    src: str | None = None  # source address to bind (hostNetwork sources)


def _sctp_supported() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, getattr(socket, "IPPROTO_SCTP", 132)).close()
        return True
    except OSError:
        return False


class Prober:
    def __init__(self, socks: NsSockets, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.socks = socks
        self.timeout = timeout
        self._sctp: bool | None = None

    async def probe(self, p: Probe, timeout: float | None = None) -> Outcome:
        t = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        start = loop.time()
        proto = p.protocol.upper()
        try:
            if proto == "TCP":
                obs = await self._stream(p, t, socket.IPPROTO_TCP)
            elif proto == "UDP":
                obs = await self._udp(p, t)
            elif proto == "SCTP":
                if self._sctp is None:
                    self._sctp = _sctp_supported()
                if not self._sctp:
                    return Outcome(None, "this kernel has no SCTP: SCTP probes cannot run in lab mode")
                obs = await self._stream(p, t, getattr(socket, "IPPROTO_SCTP", 132))
            else:
                return Outcome(None, f"unknown protocol {p.protocol!r}")
        except ConnectionRefusedError:
            return Outcome(None, f"connection refused by {p.dst}:{p.port}/{proto} (nothing listening?)",
                           loop.time() - start)
        except OSError as e:
            if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                return Outcome(None, f"{p.dst}: {e.strerror}", loop.time() - start)
            return Outcome(None, f"{type(e).__name__}: {e}", loop.time() - start)
        return Outcome(obs, "", loop.time() - start)

    async def _stream(self, p: Probe, t: float, ipproto: int) -> Observed:
        bind = (p.src, 0) if p.src else None
        s = await self.socks.socket(p.netns, socket.SOCK_STREAM, ipproto, bind)
        loop = asyncio.get_running_loop()
        token = b"stockade-probe " + os.urandom(8).hex().encode() + b"\n"
        try:
            async with asyncio.timeout(t):
                await loop.sock_connect(s, (p.dst, p.port))
                await loop.sock_sendall(s, token)
                got = b""
                while len(got) < len(token):
                    chunk = await loop.sock_recv(s, 4096)
                    if not chunk:
                        break
                    got += chunk
            return "allow" if got == token else "deny"
        except TimeoutError:
            return "deny"
        finally:
            s.close()

    async def _udp(self, p: Probe, t: float) -> Observed:
        bind = (p.src, 0) if p.src else ("0.0.0.0", 0)
        s = await self.socks.socket(p.netns, socket.SOCK_DGRAM, 0, bind)
        loop = asyncio.get_running_loop()
        token = b"stockade-probe " + os.urandom(8).hex().encode()
        try:
            await loop.sock_connect(s, (p.dst, p.port))

            async def resend() -> None:
                while True:
                    try:
                        await loop.sock_sendall(s, token)
                    except ConnectionRefusedError:
                        pass  # the receive side reports it
                    await asyncio.sleep(UDP_RESEND)

            sender = asyncio.create_task(resend())
            try:
                async with asyncio.timeout(t):
                    while True:
                        data = await loop.sock_recv(s, 4096)
                        if data == token:
                            return "allow"
            except TimeoutError:
                return "deny"
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
        finally:
            s.close()

    async def probe_all(self, probes: list[Probe], timeout: float | None = None,
                        limit: int = 256) -> list[Outcome]:
        """Run ``probes`` concurrently (at most ``limit`` at once), in order."""
        sem = asyncio.Semaphore(limit)

        async def one(p: Probe) -> Outcome:
            async with sem:
                return await self.probe(p, timeout)

        return list(await asyncio.gather(*(one(p) for p in probes)))
