"""Agent streams end when their admission runs out, and come back without a kernel write.

A token is checked only when a stream opens, so the controller ends each
stream at the token's expiry (its JWT ``exp``) or after ``--max-stream-age``
(``controller.stream_lifetime``), with UNAVAILABLE and trailing metadata
``stockade-reconnect``; the agent reconnects at once with the token file as
it is then and gets InSync.  Real gRPC on 127.0.0.1, tokens minted and
reviewed by the API emulator; the pure rule first."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from controller.node_binding import AgentIdentity, ReviewCache, token_expiry
from controller.settings import SecuritySettings, SettingsError, build_parser, parse_security
from controller.stream_lifetime import StreamLifetime
from nodeagent.channel_auth import ChannelSecurity
from tests.controller.conftest import PLAINTEXT, StartAgents, StartController, in_sync
from tests.controller.kube import Kube, eventually, node
from tests.controller.test_channel import NS, SECURE, ca_file, cluster, rejected, start_agent, write

pytestmark = pytest.mark.timeout(60)


def expired_total(reason: str) -> float:
    return REGISTRY.get_sample_value("stockade_wire_streams_expired_total", {"reason": reason}) or 0.0


# -------------------------------------------------------------------- the rule


def test_the_earlier_of_token_expiry_and_max_age_moved_earlier_by_jitter() -> None:
    lt = StreamLifetime(max_age=3600, min_age=10, jitter=0.1)
    assert lt.end(1000.0, 1000.0 + 600, 0.0) == (600, "token_expiry")
    assert lt.end(1000.0, 1000.0 + 7200, 0.0) == (3600, "max_age")
    assert lt.end(1000.0, 0.0, 0.0) == (3600, "max_age")  # auth none: no token
    assert lt.end(1000.0, 0.0, 0.999)[0] == pytest.approx(3600 - 359.64)  # type: ignore[index]
    assert StreamLifetime(max_age=0).end(1000.0, 0.0, 0.5) is None  # unlimited, no token
    assert StreamLifetime(max_age=0).end(1000.0, 1060.0, 0.0) == (60, "token_expiry")
    # already expired by this clock (skew): the floor, not a reconnect loop
    assert lt.end(1000.0, 990.0, 0.5) == (10, "token_expiry")
    assert lt.end(1000.0, 1012.0, 0.999)[0] >= 10  # type: ignore[index]


def _jwt(claims: dict[str, Any]) -> str:
    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none'})}.{b64(claims)}.sig"


@pytest.mark.parametrize(("token", "want"), [
    (_jwt({"exp": 1_800_000_000}), 1_800_000_000.0),
    (_jwt({"exp": "soon"}), 0.0),
    (_jwt({"exp": True}), 0.0),
    (_jwt({"iat": 1}), 0.0),
    ("not.a.jwt!", 0.0),
    ("garbage", 0.0),
])
def test_token_expiry_reads_exp_only(token: str, want: float) -> None:
    assert token_expiry(token) == want


def test_review_cache_never_keeps_an_identity_past_its_token() -> None:
    mono, wall = [100.0], [5000.0]
    cache = ReviewCache(10.0, 10, lambda: mono[0], lambda: wall[0])
    cache.put("a", AgentIdentity(NS, "p", "u", "n1", expires=5003.0))
    cache.put("b", AgentIdentity(NS, "p", "u", "n1", expires=4999.0))  # expired: not cached at all
    cache.put("c", AgentIdentity(NS, "p", "u", "n1"))  # no exp: the cache's own ttl
    assert cache.get("a") is not None and cache.get("b") is None
    mono[0] += 3.5
    assert cache.get("a") is None and cache.get("c") is not None


def test_max_stream_age_flag() -> None:
    def parse(*argv: str) -> SecuritySettings:
        return parse_security(build_parser().parse_args(list(argv)), namespace_file="/nonexistent")

    assert parse().max_stream_age == 3600
    assert parse("--max-stream-age", "0").max_stream_age == 0
    assert parse("--max-stream-age", "600").max_stream_age == 600
    for bad in ("-1", "5", "inf"):
        with pytest.raises(SettingsError, match="--max-stream-age"):
            parse("--max-stream-age", bad)


# -------------------------------------------------------------------- end to end


async def _expiring_agent(emu: Any, kube: Kube, tmp_path: Path, start_controller: StartController,
                          ttl: int) -> tuple[Any, Any, Any, Path]:
    """A token-checking controller and n1's agent admitted with a token valid ``ttl`` seconds, in sync."""
    await cluster(emu, kube)
    emu.tokens.min_ttl = 1  # the real TokenRequest's minimum is 600 s
    c = await start_controller(security=replace(SECURE, min_stream_age=0.3))
    tok = tmp_path / "token"
    write(tok, emu.issue_token(NS, "stockade-agent", "agent-n1", ttl=ttl))
    svc, kernel = await start_agent(tmp_path, "n1", c.grpc_port, ChannelSecurity(ca_file(emu, tmp_path),
                                                                                 token_file=str(tok)))
    await eventually(lambda: svc.client is not None and svc.client.synced.is_set(), 10, "agent n1 in sync")
    assert svc.client.applies == 1 and svc.client.connects == 1
    return c, svc, kernel, tok


