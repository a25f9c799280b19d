"""The whole controller process (in-process) against the real emulator:
readiness gate, invalid policies, the JSON API, explain, replicas."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.controller.conftest import StartController
from tests.controller.kube import Kube, eventually, namespace, node, pod, policy

pytestmark = pytest.mark.timeout(30)

WEB_POLICY = {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
              "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                           "ports": [{"port": 80, "protocol": "TCP"}]}]}
BROKEN_POLICY = {"podSelector": {"matchLabels": {"app": "web"}}, "ingres": [{}]}


async def seed_cluster(kube: Kube) -> None:
    await kube.create(namespace("shop"), node("n1", "192.168.0.1", "10.1.0.0/24"), node("n2", "192.168.0.2", "10.2.0.0/24"))
    await kube.create(pod("shop", "web-1", {"app": "web"}, "n1", "10.1.0.5"),
                      pod("shop", "web-2", {"app": "web"}, "n2", "10.2.0.5"),
                      pod("shop", "client", {"app": "client"}, "n2", "10.2.0.9"),
                      pod("shop", "other", {"app": "other"}, "n1", "10.1.0.9"))
    await kube.create(policy("shop", "allow-client", WEB_POLICY))


async def get(port: int, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s, \
            s.get(f"http://127.0.0.1:{port}{path}") as r:
        ctype = r.headers.get("Content-Type", "")
        return r.status, (await r.json()) if "json" in ctype else await r.text()


async def grpc_health(port: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        resp = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=3)
        return int(resp.status)


async def test_not_ready_until_every_kind_listed(emu: Any, kube: Kube, start_controller: StartController) -> None:
    await seed_cluster(kube)
    emu.faults.fail_next(4, code=503, path_prefix="/apis/networking.k8s.io")
    c = await start_controller(wait_ready=False)
    await eventually(lambda: c.watchers["Pod"].listed and c.watchers["Node"].listed
                     and c.watchers["Namespace"].listed, what="three kinds listed")
    # Policies still failing: nothing may go out, every gate says not ready.
    assert not c.watchers["NetworkPolicy"].listed
    assert (await get(c.http_port, "/readyz"))[0] == 503
    assert not c.distributor.ready and c.distributor.nodes() == []
    assert await grpc_health(c.grpc_port) == health_pb2.HealthCheckResponse.NOT_SERVING
    status = (await get(c.http_port, "/api/v1/status"))[1]
    assert status["ready"] is False
    await asyncio.wait_for(c.writer.ready_event.wait(), 10)
    assert (await get(c.http_port, "/readyz"))[0] == 200
    await eventually(lambda: c.distributor.ready)
    assert c.distributor.nodes() == ["n1", "n2"]
    assert await grpc_health(c.grpc_port) == health_pb2.HealthCheckResponse.SERVING
    pol = next(w for w in (await get(c.http_port, "/api/v1/status"))[1]["watches"] if w["kind"] == "NetworkPolicy")
    assert pol["errors"] == 4 and "503" in pol["last_error"]


async def test_invalid_policy_reported_and_others_enforced(kube: Kube, start_controller: StartController) -> None:
    await seed_cluster(kube)
    c = await start_controller()
    before = (await get(c.http_port, "/api/v1/nodes/n1"))[1]
    assert "allow-client" in str(before["families"])  # the valid policy is compiled for n1 (web-1)
    await kube.create(policy("shop", "broken", BROKEN_POLICY))
    await eventually(lambda: "shop/broken" in c.writer.invalid, what="invalid policy seen")
    code, st = await get(c.http_port, "/api/v1/status")
    assert st["totals"]["invalid_policies"] == 1 and st["totals"]["policies"] == 2
    broken = next(p for p in st["policies"] if p["key"] == "shop/broken")
    assert broken["valid"] is False and any("ingres" in e for e in broken["errors"])
    ok = next(p for p in st["policies"] if p["key"] == "shop/allow-client")
    assert ok["valid"] is True
    code, one = await get(c.http_port, "/api/v1/policies/shop/broken")
    assert code == 200 and one["valid"] is False
    after = (await get(c.http_port, "/api/v1/nodes/n1"))[1]
    assert after["digest"] == before["digest"]  # the broken policy changed nothing
    page = (await get(c.http_port, "/"))[1]
    assert "shop/broken" in page and "INVALID" in page and "ingres" in page
    metrics = (await get(c.http_port, "/metrics"))[1]
    assert "stockade_invalid_policies 1.0" in metrics
    for name in ("stockade_event_to_send_seconds_bucket", "stockade_watch_relists_total",
                 "stockade_watch_errors_total", "stockade_wire_connected_agents", "stockade_controller_ready 1.0"):
        assert name in metrics, name


async def test_explain_uses_the_live_cluster(kube: Kube, start_controller: StartController) -> None:
    await seed_cluster(kube)
    c = await start_controller()
    code, allow = await get(c.http_port, "/api/v1/explain?from=shop/client&to=shop/web-1&port=80")
    assert code == 200 and allow["allowed"] is True, allow
    assert "shop/allow-client" in str(allow["ingress"])
    code, deny = await get(c.http_port, "/api/v1/explain?from=shop/other&to=shop/web-1&port=80")
    assert code == 200 and deny["allowed"] is False
    code, wrong_port = await get(c.http_port, "/api/v1/explain?from=shop/client&to=shop/web-1&port=81")
    assert wrong_port["allowed"] is False
    code, err = await get(c.http_port, "/api/v1/explain?from=shop/ghost&to=shop/web-1&port=80")
    assert code == 404 and "ghost" in err["error"]
    code, err = await get(c.http_port, "/api/v1/explain?from=shop/client&to=shop/web-1")
    assert code == 400 and "port" in err["error"]
    # the same through the gRPC debug service
    from stockade.v1 import stockade_pb2, stockade_pb2_grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{c.grpc_port}") as ch:
        stub = stockade_pb2_grpc.ControllerDebugStub(ch)
        resp = await stub.Explain(stockade_pb2.ExplainRequest(src="shop/client", dst="shop/web-1", port=80), timeout=3)
        assert resp.verdict == "allow" and any("allow-client" in r for r in resp.reasons)
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await stub.Explain(stockade_pb2.ExplainRequest(src="shop/ghost", dst="shop/web-1", port=80), timeout=3)
        assert ei.value.code() == grpc.StatusCode.NOT_FOUND and "ghost" in (ei.value.details() or "")
    # a change shows up in the next answer
    await kube.replace(pod("shop", "other", {"app": "client"}, "n1", "10.1.0.9"))
    await eventually(lambda: c.writer.cluster.pods["shop/other"].labels.get("app") == "client")
    assert (await get(c.http_port, "/api/v1/explain?from=shop/other&to=shop/web-1&port=80"))[1]["allowed"] is True


async def test_replicas_compute_identical_states(kube: Kube, start_controller: StartController) -> None:
    await seed_cluster(kube)
    a = await start_controller("replica-a")
    b = await start_controller("replica-b")
    await kube.create(pod("shop", "web-3", {"app": "web"}, "n2", "10.2.0.7"))
    for c in (a, b):
        await eventually(lambda c=c: "shop/web-3" in c.writer.cluster.pods)
    await asyncio.sleep(0.05)
    for n in ("n1", "n2"):
        da, db = a.distributor.desired(n), b.distributor.desired(n)
        assert da is not None and db is not None and da[2] == db[2], n


async def test_node_deleted_is_removed_from_distribution(kube: Kube, start_controller: StartController) -> None:
    await seed_cluster(kube)
    c = await start_controller()
    assert c.distributor.desired("n1") is not None
    await kube.delete(node("n1", "192.168.0.1"))
    await eventually(lambda: c.distributor.desired("n1") is None, what="n1 removed")
    code, _ = await get(c.http_port, "/api/v1/nodes/n1")
    assert code == 404


class BrokenEngine:
    """An engine whose invariant check fails on the first pod."""

    def __init__(self) -> None:
        from controller.engine import Engine

        self._e = Engine()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._e, name)

    def set_pod(self, pod: Any) -> None:
        raise AssertionError(f"invariant broken by pod {pod.namespace}/{pod.name}")


async def test_a_dying_root_task_stops_the_process_with_exit_1(
        kube: Kube, kubeconfig: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """kopf's rule: when a root task (here the writer) dies, the process
    stops in order and exits non-zero so that Kubernetes restarts it."""
    from controller import main, runtime
    from tests.controller.conftest import controller_settings

    caplog.set_level("INFO", logger="stockade.controller")
    await seed_cluster(kube)

    class Doomed(runtime.Controller):
        def __init__(self, settings: Any) -> None:
            super().__init__(settings, engine=BrokenEngine())

    monkeypatch.setattr(runtime, "Controller", Doomed)
    rc = await asyncio.wait_for(main.run(controller_settings(kubeconfig)), 15)
    assert rc == 1
    assert "root task stockade-writer ended (AssertionError: invariant broken by pod shop/" in caplog.text
    assert "controller r1 stopped" in caplog.text
