"""The emulator through the real kubernetes-asyncio client: list, watch, CRUD, errors."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from stockade.kubeemu import KubeEmulator
from tests.kubeemu.conftest import BOOKMARK_INTERVAL, netpol, pod

pytestmark = pytest.mark.timeout(20)


async def collect(stream: Any, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The next ``count`` events of a Watch stream."""
    events: list[dict[str, Any]] = []

    async def run() -> None:
        async for event in stream:
            events.append(event)
            if len(events) == count:
                return

    await asyncio.wait_for(run(), timeout)
    return events


async def test_list_carries_global_resource_version(emu: KubeEmulator, api: Any) -> None:
    core = client.CoreV1Api(api)
    emu.store.create("pods", pod("a"), "default")
    emu.store.create("pods", pod("b", "kube-system"), "kube-system")
    listed = await core.list_pod_for_all_namespaces()
    assert [(p.metadata.namespace, p.metadata.name) for p in listed.items] == [("default", "a"), ("kube-system", "b")]
    assert listed.metadata.resource_version == str(emu.store.resource_version)
    assert listed.items[0].status.pod_ips[0].ip == "10.0.0.1"
    assert listed.items[1].metadata.resource_version == str(emu.store.resource_version)
    assert [p.metadata.name for p in (await core.list_namespaced_pod("kube-system")).items] == ["b"]


async def test_watch_from_list_version_sees_only_later_changes(emu: KubeEmulator, api: Any) -> None:
    core = client.CoreV1Api(api)
    emu.store.create("pods", pod("before"), "default")
    rv = (await core.list_namespaced_pod("default")).metadata.resource_version
    emu.store.create("pods", pod("after"), "default")
    emu.store.patch("pods", "after", lambda p: {**p, "metadata": {**p["metadata"], "labels": {"x": "1"}}}, "default")
    emu.store.delete("pods", "before", "default")
    async with watch.Watch() as w:
        events = await collect(w.stream(core.list_namespaced_pod, "default", resource_version=rv, timeout_seconds=5), 3)
    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "before")]
    assert events[1]["object"].metadata.labels == {"x": "1"}
    assert events[2]["raw_object"]["metadata"]["resourceVersion"] == str(emu.store.resource_version)
    assert events[0]["raw_object"]["kind"] == "Pod" and events[0]["raw_object"]["apiVersion"] == "v1"


async def test_watch_without_version_starts_with_synthetic_added(emu: KubeEmulator, api: Any) -> None:
    net = client.NetworkingV1Api(api)
    emu.store.create("networkpolicies", netpol("p1"), "default")
    async with watch.Watch() as w:
        stream = w.stream(net.list_network_policy_for_all_namespaces, timeout_seconds=5)
        first = await collect(stream, 1)
        emu.store.create("networkpolicies", netpol("p2"), "default")
        second = await collect(stream, 1)
    assert [(e["type"], e["object"].metadata.name) for e in first + second] == [("ADDED", "p1"), ("ADDED", "p2")]


async def test_bookmarks_carry_only_the_resource_version(emu: KubeEmulator, api: Any) -> None:
    core = client.CoreV1Api(api)
    rv = (await core.list_node()).metadata.resource_version
    emu.store.create("nodes", {"metadata": {"name": "n1"}})
    async with watch.Watch() as w:
        events = await collect(w.stream(core.list_node, resource_version=rv, allow_watch_bookmarks=True,
                                        timeout_seconds=5), 2, timeout=BOOKMARK_INTERVAL * 10)
        assert w.resource_version == str(emu.store.resource_version)
    assert events[0]["type"] == "ADDED"
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["raw_object"] == {"kind": "Node", "apiVersion": "v1",
                                       "metadata": {"resourceVersion": str(emu.store.resource_version)}}


async def test_no_bookmarks_unless_asked(emu: KubeEmulator, api: Any) -> None:
    core = client.CoreV1Api(api)
    async with watch.Watch() as w:
        stream = w.stream(core.list_node, resource_version=str(emu.store.resource_version), timeout_seconds=1)
        events = [e async for e in stream]
    assert events == []


async def test_timeout_seconds_ends_the_stream_cleanly(emu: KubeEmulator, api: Any) -> None:
    core = client.CoreV1Api(api)
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with watch.Watch() as w:
        events = [e async for e in w.stream(core.list_namespace, resource_version="1", timeout_seconds=1)]
    assert 0.9 <= loop.time() - start < 3
    assert {e["type"] for e in events} == {"ADDED"}  # the initial namespaces, replayed from the window


