"""The agent service end to end: real Dataplane on the in-memory kernel, real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from nodeagent.dataplane import DataplaneSettings
from nodeagent.fake_kernel import FakeKernel
from nodeagent.main import parse
from nodeagent.service import AgentService, AgentSettings
from stockade.state import digest
from tests.wire.helpers import controller, make_state, until

ROOT = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def agent_service(addr: str, kernel: FakeKernel, state_dir: str) -> AsyncIterator[AgentService]:
    svc = AgentService(AgentSettings("n1", [addr], grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0",
                                     dataplane=DataplaneSettings(reconcile_period=3600, state_dir=state_dir),
                                     backoff_initial=0.05, backoff_max=0.2, shutdown_timeout=2.0), kernel=kernel)
    await svc.start()
    try:
        yield svc
    finally:
        await asyncio.wait_for(svc.stop(), 10)


async def test_real_dataplane_end_to_end_and_restart_without_kernel_write(tmp_path: Path) -> None:
    kernel = FakeKernel()
    s1, s2 = make_state(), make_state(pods=6)
    async with controller() as (dist, _srv, addr):
        dist.publish("n1", s1)
        async with agent_service(addr, kernel, str(tmp_path)) as svc:
            assert await dist.wait_acked("n1", 1, 10)
            assert set(s1.sets) <= set(kernel.sets)
            assert set(kernel.sets["stk-pods"].members) == set(s1.sets["stk-pods"].members)
            v2 = dist.publish("n1", s2)
            assert await dist.wait_acked("n1", v2, 10)
            assert set(kernel.sets["stk-pods"].members) == set(s2.sets["stk-pods"].members)
            assert svc.applied()["digest"] == digest(s2)
        writes = kernel.writes
        assert set(s2.sets) <= set(kernel.sets), "stopping the agent must not touch the kernel"
        # a new agent process on the same node (same kernel, same state dir)
        async with agent_service(addr, kernel, str(tmp_path)) as svc2:
            await until(lambda: dist.in_syncs_sent == 1, what="in sync")
            await until(lambda: svc2.client is not None and svc2.client.version == v2, what="version adopted")
            assert kernel.writes == writes, "an unchanged controller causes no kernel write"
            s3 = make_state(pods=2)
            v3 = dist.publish("n1", s3)
            assert await dist.wait_acked("n1", v3, 10)
            assert set(kernel.sets["stk-pods"].members) == set(s3.sets["stk-pods"].members)


async def test_agent_keeps_enforcing_when_controller_goes_away(tmp_path: Path) -> None:
    kernel = FakeKernel()
    async with controller() as (dist, srv, addr):
        dist.publish("n1", make_state())
        async with agent_service(addr, kernel, str(tmp_path)) as svc:
            assert await dist.wait_acked("n1", 1, 10)
            writes = kernel.writes
            await srv.stop(0.2)
            await until(lambda: svc.client is not None and not svc.client.connected, what="disconnected")
            await asyncio.sleep(0.3)  # several reconnect attempts
            assert kernel.writes == writes and set(make_state().sets) <= set(kernel.sets)


async def test_healthz_and_metrics(tmp_path: Path) -> None:
    async with controller() as (dist, _srv, addr):
        dist.publish("n1", make_state())
        async with agent_service(addr, FakeKernel(), str(tmp_path)) as svc:
            assert await dist.wait_acked("n1", 1, 10)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
                async with http.get(f"http://127.0.0.1:{svc.http_port}/healthz") as r:
                    assert r.status == 200
                    body = json.loads(await r.text())
                    assert body["connected"] and body["version"] == 1 and body["digest"] == digest(make_state())
                async with http.get(f"http://127.0.0.1:{svc.http_port}/metrics") as r:
                    text = await r.text()
                    assert "stockade_agent_connected 1.0" in text
                    assert "stockade_agent_updates_applied_total 1.0" in text
                    assert 'stockade_agent_objects{kind="sets"}' in text


@pytest.mark.parametrize("argv, why", [
    pytest.param(["--controller", "c:7700"], "--node-name is required", id="no-node"),
    pytest.param(["--node-name", "n1"], "at least one --controller", id="no-controller"),
    pytest.param(["--node-name", "n1", "--controller", "c:notaport"], "--controller", id="bad-controller"),
    pytest.param(["--node-name", "n1", "--controller", "c", "--grpc-listen", "0.0.0.0"], "--grpc-listen",
                 id="listen-without-port"),
    pytest.param(["--node-name", "n1", "--controller", "c", "--iptables-backend", "ebpf"], "invalid choice",
                 id="bad-backend"),
])
def test_bad_flags_name_what_is_wrong(argv: list[str], why: str, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NODE_NAME", raising=False)
    with pytest.raises(SystemExit) as e:
        parse(argv)
    assert e.value.code == 2 and why in capsys.readouterr().err


def test_flag_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "from-env")
    a = parse(["--controller", "a:7700", "--controller", "b:7700"])
    assert a.node_name == "from-env" and a.controller == ["a:7700", "b:7700"]
    assert (a.grpc_listen, a.http_listen, a.state_dir) == ("0.0.0.0:7702", "0.0.0.0:7703", "/var/lib/stockade")


async def test_agent_process_logs_and_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    async with controller() as (dist, _srv, addr):
        dist.publish("n1", make_state())
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        p = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stockade", "agent", "--node-name", "n1", "--controller", addr,
            "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--kernel", "fake",
            "--state-dir", str(tmp_path), stderr=asyncio.subprocess.PIPE, env=env)
        try:
            assert await dist.wait_acked("n1", 1, 20)
            t0 = time.monotonic()
            p.send_signal(signal.SIGTERM)
            rc = await asyncio.wait_for(p.wait(), 15)
            took = time.monotonic() - t0
        finally:
            if p.returncode is None:
                p.kill()
                await p.wait()
        assert p.stderr is not None
        log = (await p.stderr.read()).decode()
        assert rc == 0, log
        assert took < 10, f"shutdown took {took:.1f}s"
        assert "connected to controller" in log and "applied snapshot version 1" in log
        assert "stopped; the kernel keeps enforcing version 1" in log


def test_unknown_event_loop_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from nodeagent.main import main

    monkeypatch.setenv("STOCKADE_AGENT_LOOP", "trio")
    assert main(["--node-name", "n1", "--controller", "127.0.0.1:1"]) == 2
    assert "STOCKADE_AGENT_LOOP" in capsys.readouterr().err
