"""The real Stockade pipeline inside a lab: emulator, controller, agents.

:class:`Pipeline` starts ``stockade kube-emulator`` and ``stockade
controller`` in the lab's control namespace (198.19.0.250) and one
``stockade agent`` in every node namespace (hostNetwork, as a DaemonSet pod
would run), writes Kubernetes objects to the emulator through a
port-forward (``stockade.lab.portforward``), and waits for convergence:

    write object -> resourceVersion R
      -> the controller's watch of that kind is at >= R  (it saw the change)
      -> nothing queued, every node connected with applied == desired
         version, on two polls ``SETTLE`` apart with no batch in between
         (the controller's batch window is 5 ms; a batch that was still
         pending at the first poll has run by the second)

That is the agents' acknowledgement, never a blind sleep.  Restarting the
controller or one agent is here too (the end-to-end tests use it).

The agent channel runs as in an operator's cluster (``stockade.lab.channel``):
before the controller starts, the agents' Namespace, ServiceAccount and
hostNetwork DaemonSet pods exist at the emulator; the controller serves TLS
with its own CA (its certificate naming 198.19.0.250) and admits an agent
only with a token bound to that node's agent pod; each agent trusts the
bundle read from the ConfigMap ``stockade-ca`` and sends a token minted at
the emulator (re-minted before it expires).  ``insecure=True`` keeps the
plaintext channel without agent authentication (``--insecure-grpc``).

It does not decide what to write (``stockade.cases`` and the runner do) and
it does not probe.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import yaml  # type: ignore[import-untyped]

from stockade.case_addresses import node_ip, node_name
from stockade.cases import ObjectOp
from stockade.lab import processes
from stockade.lab.channel import SecureChannel
from stockade.lab.cluster import Lab
from stockade.lab.nssocket import http_get
from stockade.lab.portforward import PortForward
from stockade.lab.processes import LabProcess
from stockade.lab.topology import CONTROL_IP

CONVERGE_TIMEOUT = 30.0
POLL = 0.02
SETTLE = 0.05


class PipelineError(RuntimeError):
    """The pipeline did not start or did not converge (says what is missing)."""


PATHS = {
    "Namespace": ("/api/v1", "namespaces", False),
    "Node": ("/api/v1", "nodes", False),
    "Pod": ("/api/v1", "pods", True),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies", True),
}


def object_path(kind: str, namespace: str, name: str | None = None) -> str:
    base, plural, namespaced = PATHS[kind]
    p = f"{base}/namespaces/{namespace}/{plural}" if namespaced else f"{base}/{plural}"
    return f"{p}/{name}" if name is not None else p


@dataclass(frozen=True)
class KubeConfig:
    server: str
    token: str = ""
    ca_pem: bytes = b""
    insecure: bool = False


def read_kubeconfig(path: str) -> KubeConfig:
    with open(path) as f:
        doc = yaml.safe_load(f)
    ctx_name = doc.get("current-context")
    ctxs = {c["name"]: c["context"] for c in doc.get("contexts") or []}
    ctx: dict[str, Any] = ctxs.get(ctx_name) or next(iter(ctxs.values()), {})
    clusters = {c["name"]: c["cluster"] for c in doc.get("clusters") or []}
    users = {u["name"]: u.get("user") or {} for u in doc.get("users") or []}
    cl = clusters.get(ctx.get("cluster")) or next(iter(clusters.values()))
    user = users.get(ctx.get("user")) or {}
    ca = base64.b64decode(cl["certificate-authority-data"]) if cl.get("certificate-authority-data") else b""
    return KubeConfig(cl["server"], str(user.get("token") or ""), ca, bool(cl.get("insecure-skip-tls-verify")))


def local_kubeconfig(kc: KubeConfig, local: str) -> str:
    """A kubeconfig for ``kubectl`` on this machine: same credentials, the
    server replaced by the 127.0.0.1 port-forward."""
    scheme = kc.server.split("://", 1)[0]
    cluster: dict[str, Any] = {"server": f"{scheme}://{local}"}
    if scheme == "https":
        cluster["insecure-skip-tls-verify"] = True  # the certificate names the lab address
    user: dict[str, Any] = {"token": kc.token} if kc.token else {}
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "stockade-lab",
        "clusters": [{"name": "stockade-lab", "cluster": cluster}],
        "users": [{"name": "stockade-lab", "user": user}],
        "contexts": [{"name": "stockade-lab", "context": {"cluster": "stockade-lab", "user": "stockade-lab"}}],
    }, indent=1)


class KubeClient:
    """Create-or-replace and delete objects at the emulator (JSON over HTTP)."""

    def __init__(self, kc: KubeConfig, local: str) -> None:
        scheme = kc.server.split("://", 1)[0]
        self.base = f"{scheme}://{local}"
        self.headers = {"Authorization": f"Bearer {kc.token}"} if kc.token else {}
        self.ssl: ssl.SSLContext | bool = False
        if scheme == "https":
            ctx = ssl.create_default_context(cadata=kc.ca_pem.decode() if kc.ca_pem else None)
            ctx.check_hostname = False
            if kc.insecure or not kc.ca_pem:
                ctx.verify_mode = ssl.CERT_NONE
            self.ssl = ctx
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self.headers,
                                                  timeout=aiohttp.ClientTimeout(total=10))
        return self._session

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        async with self.session().request(method, self.base + path, json=body, ssl=self.ssl) as r:
            text = await r.text()
            try:
                data = json.loads(text) if text else {}
            except ValueError:
                data = {"message": text}
            return r.status, data if isinstance(data, dict) else {}

    async def put_object(self, op: ObjectOp) -> int:
        """Create or replace; returns the written object's resourceVersion."""
        assert op.obj is not None
        status, data = await self.request("POST", object_path(op.kind, op.namespace), op.obj)
        if status == 409:
            status, data = await self.request("PUT", object_path(op.kind, op.namespace, op.name), op.obj)
        if status >= 300:
            raise PipelineError(f"{op.kind} {op.namespace}/{op.name}: HTTP {status}: {data.get('message', data)}")
        return int(data["metadata"]["resourceVersion"])

    async def delete_object(self, op: ObjectOp) -> int | None:
        """Delete; returns the deletion's own resourceVersion (the fence the
        runner waits for the controller's watch of the kind to reach), None
        when the object did not exist.

        The answer is the deleted object for some kinds (its version is the
        deletion's) and a ``Status`` for others (NetworkPolicy at the real
        API server and the emulator): then the version is read from the
        DELETED event of a watch of that one object resumed from the
        version read just before the deletion.  A later version (a fresh
        list's) would be a fence the controller's watch of the kind may
        reach only at the next bookmark, up to a minute later."""
        path = object_path(op.kind, op.namespace, op.name)
        status, cur = await self.request("GET", path)
        if status == 404:
            return None
        if status >= 300:
            raise PipelineError(f"get {op.kind} {op.namespace}/{op.name}: HTTP {status}: {cur.get('message')}")
        before = str((cur.get("metadata") or {}).get("resourceVersion", ""))
        status, data = await self.request("DELETE", path)
        if status == 404:
            return None
        if status >= 300:
            raise PipelineError(f"delete {op.kind} {op.namespace}/{op.name}: HTTP {status}: {data.get('message')}")
        rv = (data.get("metadata") or {}).get("resourceVersion")
        if data.get("kind") != "Status" and rv is not None and str(rv).isdigit():
            return int(rv)
        if before.isdigit():
            seen = await self.deletion_version(op, before)
            if seen is not None:
                return seen
        # no version to resume from, or the watch could not show the deletion:
        # the current version bounds it (exact unless something else was written since)
        _, lst = await self.request("GET", object_path(op.kind, op.namespace) + "?limit=1")
        rv = (lst.get("metadata") or {}).get("resourceVersion")
        return int(rv) if rv is not None and str(rv).isdigit() else None

    async def deletion_version(self, op: ObjectOp, after: str, timeout: float = 5.0) -> int | None:
        """The resourceVersion of ``op``'s object's DELETED event, from a
        watch of that one object resumed at version ``after``; None when
        the stream ends (or times out, or the version has expired) first."""
        q = f"?watch=1&resourceVersion={after}&fieldSelector=metadata.name%3D{op.name}&timeoutSeconds={int(timeout)}"
        try:
            async with self.session().get(self.base + object_path(op.kind, op.namespace) + q, ssl=self.ssl,
                                          timeout=aiohttp.ClientTimeout(total=timeout + 1)) as r:
                if r.status != 200:
                    return None
                async for line in r.content:
                    if not line.strip():
                        continue
                    ev = json.loads(line)
                    meta = (ev.get("object") or {}).get("metadata") or {}
                    if ev.get("type") == "ERROR":
                        return None
                    if ev.get("type") == "DELETED" and meta.get("name") == op.name and \
                            str(meta.get("resourceVersion", "")).isdigit():
                        return int(meta["resourceVersion"])
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        return None

    async def apply(self, op: ObjectOp) -> int | None:
        return await self.delete_object(op) if op.is_delete else await self.put_object(op)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