async def test_expired_version_gives_one_error_event_with_410(emu: KubeEmulator) -> None:
    for i in range(60):  # history=50: the first writes fall out of the window
        emu.store.create("configmaps", {"metadata": {"name": f"c{i}"}}, "default")
    floor = emu.store.floor
    async with aiohttp.ClientSession() as http, http.get(
        f"{emu.url}/api/v1/namespaces/default/pods", params={"watch": "true", "resourceVersion": "3"}
    ) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
        lines = (await asyncio.wait_for(resp.read(), 5)).splitlines()
    assert [json.loads(line) for line in lines] == [{"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f"too old resource version: 3 ({floor})", "reason": "Expired", "code": 410}}]


async def test_kubernetes_asyncio_raises_410_for_expired_watch(emu: KubeEmulator, api: Any) -> None:
    core = client.CoreV1Api(api)
    emu.store.compact()
    for timeout in ({"timeout_seconds": 5}, {}):  # with and without the helper's retry-once
        async with watch.Watch() as w:
            with pytest.raises(ApiException) as info:
                await collect(w.stream(core.list_namespaced_pod, "default", resource_version="1", **timeout), 1)
        assert info.value.status == 410
        assert info.value.reason.startswith("Expired: too old resource version: 1 (")


async def test_exact_list_rebuilds_the_past_and_expires_beyond_the_window(emu: KubeEmulator, api: Any) -> None:
    core = client.CoreV1Api(api)
    emu.store.create("pods", pod("a"), "default")
    rv = str(emu.store.resource_version)
    emu.store.create("pods", pod("b"), "default")
    emu.store.delete("pods", "a", "default")
    past = await core.list_namespaced_pod("default", resource_version=rv, resource_version_match="Exact")
    assert [p.metadata.name for p in past.items] == ["a"] and past.metadata.resource_version == rv
    emu.store.compact()
    with pytest.raises(ApiException) as info:
        await core.list_namespaced_pod("default", resource_version=rv, resource_version_match="Exact")
    assert info.value.status == 410
    assert json.loads(info.value.body)["reason"] == "Expired"
    now = await core.list_namespaced_pod("default", resource_version=rv)  # NotOlderThan: the current state
    assert [p.metadata.name for p in now.items] == ["b"]


async def test_crud_round_trip(emu: KubeEmulator, api: Any) -> None:
    core = client.CoreV1Api(api)
    created = await core.create_namespace({"metadata": {"name": "team-a", "labels": {"tier": "x"}}})
    assert created.metadata.labels == {"tier": "x", "kubernetes.io/metadata.name": "team-a"}
    assert created.metadata.uid and created.metadata.creation_timestamp and created.status.phase == "Active"
    p = await core.create_namespaced_pod("team-a", pod("web", "team-a", {"app": "web"}))
    assert p.metadata.namespace == "team-a" and p.metadata.generation == 1 and p.status.pod_ip == "10.0.0.1"
    p.metadata.labels["app"] = "api"
    replaced = await core.replace_namespaced_pod("web", "team-a", p)
    assert replaced.metadata.labels == {"app": "api"} and replaced.metadata.generation == 1
    assert int(replaced.metadata.resource_version) > int(p.metadata.resource_version)
    patched = await core.patch_namespaced_pod("web", "team-a", {"metadata": {"labels": {"extra": "1"}}})
    assert patched.metadata.labels == {"app": "api", "extra": "1"}
    status = await core.patch_namespaced_pod_status("web", "team-a", {"status": {"podIP": "10.0.0.9"}})
    assert status.status.pod_ip == "10.0.0.9" and status.spec.node_name == "n1"
    net = client.NetworkingV1Api(api)
    await net.create_namespaced_network_policy("team-a", netpol("deny", "team-a"))
    gone = await net.delete_namespaced_network_policy("deny", "team-a")
    assert gone.status == "Success" and gone.details.name == "deny"
    deleted = await core.delete_namespaced_pod("web", "team-a")
    assert deleted.metadata.name == "web"
    with pytest.raises(ApiException) as info:
        await core.read_namespaced_pod("web", "team-a")
    assert info.value.status == 404


@pytest.mark.parametrize(
    ("call", "status", "reason", "message"),
    [
        pytest.param(lambda core: core.read_namespaced_pod("nope", "default"), 404, "NotFound",
                     'pods "nope" not found', id="get-missing"),
        pytest.param(lambda core: core.create_namespaced_pod("default", pod("dup")), 409, "AlreadyExists",
                     'pods "dup" already exists', id="create-existing"),
        pytest.param(lambda core: core.create_namespaced_pod("ghost", pod("p", "ghost")), 404, "NotFound",
                     'namespaces "ghost" not found', id="create-in-missing-namespace"),
        pytest.param(lambda core: core.replace_namespaced_pod(
            "dup", "default", {**pod("dup"), "metadata": {**pod("dup")["metadata"], "resourceVersion": "1"}}),
            409, "Conflict", 'Operation cannot be fulfilled on pods "dup": the object has been modified; '
                             "please apply your changes to the latest version and try again", id="stale-replace"),
        pytest.param(lambda core: core.delete_namespaced_pod("nope", "default"), 404, "NotFound",
                     'pods "nope" not found', id="delete-missing"),
        pytest.param(lambda core: core.list_namespaced_pod("default", label_selector="a in ()"), 400, "BadRequest",
                     None, id="bad-label-selector"),
        pytest.param(lambda core: core.list_namespaced_pod("default", resource_version="x"), 400, "BadRequest",
                     None, id="bad-resource-version"),
    ],
)
async def test_errors_are_status_bodies(emu: KubeEmulator, api: Any, call: Any, status: int, reason: str,
                                        message: str | None) -> None:
    emu.store.create("pods", pod("dup"), "default")
    emu.store.patch("pods", "dup", lambda p: {**p, "metadata": {**p["metadata"], "labels": {"v": "2"}}}, "default")
    with pytest.raises(ApiException) as info:
        await call(client.CoreV1Api(api))
    assert info.value.status == status
    body = json.loads(info.value.body)
    assert body["kind"] == "Status" and body["status"] == "Failure" and body["code"] == status
    assert body["reason"] == reason
    if message is not None:
        assert body["message"] == message


@pytest.mark.parametrize(
    ("body", "content_type", "fragment"),
    [
        pytest.param(b"{not json", "application/json", "json parse error", id="malformed-json"),
        pytest.param(b"[1]", "application/json", "must be a JSON object", id="not-an-object"),
        pytest.param(b'{"apiVersion":"apps/v1","kind":"Pod","metadata":{"name":"x"}}', "application/json",
                     "does not match the expected API version", id="wrong-api-version"),
        pytest.param(b'{"metadata":{}}', "application/json", "name or generateName is required", id="no-name"),
    ],
)
async def test_bad_bodies_are_rejected_with_a_status(emu: KubeEmulator, body: bytes, content_type: str,
                                                     fragment: str) -> None:
    async with aiohttp.ClientSession() as http, http.post(
        f"{emu.url}/api/v1/namespaces/default/pods", data=body, headers={"Content-Type": content_type}
    ) as resp:
        status = await resp.json()
    assert resp.status in (400, 422) and status["kind"] == "Status" and status["code"] == resp.status
    assert fragment in status["message"]


async def test_generate_name(api: Any) -> None:
    created = await client.CoreV1Api(api).create_namespaced_config_map(
        "default", {"metadata": {"generateName": "cfg-"}, "data": {"a": "b"}})
    assert created.metadata.name.startswith("cfg-") and len(created.metadata.name) == 9


async def test_selectors_on_list(emu: KubeEmulator, api: Any) -> None:
    core = client.CoreV1Api(api)
    emu.store.create("pods", pod("a", labels={"app": "web", "tier": "fe"}, node="n1"), "default")
    emu.store.create("pods", pod("b", labels={"app": "db"}, node="n2"), "default")
    emu.store.create("pods", pod("c", "kube-system", labels={"app": "web"}, node="n2"), "kube-system")

    async def names(**kw: Any) -> list[str]:
        return [p.metadata.name for p in (await core.list_pod_for_all_namespaces(**kw)).items]

    assert await names(label_selector="app=web") == ["a", "c"]
    assert await names(label_selector="app in (web,db),!tier") == ["b", "c"]
    assert await names(field_selector="spec.nodeName=n2") == ["b", "c"]
    assert await names(field_selector="metadata.namespace=default,metadata.name!=a") == ["b"]
    assert await names(label_selector="app=web", field_selector="spec.nodeName=n2") == ["c"]


async def test_watch_with_selector_sees_objects_enter_and_leave(emu: KubeEmulator, api: Any) -> None:
    core = client.CoreV1Api(api)
    emu.store.create("pods", pod("a", labels={"app": "web"}), "default")
    rv = str(emu.store.resource_version)

    def relabel(value: str) -> None:
        emu.store.patch("pods", "a", lambda p: {**p, "metadata": {**p["metadata"], "labels": {"app": value}}},
                        "default")

    relabel("db")
    relabel("web")
    emu.store.create("pods", pod("other", labels={"app": "db"}), "default")
    async with watch.Watch() as w:
        events = await collect(w.stream(core.list_namespaced_pod, "default", label_selector="app=web",
                                        resource_version=rv, timeout_seconds=5), 2)
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("DELETED", "a"), ("ADDED", "a")]


async def test_namespace_deletion_deletes_its_objects_with_events(emu: KubeEmulator, api: Any) -> None:
    core = client.CoreV1Api(api)
    await core.create_namespace({"metadata": {"name": "doomed"}})
    await core.create_namespaced_pod("doomed", pod("p", "doomed"))
    await client.NetworkingV1Api(api).create_namespaced_network_policy("doomed", netpol("np", "doomed"))
    rv = str(emu.store.resource_version)
    async with watch.Watch() as w:
        stream = w.stream(core.list_pod_for_all_namespaces, resource_version=rv, timeout_seconds=5)
        task = asyncio.create_task(collect(stream, 1))
        await asyncio.sleep(0.1)
        await core.delete_namespace("doomed")
        events = await task
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("DELETED", "p")]
    assert (await client.NetworkingV1Api(api).list_network_policy_for_all_namespaces()).items == []
    with pytest.raises(ApiException):
        await core.read_namespace("doomed")


