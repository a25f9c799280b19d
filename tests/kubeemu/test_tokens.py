"""TokenReview and pod-bound tokens: the real kubernetes-asyncio client against the emulator.

What the controller's agent check relies on: an authenticated review
carries the ServiceAccount as the username, its uid, the three groups, and
``extra`` with the pod's name and uid and the node's name; anything else
(unknown, badly signed, expired, other audience, pod deleted or recreated)
is unauthenticated with an error, as on the real server."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from stockade.kubeemu import ApiError, KubeEmulator
from tests.kubeemu.conftest import pod

pytestmark = pytest.mark.timeout(20)

NS = "stockade-system"
EXTRA = "authentication.kubernetes.io/"


def setup_agent(emu: KubeEmulator, name: str = "agent-1", node: str = "n1", sa: str = "stockade-agent") -> None:
    if not any(o["metadata"]["name"] == NS for o in emu.store.list("namespaces", None)[0]):
        emu.store.create("namespaces", {"metadata": {"name": NS}})
    try:
        emu.store.get("serviceaccounts", sa, NS)
    except ApiError:
        emu.store.create("serviceaccounts", {"metadata": {"name": sa}}, NS)
    p = pod(name, NS, {"app.kubernetes.io/name": "stockade-agent"}, node=node)
    p["spec"]["serviceAccountName"] = sa
    emu.store.create("pods", p, NS)


async def review(api: Any, token: str, audiences: list[str] | None = None) -> Any:
    body = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token, audiences=audiences))
    return await client.AuthenticationV1Api(api).create_token_review(body)


async def test_bound_token_reviews_like_the_real_server(emu: KubeEmulator, api: Any) -> None:
    setup_agent(emu)
    token = emu.issue_token(NS, "stockade-agent", "agent-1", ["stockade"], 3600)
    assert token.count(".") == 2  # a JWT, as the real server's
    r = await review(api, token, ["stockade"])
    st = r.status
    assert st.authenticated is True and st.error is None
    assert st.audiences == ["stockade"]
    u = st.user
    assert u.username == f"system:serviceaccount:{NS}:stockade-agent"
    assert u.uid == emu.store.get("serviceaccounts", "stockade-agent", NS)["metadata"]["uid"]
    assert u.groups == ["system:serviceaccounts", f"system:serviceaccounts:{NS}", "system:authenticated"]
    p = emu.store.get("pods", "agent-1", NS)
    assert u.extra[EXTRA + "pod-name"] == ["agent-1"]
    assert u.extra[EXTRA + "pod-uid"] == [p["metadata"]["uid"]]
    assert u.extra[EXTRA + "node-name"] == ["n1"]
    assert u.extra[EXTRA + "credential-id"][0].startswith("JTI=")
    assert r.spec.token == token  # echoed, as the real server does
    assert emu.tokens.reviews == 1


def _expired(emu: KubeEmulator) -> str:
    now = [1_000_000.0]
    emu.tokens.clock = lambda: now[0]
    token = emu.issue_token(NS, "stockade-agent", "agent-1", ["stockade"], 600)
    now[0] += 601
    return token


def _pod_deleted(emu: KubeEmulator) -> str:
    token = emu.issue_token(NS, "stockade-agent", "agent-1", ["stockade"], 3600)
    emu.store.delete("pods", "agent-1", NS)
    return token


def _pod_recreated(emu: KubeEmulator) -> str:
    token = _pod_deleted(emu)
    setup_agent(emu)  # same name, new uid
    return token


def _sa_recreated(emu: KubeEmulator) -> str:
    token = emu.issue_token(NS, "stockade-agent", "agent-1", ["stockade"], 3600)
    emu.store.delete("serviceaccounts", "stockade-agent", NS)
    emu.store.create("serviceaccounts", {"metadata": {"name": "stockade-agent"}}, NS)
    return token


def _forged(emu: KubeEmulator) -> str:
    head, claims, sig = emu.issue_token(NS, "stockade-agent", "agent-1", ["stockade"], 3600).split(".")
    return f"{head}.{claims}.{'A' * len(sig)}"


def _other_emulator(emu: KubeEmulator) -> str:
    from stockade.kubeemu.tokens import TokenAuthority

    token, _ = TokenAuthority(emu.store).issue(NS, "stockade-agent", "agent-1", ["stockade"], 3600)
    return token


@pytest.mark.parametrize(("make", "error"), [
    pytest.param(lambda emu: "not-a-token", "token is not a JWT", id="garbage"),
    pytest.param(_forged, "cryptographic", id="bad-signature"),
    pytest.param(_other_emulator, "cryptographic", id="other-signing-key"),
    pytest.param(_expired, "expired", id="expired"),
    pytest.param(lambda emu: emu.issue_token(NS, "stockade-agent", "agent-1", ["other"], 3600),
                 'token audiences ["other"] is invalid for the target audiences ["stockade"]', id="wrong-audience"),
    pytest.param(lambda emu: emu.issue_token(NS, "stockade-agent", "agent-1", ["https://kubernetes.default.svc.cluster.local"]),
                 "invalid for the target audiences", id="api-audience"),
    pytest.param(_pod_deleted, 'pods "agent-1" not found', id="pod-deleted"),
    pytest.param(_pod_recreated, "does not match claim", id="pod-recreated"),
    pytest.param(_sa_recreated, "does not match claim", id="serviceaccount-recreated"),
])
async def test_rejected_tokens_are_unauthenticated(emu: KubeEmulator, api: Any, make: Any, error: str) -> None:
    setup_agent(emu)
    token = make(emu)
    r = await review(api, token, ["stockade"])
    assert not r.status.authenticated
    assert error in r.status.error
    assert r.status.user.username is None


async def test_review_without_audiences_means_the_api_audience(emu: KubeEmulator, api: Any) -> None:
    setup_agent(emu)
    api_token = emu.issue_token(NS, "stockade-agent", None, ["https://kubernetes.default.svc.cluster.local"])
    r = await review(api, api_token)
    assert r.status.authenticated and r.status.audiences == ["https://kubernetes.default.svc.cluster.local"]
    assert EXTRA + "pod-name" not in (r.status.user.extra or {})  # not bound to a pod
    r = await review(api, emu.issue_token(NS, "stockade-agent", "agent-1", ["stockade"]))
    assert not r.status.authenticated


@pytest.mark.parametrize(("args", "message"), [
    pytest.param((NS, "nobody", None), 'serviceaccounts "nobody" not found', id="unknown-sa"),
    pytest.param((NS, "stockade-agent", "ghost"), 'pods "ghost" not found', id="unknown-pod"),
    pytest.param((NS, "default", "agent-1"), 'service account "stockade-agent" does not match', id="pod-runs-as-other-sa"),
])
async def test_issue_refuses_what_token_request_refuses(emu: KubeEmulator, args: tuple[Any, ...], message: str) -> None:
    setup_agent(emu)
    emu.store.create("serviceaccounts", {"metadata": {"name": "default"}}, NS)
    with pytest.raises(ApiError) as e:
        emu.issue_token(*args)
    assert message in e.value.message


async def test_tokenreview_is_create_only_and_discovered(emu: KubeEmulator, api: Any) -> None:
    groups = await client.ApisApi(api).get_api_versions()
    assert "authentication.k8s.io" in [g.name for g in groups.groups]
    res = await client.AuthenticationV1Api(api).get_api_resources()
    assert [(r.name, r.verbs, r.namespaced) for r in res.resources] == [("tokenreviews", ["create"], False)]
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{emu.url}/apis/authentication.k8s.io/v1/tokenreviews") as r:
            assert r.status == 405
    with pytest.raises(ApiException) as e:
        await review(api, "")
    assert e.value.status == 422
    # nothing was stored
    assert emu.store.registry.lookup("authentication.k8s.io", "v1", "tokenreviews") is not None


async def test_admin_endpoint_mints_tokens(emu: KubeEmulator, api: Any) -> None:
    setup_agent(emu, node="n7")
    async with aiohttp.ClientSession() as s:
        body = {"namespace": NS, "serviceAccount": "stockade-agent", "pod": "agent-1", "ttlSeconds": 3600}
        async with s.post(f"{emu.url}/_emulator/tokens", json=body) as r:
            assert r.status == 201
            out = await r.json()
        async with s.post(f"{emu.url}/_emulator/tokens", json={**body, "pod": "ghost"}) as r:
            assert r.status == 404
        async with s.post(f"{emu.url}/_emulator/tokens", json={**body, "ttlSeconds": 5}) as r:
            assert r.status == 400
    assert out["expirationTimestamp"].endswith("Z")
    st = (await review(api, out["token"], ["stockade"])).status
    assert st.authenticated and st.user.extra[EXTRA + "node-name"] == ["n7"]
