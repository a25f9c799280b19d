"""The spec-level decider: would NetworkPolicy v1 allow this connection?

What: :func:`decide` answers, for one cluster (:class:`Cluster`: namespaces,
pods, nodes, policies as ``controller.model`` records), whether a connection
from ``src`` to ``dst`` on ``port``/``protocol`` is allowed, and why: a
:class:`Decision` with one :class:`DirectionVerdict` per direction (is the
source pod isolated for egress, is the destination pod isolated for ingress,
which policy rules allowed it).  ``Decision.to_json()`` is what the
controller's "explain a connection" RPC and REST endpoint return.

Why: it is written straight from the NetworkPolicy v1 specification and
knows nothing about the compiler, ipsets or iptables, so it can serve as the
reference in the differential tests (oracle == packet walker over compiled
state) and in ``stockade evaluate``.  Clarity beats speed here; indexes keep
one decision cheap (policies are looked up per namespace, peers by IP).

The semantics, one place:

* A pod takes part (as target or as pod peer) only when it is *enforced*:
  it has an IP, is not hostNetwork and is not Succeeded/Failed.  Anything
  else is just an address (hostNetwork pods are their node's address);
  addresses are matched by ipBlock peers only.  Pod IPs inside an ipBlock
  ARE matched by it (as the upstream e2e suite expects).
* A pod is isolated for a direction when some policy in its namespace whose
  ``podSelector`` selects it lists that direction in its (effective)
  ``policyTypes``.  Not isolated: allowed.  Isolated: allowed iff some rule
  of that direction of some selecting policy matches (union).
* A connection needs the source's egress AND the destination's ingress.
* A rule matches when a peer matches (no peers: every peer) and a port
  matches (no ports: every port).  Peers: ipBlock (cidr minus excepts,
  family-aware), or pod selection: the pods matching ``podSelector`` in the
  namespaces matching ``namespaceSelector`` (AND within one peer), or in the
  policy's own namespace when there is no namespace selector.
* Ports: protocol must equal (default TCP); numeric port or ``port..endPort``
  range; a named port is resolved against the *destination* pod's container
  ports (name and protocol), per pod; to a destination that is not an
  enforced pod a named port never matches.
* Traffic from the destination pod's own node (its addresses, or a
  hostNetwork pod on it) is always allowed in (kubelet probes), and a pod's
  traffic to itself never leaves its network namespace: always allowed
  (the upstream docs: policies cannot block loopback or the resident node).

What not: no Services, no AdminNetworkPolicy, no conntrack/reply traffic (a
connection allowed one way is allowed back), no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from controller.model import (
    IPBlock,
    Namespace,
    NetworkPolicy,
    Node,
    Peer,
    Pod,
    PolicyKey,
    PolicyRule,
    PortSpec,
    Protocol,
    load_records,
)

DirectionName = Literal["ingress", "egress"]
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


class OracleError(ValueError):
    """The question cannot be asked: unknown pod, pod without an address of
    a shared family, unparsable address."""


# --------------------------------------------------------------------------
# The cluster, with the indexes a decision needs


class Cluster:
    """A mutable snapshot of the cluster as records, kept indexed.

    ``namespaces``: name -> Namespace.  ``pods``: "ns/name" -> Pod.
    ``nodes``: name -> Node.  ``policies``: "ns/name" -> NetworkPolicy.
    Indexes: ``_by_ns`` namespace -> {policy key -> policy};
    ``_pod_ip`` address -> key of the enforced pod holding it;
    ``_node_ip`` address -> node name (node addresses).
    """

    def __init__(self, namespaces: Iterable[Namespace] = (), pods: Iterable[Pod] = (),
                 nodes: Iterable[Node] = (), policies: Iterable[NetworkPolicy] = ()) -> None:
        self.namespaces: dict[str, Namespace] = {}
        self.pods: dict[str, Pod] = {}
        self.nodes: dict[str, Node] = {}
        self.policies: dict[str, NetworkPolicy] = {}
        self._by_ns: dict[str, dict[str, NetworkPolicy]] = {}
        self._pod_ip: dict[str, str] = {}
        self._node_ip: dict[str, str] = {}
        load_records(self, namespaces, nodes, pods, policies)

    def set_namespace(self, ns: Namespace) -> None:
        self.namespaces[ns.name] = ns

    def remove_namespace(self, name: str) -> None:
        self.namespaces.pop(name, None)

    def set_pod(self, pod: Pod) -> None:
        self.remove_pod(pod.key)
        self.pods[pod.key] = pod
        if pod.enforced:
            for ip in pod.ips:
                self._pod_ip[ip] = pod.key

    def remove_pod(self, key: str) -> None:
        old = self.pods.pop(key, None)
        if old is not None:
            for ip in old.ips:
                if self._pod_ip.get(ip) == key:
                    del self._pod_ip[ip]

    def set_node(self, node: Node) -> None:
        self.remove_node(node.name)
        self.nodes[node.name] = node
        for ip in node.addresses:
            self._node_ip[ip] = node.name

    def remove_node(self, name: str) -> None:
        old = self.nodes.pop(name, None)
        if old is not None:
            for ip in old.addresses:
                if self._node_ip.get(ip) == name:
                    del self._node_ip[ip]

    def set_policy(self, policy: NetworkPolicy) -> None:
        self.remove_policy(policy.key)
        self.policies[policy.key] = policy
        self._by_ns.setdefault(policy.namespace, {})[policy.key] = policy

    def remove_policy(self, key: str) -> None:
        old = self.policies.pop(key, None)
        if old is not None:
            self._by_ns[old.namespace].pop(key, None)

    def policies_in(self, namespace: str) -> list[NetworkPolicy]:
        """The policies of ``namespace``, sorted by key."""
        d = self._by_ns.get(namespace, {})
        return [d[k] for k in sorted(d)]

    def namespace_labels(self, name: str) -> Mapping[str, str]:
        ns = self.namespaces.get(name)
        return ns.labels if ns is not None else {}

    def pod_at(self, ip: str) -> Pod | None:
        """The enforced pod holding ``ip`` (canonical text), if any."""
        k = self._pod_ip.get(ip)
        return self.pods[k] if k is not None else None

    def node_at(self, ip: str) -> str:
        """The node whose address ``ip`` is, or ""."""
        return self._node_ip.get(ip, "")


# --------------------------------------------------------------------------
# Endpoints


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One end of a connection, resolved to the address used.

    ``pod`` is set only for an enforced pod (one that policies can select);
    ``node`` is the node of a pod, or the node an address belongs to (node
    IP, hostNetwork pod), else "".  ``name`` is what the caller asked for
    (``ns/pod`` or the address)."""

    name: str
    ip: str
    pod: Pod | None = None
    node: str = ""

    @property
    def kind(self) -> str:
        return "pod" if self.pod is not None else "host"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ip": self.ip, "kind": self.kind, "node": self.node or None}