async def test_generic_kinds_round_trip_and_appear_in_discovery(emu: KubeEmulator, api: Any) -> None:
    apps = client.AppsV1Api(api)
    body = {"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    created = await apps.create_namespaced_deployment("default", body)
    assert created.metadata.generation == 1
    patched = await apps.patch_namespaced_deployment("d", "default", {"spec": {"replicas": 3}})
    assert patched.spec.replicas == 3 and patched.metadata.generation == 2
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{emu.url}/apis/example.io/v1/namespaces/default/widgets",
                             json={"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"}}) as r:
            assert r.status == 201
        async with http.get(f"{emu.url}/apis/example.io/v1") as r:
            doc = await r.json()
    assert [(x["name"], x["kind"], x["namespaced"]) for x in doc["resources"]] == [("widgets", "Widget", True)]


async def test_status_subresource_is_the_only_way_to_change_status(emu: KubeEmulator, api: Any) -> None:
    core = client.CoreV1Api(api)
    emu.store.create("pods", pod("a", ip="10.0.0.5"), "default")
    main = await core.patch_namespaced_pod("a", "default", {"status": {"podIP": "10.9.9.9"}})
    assert main.status.pod_ip == "10.0.0.5"
    current = await core.read_namespaced_pod("a", "default")
    current.status.phase = "Succeeded"
    updated = await core.replace_namespaced_pod_status("a", "default", current)
    assert updated.status.phase == "Succeeded"


