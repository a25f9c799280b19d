"""Pods, namespaces and nodes: Kubernetes JSON -> ``controller.model`` records.

What: ``parse_namespace``, ``parse_pod`` and ``parse_node`` check the shape
of the object (raising :class:`ParseError` with the field path of the
first problem) and keep what the compiler needs: names, labels, node,
IPs in canonical text (``status.podIPs`` else ``status.podIP``, duplicates
dropped), serving container ports (sidecar init containers included),
node addresses and pod CIDRs.  Label maps are interned (``_LABELS``, at
most _INTERN_LIMIT entries), as the benchmark parses 150,000 pods.

Why its own module: these objects are *not* validated like policies; the
API server already did, so odd-but-legal input is accepted and only the
shape (and the length of label keys and values) is checked.

What not: no NetworkPolicy (``parse_policy``), no selector logic
(``parse_selectors``), no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from controller.model import PROTOCOLS, ContainerPort, Namespace, Node, Pod
from controller.parse_errors import ParseError, _key, _show
from controller.parse_limits import _INTERN_LIMIT, MAX_LABEL_KEY, MAX_LABEL_VALUE
from controller.parse_text import canonical_cidr, canonical_ip

_LABELS: dict[tuple[tuple[str, str], ...], Mapping[str, str]] = {}
_EMPTY_LABELS: Mapping[str, str] = {}


def _intern_labels(raw: dict[str, str]) -> Mapping[str, str]:
    if not raw:
        return _EMPTY_LABELS
    k = tuple(raw.items())
    got = _LABELS.get(k)
    if got is None:
        if len(_LABELS) >= _INTERN_LIMIT:
            _LABELS.clear()
        got = _LABELS[k] = dict(raw)
    return got



# --------------------------------------------------------------------------
# Shape helpers for pods/namespaces/nodes (ParseError on the first problem)


def _obj(v: Any, field: str) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ParseError(field, f"must be an object, not {type(v).__name__}")
    return v


def _list(v: Any, field: str) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise ParseError(field, f"must be a list, not {type(v).__name__}")
    return v


def _str(v: Any, field: str, required: bool = False) -> str:
    if v is None or v == "":
        if required:
            raise ParseError(field, "required")
        return ""
    if not isinstance(v, str):
        raise ParseError(field, f"must be a string, not {type(v).__name__}")
    return v


def _labels(v: Any, field: str) -> Mapping[str, str]:
    if v is None:
        return _EMPTY_LABELS
    if not isinstance(v, dict):
        raise ParseError(field, f"must be an object, not {type(v).__name__}")
    for k, val in v.items():
        if not isinstance(val, str):
            raise ParseError(f"{field}[{_key(k)}]", f"must be a string, not {type(val).__name__}")
        if len(val) > MAX_LABEL_VALUE:
            raise ParseError(f"{field}[{_key(k)}]", f"label value of {len(val)} characters is longer than "
                                                    f"{MAX_LABEL_VALUE}")
        if not isinstance(k, str) or len(k) > MAX_LABEL_KEY:
            raise ParseError(f"{field}[{_key(k)}]", f"label key must be a string of at most {MAX_LABEL_KEY} "
                                                    "characters")
    return _intern_labels(v)


def _meta(obj: Any, default_namespace: str | None) -> tuple[str, str, Mapping[str, str]]:
    if not isinstance(obj, dict):
        raise ParseError("<object>", f"must be an object, not {type(obj).__name__}")
    meta = _obj(obj.get("metadata"), "metadata")
    name = _str(meta.get("name"), "metadata.name", required=True)
    ns = ""
    if default_namespace is not None:
        ns = _str(meta.get("namespace"), "metadata.namespace") or default_namespace
    return ns, name, _labels(meta.get("labels"), "metadata.labels")


def parse_namespace(obj: Any) -> Namespace:
    """A Namespace object -> :class:`Namespace`."""
    _, name, labels = _meta(obj, None)
    return Namespace(name, labels)


@lru_cache(maxsize=8192)
def _container_port(num: int, proto: str, name: str) -> ContainerPort:
    return ContainerPort(num, proto, name)  # type: ignore[arg-type]  # proto checked by the caller


def _container_ports(spec: dict[str, Any]) -> tuple[ContainerPort, ...]:
    out: list[ContainerPort] = []
    groups = [("spec.containers", _list(spec.get("containers"), "spec.containers"))]
    inits = _list(spec.get("initContainers"), "spec.initContainers")
    if inits:
        groups.append(("spec.initContainers", inits))
    for base, containers in groups:
        for ci, c in enumerate(containers):
            if not isinstance(c, dict):
                _obj(c, f"{base}[{ci}]")  # raises
                continue
            if base == "spec.initContainers" and c.get("restartPolicy") != "Always":
                continue  # only sidecar init containers keep serving
            ports = c.get("ports")
            if not ports:
                continue
            for pi, p in enumerate(_list(ports, f"{base}[{ci}].ports")):
                if not isinstance(p, dict):
                    _obj(p, f"{base}[{ci}].ports[{pi}]")
                    continue
                num = p.get("containerPort")
                proto = p.get("protocol") or "TCP"
                name = p.get("name") or ""
                if type(num) is not int or not 0 < num < 65536:
                    raise ParseError(f"{base}[{ci}].ports[{pi}].containerPort",
                                     f"must be a port number 1-65535, not {_show(num)}")
                if proto not in PROTOCOLS:
                    raise ParseError(f"{base}[{ci}].ports[{pi}].protocol", f"unsupported protocol {_show(proto)}")
                if not isinstance(name, str):
                    raise ParseError(f"{base}[{ci}].ports[{pi}].name", f"must be a string, not {type(name).__name__}")
                out.append(_container_port(num, proto, name))
    return tuple(out)


def parse_pod(obj: Any) -> Pod:
    """A Pod object -> :class:`Pod`.  IPs from ``status.podIPs`` (dual
    stack), else ``status.podIP``; canonical text, duplicates dropped."""
    ns, name, labels = _meta(obj, "default")
    spec = _obj(obj.get("spec"), "spec")
    status = _obj(obj.get("status"), "status")
    host_network = spec.get("hostNetwork") or False
    if not isinstance(host_network, bool):
        raise ParseError("spec.hostNetwork", f"must be a boolean, not {_show(host_network)}")
    raw_ips: list[tuple[str, Any]] = []
    pod_ips = _list(status.get("podIPs"), "status.podIPs")
    for i, e in enumerate(pod_ips):
        raw_ips.append((f"status.podIPs[{i}].ip", _obj(e, f"status.podIPs[{i}]").get("ip")))
    if not raw_ips and status.get("podIP"):
        raw_ips.append(("status.podIP", status.get("podIP")))
    ips: list[str] = []
    for field, raw in raw_ips:
        ip = canonical_ip(_str(raw, field, required=True))
        if ip is None:
            raise ParseError(field, f"{_show(raw)} is not an IP address")
        if ip not in ips:
            ips.append(ip)
    return Pod(
        namespace=ns,
        name=name,
        labels=labels,
        node=_str(spec.get("nodeName"), "spec.nodeName"),
        ips=tuple(ips),
        host_network=host_network,
        phase=_str(status.get("phase"), "status.phase") or "Pending",
        ports=_container_ports(spec),
    )


def parse_node(obj: Any) -> Node:
    """A Node object -> :class:`Node` (InternalIP/ExternalIP addresses,
    ``spec.podCIDRs`` else ``spec.podCIDR``)."""
    _, name, _ = _meta(obj, None)
    spec = _obj(obj.get("spec"), "spec")
    status = _obj(obj.get("status"), "status")
    addrs: list[str] = []
    for i, a in enumerate(_list(status.get("addresses"), "status.addresses")):
        a = _obj(a, f"status.addresses[{i}]")
        if a.get("type") not in ("InternalIP", "ExternalIP"):
            continue
        raw = _str(a.get("address"), f"status.addresses[{i}].address", required=True)
        ip = canonical_ip(raw)
        if ip is None:
            raise ParseError(f"status.addresses[{i}].address", f"{_show(raw)} is not an IP address")
        if ip not in addrs:
            addrs.append(ip)
    cidrs: list[str] = []
    raw_cidrs = [(f"spec.podCIDRs[{i}]", c) for i, c in enumerate(_list(spec.get("podCIDRs"), "spec.podCIDRs"))]
    if not raw_cidrs and spec.get("podCIDR"):
        raw_cidrs = [("spec.podCIDR", spec.get("podCIDR"))]
    for field, raw in raw_cidrs:
        c = canonical_cidr(_str(raw, field, required=True))
        if c is None:
            raise ParseError(field, f"{_show(raw)} is not a CIDR")
        if c not in cidrs:
            cidrs.append(c)
    return Node(name, tuple(addrs), tuple(cidrs))