@lru_cache(maxsize=65536)
def _addr(text: str) -> IPAddr:
    return ipaddress.ip_address(text)


@lru_cache(maxsize=65536)
def _net(text: str) -> IPNet:
    return ipaddress.ip_network(text)


def _candidates(cluster: Cluster, ref: str) -> tuple[str, list[str], Pod | None, str]:
    """(name, addresses, enforced pod or None, node) for a reference."""
    if "/" in ref:
        pod = cluster.pods.get(ref)
        if pod is None:
            raise OracleError(f"{ref}: no such pod")
        ips = list(pod.ips)
        if pod.host_network:
            node = cluster.nodes.get(pod.node)
            if not ips and node is not None:
                ips = list(node.addresses)
            if not ips:
                raise OracleError(f"{ref}: hostNetwork pod whose node {pod.node!r} has no address")
            return ref, ips, None, pod.node
        if not ips:
            raise OracleError(f"{ref}: pod has no IP address")
        if not pod.enforced:  # finished: only an address, not its node's
            return ref, ips, None, ""
        return ref, ips, pod, pod.node
    try:
        ip = str(_addr(ref))
    except ValueError:
        raise OracleError(f"{ref!r} is neither a pod (namespace/name) nor an IP address") from None
    pod = cluster.pod_at(ip)
    if pod is not None:
        return ref, [ip], pod, pod.node
    return ref, [ip], None, cluster.node_at(ip)


