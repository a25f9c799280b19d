"""Discovery and OpenAPI documents, and odd requests that must not break."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from stockade.kubeemu import KubeEmulator

pytestmark = pytest.mark.timeout(20)

AGGREGATED = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
              "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")


async def get(emu: KubeEmulator, path: str, **headers: str) -> tuple[int, str, Any]:
    async with aiohttp.ClientSession() as http, http.get(emu.url + path, headers=headers) as r:
        text = await r.text()
        return r.status, r.content_type, json.loads(text) if r.content_type == "application/json" else text


async def test_legacy_discovery_answers_aggregated_requests(emu: KubeEmulator) -> None:
    status, content_type, body = await get(emu, "/apis", Accept=AGGREGATED)
    assert (status, content_type, body["kind"]) == (200, "application/json", "APIGroupList")
    groups = {g["name"]: g["preferredVersion"]["groupVersion"] for g in body["groups"]}
    assert groups["networking.k8s.io"] == "networking.k8s.io/v1" and groups["apps"] == "apps/v1"
    _, _, api = await get(emu, "/api", Accept=AGGREGATED)
    assert api["kind"] == "APIVersions" and api["versions"] == ["v1"]
    _, _, core = await get(emu, "/api/v1")
    by_name = {r["name"]: r for r in core["resources"]}
    assert by_name["pods"]["namespaced"] and not by_name["nodes"]["namespaced"]
    assert "watch" in by_name["namespaces"]["verbs"] and by_name["pods/status"]["verbs"] == ["get", "patch", "update"]
    _, _, group = await get(emu, "/apis/networking.k8s.io")
    assert group["kind"] == "APIGroup" and group["versions"] == [{"groupVersion": "networking.k8s.io/v1",
                                                                  "version": "v1"}]
    _, _, version = await get(emu, "/version")
    assert version["major"] == "1" and version["gitVersion"].startswith("v1.")


async def test_openapi_v3_has_the_field_validation_parameter(emu: KubeEmulator) -> None:
    _, _, root = await get(emu, "/openapi/v3")
    url = root["paths"]["apis/networking.k8s.io/v1"]["serverRelativeURL"]
    _, _, doc = await get(emu, url)
    op = doc["paths"]["/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies/{name}"]["patch"]
    assert op["x-kubernetes-group-version-kind"] == {"group": "networking.k8s.io", "version": "v1",
                                                     "kind": "NetworkPolicy"}
    assert "fieldValidation" in [p["name"] for p in op["parameters"]]
    status, _, _ = await get(emu, "/openapi/v2")
    assert status == 404


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param("/apis/nope.io/v1", 404, id="unknown-group-version"),
        pytest.param("/apis/nope.io", 404, id="unknown-group"),
        pytest.param("/api/v1/widgets", 404, id="unknown-resource"),
        pytest.param("/api/v1/namespaces/default/nodes", 404, id="cluster-kind-under-namespace"),
        pytest.param("/api/v1/namespaces/default/pods/x/log", 404, id="unknown-subresource"),
        pytest.param("/somewhere", 404, id="unknown-path"),
        pytest.param("/healthz", 200, id="healthz"),
        pytest.param("/api/v1/pods?limit=1&continue=", 200, id="limit-ignored"),
        pytest.param("/api/v1/pods?resourceVersionMatch=Exact", 400, id="match-without-version"),
        pytest.param("/api/v1/pods?resourceVersion=0&resourceVersionMatch=Exact", 400, id="exact-zero"),
        pytest.param("/api/v1/pods?resourceVersion=1&resourceVersionMatch=Sometimes", 400, id="bad-match"),
        pytest.param("/api/v1/pods?watch=1&timeoutSeconds=soon", 400, id="bad-timeout"),
    ],
)
async def test_odd_requests(emu: KubeEmulator, path: str, status: int) -> None:
    got, _, body = await get(emu, path)
    assert got == status
    if status != 200:
        assert body["kind"] == "Status" and body["code"] == status


async def test_server_side_apply_is_refused_clearly(emu: KubeEmulator) -> None:
    emu.store.create("configmaps", {"metadata": {"name": "c"}}, "default")
    async with aiohttp.ClientSession() as http, http.patch(
        f"{emu.url}/api/v1/namespaces/default/configmaps/c", data=b"data: {a: b}",
        headers={"Content-Type": "application/apply-patch+yaml"},
    ) as r:
        body = await r.json()
    assert r.status == 415 and body["reason"] == "UnsupportedMediaType"
    assert "application/strategic-merge-patch+json" in body["message"]
