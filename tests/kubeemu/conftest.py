"""Fixtures: a started emulator on 127.0.0.1 (port 0) and real clients for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from stockade.kubeemu import KubeEmulator

BOOKMARK_INTERVAL = 0.2


@pytest.fixture
async def emu() -> AsyncIterator[KubeEmulator]:
    async with KubeEmulator(host="127.0.0.1", port=0, history=50, bookmark_interval=BOOKMARK_INTERVAL) as e:
        yield e


@pytest.fixture
def kubeconfig(emu: KubeEmulator, tmp_path: Path) -> Path:
    return emu.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
async def api(kubeconfig: Path) -> AsyncIterator[Any]:
    """A kubernetes-asyncio ApiClient configured from the emulator's kubeconfig."""
    from kubernetes_asyncio import client, config

    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    async with client.ApiClient(configuration=cfg) as c:
        yield c


def pod(name: str, namespace: str = "default", labels: dict[str, str] | None = None, node: str = "n1",
        ip: str = "10.0.0.1", phase: str = "Running") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def netpol(name: str, namespace: str = "default", match: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"podSelector": {"matchLabels": match or {}}, "policyTypes": ["Ingress"]},
    }