@pytest.mark.parametrize("rv", [pytest.param("0", id="zero"), pytest.param(None, id="absent")])
async def test_watch_from_zero_or_absent_replays_current_objects(emu: KubeEmulator, api: Any, rv: str | None) -> None:
    core = client.CoreV1Api(api)
    emu.store.create("pods", pod("a"), "default")
    emu.store.patch("pods", "a", lambda p: {**p, "metadata": {**p["metadata"], "labels": {"x": "1"}}}, "default")
    kw = {"resource_version": rv} if rv is not None else {}
    async with watch.Watch() as w:
        events = await collect(w.stream(core.list_namespaced_pod, "default", timeout_seconds=5, **kw), 1)
    assert events[0]["type"] == "ADDED" and events[0]["object"].metadata.labels == {"x": "1"}


async def test_invalid_network_policies_are_stored_as_given(emu: KubeEmulator) -> None:
    """No validation here: the controller must cope with whatever the API holds."""
    bad = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "bad"},
           "spec": {"podSelector": "everything", "policyTypes": ["Sideways"], "ingress": [{"from": [{}]}]}}
    async with aiohttp.ClientSession() as http, http.post(
            f"{emu.url}/apis/networking.k8s.io/v1/namespaces/default/networkpolicies", json=bad) as r:
        assert r.status == 201
    assert emu.store.get("networkpolicies", "bad", "default")["spec"] == bad["spec"]


async def test_resumed_watch_replays_only_its_own_kind(emu: KubeEmulator, api: Any) -> None:
    """The history window holds every kind's writes; a pod watch resumed from
    an old version must not replay namespace or policy events as pods."""
    core = client.CoreV1Api(api)
    rv = (await core.list_pod_for_all_namespaces()).metadata.resource_version
    emu.store.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    emu.store.create("netpol", netpol("deny"), "default")
    emu.store.create("pods", pod("after"), "default")
    async with watch.Watch() as w:
        events = await collect(w.stream(core.list_pod_for_all_namespaces, resource_version=rv, timeout_seconds=5), 1)
    assert [(e["type"], e["raw_object"]["kind"], e["raw_object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "Pod", "after")]
