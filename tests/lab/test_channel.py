"""The lab's secure agent channel, pure parts: the command lines, the agent
pods it creates at the emulator (which must not disturb any case), the CA
bundle and token files (written whole, re-minted before they expire), and
the runner keeping the agents' namespace."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from controller.parse_objects import parse_pod
from stockade import cases
from stockade.case_addresses import node_ip
from stockade.cases import ObjectOp
from stockade.lab import channel, processes
from stockade.lab.channel import AGENT_NAMESPACE, SecureChannel
from stockade.lab.runner import KEPT_NAMESPACES, uses_agent_namespace
from stockade.lab.topology import CONTROL_IP

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_controller_argv_is_tls_with_tokens_by_default() -> None:
    argv = processes.controller_argv("/k", CONTROL_IP)
    assert "--insecure-grpc" not in argv
    assert argv[argv.index("--tls-san") + 1] == CONTROL_IP  # the agents dial the controller by address
    assert argv[argv.index("--namespace") + 1] == AGENT_NAMESPACE
    plain = processes.controller_argv("/k", CONTROL_IP, insecure=True)
    assert "--insecure-grpc" in plain and "--tls-san" not in plain


def test_agent_argv_carries_bundle_and_token_only_on_the_secure_channel() -> None:
    argv = processes.agent_argv("node-0", CONTROL_IP, node_ip(0), "/s", ca_file="/c/ca.crt", token_file="/c/t")
    assert argv[argv.index("--ca-file") + 1] == "/c/ca.crt"
    assert argv[argv.index("--token-file") + 1] == "/c/t"
    assert "--server-name" not in argv  # the certificate names the controller's lab address
    plain = processes.agent_argv("node-0", CONTROL_IP, node_ip(0), "/s")
    assert "--ca-file" not in plain and "--token-file" not in plain


def test_agent_pods_are_hostnetwork_daemonset_pods_that_no_policy_selects() -> None:
    ops = channel.objects(3)
    assert [(op.kind, op.namespace, op.name) for op in ops[:2]] == [
        ("Namespace", "", AGENT_NAMESPACE), ("ServiceAccount", AGENT_NAMESPACE, "stockade-agent")]
    pods = [op.obj for op in ops[2:]]
    assert [p["metadata"]["name"] for p in pods if p] == [f"stockade-agent-node-{i}" for i in range(3)]
    for i, p in enumerate(pods):
        assert p is not None
        assert p["metadata"]["labels"] == {"app.kubernetes.io/name": "stockade-agent"}
        assert p["spec"]["nodeName"] == f"node-{i}" and p["spec"]["serviceAccountName"] == "stockade-agent"
        pod = parse_pod(p)
        assert pod.host_network and pod.ips == (node_ip(i),)  # the node's address, never a lab pod range
        assert not pod.enforced  # neither a target nor a pod peer of any policy


def test_runner_keeps_the_agent_namespace_and_refuses_cases_in_it() -> None:
    assert AGENT_NAMESPACE in KEPT_NAMESPACES
    mine = cases.parse_case({"name": "c", "nodes": 1, "namespaces": {"x": {"labels": {}}},
                             "pods": [{"namespace": "x", "name": "a"}], "probes": []})
    assert not uses_agent_namespace(cases.case_stages(mine))
    theirs = cases.parse_case({"name": "c", "nodes": 1, "namespaces": {AGENT_NAMESPACE: {"labels": {}}},
                               "pods": [{"namespace": AGENT_NAMESPACE, "name": "a"}], "probes": []})
    assert uses_agent_namespace(cases.case_stages(theirs))


class FakeApi:
    """The emulator as the channel sees it: objects, the CA ConfigMap
    (published after ``ca_after`` reads), minted tokens."""

    def __init__(self, ca_after: int = 0, fail_mints: int = 0) -> None:
        self.put: list[ObjectOp] = []
        self.ca_after = ca_after
        self.fail_mints = fail_mints
        self.minted: list[dict[str, Any]] = []

    async def put_object(self, op: ObjectOp) -> int:
        self.put.append(op)
        return len(self.put)

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        if method == "GET" and path.endswith("/configmaps/stockade-ca"):
            if self.ca_after > 0:
                self.ca_after -= 1
                return 404, {"message": "not found"}
            return 200, {"data": {"ca.crt": CA}}
        if method == "POST" and path == "/_emulator/tokens":
            if self.fail_mints > 0:
                self.fail_mints -= 1
                return 503, {"message": "stalled"}
            self.minted.append(body)
            return 201, {"token": f"token-{len(self.minted)}-{body['pod']}"}
        return 404, {}


async def test_bundle_and_tokens_land_in_files_only_the_agent_reads(tmp_path: Path) -> None:
    api = FakeApi(ca_after=2)
    ch = SecureChannel(api, str(tmp_path), 2)
    await ch.create_objects()
    assert [op.kind for op in api.put] == ["Namespace", "ServiceAccount", "Pod", "Pod"]
    await ch.fetch_ca()  # waits for the controller to publish it
    assert Path(ch.ca_file).read_text() == CA
    await ch.mint_all()
    assert {b["pod"] for b in api.minted} == {"stockade-agent-node-0", "stockade-agent-node-1"}
    assert all(b["audiences"] == ["stockade"] and b["namespace"] == AGENT_NAMESPACE
               and b["serviceAccount"] == "stockade-agent" and b["ttlSeconds"] == channel.TOKEN_TTL
               for b in api.minted)
    assert Path(ch.token_file(1)).read_text().endswith("stockade-agent-node-1")
    assert stat.S_IMODE(os.stat(ch.token_file(0)).st_mode) == 0o600
    assert not [p for p in os.listdir(ch.dir) if p.endswith(".tmp")]


async def test_missing_bundle_and_refused_token_say_what_is_wrong(tmp_path: Path) -> None:
    ch = SecureChannel(FakeApi(ca_after=10**6, fail_mints=1), str(tmp_path), 1)
    with pytest.raises(channel.ChannelError, match="no CA bundle in ConfigMap stockade-system/stockade-ca"):
        await ch.fetch_ca(timeout=0.2)
    with pytest.raises(channel.ChannelError, match="stockade-agent-node-0: HTTP 503: stalled"):
        await ch.mint(0)


async def test_tokens_are_reminted_before_they_expire_also_after_a_failure(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(channel, "RETRY", 0.05)
    api = FakeApi(fail_mints=1)
    ch = SecureChannel(api, str(tmp_path), 1, ttl=1)  # re-minted every 0.8 s
    os.makedirs(ch.dir)
    ch.start_rotation()
    try:
        for _ in range(100):
            if len(api.minted) >= 2:
                break
            await asyncio.sleep(0.05)
        assert len(api.minted) >= 2  # the failed attempt was retried, then the next rotation came
        assert Path(ch.token_file(0)).read_text() == f"token-{len(api.minted)}-stockade-agent-node-0"
    finally:
        await ch.close()
    assert ch._refresh is None
