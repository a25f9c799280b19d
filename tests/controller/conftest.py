"""Shared fixtures: the real Kubernetes API emulator, a REST client for it,
and controllers started against it on 127.0.0.1 with OS-chosen ports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from controller.settings import SecuritySettings, Settings, ShutdownSettings, WatchSettings
from nodeagent.dataplane import Dataplane, DataplaneSettings
from nodeagent.fake_kernel import FakeKernel
from nodeagent.service import AgentService, AgentSettings
from tests.controller.kube import Kube

FAST_WATCH = WatchSettings(read_timeout=5.0, connect_timeout=2.0, list_timeout=5.0, backoff_initial=0.02,
                           backoff_max=0.2, timeout_seconds_min=30, timeout_seconds_max=30)


@pytest.fixture
async def emu() -> AsyncIterator[Any]:
    from stockade.kubeemu.emulator import KubeEmulator

    async with KubeEmulator(host="127.0.0.1", port=0) as e:
        yield e


@pytest.fixture
async def kube(emu: Any) -> AsyncIterator[Kube]:
    k = Kube(emu.url)
    yield k
    await k.close()


@pytest.fixture
def kubeconfig(emu: Any, tmp_path: Path) -> str:
    path = tmp_path / "kubeconfig"
    emu.write_kubeconfig(str(path))
    return str(path)


@pytest.fixture
async def api(kubeconfig: str) -> AsyncIterator[Any]:
    from kubernetes_asyncio import client, config

    cfg = client.Configuration()
    await config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    c = client.ApiClient(configuration=cfg)
    yield c
    await c.close()


# The tests of the pipeline run the gRPC port in plaintext without agent
# authentication (--insecure-grpc); tests/controller/test_channel.py covers
# TLS and tokens.
PLAINTEXT = SecuritySettings(tls_mode="insecure", auth="none", debug_rpcs="open")


def controller_settings(kubeconfig: str, replica: str = "r1", **kw: Any) -> Settings:
    kw.setdefault("security", PLAINTEXT)
    return Settings(kubeconfig=kubeconfig, grpc_host="127.0.0.1", grpc_port=0, http_host="127.0.0.1",
                    http_port=0, replica_id=replica, watch=FAST_WATCH,
                    shutdown=ShutdownSettings(watches=1.0, writer=1.0, http=1.0, grpc_grace=0.5), **kw)


StartController = Callable[..., Awaitable[Any]]


@pytest.fixture
async def start_controller(kubeconfig: str) -> AsyncIterator[StartController]:
    from controller.runtime import Controller

    started: list[Controller] = []

    async def start(replica: str = "r1", wait_ready: bool = True, **kw: Any) -> Controller:
        s = controller_settings(kubeconfig, replica)
        if kw:
            s = replace(s, **kw)
        c = Controller(s)
        started.append(c)
        await c.start()
        if wait_ready:
            assert c.writer is not None
            await asyncio.wait_for(c.writer.ready_event.wait(), 10)
        return c

    yield start
    for c in reversed(started):
        await c.stop()


NODES = ("n1", "n2")


@dataclass
class Agent:
    node: str
    kernel: FakeKernel
    service: AgentService

    def digest(self) -> str:
        return str(self.service.applied()["digest"])

    def members(self) -> set[str]:
        return {m for s in self.kernel.sets.values() for m in getattr(s, "members", ())}


StartAgents = Callable[[list[str]], Any]


@pytest.fixture
async def start_agents(tmp_path: Path) -> AsyncIterator[StartAgents]:
    agents: list[Agent] = []

    async def start(controllers: list[str]) -> list[Agent]:
        out = []
        for n in NODES:
            k = FakeKernel()
            dp = Dataplane(k, DataplaneSettings(backend="nft", state_dir=str(tmp_path / n), settle=0.05))
            svc = AgentService(AgentSettings(node=n, controllers=controllers, grpc_listen="127.0.0.1:0",
                                             http_listen="127.0.0.1:0",
                                             backoff_initial=0.05, backoff_max=0.3, shutdown_timeout=2.0),
                               dataplane=dp)
            await svc.start()
            a = Agent(n, k, svc)
            agents.append(a)
            out.append(a)
        return out

    yield start
    for a in agents:
        await a.service.stop()


def in_sync(ctl: Any, agents: list[Agent]) -> bool:
    for a in agents:
        d = ctl.distributor.desired(a.node)
        if d is None or a.digest() != d[2]:
            return False
    return True