def resolve(cluster: Cluster, src: str, dst: str, family: int | None = None) -> tuple[Endpoint, Endpoint]:
    """Resolve both ends to addresses of one family: ``family`` (4 or 6)
    when given, else IPv4 when both ends have it, else IPv6."""
    sname, sips, spod, snode = _candidates(cluster, src)
    dname, dips, dpod, dnode = _candidates(cluster, dst)
    for fam in (family,) if family else (4, 6):
        s = next((ip for ip in sips if _addr(ip).version == fam), None)
        d = next((ip for ip in dips if _addr(ip).version == fam), None)
        if s is not None and d is not None:
            return Endpoint(sname, s, spod, snode), Endpoint(dname, d, dpod, dnode)
    want = f"IPv{family}" if family else "a common address family"
    raise OracleError(f"{src} ({', '.join(sips)}) and {dst} ({', '.join(dips)}) have no {want}")


# --------------------------------------------------------------------------
# Matching


def ip_block_matches(block: IPBlock, ip: str) -> bool:
    """``ip`` inside ``cidr`` and outside every ``except``."""
    a = _addr(ip)
    net = _net(block.cidr)
    if a.version != net.version or a not in net:
        return False
    return not any(a in _net(e) for e in block.excepts)


def peer_matches(cluster: Cluster, peer: Peer, policy_ns: str, ep: Endpoint) -> bool:
    if peer.ip_block is not None:
        return ip_block_matches(peer.ip_block, ep.ip)
    pod = ep.pod
    if pod is None:
        return False
    if peer.namespace_selector is None:
        if pod.namespace != policy_ns:
            return False
    elif not peer.namespace_selector.matches(cluster.namespace_labels(pod.namespace)):
        return False
    return peer.pod_selector is None or peer.pod_selector.matches(pod.labels)


def port_matches(spec: PortSpec, port: int, protocol: Protocol, dst: Endpoint) -> bool:
    if spec.protocol != protocol:
        return False
    if spec.port is None:
        return True
    if isinstance(spec.port, int):
        return spec.port <= port <= (spec.end_port or spec.port)
    # Named port: resolved against the destination pod, only.
    return dst.pod is not None and dst.pod.named_port(spec.port, protocol) == port


def rule_matches(cluster: Cluster, rule: PolicyRule, policy_ns: str, peer: Endpoint,
                 port: int, protocol: Protocol, dst: Endpoint) -> bool:
    if rule.peers and not any(peer_matches(cluster, p, policy_ns, peer) for p in rule.peers):
        return False
    return not rule.ports or any(port_matches(s, port, protocol, dst) for s in rule.ports)


def selecting(cluster: Cluster, pod: Pod, direction: DirectionName) -> list[NetworkPolicy]:
    """The policies that isolate ``pod`` for ``direction``, sorted by key."""
    if not pod.enforced:
        return []
    want = "Ingress" if direction == "ingress" else "Egress"
    return [p for p in cluster.policies_in(pod.namespace)
            if want in p.policy_types and p.pod_selector.matches(pod.labels)]


# --------------------------------------------------------------------------
# The decision


@dataclass(frozen=True, slots=True)
class RuleRef:
    """Rule ``index`` of the ``direction`` rules of ``policy``."""

    policy: PolicyKey
    direction: DirectionName
    index: int

    def text(self) -> str:
        return f"{self.policy} {self.direction}[{self.index}]"


