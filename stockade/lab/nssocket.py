"""Sockets that live inside lab namespaces, opened from the runner process.

A socket belongs for good to the network namespace of the thread that
created it.  :class:`NsSockets` keeps one long-lived thread per lab
namespace, moved there once with ``setns``; it creates sockets in that
thread and hands them to the asyncio loop, which uses them like any other.
So the prober, the port-forwards and the status polling need no process per
namespace and no fork per connection, and no packet ever leaves from the
machine's own namespace.

It does not connect, send or time anything out: callers do.  Call
:meth:`NsSockets.close` before the namespaces are deleted: a thread parked
in a namespace keeps that namespace (and its links) alive.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from stockade.lab import netns

T = TypeVar("T")


class NsSockets:
    """One setns'd worker thread per namespace, created on first use."""

    def __init__(self) -> None:
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()

    def _pool(self, namespace: str) -> ThreadPoolExecutor:
        with self._lock:
            pool = self._pools.get(namespace)
            if pool is None:
                pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ns-{namespace}",
                                          initializer=netns.enter, initargs=(namespace,))
                self._pools[namespace] = pool
            return pool

    async def socket(self, namespace: str, kind: int = socket.SOCK_STREAM,
                     proto: int = 0, bind: tuple[str, int] | None = None) -> socket.socket:
        """A non-blocking IPv4 socket created inside ``namespace``."""
        def make() -> socket.socket:
            s = socket.socket(socket.AF_INET, kind, proto)
            try:
                s.setblocking(False)
                if bind is not None:
                    s.bind(bind)
            except BaseException:
                s.close()
                raise
            return s

        return await asyncio.get_running_loop().run_in_executor(self._pool(namespace), make)

    async def run(self, namespace: str, fn: Callable[[], T]) -> T:
        """``fn()`` run in the thread parked in ``namespace``."""
        return await asyncio.get_running_loop().run_in_executor(self._pool(namespace), fn)

    def forget(self, namespace: str) -> None:
        """Stop the thread parked in ``namespace`` (before deleting it)."""
        with self._lock:
            pool = self._pools.pop(namespace, None)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for p in pools:
            p.shutdown(wait=True, cancel_futures=True)


async def http_get(socks: NsSockets, namespace: str, host: str, port: int, path: str,
                   timeout: float = 2.0) -> tuple[int, bytes]:
    """A minimal HTTP/1.0 GET from inside ``namespace``; (status, body)."""
    s = await socks.socket(namespace)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(s, (host, port))
            reader, writer = await asyncio.open_connection(sock=s)
            writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            data = await reader.read()
            writer.close()
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise ConnectionError(f"bad HTTP answer from {host}:{port}{path}")
    return int(status_line[1]), body


def gratuitous_arp(ifname: str, ip: str) -> None:
    """Announce ``ip`` on ``ifname`` with a gratuitous ARP request (call it
    in the namespace that owns the link).  A pod created with the address of
    a deleted one has a new MAC; the bridge CNI announces it the same way, so
    the node and the pods on its bridge update the old entry at once instead
    of sending to the dead MAC until their neighbour entry expires."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((ifname, 0))
        mac = s.getsockname()[4]
        addr = socket.inet_aton(ip)
        arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + addr + b"\x00" * 6 + addr
        s.send(b"\xff" * 6 + mac + b"\x08\x06" + arp)
