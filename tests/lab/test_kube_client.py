"""The lab's KubeClient against the API emulator in-process (no root, no
network namespaces): the resourceVersion a deletion returns is the fence the
runner waits for the controller's watch of that kind to reach, so it must be
the deletion's own version, not a later one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from stockade.cases import ObjectOp
from stockade.kubeemu.emulator import KubeEmulator
from stockade.lab.pipeline import KubeClient, read_kubeconfig
from tests.controller.kube import namespace, pod, policy

pytestmark = pytest.mark.timeout(30)

Request = Callable[..., Awaitable[tuple[int, dict[str, Any]]]]


@pytest.fixture
async def emu() -> AsyncIterator[KubeEmulator]:
    async with KubeEmulator(host="127.0.0.1", port=0) as e:
        yield e


@pytest.fixture
async def client(emu: KubeEmulator, tmp_path: Path) -> AsyncIterator[KubeClient]:
    path = tmp_path / "kubeconfig"
    emu.write_kubeconfig(str(path))
    c = KubeClient(read_kubeconfig(str(path)), emu.url.split("://", 1)[1])
    yield c
    await c.close()


def deleted_rv(emu: KubeEmulator, plural: str, name: str) -> int:
    (ev,) = [e for e in emu.store.events_since(0) if e.type == "DELETED" and e.key[1] == plural and e.name == name]
    return ev.rv


def write_after_delete(client: KubeClient, then: Callable[[Request], Awaitable[Any]]) -> None:
    """Run ``then`` right after the DELETE is answered, before the client reads anything else."""
    real: Request = client.request

    async def request(method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        out = await real(method, path, body)
        if method == "DELETE":
            await then(real)
        return out

    client.request = request  # type: ignore[method-assign]


async def test_status_answered_delete_returns_the_deletions_own_version(emu: KubeEmulator,
                                                                         client: KubeClient) -> None:
    await client.put_object(ObjectOp("Namespace", "", "a", namespace("a")))
    await client.put_object(ObjectOp("NetworkPolicy", "a", "p", policy("a", "p", {"podSelector": {}})))

    async def other_kind(real: Request) -> None:  # moves the current version past the deletion's
        status, _ = await real("POST", "/api/v1/namespaces", namespace("later"))
        assert status == 201

    write_after_delete(client, other_kind)
    status, answer = await client.request("GET", "/apis/networking.k8s.io/v1/namespaces/a/networkpolicies/p")
    assert status == 200
    rv = await client.delete_object(ObjectOp("NetworkPolicy", "a", "p", None))
    assert rv == deleted_rv(emu, "networkpolicies", "p")
    assert rv is not None and rv < emu.store.resource_version  # not the fresh list's version
    assert rv > int(answer["metadata"]["resourceVersion"])


async def test_object_answered_delete_returns_its_version(emu: KubeEmulator, client: KubeClient) -> None:
    await client.put_object(ObjectOp("Namespace", "", "a", namespace("a")))
    await client.put_object(ObjectOp("Pod", "a", "x", pod("a", "x", {"app": "x"}, "n1", "10.0.0.5")))
    rv = await client.delete_object(ObjectOp("Pod", "a", "x", None))
    assert rv == deleted_rv(emu, "pods", "x")


async def test_delete_of_a_missing_object_returns_none(client: KubeClient) -> None:
    assert await client.delete_object(ObjectOp("NetworkPolicy", "default", "nope", None)) is None


async def test_expired_resume_version_falls_back_to_a_fresh_list(emu: KubeEmulator, client: KubeClient) -> None:
    await client.put_object(ObjectOp("Namespace", "", "a", namespace("a")))
    await client.put_object(ObjectOp("NetworkPolicy", "a", "p", policy("a", "p", {"podSelector": {}})))

    async def compact(real: Request) -> None:
        emu.store.compact()

    write_after_delete(client, compact)
    rv = await client.delete_object(ObjectOp("NetworkPolicy", "a", "p", None))
    assert rv == emu.store.resource_version  # the deletion was the last write: exact here
