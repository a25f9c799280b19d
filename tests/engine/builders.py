"""Terse builders of model records for the engine tests (no parser needed)."""

from __future__ import annotations

from controller.model import (
    SELECT_ALL,
    ContainerPort,
    IPBlock,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Node,
    Peer,
    Pod,
    PolicyRule,
    PolicyType,
    PortSpec,
    Protocol,
    Requirement,
)


def sel(expr: dict[str, str] | None = None, *reqs: Requirement) -> LabelSelector:
    return LabelSelector(tuple(sorted((expr or {}).items())), tuple(sorted(reqs, key=repr)))


def ns(name: str, **labels: str) -> Namespace:
    return Namespace(name, {"kubernetes.io/metadata.name": name, **labels})


def pod(key: str, node: str, ip: str | tuple[str, ...], ports: tuple[ContainerPort, ...] = (),
        host_network: bool = False, phase: str = "Running", **labels: str) -> Pod:
    namespace, name = key.split("/")
    ips = (ip,) if isinstance(ip, str) else ip
    return Pod(namespace, name, labels, node, ips, host_network, phase, ports)


def node(name: str, *addresses: str) -> Node:
    return Node(name, addresses)


def port(p: int | str | None = None, protocol: Protocol = "TCP", end: int | None = None) -> PortSpec:
    return PortSpec(protocol, p, end)


def peer(pods: LabelSelector | None = None, nss: LabelSelector | None = None) -> Peer:
    return Peer(pods, nss)


def block(cidr: str, *excepts: str) -> Peer:
    return Peer(ip_block=IPBlock(cidr, tuple(sorted(excepts))))


def rule(*peers: Peer, ports: tuple[PortSpec, ...] = ()) -> PolicyRule:
    return PolicyRule(tuple(peers), ports)


def policy(key: str, select: LabelSelector = SELECT_ALL, ingress: tuple[PolicyRule, ...] | None = None,
           egress: tuple[PolicyRule, ...] | None = None, types: tuple[PolicyType, ...] | None = None) -> NetworkPolicy:
    namespace, name = key.split("/")
    eff: tuple[PolicyType, ...]
    if types is not None:
        eff = types
    else:
        ing: tuple[PolicyType, ...] = ("Ingress",) if ingress is not None or egress is None else ()
        eg: tuple[PolicyType, ...] = ("Egress",) if egress is not None else ()
        eff = ing + eg
    return NetworkPolicy(namespace, name, select, eff, ingress or (), egress or ())
