"""The authenticated agent channel end to end, on 127.0.0.1 with real sockets:
the controller's TLS (own CA, shared by replicas), agents proving their node
with pod-bound tokens reviewed by the API emulator, debug RPCs behind the
same check, and the real grpcurl with ``-cacert``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from controller import certs
from controller.settings import SecuritySettings
from nodeagent.channel_auth import ChannelSecurity
from nodeagent.dataplane import Dataplane, DataplaneSettings
from nodeagent.fake_kernel import FakeKernel
from nodeagent.service import AgentService, AgentSettings
from stockade.v1 import stockade_pb2, stockade_pb2_grpc
from tests.controller.conftest import StartController
from tests.controller.kube import Kube, eventually, namespace, node
from tests.wire.helpers import grpcurl_path

pytestmark = pytest.mark.timeout(60)

NS = "stockade-system"
AGENT_LABELS = {"app.kubernetes.io/name": "stockade-agent", "app.kubernetes.io/component": "agent"}
SECURE = SecuritySettings(namespace=NS, tls_extra_names=("127.0.0.1",))
SERVICE_NAME = "stockade-controller.stockade-system.svc"


async def cluster(emu: Any, kube: Kube) -> None:
    """Two nodes, the agents' ServiceAccount and one agent pod per node, as the DaemonSet makes them."""
    await kube.create(namespace(NS), node("n1", "192.168.0.1"), node("n2", "192.168.0.2"))
    emu.store.create("serviceaccounts", {"metadata": {"name": "stockade-agent"}}, NS)
    for n in ("n1", "n2"):
        emu.store.create("pods", {"metadata": {"name": f"agent-{n}", "namespace": NS, "labels": AGENT_LABELS},
                                  "spec": {"nodeName": n, "serviceAccountName": "stockade-agent",
                                           "hostNetwork": True, "containers": [{"name": "agent", "image": "x"}]},
                                  "status": {"phase": "Running", "podIP": "192.168.0.1"}}, NS)


def write(path: Path, data: str | bytes) -> str:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path)


def ca_file(emu: Any, tmp: Path) -> str:
    """The bundle as the agent DaemonSet mounts it (from the published ConfigMap)."""
    return write(tmp / "ca.crt", emu.store.get("configmaps", "stockade-ca", NS)["data"]["ca.crt"])


def rejected(reason: str, rpc: str) -> float:
    return REGISTRY.get_sample_value("stockade_agent_auth_rejected_total", {"reason": reason, "rpc": rpc}) or 0.0


async def health(target: str, creds: grpc.ChannelCredentials | None, server_name: str = "") -> int:
    opts = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    ch = grpc.aio.secure_channel(target, creds, options=opts) if creds else grpc.aio.insecure_channel(target)
    async with ch:
        r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=3)
        return int(r.status)


# -------------------------------------------------------------------- TLS


async def test_replicas_share_one_ca_each_with_its_own_certificate(emu: Any, kube: Kube,
                                                                   start_controller: StartController) -> None:
    await cluster(emu, kube)
    r1 = await start_controller("r1", security=SECURE)
    r2 = await start_controller("r2", security=SECURE)
    bundle = emu.store.get("configmaps", "stockade-ca", NS)["data"]["ca.crt"].encode()
    assert r1.tls.ca_pem == r2.tls.ca_pem == bundle
    assert r1.tls.serving.cert_pem != r2.tls.serving.cert_pem
    creds = grpc.ssl_channel_credentials(root_certificates=bundle)
    for c in (r1, r2):  # either replica verifies with the one published bundle
        assert await health(f"127.0.0.1:{c.grpc_port}", creds) == health_pb2.HealthCheckResponse.SERVING
    st = r1.status()["channel"]
    assert st["tls"] == "self-signed" and SERVICE_NAME in st["certificate"]["names"]


