"""controller.node_binding: the pure rules of "this client is the agent of node N"."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from controller.node_binding import (
    AgentIdentity,
    Expectation,
    PodRef,
    Reason,
    Rejection,
    ReviewCache,
    agent_identity,
    bearer_token,
    check_node,
    pod_ref,
    review_body,
    status_code_name,
    token_key,
)

NS = "stockade-system"
EXPECT = Expectation(NS)
EX = "authentication.kubernetes.io/"


def review(**over: Any) -> dict[str, Any]:
    """An authenticated TokenReview as the real API server answers it for a projected agent token."""
    r: dict[str, Any] = {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1", "status": {
        "authenticated": True,
        "user": {"username": f"system:serviceaccount:{NS}:stockade-agent", "uid": "sa-uid",
                 "groups": ["system:serviceaccounts", f"system:serviceaccounts:{NS}", "system:authenticated"],
                 "extra": {EX + "pod-name": ["agent-x"], EX + "pod-uid": ["pod-uid"], EX + "node-name": ["n1"],
                           EX + "credential-id": ["JTI=1"]}},
        "audiences": ["stockade"]}}
    r["status"].update(over)
    return r


def pod(**over: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"metadata": {"name": "agent-x", "namespace": NS, "uid": "pod-uid",
                                      "labels": {"app.kubernetes.io/name": "stockade-agent"}},
                         "spec": {"nodeName": "n1", "serviceAccountName": "stockade-agent"}}
    for path, value in over.items():
        section, key = path.split("__")
        if value is None:
            p[section].pop(key, None)
        else:
            p[section][key] = value
    return p


def test_the_right_pod_on_the_right_node_passes() -> None:
    ref = pod_ref(review(), EXPECT)
    assert ref == PodRef(NS, "agent-x", "pod-uid", "n1")
    ident = agent_identity(ref, pod(), EXPECT)
    assert ident == AgentIdentity(NS, "agent-x", "pod-uid", "n1")
    check_node(ident, "n1")
    # without the node hint (API servers before 1.30) the pod alone decides
    ref2 = pod_ref(review(user={**review()["status"]["user"], "extra": {EX + "pod-name": ["agent-x"],
                                                                        EX + "pod-uid": ["pod-uid"]}}), EXPECT)
    assert agent_identity(ref2, pod(), EXPECT).node == "n1"


def _user(**over: Any) -> dict[str, Any]:
    u = copy.deepcopy(review()["status"]["user"])
    u.update(over)
    return u


REVIEW_CASES = [
    pytest.param({"authenticated": False, "error": "[invalid bearer token, service account token has expired]",
                  "user": {}}, Reason.UNAUTHENTICATED, "has expired", id="expired"),
    pytest.param({"authenticated": None, "error": "[invalid bearer token, token audiences [\"x\"] is invalid]",
                  "user": {}}, Reason.UNAUTHENTICATED, "audiences", id="wrong-audience-per-server"),
    pytest.param({"audiences": ["https://kubernetes.default.svc"]}, Reason.WRONG_AUDIENCE, "stockade",
                 id="wrong-audience-not-echoed"),
    pytest.param({"audiences": None}, Reason.WRONG_AUDIENCE, "stockade", id="no-audiences"),
    pytest.param({"user": _user(username="alice")}, Reason.NOT_SERVICE_ACCOUNT, "alice", id="a-user"),
    pytest.param({"user": _user(username="system:serviceaccount:other:stockade-agent")}, Reason.WRONG_NAMESPACE,
                 "other/stockade-agent", id="wrong-namespace"),
    pytest.param({"user": _user(username=f"system:serviceaccount:{NS}:default")}, Reason.WRONG_SERVICE_ACCOUNT,
                 f"{NS}/default", id="wrong-service-account"),
    pytest.param({"user": _user(extra={})}, Reason.NOT_POD_BOUND, "not bound to a pod", id="not-pod-bound"),
    pytest.param({"user": _user(extra={EX + "pod-name": ["a", "b"], EX + "pod-uid": ["u"]})}, Reason.NOT_POD_BOUND,
                 "not bound", id="two-pod-names"),
]


@pytest.mark.parametrize(("status", "reason", "message"), REVIEW_CASES)
def test_review_rejections(status: dict[str, Any], reason: Reason, message: str) -> None:
    with pytest.raises(Rejection) as e:
        pod_ref(review(**status), EXPECT)
    assert e.value.reason is reason and message in e.value.message


POD_CASES = [
    pytest.param(None, Reason.POD_GONE, "does not exist", id="pod-deleted"),
    pytest.param(pod(metadata__uid="other-uid"), Reason.POD_GONE, "recreated", id="pod-recreated"),
    pytest.param(pod(metadata__deletionTimestamp="2026-01-01T00:00:00Z"), Reason.POD_GONE, "being deleted",
                 id="pod-terminating"),
    pytest.param(pod(metadata__labels={"app": "evil"}), Reason.NOT_AGENT_POD, "app.kubernetes.io/name=stockade-agent",
                 id="not-an-agent-pod"),
    pytest.param(pod(spec__serviceAccountName="default"), Reason.NOT_AGENT_POD, "runs as ServiceAccount default",
                 id="pod-runs-as-other-sa"),
    pytest.param(pod(spec__nodeName=None), Reason.NOT_SCHEDULED, "not scheduled", id="unscheduled"),
    pytest.param(pod(spec__nodeName="n2"), Reason.WRONG_NODE, "token names node n1", id="node-hint-disagrees"),
]


@pytest.mark.parametrize(("p", "reason", "message"), POD_CASES)
def test_pod_rejections(p: dict[str, Any] | None, reason: Reason, message: str) -> None:
    with pytest.raises(Rejection) as e:
        agent_identity(PodRef(NS, "agent-x", "pod-uid", "n1"), p, EXPECT)
    assert e.value.reason is reason and message in e.value.message


def test_claiming_another_node_is_refused() -> None:
    ident = agent_identity(pod_ref(review(), EXPECT), pod(), EXPECT)
    with pytest.raises(Rejection) as e:
        check_node(ident, "n2")
    assert e.value.reason is Reason.WRONG_NODE
    assert "claims node 'n2'" in e.value.message and "on node n1" in e.value.message


@pytest.mark.parametrize(("metadata", "want"), [
    pytest.param([("authorization", "Bearer abc.def.ghi")], "abc.def.ghi", id="bearer"),
    pytest.param([("Authorization", "bearer  a.b.c ")], "a.b.c", id="case-and-spaces"),
    pytest.param([("x", "y"), ("authorization", b"Bearer t.u.v")], "t.u.v", id="bytes"),
])
def test_bearer_token(metadata: list[tuple[str, Any]], want: str) -> None:
    assert bearer_token(metadata) == want


@pytest.mark.parametrize(("metadata", "reason"), [
    pytest.param(None, Reason.NO_TOKEN, id="none"),
    pytest.param([("user-agent", "grpcurl")], Reason.NO_TOKEN, id="other-metadata"),
    pytest.param([("authorization", "Basic dXNlcg==")], Reason.BAD_HEADER, id="basic"),
    pytest.param([("authorization", "Bearer ")], Reason.BAD_HEADER, id="empty"),
    pytest.param([("authorization", "Bearer not-a-jwt")], Reason.UNAUTHENTICATED, id="not-a-jwt"),
    pytest.param([("authorization", "Bearer a.b." + "c" * 20000)], Reason.UNAUTHENTICATED, id="huge"),
])
def test_bearer_token_missing(metadata: Any, reason: Reason) -> None:
    with pytest.raises(Rejection) as e:
        bearer_token(metadata)
    assert e.value.reason is reason


@pytest.mark.parametrize(("reason", "code"), [
    (Reason.NO_TOKEN, "UNAUTHENTICATED"), (Reason.UNAUTHENTICATED, "UNAUTHENTICATED"),
    (Reason.WRONG_AUDIENCE, "UNAUTHENTICATED"), (Reason.WRONG_NODE, "PERMISSION_DENIED"),
    (Reason.WRONG_SERVICE_ACCOUNT, "PERMISSION_DENIED"), (Reason.POD_GONE, "PERMISSION_DENIED"),
    (Reason.REVIEW_FAILED, "UNAVAILABLE"),
])
def test_status_codes(reason: Reason, code: str) -> None:
    assert status_code_name(reason) == code


def test_review_body_asks_for_our_audience() -> None:
    assert review_body("t", EXPECT) == {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                        "spec": {"token": "t", "audiences": ["stockade"]}}
    assert token_key("t") != "t" and len(token_key("t")) == 64


def test_cache_expires_bounds_and_refreshes() -> None:
    now = [0.0]
    clock: Callable[[], float] = lambda: now[0]  # noqa: E731
    c = ReviewCache(ttl=10.0, size=2, clock=clock)
    a, b, d = (AgentIdentity(NS, p, "u", "n") for p in ("a", "b", "d"))
    c.put("ka", a)
    c.put("kb", b)
    assert c.get("ka") == a  # a is now the most recent
    c.put("kd", d)  # evicts b, the least recently used
    assert c.get("kb") is None and c.get("ka") == a and c.get("kd") == d and len(c) == 2
    now[0] = 10.0
    assert c.get("ka") is None and len(c) == 1  # expired entries go on read
    assert (c.hits, c.misses) == (3, 2)
    off = ReviewCache(ttl=0, size=5, clock=clock)
    off.put("k", a)
    assert off.get("k") is None
