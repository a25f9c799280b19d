"""``stockade controller`` as a real process: ready line, real sockets,
graceful shutdown on SIGTERM/SIGINT in the documented order, exit 0; bad
flags exit 2 naming the flag."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import time
from typing import Any

import aiohttp
import pytest

from tests.controller.kube import Kube, namespace, node

pytestmark = pytest.mark.timeout(40)

STARTED = re.compile(r"started: gRPC 127\.0\.0\.1:(\d+), HTTP 127\.0\.0\.1:(\d+)")


async def read_until(stream: asyncio.StreamReader, pattern: str, lines: list[str], timeout: float = 15) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    rx = re.compile(pattern)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no line matching {pattern!r}; got:\n" + "".join(lines))
        raw = await asyncio.wait_for(stream.readline(), left)
        if not raw:
            raise AssertionError(f"process output ended before {pattern!r}; got:\n" + "".join(lines))
        line = raw.decode()
        lines.append(line)
        m = rx.search(line)
        if m:
            return m


async def spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stockade", "controller", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)


async def port_open(port: int) -> bool:
    try:
        _, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
    except (OSError, TimeoutError):
        return False
    w.close()
    return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_ready_then_graceful_shutdown(kube: Kube, kubeconfig: str, sig: int) -> None:
    await kube.create(namespace("a"), namespace("stockade-system"), node("n1", "192.168.0.1"))
    # the defaults: TLS from the controller's own CA, agents authenticated by token
    p = await spawn("--kubeconfig", kubeconfig, "--grpc-listen", "127.0.0.1:0",
                    "--http-listen", "127.0.0.1:0", "--replica-id", "proc-1", "--namespace", "stockade-system")
    lines: list[str] = []
    try:
        assert p.stdout is not None
        await read_until(p.stdout, r"gRPC TLS from self-signed \(CA in secret stockade-system/stockade-ca\)", lines)
        await read_until(p.stdout, r"gRPC channel: TLS self-signed, agents authenticated by tokenreview", lines)
        m = await read_until(p.stdout, STARTED.pattern, lines)
        grpc_port, http_port = int(m.group(1)), int(m.group(2))
        await read_until(p.stdout, r"controller READY \(replica proc-1, gRPC .*\)", lines)
        await read_until(p.stdout, r"heap settled: \d+ objects frozen", lines)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
            async with s.get(f"http://127.0.0.1:{http_port}/readyz") as r:
                assert r.status == 200
            async with s.get(f"http://127.0.0.1:{http_port}/api/v1/status") as r:
                st: Any = await r.json()
                assert st["replica"] == "proc-1" and st["totals"]["nodes"] == 1
        assert await port_open(grpc_port)
        t0 = time.monotonic()
        p.send_signal(sig)
        rc = await asyncio.wait_for(p.wait(), 15)
        elapsed = time.monotonic() - t0
        rest = await p.stdout.read()
        lines.append(rest.decode())
        out = "".join(lines)
        assert rc == 0, out
        assert elapsed < 10, f"shutdown took {elapsed:.1f}s"
        assert f"received {signal.Signals(sig).name}: shutting down" in out
        assert "controller proc-1 stopped" in out
        assert "Traceback" not in out, out
        assert not await port_open(http_port) and not await port_open(grpc_port)
    finally:
        if p.returncode is None:
            p.kill()
            await p.wait()


@pytest.mark.parametrize(("args", "msg"), [
    pytest.param(["--kubeconfig", "/nonexistent"], "--kubeconfig: no such file", id="kubeconfig"),
    pytest.param(["--kubeconfig", "KC", "--grpc-listen", "nowhere"], "--grpc-listen", id="grpc-listen"),
    pytest.param(["--kubeconfig", "KC", "--nflog-group", "70000"], "--nflog-group: 70000 is not in 0..65535",
                 id="nflog-group-beyond-the-agents-limit"),
])
async def test_bad_flags_exit_2(kubeconfig: str, args: list[str], msg: str) -> None:
    p = await spawn(*[kubeconfig if a == "KC" else a for a in args])
    out, _ = await asyncio.wait_for(p.communicate(), 20)
    assert p.returncode == 2
    assert msg in out.decode()


async def test_unusable_kubeconfig_exits_1_naming_it(tmp_path: Any) -> None:
    kc = tmp_path / "kc"
    kc.write_text("not: [a kubeconfig\n")
    p = await spawn("--kubeconfig", str(kc), "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
    out, _ = await asyncio.wait_for(p.communicate(), 20)
    assert p.returncode == 1
    assert f"controller failed to start: --kubeconfig {kc}: not usable" in out.decode()


async def test_http_port_in_use_exits_1_naming_the_flag(kubeconfig: str) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        p = await spawn("--kubeconfig", kubeconfig, "--grpc-listen", "127.0.0.1:0", "--http-listen", f"127.0.0.1:{port}",
                        "--insecure-grpc")
        out, _ = await asyncio.wait_for(p.communicate(), 20)
    assert p.returncode == 1
    assert f"controller failed to start: --http-listen 127.0.0.1:{port}:" in out.decode()
    assert "address already in use" in out.decode()
