"""controller.agent_auth against the API emulator with the real kubernetes-asyncio client:
TokenReview + the bound pod + the claimed node, each refusal counted by reason."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from controller.agent_auth import AgentAuthenticator
from controller.node_binding import Expectation, Reason, Rejection

pytestmark = pytest.mark.timeout(30)

NS = "stockade-system"
AGENT_LABELS = {"app.kubernetes.io/name": "stockade-agent", "app.kubernetes.io/component": "agent"}


def ensure(emu: Any, plural: str, obj: dict[str, Any], namespace: str = "") -> None:
    from stockade.kubeemu import ApiError

    try:
        emu.store.get(plural, obj["metadata"]["name"], namespace)
    except ApiError:
        emu.store.create(plural, obj, namespace)


def agent_pod(emu: Any, name: str, node: str, ns: str = NS, sa: str = "stockade-agent",
              labels: dict[str, str] | None = None) -> None:
    """A pod as the DaemonSet makes them (its ServiceAccount and namespace created on demand)."""
    ensure(emu, "namespaces", {"metadata": {"name": ns}})
    ensure(emu, "serviceaccounts", {"metadata": {"name": sa}}, ns)
    emu.store.create("pods", {"metadata": {"name": name, "namespace": ns,
                                           "labels": AGENT_LABELS if labels is None else labels},
                              "spec": {"nodeName": node, "serviceAccountName": sa,
                                       "containers": [{"name": "agent", "image": "stockade"}]}}, ns)


def rejected(reason: str, rpc: str = "stream") -> float:
    v = REGISTRY.get_sample_value("stockade_agent_auth_rejected_total", {"reason": reason, "rpc": rpc})
    return v or 0.0


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


@pytest.fixture
def auth(api: Any) -> AgentAuthenticator:
    return AgentAuthenticator(api, Expectation(NS), cache_ttl=30.0)


async def test_the_agent_of_the_node_gets_in(emu: Any, auth: AgentAuthenticator) -> None:
    agent_pod(emu, "agent-a", "n1")
    token = emu.issue_token(NS, "stockade-agent", "agent-a")
    ident = await auth.authorize(bearer(token), "n1", "stream")
    assert (ident.namespace, ident.pod, ident.node) == (NS, "agent-a", "n1")
    assert ident.pod_uid == emu.store.get("pods", "agent-a", NS)["metadata"]["uid"]


def _expired(emu: Any) -> str:
    clock = [emu.tokens.clock()]
    emu.tokens.clock = lambda: clock[0]
    token = emu.issue_token(NS, "stockade-agent", "agent-a", ttl=600)
    clock[0] += 601
    return str(token)


def _deleted(emu: Any) -> str:
    token = emu.issue_token(NS, "stockade-agent", "agent-a")
    emu.store.delete("pods", "agent-a", NS)
    return str(token)


def _other_sa(emu: Any) -> str:
    agent_pod(emu, "impostor", "n1", sa="default")  # agent labels, but the namespace's default ServiceAccount
    return str(emu.issue_token(NS, "default", "impostor"))


def _other_ns(emu: Any) -> str:
    agent_pod(emu, "agent-elsewhere", "n1", ns="tenant")  # a look-alike DaemonSet in another namespace
    return str(emu.issue_token("tenant", "stockade-agent", "agent-elsewhere"))


def _unlabelled(emu: Any) -> str:
    agent_pod(emu, "debug-pod", "n1", labels={"app": "debug"})  # runs as the agent's SA, is not the agent
    return str(emu.issue_token(NS, "stockade-agent", "debug-pod"))


def _unbound(emu: Any) -> str:
    return str(emu.issue_token(NS, "stockade-agent", None))  # kubectl create token without --bound-object


CASES = [
    pytest.param(lambda emu: emu.issue_token(NS, "stockade-agent", "agent-a"), "n2", Reason.WRONG_NODE,
                 "claims node 'n2'", id="wrong-node"),
    pytest.param(_other_sa, "n1", Reason.WRONG_SERVICE_ACCOUNT, f"{NS}/default", id="wrong-service-account"),
    pytest.param(_other_ns, "n1", Reason.WRONG_NAMESPACE, "tenant/stockade-agent", id="wrong-namespace"),
    pytest.param(_deleted, "n1", Reason.UNAUTHENTICATED, "not found", id="deleted-pod"),
    pytest.param(_expired, "n1", Reason.UNAUTHENTICATED, "expired", id="expired-token"),
    pytest.param(lambda emu: emu.issue_token(NS, "stockade-agent", "agent-a", audiences=["vault"]), "n1",
                 Reason.UNAUTHENTICATED, "invalid for the target audiences", id="wrong-audience"),
    pytest.param(_unlabelled, "n1", Reason.NOT_AGENT_POD, "not a Stockade agent", id="not-an-agent-pod"),
    pytest.param(_unbound, "n1", Reason.NOT_POD_BOUND, "not bound to a pod", id="not-pod-bound"),
    pytest.param(lambda emu: "forged.token.value", "n1", Reason.UNAUTHENTICATED, "invalid bearer token",
                 id="forged"),
]


@pytest.mark.parametrize(("make", "node", "reason", "message"), CASES)
async def test_refused_and_counted(emu: Any, auth: AgentAuthenticator, make: Any, node: str, reason: Reason,
                                   message: str) -> None:
    agent_pod(emu, "agent-a", "n1")
    token = make(emu)
    before = rejected(reason.value)
    with pytest.raises(Rejection) as e:
        await auth.authorize(bearer(token), node, "stream", peer="ipv4:10.0.0.9:5555")
    assert e.value.reason is reason, e.value.message
    assert message in e.value.message
    assert rejected(reason.value) == before + 1


@pytest.mark.parametrize(("metadata", "reason"), [
    pytest.param([("user-agent", "x")], Reason.NO_TOKEN, id="no-token"),
    pytest.param([("authorization", "Bearer garbage")], Reason.UNAUTHENTICATED, id="not-a-jwt"),
])
async def test_junk_is_refused_without_asking_the_api(emu: Any, auth: AgentAuthenticator,
                                                      metadata: list[tuple[str, str]], reason: Reason) -> None:
    reviews = emu.tokens.reviews
    with pytest.raises(Rejection) as e:
        await auth.authorize(metadata, "n1", "debug")
    assert e.value.reason is reason and emu.tokens.reviews == reviews


async def test_successes_are_cached_by_token(emu: Any, auth: AgentAuthenticator) -> None:
    agent_pod(emu, "agent-a", "n1")
    token = emu.issue_token(NS, "stockade-agent", "agent-a")
    for _ in range(5):  # a reconnect storm
        await auth.authorize(bearer(token), "n1", "stream")
    assert emu.tokens.reviews == 1 and auth.cache.hits == 4
    # the cache still checks the node
    with pytest.raises(Rejection) as e:
        await auth.authorize(bearer(token), "n2", "stream")
    assert e.value.reason is Reason.WRONG_NODE and emu.tokens.reviews == 1
    # a refused token is asked about again every time
    for _ in range(2):
        with pytest.raises(Rejection):
            await auth.authorize(bearer("junk.junk.junk"), "n1", "stream")
    assert emu.tokens.reviews == 3


async def test_api_server_down_is_unavailable_not_unauthenticated(emu: Any, auth: AgentAuthenticator) -> None:
    agent_pod(emu, "agent-a", "n1")
    token = emu.issue_token(NS, "stockade-agent", "agent-a")
    emu.faults.fail_next(1, 503, "/apis/authentication.k8s.io")
    with pytest.raises(Rejection) as e:
        await auth.authorize(bearer(token), "n1", "stream")
    assert e.value.reason is Reason.REVIEW_FAILED and "HTTP 503" in e.value.message
    assert (await auth.authorize(bearer(token), "n1", "stream")).node == "n1"  # and then it works


async def test_rejections_are_logged_at_most_once_per_reason_per_10s(api: Any, caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    auth = AgentAuthenticator(api, Expectation(NS), clock=lambda: now[0])
    caplog.set_level("WARNING", logger="stockade.controller.auth")
    for _ in range(3):
        with pytest.raises(Rejection):
            await auth.authorize([], "n1", "stream", peer="ipv4:10.1.2.3:4")
    now[0] += 10.0
    with pytest.raises(Rejection):
        await auth.authorize([], "n1", "stream", peer="ipv4:10.1.2.3:4")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("rejected stream from ipv4:10.1.2.3:4 claiming node 'n1': no_token:")
    assert "(2 more like it suppressed)" in lines[1]
