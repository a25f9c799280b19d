"""NetworkPolicy: validation as the API server does it, and conversion to a record.

What: ``parse_policy`` validates a NetworkPolicy the way
``pkg/apis/networking/validation.ValidateNetworkPolicy`` does (plus the
object-name and label checks it calls) and reports *every* problem at once
in :class:`PolicyInvalid`, each prefixed with its field path
(``spec.ingress[0].from[1].ipBlock.except[0]: ...``).  Unknown fields are
errors too, as with ``kubectl``'s strict field validation: a typo such as
``ingres`` would otherwise silently turn a policy into deny-all.
Normal forms: a peer with a namespace selector but no pod selector gets
the select-all pod selector; ``endPort == port`` is dropped; policy types
are the effective ones (given, or inferred: Ingress always, Egress iff
there are egress rules); CIDRs are canonical, except lists sorted.

Why its own module: this is the one place a policy's meaning is decided
for the controller, ``stockade evaluate`` and the lab alike.  Size limits
are checked before the work they bound: ipBlock peers counted in one pass
before any rule is parsed (MAX_POLICY_IPBLOCKS), list entries as each list
is reached (MAX_POLICY_ENTRIES).

What not: selector details (``parse_selectors``), string rules
(``parse_text``), pods/namespaces/nodes (``parse_objects``); no I/O.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

from controller.model import PROTOCOLS, SELECT_ALL, IPBlock, NetworkPolicy, Peer, PolicyRule, PolicyType, PortSpec
from controller.parse_errors import PolicyInvalid, _Errors, _key, _show, _TooBig
from controller.parse_limits import _CACHED_TEXT, ETCD_OBJECT_BYTES, MAX_POLICY_IPBLOCKS
from controller.parse_selectors import _selector
from controller.parse_text import (
    _label_key_problem,
    _label_value_problem,
    _name_problem,
    _port_name_problem,
    canonical_cidr,
)


def policy_key_of(obj: Any, default_namespace: str = "default") -> str:
    """``namespace/name`` of a policy object, best effort (for error reports
    about objects too broken to parse)."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    ns = meta.get("namespace") if isinstance(meta.get("namespace"), str) and meta.get("namespace") else default_namespace
    name = meta.get("name") if isinstance(meta.get("name"), str) and meta.get("name") else "<unnamed>"
    return f"{ns}/{name}"



_TOP = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
_SPEC = frozenset({"podSelector", "ingress", "egress", "policyTypes"})
_INGRESS = frozenset({"from", "ports"})
_EGRESS = frozenset({"to", "ports"})
_PEER = frozenset({"podSelector", "namespaceSelector", "ipBlock"})
_PORT = frozenset({"protocol", "port", "endPort"})
_IPBLOCK = frozenset({"cidr", "except"})


