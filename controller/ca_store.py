"""The controller's CA in the cluster: one Secret that replicas agree on, one ConfigMap for agents.

Every replica serves TLS with its own serving certificate, and agents must
verify any of them with one bundle.  So the CA is shared:

* Secret ``stockade-ca`` (type ``kubernetes.io/tls``: the CA certificate
  and key) in the controller's namespace: **create if absent, first
  writer wins**.  A replica reads it; if it does not exist it generates a
  CA and creates it; if that create loses a race (409 AlreadyExists) it
  reads the winner's and discards its own.  The Secret is never updated
  or deleted by the controller (to rotate the CA, delete it and restart
  every replica, then the agents: see docs/install-aks.md).
* ConfigMap ``stockade-ca`` (key ``ca.crt``): the public bundle the agent
  DaemonSet mounts (as Antrea publishes ``antrea-ca``).  **Create or
  update**: written when missing or different, left alone when equal.

RBAC: ``get`` on both objects by name, ``update`` on the ConfigMap by
name, ``create`` on secrets and configmaps in the namespace (the API
cannot restrict ``create`` by name: the name is not known when it is
authorized).

Raw JSON through kubernetes-asyncio (``_preload_content=False``), so
status codes are ours to judge.  Not here: certificate generation
(``certs``), choosing the TLS mode (``serving_tls``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable
from typing import Any

import aiohttp

from controller.certs import CertError, KeyPair, load_pair

log = logging.getLogger("stockade.controller.tls")

NAME = "stockade-ca"
BUNDLE_KEY = "ca.crt"
LABELS = {"app.kubernetes.io/name": "stockade-controller", "app.kubernetes.io/part-of": "stockade"}


class CaStoreError(RuntimeError):
    """The CA objects cannot be read or written (message names the object and the HTTP status)."""


async def _call(fn: Callable[..., Any], *args: Any, timeout: float = 10.0, **kwargs: Any) -> tuple[int, Any]:
    """One API request as raw JSON: (HTTP status, parsed body or None); CaStoreError
    when the API server cannot be reached (the start fails, Kubernetes restarts us)."""
    try:
        async with asyncio.timeout(timeout):
            resp = await fn(*args, _preload_content=False, **kwargs)
            try:
                raw = await resp.read()
            finally:
                resp.release()
    except (TimeoutError, OSError, aiohttp.ClientError) as e:
        raise CaStoreError(f"cannot reach the API server for the CA objects ({type(e).__name__}: {e})") from None
    try:
        return int(resp.status), json.loads(raw) if raw else None
    except ValueError:
        return int(resp.status), None


def _fail(what: str, status: int, body: Any, verb: str) -> CaStoreError:
    msg = body.get("message", "") if isinstance(body, dict) else ""
    hint = f" (the controller's ServiceAccount needs '{verb}' on it)" if status == 403 else ""
    return CaStoreError(f"{what}: HTTP {status}{': ' + msg if msg else ''}{hint}")


def secret_body(namespace: str, ca: KeyPair) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": NAME, "namespace": namespace, "labels": dict(LABELS)},
            "data": {"tls.crt": base64.b64encode(ca.cert_pem).decode(),
                     "tls.key": base64.b64encode(ca.key_pem).decode()}}


def ca_from_secret(secret: dict[str, Any]) -> KeyPair:
    """The CA pair of a ``stockade-ca`` Secret; CaStoreError when unusable."""
    data = secret.get("data") or {}
    try:
        pair = KeyPair(base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"]))
        load_pair(pair)
    except (KeyError, ValueError, CertError) as e:
        raise CaStoreError(f"secret {secret.get('metadata', {}).get('namespace')}/{NAME} holds no usable CA "
                           f"({type(e).__name__}: {e}); delete it to have a new CA made") from None
    return pair


def bundle_body(namespace: str, ca_pem: bytes, resource_version: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": NAME, "namespace": namespace, "labels": dict(LABELS)}
    if resource_version:
        meta["resourceVersion"] = resource_version
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {BUNDLE_KEY: ca_pem.decode()}}


async def ensure_ca(api_client: Any, namespace: str, make_ca: Callable[[], KeyPair]) -> tuple[KeyPair, bool]:
    """The shared CA: (pair, True if this call created it)."""
    from kubernetes_asyncio import client

    core = client.CoreV1Api(api_client)
    where = f"secret {namespace}/{NAME}"
    status, body = await _call(core.read_namespaced_secret, NAME, namespace)
    if status == 200:
        return ca_from_secret(body), False
    if status != 404:
        raise _fail(where, status, body, "get")
    mine = make_ca()
    status, body = await _call(core.create_namespaced_secret, namespace, secret_body(namespace, mine))
    if status in (200, 201):
        log.info("created the CA in %s (the first replica to start)", where)
        return mine, True
    if status != 409:
        raise _fail(where, status, body, "create")
    status, body = await _call(core.read_namespaced_secret, NAME, namespace)  # another replica won
    if status != 200:
        raise _fail(where, status, body, "get")
    log.info("another replica created the CA in %s first: using theirs", where)
    return ca_from_secret(body), False


async def publish_bundle(api_client: Any, namespace: str, ca_pem: bytes, attempts: int = 5) -> str:
    """Make ConfigMap ``stockade-ca`` hold ``ca_pem``; returns ``created``,
    ``updated`` or ``unchanged``.  Conflicts (another replica writing the
    same) are retried ``attempts`` times."""
    from kubernetes_asyncio import client

    core = client.CoreV1Api(api_client)
    where = f"configmap {namespace}/{NAME}"
    for _ in range(attempts):
        status, body = await _call(core.read_namespaced_config_map, NAME, namespace)
        if status == 404:
            status, body = await _call(core.create_namespaced_config_map, namespace, bundle_body(namespace, ca_pem))
            if status in (200, 201):
                return "created"
            if status == 409:
                continue
            raise _fail(where, status, body, "create")
        if status != 200:
            raise _fail(where, status, body, "get")
        if (body.get("data") or {}).get(BUNDLE_KEY) == ca_pem.decode():
            return "unchanged"
        rv = str(body.get("metadata", {}).get("resourceVersion", ""))
        status, body = await _call(core.replace_namespaced_config_map, NAME, namespace,
                                   bundle_body(namespace, ca_pem, rv))
        if status == 200:
            return "updated"
        if status != 409:
            raise _fail(where, status, body, "update")
    raise CaStoreError(f"{where}: still conflicting after {attempts} attempts")
