"""Faults: the pure decision table, then each fault seen by real clients.

The client-side tests also pin down how kubernetes-asyncio's ``Watch``
helper reacts to each failure, which the controller's watch loop relies on.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from stockade.kubeemu import Faults, KubeEmulator
from tests.kubeemu.conftest import pod

pytestmark = pytest.mark.timeout(20)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("arm", "paths", "actions"),
    [
        pytest.param(lambda f: None, ["/api/v1/pods"], ["serve"], id="nothing-armed"),
        pytest.param(lambda f: f.fail_next(2), ["/api", "/apis", "/api"], ["error", "error", "serve"], id="fail-2"),
        pytest.param(lambda f: f.fail_next(1, path_prefix="/apis/networking"),
                     ["/api/v1/pods", "/apis/networking.k8s.io/v1/networkpolicies", "/apis/networking.k8s.io/v1"],
                     ["serve", "error", "serve"], id="fail-by-prefix"),
        pytest.param(lambda f: f.bad_gateway_next(1), ["/api/v1/pods", "/api/v1/pods"], ["bad_gateway", "serve"],
                     id="bad-gateway-1"),
        pytest.param(lambda f: f.stall(5), ["/api/v1/pods", "/_emulator/faults"], ["stall", "serve"],
                     id="stall-spares-admin"),
        pytest.param(lambda f: (f.fail_next(3), f.clear()), ["/api"], ["serve"], id="clear"),
    ],
)
def test_decisions(arm: Any, paths: list[str], actions: list[str]) -> None:
    faults = Faults(clock=Clock())
    arm(faults)
    assert [faults.decide(p).action for p in paths] == actions


def test_stall_window_ends_and_error_codes_have_reasons() -> None:
    clock = Clock()
    faults = Faults(clock=clock)
    faults.stall(2)
    assert faults.decide("/api").stall_seconds == 2
    clock.now += 2.5
    assert faults.decide("/api").action == "serve"
    faults.fail_next(1, code=503)
    error = faults.decide("/api").error
    assert error is not None and error.status()["reason"] == "ServiceUnavailable" and error.code == 503
    with pytest.raises(ValueError):
        faults.fail_next(1, code=200)
    with pytest.raises(ValueError):
        faults.expire_next(-1)


async def test_cut_watches_aborts_streams(emu: KubeEmulator, api: Any) -> None:
    """Watch helper: an aborted stream raises aiohttp.ClientPayloadError (not retried by the helper)."""
    core = client.CoreV1Api(api)
    async with watch.Watch() as w:
        stream = w.stream(core.list_namespaced_pod, "default", resource_version=str(emu.store.resource_version))
        task = asyncio.create_task(stream.__anext__())
        await asyncio.sleep(0.1)
        emu.faults.cut_watches()
        with pytest.raises(aiohttp.ClientPayloadError):
            await asyncio.wait_for(task, 5)


async def test_clean_cut_is_resumed_by_the_helper_without_timeout(emu: KubeEmulator, api: Any) -> None:
    """Watch helper without timeout_seconds: a clean end reconnects from the last version, nothing lost."""
    core = client.CoreV1Api(api)
    emu.store.create("pods", pod("a"), "default")
    async with watch.Watch() as w:
        stream = w.stream(core.list_namespaced_pod, "default", resource_version=str(emu.store.resource_version - 1))
        first = await asyncio.wait_for(stream.__anext__(), 5)
        emu.faults.cut_watches(clean=True)
        await asyncio.sleep(0.1)
        emu.store.create("pods", pod("b"), "default")
        second = await asyncio.wait_for(stream.__anext__(), 5)
    assert (first["object"].metadata.name, second["object"].metadata.name) == ("a", "b")


async def test_clean_cut_ends_a_stream_with_timeout(emu: KubeEmulator, api: Any) -> None:
    core = client.CoreV1Api(api)
    async with watch.Watch() as w:
        stream = w.stream(core.list_namespace, resource_version=str(emu.store.resource_version), timeout_seconds=10)
        task = asyncio.create_task(stream.__anext__())
        await asyncio.sleep(0.1)
        emu.faults.cut_watches(clean=True)
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(task, 5)


async def test_expire_next_forces_410_on_lists_and_watches(emu: KubeEmulator, api: Any) -> None:
    core = client.CoreV1Api(api)
    emu.faults.expire_next(2)
    with pytest.raises(ApiException) as info:
        await core.list_namespaced_pod("default")
    assert info.value.status == 410 and json.loads(info.value.body)["reason"] == "Expired"
    async with watch.Watch() as w:
        with pytest.raises(ApiException) as info:
            await stream_one(w.stream(core.list_namespaced_pod, "default", resource_version="5", timeout_seconds=5))
    assert info.value.status == 410 and "too old resource version: 5" in info.value.reason
    assert (await core.list_namespaced_pod("default")).items == []


async def stream_one(stream: Any) -> Any:
    return await asyncio.wait_for(stream.__anext__(), 5)


async def test_delay(emu: KubeEmulator, api: Any) -> None:
    core = client.CoreV1Api(api)
    loop = asyncio.get_running_loop()
    emu.faults.delay(300)
    start = loop.time()
    await core.list_namespace()
    assert loop.time() - start >= 0.3
    emu.faults.delay(0)
    start = loop.time()
    await core.list_namespace()
    assert loop.time() - start < 0.3


async def test_fail_next_by_prefix(emu: KubeEmulator, api: Any) -> None:
    """Watch helper: a JSON Status error body raises ApiException with its code."""
    core = client.CoreV1Api(api)
    emu.faults.fail_next(2, code=500, path_prefix="/api/v1/namespaces/default/pods")
    await core.list_namespace()  # another path: served, counter untouched
    with pytest.raises(ApiException) as info:
        await core.list_namespaced_pod("default")
    assert info.value.status == 500
    assert json.loads(info.value.body) == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                           "message": "Internal error occurred: injected fault",
                                           "reason": "InternalError", "code": 500}
    async with watch.Watch() as w:
        with pytest.raises(ApiException) as info:
            await stream_one(w.stream(core.list_namespaced_pod, "default", timeout_seconds=5))
    assert info.value.status == 500 and info.value.reason == "InternalError: Internal error occurred: injected fault"
    assert (await core.list_namespaced_pod("default")).items == []


async def test_bad_gateway_html(emu: KubeEmulator, api: Any) -> None:
    """Watch helper: a non-JSON body is NOT an error; its lines come out as str events."""
    core = client.CoreV1Api(api)
    emu.faults.bad_gateway_next(2)
    with pytest.raises(ApiException) as info:
        await core.list_namespaced_pod("default")
    assert info.value.status == 502 and b"<h1>502 Bad Gateway</h1>" in info.value.body.encode()
    async with watch.Watch() as w:
        event = await stream_one(w.stream(core.list_namespaced_pod, "default", timeout_seconds=5))
    assert isinstance(event, str) and event.startswith("<html>")


async def test_stall_holds_requests_for_the_window(emu: KubeEmulator) -> None:
    emu.faults.stall(0.6)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(asyncio.TimeoutError):
            async with http.get(f"{emu.url}/api/v1/namespaces", timeout=aiohttp.ClientTimeout(total=0.2)):
                pass
        loop = asyncio.get_running_loop()
        start = loop.time()
        async with http.get(f"{emu.url}/api/v1/namespaces", timeout=aiohttp.ClientTimeout(total=5)) as r:
            assert r.status == 200  # arrived inside the window: answered only once it ended
        assert 0.2 <= loop.time() - start < 2
        async with http.get(f"{emu.url}/api/v1/namespaces", timeout=aiohttp.ClientTimeout(total=0.5)) as r:
            assert r.status == 200


@pytest.mark.parametrize(
    ("fault", "body", "expect_status", "fragment"),
    [
        pytest.param("error", {"count": 1, "code": 503}, 200, "", id="arm-error"),
        pytest.param("error", {"count": -1}, 400, "count", id="negative-count"),
        pytest.param("delay", {"ms": "slow"}, 400, "ms", id="bad-ms"),
        pytest.param("explode", {}, 404, "unknown fault", id="unknown-fault"),
        pytest.param("stall", [1], 400, "JSON object", id="not-an-object"),
    ],
)
async def test_admin_endpoints(emu: KubeEmulator, fault: str, body: Any, expect_status: int, fragment: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{emu.url}/_emulator/faults/{fault}", json=body) as r:
            answer = await r.json()
            assert r.status == expect_status
        if expect_status != 200:
            assert answer["kind"] == "Status" and fragment in answer["message"]
            return
        assert answer["errorCount"] == 1 and answer["errorCode"] == 503
        async with http.get(f"{emu.url}/api/v1/nodes") as r:
            assert r.status == 503 and (await r.json())["reason"] == "ServiceUnavailable"
        async with http.get(f"{emu.url}/_emulator/faults") as r:
            assert (await r.json())["errorCount"] == 0


async def test_admin_cut_expire_compact_and_bad_gateway(emu: KubeEmulator) -> None:
    async with aiohttp.ClientSession() as http:
        for fault, body in [("expire", {"count": 1}), ("bad-gateway", {"count": 1, "pathPrefix": "/api/v1/nodes"}),
                            ("compact", {}), ("cut-watches", {"clean": True}), ("delay", {"ms": 0})]:
            async with http.post(f"{emu.url}/_emulator/faults/{fault}", json=body) as r:
                assert r.status == 200, fault
        async with http.get(f"{emu.url}/api/v1/nodes") as r:
            assert r.status == 502 and r.content_type == "text/html"
        async with http.get(f"{emu.url}/api/v1/nodes") as r:
            assert r.status == 410
        assert emu.store.floor == emu.store.resource_version


async def test_events_and_cut_are_not_starved_by_due_bookmarks() -> None:
    """Regression: with a bookmark always due, queued events and cuts must still go out, in order."""
    async with KubeEmulator(bookmark_interval=0.001) as fast, aiohttp.ClientSession() as http:
        params = {"watch": "1", "allowWatchBookmarks": "true", "resourceVersion": str(fast.store.resource_version)}
        async with http.get(f"{fast.url}/api/v1/namespaces/default/pods", params=params) as resp:
            for i in range(20):
                fast.store.create("pods", pod(f"p{i}"), "default")
            added: list[str] = []
            while len(added) < 20:
                event = json.loads(await asyncio.wait_for(resp.content.readline(), 5))
                if event["type"] == "ADDED":
                    added.append(event["object"]["metadata"]["name"])
                else:
                    assert event["type"] == "BOOKMARK"
            assert added == [f"p{i}" for i in range(20)]
            fast.faults.cut_watches()
            with pytest.raises(aiohttp.ClientPayloadError):
                await asyncio.wait_for(resp.content.read(), 5)


async def test_bad_gateway_html_then_silent_reconnect_without_timeout(emu: KubeEmulator, api: Any) -> None:
    """Watch helper without timeout_seconds: the HTML lines come out as str events, then it reconnects."""
    core = client.CoreV1Api(api)
    emu.faults.bad_gateway_next(1, path_prefix="/api/v1/namespaces/default/pods")
    emu.store.create("pods", pod("a"), "default")
    seen: list[Any] = []
    async with watch.Watch() as w:
        stream = w.stream(core.list_namespaced_pod, "default", resource_version=str(emu.store.resource_version - 1))
        while not seen or isinstance(seen[-1], str):
            seen.append(await stream_one(stream))
    assert all(isinstance(e, str) for e in seen[:-1]) and "502 Bad Gateway" in "".join(seen[:-1])
    assert seen[-1]["type"] == "ADDED" and seen[-1]["object"].metadata.name == "a"