@dataclass
class Pipeline:
    lab: Lab
    backend: str = "auto"
    emulator: LabProcess | None = None
    controller: LabProcess | None = None
    agents: dict[int, LabProcess] = field(default_factory=dict)
    kube: KubeClient | None = None
    forwards: list[PortForward] = field(default_factory=list)
    kubeconfig: KubeConfig | None = None
    kubeconfig_path: str = ""
    insecure: bool = False  # plaintext channel, no agent tokens (the controller's --insecure-grpc)
    channel: SecureChannel | None = None  # the CA bundle and token files (None: insecure)

    @property
    def workdir(self) -> str:
        return self.lab.state.workdir

    async def start(self) -> None:
        lab = self.lab
        os.makedirs(self.workdir, exist_ok=True)
        self.kubeconfig_path = os.path.join(self.workdir, "kubeconfig")
        self.emulator = await lab.start_process(
            "kube-emulator", lab.plan.control_ns,
            processes.emulator_argv(f"{CONTROL_IP}:{processes.EMULATOR_PORT}", self.kubeconfig_path), ready="ready")
        self.kubeconfig = read_kubeconfig(self.kubeconfig_path)
        fwd = await self.forward(processes.EMULATOR_PORT)
        self.kube = KubeClient(self.kubeconfig, fwd.local)
        if not self.insecure:
            self.channel = SecureChannel(self.kube, self.workdir, lab.nodes)
            await self.channel.create_objects()  # the controller checks agents against these pods
        await self.start_controller()
        if self.channel is not None:
            await self.channel.mint_all()
            self.channel.start_rotation()
        await asyncio.gather(*(self.start_agent(i) for i in range(lab.nodes)))

    async def wait_listening(self, port: int, timeout: float = 20.0) -> None:
        """Until something accepts TCP on the control address ``port``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._check_alive()
            s = await self.lab.socks.socket(self.lab.plan.control_ns)
            try:
                async with asyncio.timeout(1.0):
                    await loop.sock_connect(s, (CONTROL_IP, port))
                return
            except (OSError, TimeoutError):
                if loop.time() > deadline:
                    raise PipelineError(f"nothing listens on {CONTROL_IP}:{port} after {timeout:.0f} s") from None
                await asyncio.sleep(POLL * 2)
            finally:
                s.close()

    async def forward(self, port: int, listen_port: int = 0, host: str = CONTROL_IP) -> PortForward:
        pf = await PortForward(self.lab.socks, self.lab.plan.control_ns, host, port,
                               listen_port=listen_port).start()
        self.forwards.append(pf)
        return pf

    async def start_controller(self) -> None:
        """Start the controller; return once its gRPC port accepts (so the
        agents never start in a reconnect backoff) and, on the secure
        channel, its CA bundle is in the agents' file (re-read after a
        restart, as the kubelet syncs the ConfigMap)."""
        self.controller = await self.lab.start_process(
            "controller", self.lab.plan.control_ns,
            processes.controller_argv(self.kubeconfig_path, CONTROL_IP, insecure=self.insecure))
        await self.wait_listening(processes.CONTROLLER_GRPC)
        if self.channel is not None:
            await self.channel.fetch_ca()

    async def start_agent(self, i: int) -> None:
        state_dir = os.path.join(self.workdir, f"agent-{node_name(i)}")
        os.makedirs(state_dir, exist_ok=True)
        self.agents[i] = await self.lab.start_process(
            f"agent-{node_name(i)}", self.lab.plan.node_ns(i),
            processes.agent_argv(node_name(i), CONTROL_IP, node_ip(i), state_dir, self.backend,
                                 bridged=self.lab.mode == "bridged",
                                 ca_file=self.channel.ca_file if self.channel else "",
                                 token_file=self.channel.token_file(i) if self.channel else ""))

    async def restart_controller(self) -> None:
        assert self.controller is not None
        await self.lab.stop_process(self.controller)
        await self.start_controller()

    async def restart_agent(self, i: int) -> None:
        await self.lab.stop_process(self.agents[i])
        await self.start_agent(i)

    async def status(self) -> dict[str, Any]:
        code, body = await http_get(self.lab.socks, self.lab.plan.control_ns, CONTROL_IP,
                                    processes.CONTROLLER_HTTP, "/api/v1/status")
        if code != 200:
            raise PipelineError(f"controller status: HTTP {code}")
        data = json.loads(body)
        assert isinstance(data, dict)
        return data

    def _check_alive(self) -> None:
        for lp in [self.emulator, self.controller, *self.agents.values()]:
            if lp is not None and not lp.running():
                tail = " | ".join(ln.strip() for ln in lp.log_tail(3).splitlines())
                raise PipelineError(f"{lp.name} exited with status {lp.proc.returncode}: {tail}")

    async def wait_converged(self, seen: dict[str, int] | None = None,
                             timeout: float = CONVERGE_TIMEOUT) -> dict[str, Any]:
        """Wait until the controller saw every ``kind -> resourceVersion`` in
        ``seen`` and every node acknowledged its newest desired state."""
        want = dict(seen or {})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last_ok: tuple[float, int] | None = None  # (when, writer batches) of the first good poll
        why = "no answer from the controller"
        while True:
            if loop.time() > deadline:
                raise PipelineError(f"no convergence within {timeout:.0f} s: {why}")
            self._check_alive()
            try:
                st = await self.status()
            except (OSError, TimeoutError, PipelineError, ValueError) as e:
                why = f"controller status: {e}"
                last_ok = None
                await asyncio.sleep(POLL * 5)
                continue
            why = _not_converged(st, want, self.lab.nodes)
            if why:
                last_ok = None
            else:
                batches = int(st.get("writer", {}).get("batches", 0))
                now = loop.time()
                if last_ok is not None and last_ok[1] == batches and now - last_ok[0] >= SETTLE:
                    return st
                if last_ok is None or last_ok[1] != batches:
                    last_ok = (now, batches)
            await asyncio.sleep(POLL)

    async def write(self, ops: list[ObjectOp]) -> dict[str, int]:
        """Write ``ops`` in order; the highest resourceVersion per kind."""
        assert self.kube is not None
        seen: dict[str, int] = {}
        for op in ops:
            rv = await self.kube.apply(op)
            if rv is not None:
                seen[op.kind] = max(seen.get(op.kind, 0), rv)
        return seen

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self.kube is not None:
            await self.kube.close()
        for pf in self.forwards:
            await pf.close()
        self.forwards.clear()


def _not_converged(st: dict[str, Any], want: dict[str, int], nodes: int) -> str:
    """Why ``st`` is not converged yet ("" when it is)."""
    if not st.get("ready"):
        return "controller not ready (not every kind listed)"
    watches = {w.get("kind"): w for w in st.get("watches", [])}
    for kind, rv in want.items():
        w = watches.get(kind)
        have = str((w or {}).get("resource_version") or "0")
        if not have.isdigit() or int(have) < rv:
            return f"controller has not seen {kind} resourceVersion {rv} yet (at {have})"
    if st.get("writer", {}).get("queued", 0):
        return "controller has queued changes"
    rows = {n.get("node"): n for n in st.get("nodes", [])}
    for i in range(nodes):
        n = rows.get(node_name(i))
        if n is None or not n.get("connected"):
            return f"agent {node_name(i)} not connected"
        if not n.get("in_sync") or n.get("applied_version") != n.get("desired_version"):
            return (f"agent {node_name(i)} applied version {n.get('applied_version')}, "
                    f"desired {n.get('desired_version')}" + (f": {n['last_error']}" if n.get("last_error") else ""))
    return ""


def write_temp(text: str, suffix: str = "") -> str:
    fd, path = tempfile.mkstemp(suffix=suffix)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path
