"""The emulator through the machine's real kubectl, with no extra flags.

kubectl discovers the API (legacy discovery after trying the aggregated
form), probes /openapi/v3 for server-side field validation, and does
client-side apply: GET, then POST or a strategic merge PATCH carrying the
last-applied annotation.  None of this needs ``--validate=false``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from stockade.kubeemu import KubeEmulator
from tests.kubeemu.conftest import pod

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
]

MANIFESTS = """\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: web
  namespace: shop
---
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  namespace: shop
  labels: {app: web}
spec:
  containers:
  - name: web
    image: nginx:1
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-all
  namespace: shop
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: web
      containers:
      - name: web
        image: nginx:1
        ports: [{containerPort: 80}]
        env: [{name: A, value: "1"}]
"""


class Kubectl:
    def __init__(self, kubeconfig: Path, cache: Path) -> None:
        self.base = ["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache), "--request-timeout", "10s"]

    async def __call__(self, *args: str, stdin: str = "", ok: bool = True) -> str:
        proc = await asyncio.create_subprocess_exec(
            *self.base, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 30)
        if ok:
            assert proc.returncode == 0, f"kubectl {' '.join(args)} failed:\n{out.decode()}\n{err.decode()}"
            return out.decode()
        assert proc.returncode != 0, f"kubectl {' '.join(args)} unexpectedly succeeded"
        return err.decode()

    async def json(self, *args: str) -> Any:
        return json.loads(await self(*args, "-o", "json"))


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Kubectl:
    return Kubectl(kubeconfig, tmp_path / "cache")


async def test_get_prints_tables_and_json(emu: KubeEmulator, kubectl: Kubectl) -> None:
    out = await kubectl("get", "namespaces")
    assert out.splitlines()[0].split() == ["NAME", "STATUS", "AGE"]
    assert {line.split()[0] for line in out.splitlines()[1:]} == {"default", "kube-system", "kube-public",
                                                                  "kube-node-lease"}
    listed = await kubectl.json("get", "namespace", "default")
    assert listed["metadata"]["labels"] == {"kubernetes.io/metadata.name": "default"}
    err = await kubectl("get", "pod", "missing", ok=False)
    assert 'pods "missing" not found' in err
    resources = await kubectl("api-resources", "-o", "name")
    assert {"networkpolicies.networking.k8s.io", "pods", "deployments.apps", "nodes"} <= set(resources.split())


async def test_apply_creates_then_updates_then_is_unchanged(emu: KubeEmulator, kubectl: Kubectl) -> None:
    out = await kubectl("apply", "-f", "-", stdin=MANIFESTS)
    assert out.split("\n")[:-1] == [
        "namespace/shop created", "serviceaccount/web created", "pod/web-0 created",
        "networkpolicy.networking.k8s.io/deny-all created", "deployment.apps/web created"]
    out = await kubectl("apply", "-f", "-", stdin=MANIFESTS)
    assert all(line.endswith(" unchanged") for line in out.splitlines()), out
    changed = MANIFESTS.replace("image: nginx:1\n        ports", "image: nginx:2\n        ports")
    out = await kubectl("apply", "-f", "-", stdin=changed)
    assert "deployment.apps/web configured" in out.splitlines()
    deploy = emu.store.get("deployments", "web", "shop")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container == {"name": "web", "image": "nginx:2", "ports": [{"containerPort": 80}],
                         "env": [{"name": "A", "value": "1"}]}
    assert deploy["metadata"]["generation"] == 2
    assert "kubectl.kubernetes.io/last-applied-configuration" in deploy["metadata"]["annotations"]
    dropped = changed.replace('        env: [{name: A, value: "1"}]\n', "")
    await kubectl("apply", "-f", "-", stdin=dropped)
    assert "env" not in emu.store.get("deployments", "web", "shop")["spec"]["template"]["spec"]["containers"][0]
    policy = await kubectl.json("get", "networkpolicy", "-n", "shop", "deny-all")
    assert policy["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}


async def test_label_and_delete(emu: KubeEmulator, kubectl: Kubectl) -> None:
    await kubectl("apply", "-f", "-", stdin=MANIFESTS)
    await kubectl("label", "pod", "-n", "shop", "web-0", "tier=frontend")
    assert emu.store.get("pods", "web-0", "shop")["metadata"]["labels"] == {"app": "web", "tier": "frontend"}
    await kubectl("label", "pod", "-n", "shop", "web-0", "tier=backend", "--overwrite")
    await kubectl("label", "namespace", "shop", "team=a")
    assert (await kubectl("get", "pods", "-n", "shop", "-l", "tier=backend", "-o", "name")).split() == ["pod/web-0"]
    assert emu.store.get("namespaces", "shop")["metadata"]["labels"]["team"] == "a"
    assert "deleted" in await kubectl("delete", "networkpolicy", "-n", "shop", "deny-all")
    assert "deleted" in await kubectl("delete", "pod", "-n", "shop", "web-0")
    assert "deleted" in await kubectl("delete", "namespace", "shop")
    assert emu.store.list("pods", "shop")[0] == [] and emu.store.list("deployments")[0] == []
    err = await kubectl("get", "namespace", "shop", ok=False)
    assert 'namespaces "shop" not found' in err


async def test_typed_create_commands_send_protobuf(emu: KubeEmulator, kubectl: Kubectl) -> None:
    assert await kubectl("create", "namespace", "lab") == "namespace/lab created\n"
    await kubectl("create", "configmap", "cfg", "-n", "lab", "--from-literal=a=b")
    await kubectl("create", "secret", "generic", "s", "-n", "lab", "--from-literal=x=y")
    await kubectl("create", "serviceaccount", "sa", "-n", "lab")
    assert emu.store.get("namespaces", "lab")["metadata"]["labels"] == {"kubernetes.io/metadata.name": "lab"}
    assert emu.store.get("configmaps", "cfg", "lab")["data"] == {"a": "b"}
    assert emu.store.get("secrets", "s", "lab")["data"] == {"x": "eQ=="}
    assert emu.store.get("serviceaccounts", "sa", "lab")["metadata"]["namespace"] == "lab"
    err = await kubectl("create", "deployment", "d", "-n", "lab", "--image=nginx", ok=False)
    assert "unknown format" in err and "Deployment" in err


async def test_get_pods_wide(emu: KubeEmulator, kubectl: Kubectl) -> None:
    emu.store.create("pods", pod("web", ip="10.1.2.3", node="node-7"), "default")
    out = await kubectl("get", "pods", "-A", "-o", "wide")
    header, row = out.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "STATUS", "IP", "NODE", "AGE"]
    assert row.split()[:5] == ["default", "web", "Running", "10.1.2.3", "node-7"]


PDB = """\
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: pdb, namespace: default}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: a}}
"""


async def test_pdb_selector_is_replaced_not_merged(emu: KubeEmulator, kubectl: Kubectl) -> None:
    await kubectl("apply", "-f", "-", stdin=PDB)
    # Real kubectl always sends the selector (patchStrategy "replace"), so a re-apply reports "configured".
    assert "configured" in await kubectl("apply", "-f", "-", stdin=PDB)
    await kubectl("apply", "-f", "-", stdin=PDB.replace("app: a", "tier: b"))
    assert emu.store.get("poddisruptionbudgets", "pdb", "default")["spec"]["selector"] == {
        "matchLabels": {"tier": "b"}}


async def test_get_watch_prints_table_rows(emu: KubeEmulator, kubectl: Kubectl) -> None:
    proc = await asyncio.create_subprocess_exec(
        *kubectl.base, "get", "namespaces", "--watch-only", "--output-watch-events",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        for _ in range(200):  # until kubectl has discovered, listed and opened its watch
            if emu.open_watches:
                break
            await asyncio.sleep(0.05)
        emu.store.create("namespaces", {"metadata": {"name": "watched"}})
        emu.store.delete("namespaces", "watched")
        lines: list[list[str]] = []
        while len(lines) < 3:
            lines.append((await asyncio.wait_for(proc.stdout.readline(), 10)).decode().split())
    finally:
        proc.kill()
        await proc.wait()
    assert lines[0][:3] == ["EVENT", "NAME", "STATUS"]
    assert lines[1][:3] == ["ADDED", "watched", "Active"] and lines[2][:3] == ["DELETED", "watched", "Terminating"]


async def test_create_tokenreview(emu: KubeEmulator, kubectl: Kubectl) -> None:
    """``kubectl create -f`` of a TokenReview answers the review (the controller's check by hand)."""
    await kubectl("apply", "-f", "-", stdin=MANIFESTS)
    emu.store.create("serviceaccounts", {"metadata": {"name": "default"}}, "shop")  # web-0 runs as it
    token = emu.issue_token("shop", "default", "web-0", ["stockade"])
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
              "spec": {"token": token, "audiences": ["stockade"]}}
    out = json.loads(await kubectl("create", "-f", "-", "-o", "json", stdin=json.dumps(review)))
    assert out["status"]["authenticated"] is True
    assert out["status"]["user"]["username"] == "system:serviceaccount:shop:default"
    assert out["status"]["user"]["extra"]["authentication.kubernetes.io/pod-name"] == ["web-0"]
    assert "tokenreviews" in (await kubectl("api-resources", "--api-group", "authentication.k8s.io")).split()
