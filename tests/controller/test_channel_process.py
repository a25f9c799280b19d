"""The agent channel with the real processes and their real flags: ``stockade
controller`` with its defaults (own CA, token check) and ``stockade agent
--kernel fake --ca-file ... --token-file ...``; the agent of n1 gets its
state, an agent claiming n2 with n1's token gets nothing."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.controller.kube import Kube
from tests.controller.test_channel import NS, ca_file, cluster, write
from tests.controller.test_process import STARTED, read_until

pytestmark = pytest.mark.timeout(60)


async def spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "stockade", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)


async def stop(p: asyncio.subprocess.Process) -> None:
    if p.returncode is None:
        p.terminate()
        try:
            await asyncio.wait_for(p.wait(), 10)
        except TimeoutError:
            p.kill()
            await p.wait()


def agent_args(node: str, port: int, tmp: Path, ca: str, token: str) -> list[str]:
    return ["agent", "--kernel", "fake", "--node-name", node, "--controller", f"127.0.0.1:{port}",
            "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--state-dir", str(tmp / node),
            "--ca-file", ca, "--server-name", "stockade-controller.stockade-system.svc", "--token-file", token]


async def test_processes_agent_gets_its_state_and_a_liar_nothing(emu: Any, kube: Kube, kubeconfig: str,
                                                                 tmp_path: Path) -> None:
    await cluster(emu, kube)
    procs: list[asyncio.subprocess.Process] = []
    lines: list[str] = []
    try:
        ctl = await spawn("controller", "--kubeconfig", kubeconfig, "--grpc-listen", "127.0.0.1:0",
                          "--http-listen", "127.0.0.1:0", "--replica-id", "p1", "--namespace", NS)
        procs.append(ctl)
        assert ctl.stdout is not None
        port = int((await read_until(ctl.stdout, STARTED.pattern, lines)).group(1))
        await read_until(ctl.stdout, r"controller READY", lines)
        ca = ca_file(emu, tmp_path)
        token = write(tmp_path / "token-n1", emu.issue_token(NS, "stockade-agent", "agent-n1"))
        good = await spawn(*agent_args("n1", port, tmp_path, ca, token))
        liar = await spawn(*agent_args("n2", port, tmp_path, ca, token))
        procs += [good, liar]
        assert good.stdout is not None and liar.stdout is not None
        good_lines: list[str] = []
        await read_until(good.stdout, r"connected to controller 127\.0\.0\.1:\d+ as node n1", good_lines)
        await read_until(good.stdout, r"applied snapshot version \d+|in sync with controller", good_lines)
        liar_lines: list[str] = []
        await read_until(liar.stdout, r"PERMISSION_DENIED: claims node 'n2' but is the agent pod "
                                      r"stockade-system/agent-n1 on node n1", liar_lines)
        await read_until(ctl.stdout, r"rejected stream from .* claiming node 'n2': wrong_node", lines)
        assert not any("applied snapshot" in ln for ln in liar_lines), liar_lines
    finally:
        for p in reversed(procs):
            await stop(p)


async def test_the_documented_lab_recipe(emu: Any, kube: Kube, kubeconfig: str, tmp_path: Path) -> None:
    """docs/reliability.md, "Agent channel": the steps the lab needs, over HTTP only
    (the lab's runner reaches the emulator through its admin API, not its Python
    object): controller with --tls-san for the IP agents dial, bundle read from
    the ConfigMap, tokens minted at /_emulator/tokens, agents without --server-name."""
    import aiohttp

    await cluster(emu, kube)  # step 1: namespace, ServiceAccount, one agent pod per node
    procs: list[asyncio.subprocess.Process] = []
    lines: list[str] = []
    try:
        ctl = await spawn("controller", "--kubeconfig", kubeconfig, "--grpc-listen", "127.0.0.1:0",
                          "--http-listen", "127.0.0.1:0", "--replica-id", "lab-0", "--namespace", NS,
                          "--tls-san", "127.0.0.1")  # step 2
        procs.append(ctl)
        assert ctl.stdout is not None
        port = int((await read_until(ctl.stdout, STARTED.pattern, lines)).group(1))
        await read_until(ctl.stdout, r"controller READY", lines)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{emu.url}/api/v1/namespaces/{NS}/configmaps/stockade-ca") as r:  # step 3
                ca = write(tmp_path / "ca.crt", (await r.json())["data"]["ca.crt"])
            body = {"namespace": NS, "serviceAccount": "stockade-agent", "pod": "agent-n2",
                    "audiences": ["stockade"], "ttlSeconds": 3600}
            async with http.post(f"{emu.url}/_emulator/tokens", json=body) as r:  # step 4
                token = write(tmp_path / "token-n2", (await r.json())["token"])
        agent = await spawn("agent", "--kernel", "fake", "--node-name", "n2", "--controller", f"127.0.0.1:{port}",
                            "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                            "--state-dir", str(tmp_path / "n2"), "--ca-file", ca, "--token-file", token)  # step 5
        procs.append(agent)
        assert agent.stdout is not None
        agent_lines: list[str] = []
        await read_until(agent.stdout, r"applied snapshot version \d+|in sync with controller", agent_lines)
    finally:
        for p in reversed(procs):
            await stop(p)