def _port_num(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_Problems = tuple[tuple[str, str], ...]  # (field suffix, message)
_CACHEABLE_PORT = (int, str, type(None))


def _port_entry(proto: Any, port: Any, end: Any) -> tuple[PortSpec, _Problems]:
    """``ValidateNetworkPolicyPort`` for one entry's values."""
    probs: list[tuple[str, str]] = []
    if proto is None:
        proto = "TCP"
    elif proto not in PROTOCOLS:
        probs.append((".protocol", f"unsupported protocol {_show(proto)}: supported values are TCP, UDP, SCTP"))
        proto = "TCP"
    if end is not None and not _port_num(end):
        probs.append((".endPort", f"must be an integer, not {_show(end)}"))
        end = None
    if port is None:
        if end is not None:
            probs.append((".endPort", "may not be specified when port is not specified"))
    elif _port_num(port):
        if not 1 <= port <= 65535:
            probs.append((".port", f"{_show(port)} must be between 1 and 65535, inclusive"))
        if end is not None:
            if end < port:
                probs.append((".endPort", f"{_show(end)} must be greater than or equal to port {_show(port)}"))
            if not 1 <= end <= 65535:
                probs.append((".endPort", f"{_show(end)} must be between 1 and 65535, inclusive"))
            if end == port:
                end = None
    elif isinstance(port, str):
        if end is not None:
            probs.append((".endPort", f"may not be specified when port is a named port ({_show(port)})"))
        prob = _port_name_problem(port)
        if prob:
            probs.append((".port", f"invalid port name {_show(port)}: {prob}"))
    else:
        probs.append((".port", f"must be a port number or a port name, not {_show(port)}"))
        port = None
    return PortSpec(proto, port, end), tuple(probs)


_port_entry_cached = lru_cache(maxsize=4096)(_port_entry)


def _ports(raw: Any, path: str, errs: _Errors) -> tuple[PortSpec, ...]:
    out: list[PortSpec] = []
    for pp, p in errs.objects(raw, path, _PORT):
        proto, port, end = p.get("protocol"), p.get("port"), p.get("endPort")
        # 1 == True == 1.0 to a cache: only exact int/str/None values are cached
        if type(port) in _CACHEABLE_PORT and type(end) in _CACHEABLE_PORT and type(proto) in _CACHEABLE_PORT:
            spec, probs = _port_entry_cached(proto, port, end)
        else:
            spec, probs = _port_entry(proto, port, end)
        for suffix, msg in probs:
            errs.add(pp + suffix, msg)
        out.append(spec)
    return tuple(out)


def _except_key(c: str) -> tuple[bytes, str]:
    return ipaddress.ip_network(c).network_address.packed, c


def _ip_block_entry(cidr_raw: str, excepts_raw: tuple[str, ...]) -> tuple[IPBlock, _Problems]:
    """``ValidateIPBlock``: a CIDR, and excepts strictly within it."""
    cidr = canonical_cidr(cidr_raw)
    if cidr is None:
        return IPBlock("0.0.0.0/0"), ((".cidr", f"{_show(cidr_raw)} is not a valid CIDR (e.g. 10.9.8.0/24 or 2001:db8::/64)"),)
    net = ipaddress.ip_network(cidr)
    probs: list[tuple[str, str]] = []
    excepts: set[str] = set()
    for i, ex in enumerate(excepts_raw):
        exc = canonical_cidr(ex)
        if exc is None:
            probs.append((f".except[{i}]", f"{_show(ex)} is not a valid CIDR (e.g. 10.9.8.0/24 or 2001:db8::/64)"))
            continue
        en = ipaddress.ip_network(exc)
        if en.version != net.version or not en.subnet_of(net) or en.prefixlen <= net.prefixlen:  # type: ignore[arg-type]
            probs.append((f".except[{i}]", f"{_show(ex, quote=False)} is not within cidr {_show(cidr_raw, quote=False)} (must be a strict subset)"))
            continue
        excepts.add(exc)
    return IPBlock(cidr, tuple(sorted(excepts, key=_except_key))), tuple(probs)


_ip_block_entry_cached = lru_cache(maxsize=16384)(_ip_block_entry)


def _ip_block(raw: dict[str, Any], path: str, errs: _Errors) -> IPBlock:
    errs.known(raw, path, _IPBLOCK)
    cidr_raw = raw.get("cidr")
    if not cidr_raw:
        errs.add(f"{path}.cidr", "required")
        return IPBlock("0.0.0.0/0")
    if not isinstance(cidr_raw, str):
        errs.add(f"{path}.cidr", f"{_show(cidr_raw)} is not a valid CIDR (e.g. 10.9.8.0/24 or 2001:db8::/64)")
        return IPBlock("0.0.0.0/0")
    ex_list = errs.lst(raw.get("except"), f"{path}.except")
    bad = [i for i, e in enumerate(ex_list) if not isinstance(e, str)]
    for i in bad:
        errs.add(f"{path}.except[{i}]", f"{_show(ex_list[i])} is not a valid CIDR (e.g. 10.9.8.0/24 or 2001:db8::/64)")
    if bad:
        return IPBlock("0.0.0.0/0")
    excepts = tuple(ex_list)
    small = len(excepts) <= 16 and len(cidr_raw) <= _CACHED_TEXT and all(len(e) <= _CACHED_TEXT for e in excepts)
    block, probs = (_ip_block_entry_cached if small else _ip_block_entry)(cidr_raw, excepts)
    for suffix, msg in probs:
        errs.add(path + suffix, msg)
    return block


def _peers(raw: Any, path: str, errs: _Errors) -> tuple[Peer, ...]:
    """``ValidateNetworkPolicyPeer`` for each entry."""
    out: list[Peer] = []
    for pp, d in errs.objects(raw, path, _PEER):
        pod_raw, ns_raw, ipb_raw = d.get("podSelector"), d.get("namespaceSelector"), d.get("ipBlock")
        n = (pod_raw is not None) + (ns_raw is not None) + (ipb_raw is not None)
        if n == 0:
            errs.add(pp, "must specify a peer (podSelector, namespaceSelector or ipBlock)")
            continue
        if ipb_raw is not None and n > 1:
            errs.add(pp, "may not specify both ipBlock and another peer")
        pod_sel = _selector(pod_raw, f"{pp}.podSelector", errs) if pod_raw is not None else None
        ns_sel = _selector(ns_raw, f"{pp}.namespaceSelector", errs) if ns_raw is not None else None
        if ipb_raw is not None:
            ipd = errs.obj(ipb_raw, f"{pp}.ipBlock")
            if ipd is not None:
                out.append(Peer(ip_block=_ip_block(ipd, f"{pp}.ipBlock", errs)))
            continue
        if ns_sel is not None and pod_sel is None:
            pod_sel = SELECT_ALL
        out.append(Peer(pod_selector=pod_sel, namespace_selector=ns_sel))
    return tuple(out)


def _rules(raw: Any, path: str, peers_field: str, allowed: frozenset[str], errs: _Errors) -> tuple[PolicyRule, ...]:
    out: list[PolicyRule] = []
    for rp, d in errs.objects(raw, path, allowed):
        ports = _ports(d.get("ports"), f"{rp}.ports", errs)
        peers = _peers(d.get(peers_field), f"{rp}.{peers_field}", errs)
        out.append(PolicyRule(peers, ports))
    return tuple(out)


def parse_policy(obj: Any, default_namespace: str = "default") -> NetworkPolicy:
    """A NetworkPolicy object -> :class:`NetworkPolicy`, or
    :class:`PolicyInvalid` listing every error with its field path.  A
    policy without ``metadata.namespace`` lands in ``default_namespace``,
    as ``kubectl apply`` does."""
    key = policy_key_of(obj, default_namespace)
    if not isinstance(obj, dict):
        raise PolicyInvalid(key, [f"<object>: must be an object, not {type(obj).__name__}"])
    try:
        return _policy(obj, default_namespace, key)
    except _TooBig as e:
        raise PolicyInvalid(key, [e.text]) from None


def _count_ip_blocks(spec: Any) -> None:
    """Raise _TooBig, naming the peer list where the count passes
    MAX_POLICY_IPBLOCKS, before any rule is parsed (one cheap pass)."""
    if not isinstance(spec, dict):
        return
    total = 0
    for direction, peers_field in (("ingress", "from"), ("egress", "to")):
        rules = spec.get(direction)
        if not isinstance(rules, list):
            continue
        for i, r in enumerate(rules):
            peers = r.get(peers_field) if isinstance(r, dict) else None
            if not isinstance(peers, list):
                continue
            total += sum(1 for pe in peers if isinstance(pe, dict) and pe.get("ipBlock") is not None)
            if total > MAX_POLICY_IPBLOCKS:
                raise _TooBig(f"spec.{direction}[{i}].{peers_field}",
                              f"the policy has more than {MAX_POLICY_IPBLOCKS} ipBlock peers "
                              f"(more than etcd's {ETCD_OBJECT_BYTES}-byte object limit can hold)")


def _policy(obj: dict[str, Any], default_namespace: str, key: str) -> NetworkPolicy:
    _count_ip_blocks(obj.get("spec"))
    errs = _Errors()
    errs.known(obj, "", _TOP)
    kind = obj.get("kind")
    if kind is not None and kind != "NetworkPolicy":
        errs.add("kind", f"{_show(kind)} is not NetworkPolicy")
    api = obj.get("apiVersion")
    if api is not None and api != "networking.k8s.io/v1":
        errs.add("apiVersion", f"{_show(api)} is not networking.k8s.io/v1")
    meta = errs.obj(obj.get("metadata"), "metadata") or {}
    name = meta.get("name")
    if not name:
        errs.add("metadata.name", "required")
        name = ""
    elif not isinstance(name, str):
        errs.add("metadata.name", f"must be a string, not {type(name).__name__}")
        name = ""
    elif (prob := _name_problem(name, label=False)) is not None:
        errs.add("metadata.name", f"invalid name {_show(name)}: {prob}")
    ns = meta.get("namespace") or default_namespace
    if not isinstance(ns, str):
        errs.add("metadata.namespace", f"must be a string, not {type(ns).__name__}")
        ns = default_namespace
    elif (prob := _name_problem(ns, label=True)) is not None:
        errs.add("metadata.namespace", f"invalid namespace {_show(ns)}: {prob}")
    mlabels = errs.obj(meta.get("labels"), "metadata.labels") or {}
    for k, v in mlabels.items():
        if (prob := _label_key_problem(k)) is not None:
            errs.add(f"metadata.labels[{_key(k)}]", f"invalid label key {_show(k)}: {prob}")
        if not isinstance(v, str) or (prob := _label_value_problem(v)) is not None:
            errs.add(f"metadata.labels[{_key(k)}]", f"invalid label value {_show(v)}: {prob or 'must be a string'}")

    spec = errs.obj(obj.get("spec"), "spec") or {}
    errs.known(spec, "spec", _SPEC)
    pod_selector = _selector(spec.get("podSelector"), "spec.podSelector", errs)
    ingress = _rules(spec.get("ingress"), "spec.ingress", "from", _INGRESS, errs)
    egress = _rules(spec.get("egress"), "spec.egress", "to", _EGRESS, errs)

    types_raw = errs.lst(spec.get("policyTypes"), "spec.policyTypes")
    types: list[PolicyType] = []
    if len(types_raw) > 2:
        errs.add("spec.policyTypes", f"may not specify more than two policyTypes (got {len(types_raw)})")
    else:
        for i, t in enumerate(types_raw):
            if t == "Ingress" or t == "Egress":
                if t not in types:
                    types.append(t)
            else:
                errs.add(f"spec.policyTypes[{i}]", f"unsupported value {_show(t)}: supported values are Ingress, Egress")
    if not types_raw:
        types = ["Ingress", "Egress"] if egress else ["Ingress"]
    if errs.count:
        raise PolicyInvalid(key, errs.report())
    order: tuple[PolicyType, ...] = ("Ingress", "Egress")
    ordered = tuple(t for t in order if t in types)
    return NetworkPolicy(ns, name, pod_selector, ordered, ingress, egress)