@pytest.mark.parametrize("case", ["good-ca", "wrong-ca", "plaintext-client", "name-not-in-cert", "server-name"])
async def test_tls_handshake(emu: Any, kube: Kube, start_controller: StartController, case: str) -> None:
    await cluster(emu, kube)
    c = await start_controller(security=SECURE)
    good = grpc.ssl_channel_credentials(root_certificates=c.tls.ca_pem)
    target = f"127.0.0.1:{c.grpc_port}"
    if case == "good-ca":
        assert await health(target, good) == health_pb2.HealthCheckResponse.SERVING
        return
    if case == "server-name":  # dialled by IP, verified as the Service name (the agent's --server-name)
        assert await health(f"localhost:{c.grpc_port}", good, SERVICE_NAME) == health_pb2.HealthCheckResponse.SERVING
        return
    creds: grpc.ChannelCredentials | None = {
        "wrong-ca": grpc.ssl_channel_credentials(root_certificates=certs.new_ca(c.tls.info.not_before).cert_pem),
        "plaintext-client": None,
        "name-not-in-cert": good,
    }[case]
    if case == "name-not-in-cert":
        target = f"localhost:{c.grpc_port}"  # "localhost" is not among the certificate's names
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await health(target, creds)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


# -------------------------------------------------------------------- agents


async def start_agent(tmp: Path, node_name: str, controller_port: int, sec: ChannelSecurity) -> tuple[AgentService, FakeKernel]:
    state = tmp / f"state-{node_name}"
    k = FakeKernel()
    dp = Dataplane(k, DataplaneSettings(backend="nft", state_dir=str(state), settle=0.05))
    svc = AgentService(AgentSettings(node=node_name, controllers=[f"127.0.0.1:{controller_port}"],
                                     grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0",
                                     backoff_initial=0.05, backoff_max=0.2, shutdown_timeout=2.0, security=sec),
                       dataplane=dp)
    await svc.start()
    return svc, k


async def test_agents_get_their_own_state_and_nothing_else(emu: Any, kube: Kube, tmp_path: Path,
                                                           start_controller: StartController) -> None:
    await cluster(emu, kube)
    c = await start_controller(security=SECURE)
    ca = ca_file(emu, tmp_path)
    tok1 = write(tmp_path / "tok1", emu.issue_token(NS, "stockade-agent", "agent-n1"))
    wrong_node0, no_token0 = rejected("wrong_node", "stream"), rejected("no_token", "stream")
    agents: list[AgentService] = []
    try:
        good, _ = await start_agent(tmp_path, "n1", c.grpc_port, ChannelSecurity(ca, token_file=tok1))
        agents.append(good)
        # n1's token, claiming n2: refused, never sent n2's state
        liar, liar_kernel = await start_agent(tmp_path, "n2", c.grpc_port, ChannelSecurity(ca, token_file=tok1))
        agents.append(liar)
        # no token at all
        anon, _ = await start_agent(tmp_path, "n2", c.grpc_port,
                                    ChannelSecurity(ca, token_file=str(tmp_path / "absent")))
        agents.append(anon)
        desired = c.distributor.desired("n1")
        await eventually(lambda: good.client is not None and good.client.digest == c.distributor.desired("n1")[2],
                         10, "agent n1 in sync")
        assert desired is not None
        await eventually(lambda: rejected("wrong_node", "stream") > wrong_node0, 10, "the liar refused")
        await eventually(lambda: rejected("no_token", "stream") > no_token0, 10, "the anonymous agent refused")
        await asyncio.sleep(0.3)  # a few more reconnect attempts
        assert liar.client is not None and liar.client.state is None and liar.client.applies == 0
        assert "PERMISSION_DENIED" in liar.client.last_error and "claims node 'n2'" in liar.client.last_error
        assert anon.client is not None and "UNAUTHENTICATED" in anon.client.last_error
        assert liar_kernel.sets == {} or not any(getattr(s, "members", ()) for s in liar_kernel.sets.values())
        nodes = {n["node"]: n for n in c.distributor.nodes_status()}
        assert nodes["n1"]["connected"] and not nodes.get("n2", {}).get("connected")
    finally:
        for a in agents:
            await a.stop()


async def test_rotated_token_is_read_at_the_next_connect(emu: Any, kube: Kube, tmp_path: Path,
                                                         start_controller: StartController) -> None:
    await cluster(emu, kube)
    c = await start_controller(security=SECURE)
    tok = tmp_path / "token"
    write(tok, "stale.garbage.token")
    svc, _ = await start_agent(tmp_path, "n1", c.grpc_port, ChannelSecurity(ca_file(emu, tmp_path),
                                                                             token_file=str(tok)))
    try:
        await eventually(lambda: svc.client is not None and "UNAUTHENTICATED" in svc.client.last_error, 10,
                         "refused with the stale token")
        write(tok, emu.issue_token(NS, "stockade-agent", "agent-n1"))  # the kubelet rotates the file
        await eventually(lambda: svc.client is not None and svc.client.connected and svc.client.synced.is_set(),
                         10, "connected after rotation")
    finally:
        await svc.stop()