async def test_stream_ends_at_token_expiry_and_resumes_in_sync_with_the_rotated_token(
        emu: Any, kube: Kube, tmp_path: Path, start_controller: StartController) -> None:
    before = expired_total("token_expiry")
    c, svc, kernel, tok = await _expiring_agent(emu, kube, tmp_path, start_controller, ttl=3)
    try:
        writes, in_syncs = kernel.writes, c.distributor.in_syncs_sent
        write(tok, emu.issue_token(NS, "stockade-agent", "agent-n1", ttl=600))  # the kubelet rotates the file
        assert svc.client.expired == 0
        await eventually(lambda: svc.client.expired == 1 and svc.client.connects == 2 and svc.client.connected,
                         6, "the controller ended the stream at the token's expiry and the agent came back")
        await eventually(lambda: c.distributor.in_syncs_sent > in_syncs, 5, "InSync after the reconnect")
        assert expired_total("token_expiry") == before + 1
        assert svc.client.applies == 1 and kernel.writes == writes, "no kernel write for a reconnect"
        assert svc.client.rejects == 0 and svc.client.last_error == ""
        assert svc.client.delays[-1] < 0.1, "reconnected without backing off"
        assert svc.client.status()["streams_expired"] == 1
        assert c.distributor.nodes_status()[0]["connected"]
    finally:
        await svc.stop()


async def test_a_token_no_longer_valid_at_reconnect_is_refused_and_the_agent_keeps_enforcing(
        emu: Any, kube: Kube, tmp_path: Path, start_controller: StartController) -> None:
    refused = rejected("unauthenticated", "stream")
    c, svc, kernel, _ = await _expiring_agent(emu, kube, tmp_path, start_controller, ttl=2)
    try:
        digest, members, writes = svc.client.digest, {k: set(getattr(s, "members", ())) for k, s in
                                                      kernel.sets.items()}, kernel.writes
        # the token file is not rotated: the agent comes back with the expired token
        await eventually(lambda: rejected("unauthenticated", "stream") > refused, 8, "the expired token refused")
        await eventually(lambda: "UNAUTHENTICATED" in svc.client.last_error, 5, "the agent saw the refusal")
        assert "expired" in svc.client.last_error
        assert svc.client.expired >= 1 and not svc.client.connected
        assert not any(n["connected"] for n in c.distributor.nodes_status())
        # fail-static: the last state still enforced, nothing written or cleared
        assert svc.client.digest == digest and svc.client.state is not None
        assert {k: set(getattr(s, "members", ())) for k, s in kernel.sets.items()} == members
        assert kernel.writes == writes and svc.client.applies == 1
    finally:
        await svc.stop()


async def test_max_stream_age_without_auth_ends_and_reopens_streams_in_sync(
        kube: Kube, start_controller: StartController, start_agents: StartAgents) -> None:
    before = expired_total("max_age")
    await kube.create(node("n1", "192.168.0.1"), node("n2", "192.168.0.2"))
    c = await start_controller(security=replace(PLAINTEXT, max_stream_age=1.5, min_stream_age=0.3))
    agents = await start_agents([f"127.0.0.1:{c.grpc_port}"])
    await eventually(lambda: in_sync(c, agents), 10, "agents in sync")
    writes = {a.node: a.kernel.writes for a in agents}
    in_syncs = c.distributor.in_syncs_sent
    await eventually(lambda: all(a.service.client.expired >= 1 and a.service.client.connects >= 2
                                 and a.service.client.connected for a in agents), 6,
                     "every stream ended at its maximum age and was reopened")
    await eventually(lambda: c.distributor.in_syncs_sent >= in_syncs + 2, 5, "InSync after the reconnects")
    assert expired_total("max_age") >= before + 2
    assert in_sync(c, agents)
    for a in agents:
        cl = a.service.client
        assert cl.applies == 1 and a.kernel.writes == writes[a.node], f"{a.node}: no kernel write"
        assert cl.rejects == 0 and cl.last_error == ""


async def test_streams_ended_at_once_make_the_agent_back_off_not_spin(
        kube: Kube, start_controller: StartController, start_agents: StartAgents) -> None:
    # a controller misconfigured to end streams almost at once (below the flag's floor)
    await kube.create(node("n1", "192.168.0.1"), node("n2", "192.168.0.2"))
    c = await start_controller(security=replace(PLAINTEXT, max_stream_age=0.2, min_stream_age=0.2, stream_age_jitter=0))
    agents = await start_agents([f"127.0.0.1:{c.grpc_port}"])
    cl = agents[0].service.client
    await eventually(lambda: cl.expired >= 4, 10, "streams ended again and again")
    assert max(cl.delays) > 0.1, f"backed off like after failures (delays {cl.delays})"
    assert cl.applies == 1, "still no kernel write after the first"
