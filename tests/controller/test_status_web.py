"""The HTTP side: explain parameters, page rendering, routes and status codes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from controller.status_web import ExplainError, StatusServer, node_state_json, parse_explain_query, render_page
from stockade.state import Chain, FamilyState, IPSet, NodeState, Rule, SetMatch


@pytest.mark.parametrize(("q", "msg"), [
    pytest.param({}, "'from' is required", id="no-from"),
    pytest.param({"from": "a"}, "'from' must be NAMESPACE/POD", id="from-no-slash"),
    pytest.param({"from": "a/b/c", "to": "a/b", "port": "1"}, "'from' must be", id="from-two-slashes"),
    pytest.param({"from": "a/b"}, "'to' is required", id="no-to"),
    pytest.param({"from": "a/b", "to": "/b"}, "'to' must be", id="to-no-namespace"),
    pytest.param({"from": "a/b", "to": "a/c"}, "'port' is required", id="no-port"),
    pytest.param({"from": "a/b", "to": "a/c", "port": "http"}, "'port' must be a number", id="port-name"),
    pytest.param({"from": "a/b", "to": "a/c", "port": "0"}, "'port' must be a number 1-65535", id="port-zero"),
    pytest.param({"from": "a/b", "to": "a/c", "port": "65536"}, "'port'", id="port-high"),
    pytest.param({"from": "a/b", "to": "a/c", "port": "80", "protocol": "ICMP"}, "'protocol' must be one of", id="proto"),
])
def test_explain_query_errors(q: dict[str, str], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        parse_explain_query(q)


def test_explain_query_ok() -> None:
    assert parse_explain_query({"from": "a/b", "to": "c/d", "port": "443", "protocol": "udp"}) == ("a/b", "c/d", 443, "UDP")
    assert parse_explain_query({"from": "a/b", "to": "c/d", "port": "80"})[3] == "TCP"


STATUS: dict[str, Any] = {
    "replica": "rep-<1>", "ready": True,
    "totals": {"nodes": 2, "policies": 2, "invalid_policies": 1},
    "nodes": [
        {"node": "node-a", "connected": True, "in_sync": True, "replica": "rep-1", "desired_version": 4,
         "applied_version": 4, "lag": 0, "last_apply_unix": 1000.0, "last_apply_seconds": 0.012,
         "drift_repairs": 3, "last_error": "", "host_checks": [{"name": "br_netfilter", "ok": False}]},
        {"node": "node-b", "connected": False, "replica": "", "desired_version": 2, "applied_version": 0,
         "lag": 2, "last_apply_unix": 0, "drift_repairs": 0, "last_error": "iptables-restore: line 3 failed"},
    ],
    "policies": [
        {"key": "shop/allow-web", "valid": True, "pods_selected": 5, "nodes_spanned": 1, "errors": []},
        {"key": "shop/broken", "valid": False, "errors": ["spec.ingres: unknown field <b>"]},
    ],
    "writer": {"batches": 7, "changes": 31, "queued": 0, "last_publish_unix": 1005.0},
    "distributor": {"snapshots_sent": 2, "deltas_sent": 5, "in_syncs_sent": 1},
    "watches": [{"kind": "Pod", "listed": True, "connected": True, "objects": 7, "resource_version": "42",
                 "restarts": 1, "relists": 0, "errors": 0, "last_error": ""}],
}


def test_page_shows_nodes_policies_errors_escaped() -> None:
    page = render_page(STATUS, now=1010.0)
    for text in ("node-a", "node-b", "not connected", "in sync", "10s ago", "12.0 ms",
                 "iptables-restore: line 3 failed", "not connected to this replica", "shop/allow-web", "shop/broken",
                 "INVALID: not enforced", "READY", 'http-equiv="refresh"', "check: br_netfilter",
                 "7 batches, 31 changes", "last publish 5s ago", "5 deltas"):
        assert text in page, text
    assert "unknown field &lt;b&gt;" in page and "unknown field <b>" not in page
    assert "rep-&lt;1&gt;" in page


def test_page_not_ready_and_empty() -> None:
    page = render_page({"replica": "r", "ready": False, "nodes": [], "policies": [], "watches": []}, now=0)
    assert "NOT READY" in page and "no nodes yet" in page and "no NetworkPolicies" in page


@pytest.mark.parametrize(("channel", "shown", "warned"), [
    pytest.param({"tls": "self-signed", "auth": "tokenreview", "debug_rpcs": "agent",
                  "certificate": {"not_after": "2027-11-26T10:00:00+00:00"}},
                 "TLS self-signed (certificate until 2027-11-26), agents proven by tokenreview, debug RPCs agent",
                 False, id="secure"),
    pytest.param({"tls": "insecure", "auth": "none", "debug_rpcs": "open"}, "debug RPCs open", True,
                 id="plaintext"),
])
def test_page_shows_the_channel(channel: dict[str, Any], shown: str, warned: bool) -> None:
    page = render_page({**STATUS, "channel": channel}, now=1010.0)
    assert shown in page
    assert ("plaintext</span>" in page and "agents not authenticated" in page) is warned


def test_node_state_json_is_deterministic() -> None:
    st = NodeState("n", {"stk-a": IPSet("stk-a", "hash:ip", "inet", frozenset({"10.0.0.2", "10.0.0.1"}))},
                   FamilyState({"STOCKADE-X": Chain("STOCKADE-X", (
                       Rule("DROP", proto="tcp", dport=(80, 80), sets=(SetMatch("stk-a", ("src",)),)),))}))
    j = node_state_json(st, 3)
    assert j["version"] == 3 and j["sets"]["stk-a"]["members"] == ["10.0.0.1", "10.0.0.2"]
    assert j["families"]["inet"]["chains"]["STOCKADE-X"][0] == {
        "action": "DROP", "proto": "tcp", "dport": [80, 80], "sets": [{"set": "stk-a", "dirs": ["src"], "negate": False}]}
    assert j["counts"]["rules"] == 1 and len(j["digest"]) == 64


class FakeSource:
    def __init__(self) -> None:
        self.ready = False

    def is_ready(self) -> bool:
        return self.ready

    def status(self) -> dict[str, Any]:
        return STATUS

    def node_state_json(self, node: str) -> dict[str, Any] | None:
        return {"node": node} if node == "node-a" else None

    def policy(self, key: str) -> dict[str, Any] | None:
        return {"key": key} if key == "shop/allow-web" else None

    def explain(self, src: str, dst: str, port: int, protocol: str) -> dict[str, Any]:
        if src == "x/missing":
            raise ExplainError(f"no pod {src}")
        return {"verdict": "allow", "args": [src, dst, port, protocol]}


@pytest.fixture
async def served() -> AsyncIterator[tuple[FakeSource, str]]:
    src = FakeSource()
    server = StatusServer(src, "127.0.0.1", 0)
    port = await server.start()
    try:
        yield src, f"http://127.0.0.1:{port}"
    finally:
        await server.stop()


@pytest.mark.parametrize(("path", "status", "needle"), [
    pytest.param("/healthz", 200, "ok", id="healthz"),
    pytest.param("/readyz", 503, "not ready", id="readyz-not-ready"),
    pytest.param("/", 200, "node-b", id="page"),
    pytest.param("/api/v1/status", 200, '"replica"', id="status-json"),
    pytest.param("/api/v1/nodes/node-a", 200, '"node": "node-a"', id="node"),
    pytest.param("/api/v1/nodes/nope", 404, "no desired state for node 'nope'", id="node-404"),
    pytest.param("/api/v1/policies/shop/allow-web", 200, "shop/allow-web", id="policy"),
    pytest.param("/api/v1/policies/shop/nope", 404, "no NetworkPolicy 'shop/nope'", id="policy-404"),
    pytest.param("/api/v1/explain?from=a/b&to=c/d&port=80", 200, '"verdict": "allow"', id="explain"),
    pytest.param("/api/v1/explain?from=a/b&to=c/d&port=x", 400, "'port' must be a number", id="explain-400"),
    pytest.param("/api/v1/explain?from=x/missing&to=c/d&port=8", 404, "no pod x/missing", id="explain-404"),
    pytest.param("/metrics", 200, "stockade_watch_restarts_total", id="metrics"),
])
async def test_routes(served: tuple[FakeSource, str], path: str, status: int, needle: str) -> None:
    src, base = served
    src.ready = path != "/readyz"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s, s.get(base + path) as r:
        body = await r.text()
        assert r.status == status, body
        assert needle in body


async def test_explain_before_ready_is_503(served: tuple[FakeSource, str]) -> None:
    _, base = served
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s, \
            s.get(base + "/api/v1/explain?from=a/b&to=c/d&port=80") as r:
        assert r.status == 503 and "not ready" in (await r.json())["error"]


async def test_readyz_follows_source(served: tuple[FakeSource, str]) -> None:
    src, base = served
    src.ready = True
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s, s.get(base + "/readyz") as r:
        assert r.status == 200