@dataclass(frozen=True, slots=True)
class DirectionVerdict:
    """One side of a connection: the source's egress or the destination's
    ingress.  ``policies``: keys of the policies isolating the pod for this
    direction (empty: not isolated); ``allowed_by``: the rules that match."""

    direction: DirectionName
    isolated: bool
    allowed: bool
    policies: tuple[PolicyKey, ...] = ()
    allowed_by: tuple[RuleRef, ...] = ()
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "isolated": self.isolated,
            "allowed": self.allowed,
            "policies": list(self.policies),
            "allowed_by": [{"policy": r.policy, "direction": r.direction, "rule": r.index}
                           for r in self.allowed_by],
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    egress: DirectionVerdict
    ingress: DirectionVerdict
    src: Endpoint
    dst: Endpoint
    port: int
    protocol: Protocol

    @property
    def verdict(self) -> str:
        return "allow" if self.allowed else "deny"

    def reasons(self) -> list[str]:
        return [f"egress: {self.egress.reason}", f"ingress: {self.ingress.reason}"]

    def summary(self) -> str:
        return (f"{self.verdict} {self.src.name} ({self.src.ip}) -> {self.dst.name} ({self.dst.ip}) "
                f"{self.port}/{self.protocol}: " + "; ".join(self.reasons()))

    def to_json(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "verdict": self.verdict,
            "src": self.src.to_json(),
            "dst": self.dst.to_json(),
            "port": self.port,
            "protocol": self.protocol,
            "egress": self.egress.to_json(),
            "ingress": self.ingress.to_json(),
        }


def _side(cluster: Cluster, direction: DirectionName, subject: Endpoint, peer: Endpoint,
          port: int, protocol: Protocol, dst: Endpoint) -> DirectionVerdict:
    role = "source" if direction == "egress" else "destination"
    if subject.pod is None:
        return DirectionVerdict(direction, False, True,
                                reason=f"{role} {subject.name} is not a pod policies select")
    pols = selecting(cluster, subject.pod, direction)
    if not pols:
        return DirectionVerdict(direction, False, True,
                                reason=f"no policy isolates {subject.name} for {direction}")
    keys = tuple(p.key for p in pols)
    if direction == "ingress" and peer.node and peer.node == subject.pod.node and peer.pod is None:
        return DirectionVerdict(direction, True, True, keys,
                                reason=f"from {subject.name}'s own node {peer.node} (always allowed)")
    refs: list[RuleRef] = []
    for pol in pols:
        rules = pol.egress if direction == "egress" else pol.ingress
        for i, rule in enumerate(rules):
            if rule_matches(cluster, rule, pol.namespace, peer, port, protocol, dst):
                refs.append(RuleRef(pol.key, direction, i))
    if refs:
        why = "allowed by " + ", ".join(r.text() for r in refs)
    else:
        why = f"isolated by {', '.join(keys)}; no {direction} rule matches"
    return DirectionVerdict(direction, True, bool(refs), keys, tuple(refs), why)


def decide(cluster: Cluster, src: str, dst: str, port: int, protocol: Protocol = "TCP",
           family: int | None = None) -> Decision:
    """Decide a connection.  ``src``/``dst``: ``namespace/name`` of a pod,
    or an IP address (an outside host, a node; a pod's IP means that pod).
    Raises :class:`OracleError` when an end cannot be resolved."""
    if not 0 < port < 65536:
        raise OracleError(f"port {port} is not between 1 and 65535")
    s, d = resolve(cluster, src, dst, family)
    if s.pod is not None and d.pod is not None and s.pod.key == d.pod.key:
        why = f"{s.name} to itself never leaves its network namespace (always allowed)"
        eg, ing = DirectionVerdict("egress", False, True, reason=why), DirectionVerdict("ingress", False, True, reason=why)
        return Decision(True, eg, ing, s, d, port, protocol)
    eg = _side(cluster, "egress", s, d, port, protocol, d)
    ing = _side(cluster, "ingress", d, s, port, protocol, d)
    return Decision(eg.allowed and ing.allowed, eg, ing, s, d, port, protocol)

