"""The lab's agent channel as an operator's cluster has it: TLS + tokens.

What ``deploy/base`` and the kubelet do in a real cluster, done at the
lab's API emulator (docs/reliability.md, "Agent channel"):

* before the controller starts: the Namespace ``stockade-system``, the
  ServiceAccount ``stockade-agent`` in it, and per lab node the agent's
  DaemonSet pod ``stockade-agent-<node>`` (label
  ``app.kubernetes.io/name=stockade-agent``, ``hostNetwork: true``,
  ``nodeName: <node>``, ``status.podIPs`` = the node's address).  Being
  hostNetwork pods in a namespace of their own without policies, they are
  never a policy target or pod peer, so they change no case's verdicts;
* after the controller listens: its CA bundle, read from the ConfigMap
  ``stockade-ca`` (key ``ca.crt``), into ``<workdir>/channel/ca.crt`` (the
  agents' ``--ca-file``);
* per node a pod-bound token (audience ``stockade``, ``TOKEN_TTL``) minted
  at ``POST /_emulator/tokens`` into ``<workdir>/channel/token-<node>``
  (the agents' ``--token-file``), re-minted as the kubelet rotates them
  (at ``REFRESH_AT`` of their lifetime; an agent re-reads the file at every
  connect), atomically replaced so a reader never sees half a token.

It starts no process (``stockade.lab.pipeline`` does) and probes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Protocol

from stockade.case_addresses import node_ip, node_name
from stockade.cases import ObjectOp

AGENT_NAMESPACE = "stockade-system"
AGENT_SERVICE_ACCOUNT = "stockade-agent"
AGENT_LABELS = {"app.kubernetes.io/name": "stockade-agent"}
CA_CONFIGMAP = "stockade-ca"
AUDIENCE = "stockade"
TOKEN_TTL = 3600  # what the DaemonSet's projected volume asks for
REFRESH_AT = 0.8  # the kubelet rotates a projected token at 80% of its lifetime
RETRY = 10.0  # seconds before a failed re-mint is tried again
CA_TIMEOUT = 20.0


class ChannelError(RuntimeError):
    """The secure channel could not be prepared (says what is missing)."""


class Api(Protocol):
    """What the channel needs of ``pipeline.KubeClient``."""

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]: ...

    async def put_object(self, op: ObjectOp) -> int: ...


def agent_pod_name(i: int) -> str:
    return f"stockade-agent-{node_name(i)}"


def namespace_object() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": AGENT_NAMESPACE, "labels": {"kubernetes.io/metadata.name": AGENT_NAMESPACE}}}


def service_account_object() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": AGENT_SERVICE_ACCOUNT, "namespace": AGENT_NAMESPACE}}


def agent_pod_object(i: int) -> dict[str, Any]:
    """The agent DaemonSet's pod on node ``i``: hostNetwork, so its address
    is the node's (never one of the lab's pod ranges) and it is never
    selected by a policy."""
    ip = node_ip(i)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": agent_pod_name(i), "namespace": AGENT_NAMESPACE, "labels": dict(AGENT_LABELS)},
            "spec": {"nodeName": node_name(i), "hostNetwork": True, "serviceAccountName": AGENT_SERVICE_ACCOUNT,
                     "containers": [{"name": "agent", "image": "stockade"}]},
            "status": {"phase": "Running", "hostIP": ip, "podIP": ip, "podIPs": [{"ip": ip}]}}


def objects(nodes: int) -> list[ObjectOp]:
    """What must exist before the controller starts, in creation order."""
    ops = [ObjectOp("Namespace", "", AGENT_NAMESPACE, namespace_object()),
           ObjectOp("ServiceAccount", AGENT_NAMESPACE, AGENT_SERVICE_ACCOUNT, service_account_object())]
    return ops + [ObjectOp("Pod", AGENT_NAMESPACE, agent_pod_name(i), agent_pod_object(i)) for i in range(nodes)]


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


@dataclass
class SecureChannel:
    """The CA bundle and the per-node token files of one lab run."""

    api: Api
    workdir: str
    nodes: int
    ttl: int = TOKEN_TTL
    _refresh: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def dir(self) -> str:
        return os.path.join(self.workdir, "channel")

    @property
    def ca_file(self) -> str:
        return os.path.join(self.dir, "ca.crt")

    def token_file(self, i: int) -> str:
        return os.path.join(self.dir, f"token-{node_name(i)}")

    async def create_objects(self) -> None:
        """Namespace, ServiceAccount, one agent pod per node (create or replace)."""
        os.makedirs(self.dir, exist_ok=True)
        for op in objects(self.nodes):
            await self.api.put_object(op)

    async def fetch_ca(self, timeout: float = CA_TIMEOUT) -> None:
        """The controller's published bundle into :attr:`ca_file` (waits for
        the ConfigMap, which the controller writes before it listens)."""
        path = f"/api/v1/namespaces/{AGENT_NAMESPACE}/configmaps/{CA_CONFIGMAP}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            status, data = await self.api.request("GET", path)
            ca = (data.get("data") or {}).get("ca.crt") if status == 200 else None
            if isinstance(ca, str) and "BEGIN CERTIFICATE" in ca:
                write_atomic(self.ca_file, ca)
                return
            if loop.time() > deadline:
                raise ChannelError(f"no CA bundle in ConfigMap {AGENT_NAMESPACE}/{CA_CONFIGMAP} after "
                                   f"{timeout:.0f} s (HTTP {status})")
            await asyncio.sleep(0.1)

    async def mint(self, i: int) -> None:
        """A fresh token for node ``i``'s agent pod into its token file."""
        body = {"namespace": AGENT_NAMESPACE, "serviceAccount": AGENT_SERVICE_ACCOUNT, "pod": agent_pod_name(i),
                "audiences": [AUDIENCE], "ttlSeconds": self.ttl}
        status, data = await self.api.request("POST", "/_emulator/tokens", body)
        token = data.get("token")
        if status >= 300 or not isinstance(token, str) or not token:
            raise ChannelError(f"minting the token of {agent_pod_name(i)}: HTTP {status}: "
                               f"{data.get('message', data)}")
        write_atomic(self.token_file(i), token)

    async def mint_all(self) -> None:
        await asyncio.gather(*(self.mint(i) for i in range(self.nodes)))

    def start_rotation(self) -> None:
        """Re-mint every token at ``REFRESH_AT`` of its lifetime, as the kubelet does."""
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.create_task(self._rotate(), name="lab-token-rotation")

    async def _rotate(self) -> None:
        wait = self.ttl * REFRESH_AT
        while True:
            await asyncio.sleep(wait)
            try:
                await self.mint_all()
                wait = self.ttl * REFRESH_AT
            except Exception as e:  # the API may be faulted right now: try again soon, the old token still holds
                print(f"lab: re-minting agent tokens failed ({type(e).__name__}: {e}); retrying in {RETRY:.0f} s",
                      file=sys.stderr, flush=True)
                wait = RETRY

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refresh
            self._refresh = None
