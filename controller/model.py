"""Slim, immutable records of the Kubernetes objects Stockade reads.

Only what policy enforcement needs is kept: no client model classes, no
managed fields, no status beyond pod IPs and phase.  Records are built from
Kubernetes JSON by ``controller.parse`` (which also validates policies the
way the API server does) and are never mutated: a change is a new record.

This module holds the types and label-selector matching only; it does not
parse, validate, index or compile.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, NewType

PodKey = NewType("PodKey", str)  # "namespace/name"
PolicyKey = NewType("PolicyKey", str)  # "namespace/name"
NodeName = NewType("NodeName", str)

Protocol = Literal["TCP", "UDP", "SCTP"]
Operator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
PolicyType = Literal["Ingress", "Egress"]

PROTOCOLS: tuple[Protocol, ...] = ("TCP", "UDP", "SCTP")
OPERATORS: tuple[Operator, ...] = ("In", "NotIn", "Exists", "DoesNotExist")


def key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ``matchExpressions`` entry; ``values`` sorted and de-duplicated."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":
            # Kubernetes: a missing key satisfies NotIn.
            return labels.get(self.key) not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A normalised label selector.  ``match_labels`` sorted by key,
    ``expressions`` sorted; so two selectors that select the same way by
    construction compare (and hash) equal.  The empty selector selects
    everything (``{}`` and ``matchLabels: null`` alike)."""

    match_labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        for k, v in self.match_labels:
            if labels.get(k) != v:
                return False
        return all(r.matches(labels) for r in self.expressions)

    @property
    def is_empty(self) -> bool:
        return not self.match_labels and not self.expressions

    def text(self) -> str:
        """Human text, as ``kubectl`` shows selectors (``a=b,c in (d,e)``)."""
        parts = [f"{k}={v}" for k, v in self.match_labels]
        for r in self.expressions:
            if r.operator == "Exists":
                parts.append(r.key)
            elif r.operator == "DoesNotExist":
                parts.append(f"!{r.key}")
            else:
                op = "in" if r.operator == "In" else "notin"
                parts.append(f"{r.key} {op} ({','.join(r.values)})")
        return ",".join(parts) or "<all>"


SELECT_ALL = LabelSelector()


@dataclass(frozen=True, slots=True)
class ContainerPort:
    port: int
    protocol: Protocol = "TCP"
    name: str = ""


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    labels: Mapping[str, str]
    node: str = ""  # spec.nodeName; "" while unscheduled
    ips: tuple[str, ...] = ()  # status.podIPs (canonical text), IPv4 and/or IPv6
    host_network: bool = False
    phase: str = "Running"
    ports: tuple[ContainerPort, ...] = ()  # all containers' ports, in order

    @property
    def key(self) -> PodKey:
        return PodKey(key(self.namespace, self.name))

    @property
    def enforced(self) -> bool:
        """Takes part in policy as a selectable pod (target or pod peer):
        it has an IP, is not hostNetwork and is not finished.  Finished
        pods' IPs may already belong to someone else."""
        return bool(self.ips) and not self.host_network and self.phase not in ("Succeeded", "Failed")

    def named_port(self, name: str, protocol: Protocol) -> int | None:
        for p in self.ports:
            if p.name == name and p.protocol == protocol:
                return p.port
        return None


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    addresses: tuple[str, ...] = ()  # InternalIP/ExternalIP, canonical text
    pod_cidrs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PortSpec:
    """One entry of a rule's ``ports``.  ``port`` None means every port of
    the protocol; a str is a named port (resolved per destination pod)."""

    protocol: Protocol = "TCP"
    port: int | str | None = None
    end_port: int | None = None


@dataclass(frozen=True, slots=True)
class IPBlock:
    cidr: str  # canonical network text ("198.18.0.0/16")
    excepts: tuple[str, ...] = ()  # canonical, sorted


@dataclass(frozen=True, slots=True)
class Peer:
    """One entry of ``from``/``to``.  Exactly one of: an ipBlock, or a pod
    selection (``pod_selector`` and/or ``namespace_selector``; with neither
    namespace selector the pods are in the policy's own namespace)."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One ingress or egress rule.  Empty ``peers``: every source or
    destination.  Empty ``ports``: every port and protocol."""

    peers: tuple[Peer, ...] = ()
    ports: tuple[PortSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """A validated policy.  ``policy_types`` is the effective list (given,
    or inferred as the API server does: Ingress always, Egress when there
    are egress rules)."""

    namespace: str
    name: str
    pod_selector: LabelSelector
    policy_types: tuple[PolicyType, ...]
    ingress: tuple[PolicyRule, ...] = ()
    egress: tuple[PolicyRule, ...] = ()

    @property
    def key(self) -> PolicyKey:
        return PolicyKey(key(self.namespace, self.name))

    @property
    def isolates_ingress(self) -> bool:
        return "Ingress" in self.policy_types

    @property
    def isolates_egress(self) -> bool:
        return "Egress" in self.policy_types


class RecordSink(typing.Protocol):
    """Anything that takes records one by one (the engine, the oracle's cluster)."""

    def set_namespace(self, ns: Namespace) -> None: ...
    def set_node(self, node: Node) -> None: ...
    def set_pod(self, pod: Pod) -> None: ...
    def set_policy(self, pol: NetworkPolicy) -> None: ...


def load_records(sink: RecordSink, namespaces: Iterable[Namespace] = (), nodes: Iterable[Node] = (),
                 pods: Iterable[Pod] = (), policies: Iterable[NetworkPolicy] = ()) -> None:
    """Set every record into ``sink``: namespaces, nodes, pods, then policies."""
    for ns in namespaces:
        sink.set_namespace(ns)
    for node in nodes:
        sink.set_node(node)
    for pod in pods:
        sink.set_pod(pod)
    for pol in policies:
        sink.set_policy(pol)