# -------------------------------------------------------------------- debug RPCs


async def test_debug_rpcs_need_an_agent_token_and_see_only_its_node(emu: Any, kube: Kube,
                                                                    start_controller: StartController) -> None:
    await cluster(emu, kube)
    c = await start_controller(security=SECURE)
    tok = emu.issue_token(NS, "stockade-agent", "agent-n1")
    creds = grpc.ssl_channel_credentials(root_certificates=c.tls.ca_pem)
    async with grpc.aio.secure_channel(f"127.0.0.1:{c.grpc_port}", creds) as ch:
        stub = stockade_pb2_grpc.ControllerDebugStub(ch)
        auth = (("authorization", f"Bearer {tok}"),)
        for call, req in ((stub.ListNodes, stockade_pb2.ListNodesRequest()),
                          (stub.GetNodeState, stockade_pb2.GetNodeStateRequest(node="n1"))):
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await call(req, timeout=5)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "authorization: Bearer" in (e.value.details() or "")
        await stub.ListNodes(stockade_pb2.ListNodesRequest(), metadata=auth, timeout=5)
        st = await stub.GetNodeState(stockade_pb2.GetNodeStateRequest(node="n1"), metadata=auth, timeout=5)
        assert st is not None
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.GetNodeState(stockade_pb2.GetNodeStateRequest(node="n2"), metadata=auth, timeout=5)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_debug_rpcs_off(emu: Any, kube: Kube, start_controller: StartController) -> None:
    from dataclasses import replace

    await cluster(emu, kube)
    c = await start_controller(security=replace(SECURE, debug_rpcs="off"))
    tok = emu.issue_token(NS, "stockade-agent", "agent-n1")
    creds = grpc.ssl_channel_credentials(root_certificates=c.tls.ca_pem)
    async with grpc.aio.secure_channel(f"127.0.0.1:{c.grpc_port}", creds) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stockade_pb2_grpc.ControllerDebugStub(ch).ListNodes(
                stockade_pb2.ListNodesRequest(), metadata=(("authorization", f"Bearer {tok}"),), timeout=5)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED and "disabled" in (e.value.details() or "")


# -------------------------------------------------------------------- grpcurl


async def grpcurl(*args: str) -> tuple[int, str]:
    exe = grpcurl_path()
    if exe is None:
        pytest.skip("grpcurl not installed")
    p = await asyncio.create_subprocess_exec(exe, "-max-time", "10", *args, stdout=asyncio.subprocess.PIPE,
                                             stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(p.communicate(), 20)
    return p.returncode or 0, out.decode()


async def test_grpcurl_with_cacert(emu: Any, kube: Kube, tmp_path: Path, start_controller: StartController) -> None:
    await cluster(emu, kube)
    c = await start_controller(security=SECURE)
    ca = ca_file(emu, tmp_path)
    addr = f"127.0.0.1:{c.grpc_port}"
    rc, out = await grpcurl("-cacert", ca, addr, "list")
    assert rc == 0, out
    assert {"stockade.v1.Distribution", "stockade.v1.ControllerDebug", "grpc.health.v1.Health"} <= set(out.split())
    rc, out = await grpcurl("-cacert", ca, "-authority", SERVICE_NAME, f"localhost:{c.grpc_port}",
                            "grpc.health.v1.Health/Check")
    assert rc == 0 and json.loads(out)["status"] == "SERVING", out
    rc, out = await grpcurl("-plaintext", addr, "list")
    assert rc != 0, out
    rc, out = await grpcurl(addr, "list")  # the system's roots do not know our CA
    assert rc != 0 and "certificate" in out, out
    rc, out = await grpcurl("-cacert", ca, "-d", '{"node": "n1"}', addr, "stockade.v1.ControllerDebug/GetNodeState")
    assert rc != 0 and "Unauthenticated" in out, out
    tok = emu.issue_token(NS, "stockade-agent", "agent-n1")
    rc, out = await grpcurl("-cacert", ca, "-H", f"authorization: Bearer {tok}", "-d", '{"node": "n1"}', addr,
                            "stockade.v1.ControllerDebug/GetNodeState")
    assert rc == 0, out
