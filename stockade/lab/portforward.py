"""Show a lab service on 127.0.0.1, like ``kubectl port-forward``.

:class:`PortForward` listens on ``127.0.0.1:PORT`` in the machine's own
namespace; for every connection it opens a socket *inside* a lab namespace
(``stockade.lab.nssocket``), connects it to the service there, and relays
bytes both ways until either side closes.  No route, address or rule is
added to the machine, and nothing is sent from its namespace to a lab
address: the far socket lives in the lab.

It does not speak any protocol; it does not retry a failed far connect (the
client sees the connection closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from stockade.lab.nssocket import NsSockets

log = logging.getLogger("stockade.lab.portforward")
CONNECT_TIMEOUT = 3.0


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


class PortForward:
    def __init__(self, socks: NsSockets, namespace: str, host: str, port: int,
                 listen_host: str = "127.0.0.1", listen_port: int = 0) -> None:
        self.socks = socks
        self.namespace, self.host, self.port = namespace, host, port
        self.listen_host, self.listen_port = listen_host, listen_port
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    @property
    def local(self) -> str:
        """``127.0.0.1:PORT`` once started."""
        return f"{self.listen_host}:{self.listen_port}"

    async def start(self) -> PortForward:
        self._server = await asyncio.start_server(self._accept, self.listen_host, self.listen_port)
        self.listen_port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        far_w: asyncio.StreamWriter | None = None
        try:
            s = await self.socks.socket(self.namespace)
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await asyncio.get_running_loop().sock_connect(s, (self.host, self.port))
            except (OSError, TimeoutError) as e:
                s.close()
                log.info("port-forward to %s:%s in %s failed: %s", self.host, self.port, self.namespace, e)
                return
            far_r, far_w = await asyncio.open_connection(sock=s)
            await asyncio.gather(_pipe(reader, far_w), _pipe(far_r, writer))
        except asyncio.CancelledError:
            pass  # close() ends open relays; nothing to report
        finally:
            for w in (writer, far_w):
                if w is not None:
                    w.close()
            self._conns.discard(task)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for t in list(self._conns):
                t.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await self._server.wait_closed()
            self._server = None
