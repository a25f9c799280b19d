"""Test helpers: Kubernetes objects as JSON and a tiny REST client for the emulator.

Objects are written through the emulator's HTTP API (as kubectl would), so
the controller sees them exactly as it would see a real API server's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp

JSON = dict[str, Any]


def namespace(name: str, labels: dict[str, str] | None = None) -> JSON:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **(labels or {})}}}


def node(name: str, ip: str, pod_cidr: str = "") -> JSON:
    spec: JSON = {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]} if pod_cidr else {}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": spec,
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


def pod(ns: str, name: str, labels: dict[str, str], node_name: str, ip: str, port: int = 80) -> JSON:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": ns, "name": name, "labels": labels},
            "spec": {"nodeName": node_name,
                     "containers": [{"name": "c", "image": "x", "ports": [{"containerPort": port, "name": "http"}]}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}


def policy(ns: str, name: str, spec: JSON) -> JSON:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": ns, "name": name}, "spec": spec}


def collection(obj: JSON) -> str:
    kind = obj["kind"]
    ns = obj["metadata"].get("namespace", "")
    if kind == "Namespace":
        return "/api/v1/namespaces"
    if kind == "Node":
        return "/api/v1/nodes"
    if kind == "Pod":
        return f"/api/v1/namespaces/{ns}/pods"
    return f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"


class Kube:
    """create / replace / delete through the emulator's REST API."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def close(self) -> None:
        await self.session.close()

    async def _req(self, method: str, path: str, body: JSON | None = None) -> JSON:
        async with self.session.request(method, self.url + path, json=body) as r:
            data: JSON = await r.json(content_type=None)
            if r.status >= 300:
                raise AssertionError(f"{method} {path}: HTTP {r.status}: {data}")
            return data

    async def create(self, *objs: JSON) -> None:
        for o in objs:
            await self._req("POST", collection(o), o)

    async def replace(self, obj: JSON) -> JSON:
        """PUT the object (the current resourceVersion is fetched first)."""
        path = f"{collection(obj)}/{obj['metadata']['name']}"
        cur = await self._req("GET", path)
        body = {**obj, "metadata": {**obj["metadata"], "resourceVersion": cur["metadata"]["resourceVersion"]}}
        return await self._req("PUT", path, body)

    async def delete(self, obj: JSON) -> None:
        await self._req("DELETE", f"{collection(obj)}/{obj['metadata']['name']}")


async def eventually(pred: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)
