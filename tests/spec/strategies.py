"""Hypothesis strategies for random clusters, policies and probes.

What: :func:`clusters` draws a small cluster (namespaces, nodes, pods,
policies) as ``controller.model`` records, the policies parsed by
``controller.parse`` from the Kubernetes JSON that :func:`policy_json`
draws (kept in ``RandomCluster.policy_objects``); :func:`probes` draws
connections between its endpoints that the oracle can resolve.  Every
feature of NetworkPolicy v1 is reachable: empty/null selectors, all four
expression operators, namespace selectors alone and AND-ed with pod
selectors, ipBlocks with excepts (IPv4 and IPv6, overlapping so that one
block's except can equal another's cidr), numeric, named (per-pod numbers)
and ranged ports over TCP/UDP/SCTP, every policyTypes form, hostNetwork
pods, finished and IP-less pods, dual-stack pods and nodes.

Why: the differential test (oracle == engine + walker, in tests/engine)
and the oracle's own property tests share one generator.  Label and port
universes are tiny on purpose, so selectors and ports match often.

What not: no assertions; nothing here decides anything.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from controller.model import ContainerPort, Namespace, NetworkPolicy, Node, Pod
from controller.oracle import Cluster, OracleError, resolve
from controller.parse import parse_policy

POD_KEYS = ("app", "role", "tier")
POD_VALUES = ("a", "b", "c")
NS_KEYS = ("team", "env")
NS_VALUES = ("x", "y")
NS_NAMES = ("ns-a", "ns-b", "ns-c")
EXTERNAL = ("192.0.2.10", "198.51.100.7", "2001:db8::10")
PROBE_PORTS = (53, 80, 81, 443, 8080, 9000, 5000)
# (name, number, protocol) a pod may serve; the same name maps to different
# numbers on different pods ("http" 80 or 8080), so named ports resolve per pod.
PORT_CHOICES = (
    ("http", 80, "TCP"), ("http", 8080, "TCP"), ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"),
    ("metrics", 9000, "TCP"), ("metrics", 9000, "SCTP"), ("", 443, "TCP"), ("api", 5000, "TCP"),
)
PORT_NAMES = ("http", "dns", "dns-tcp", "metrics", "api", "nothing")
# cidr -> excepts strictly within it
BLOCKS: dict[str, tuple[str, ...]] = {
    "0.0.0.0/0": ("198.18.0.0/16", "192.0.2.0/24", "198.18.1.0/24"),
    "198.18.0.0/15": ("198.18.0.0/24", "198.19.0.0/24", "198.18.1.2/32"),
    "198.18.0.0/24": ("198.18.0.2/32", "198.18.0.0/28"),
    "198.18.1.0/24": ("198.18.1.2/31",),
    "198.19.0.0/24": ("198.19.0.1/32",),
    "192.0.2.0/24": ("192.0.2.0/28", "192.0.2.10/32"),
    "192.0.2.0/28": (),
    "198.51.100.0/24": (),
    "::/0": ("fd00:18::/32",),
    "fd00:18::/32": ("fd00:18::/48",),
    "fd00:19::/64": ("fd00:19::1/128",),
    "2001:db8::/32": ("2001:db8::10/128",),
}


@dataclass(frozen=True)
class RandomCluster:
    namespaces: tuple[Namespace, ...]
    nodes: tuple[Node, ...]
    pods: tuple[Pod, ...]
    policies: tuple[NetworkPolicy, ...]
    policy_objects: tuple[dict[str, Any], ...]

    def oracle_cluster(self) -> Cluster:
        return Cluster(self.namespaces, self.pods, self.nodes, self.policies)

    def endpoints(self) -> list[str]:
        """What a probe may name: pods with an address, node and outside IPs."""
        refs: list[str] = [p.key for p in self.pods if p.ips or p.host_network]
        refs += [a for n in self.nodes for a in n.addresses]
        return refs + list(EXTERNAL)


@dataclass(frozen=True)
class RandomProbe:
    src: str
    dst: str
    port: int
    protocol: str  # TCP, UDP, SCTP
    family: int | None


# --------------------------------------------------------------------------
# Policy JSON


def _labels(keys: tuple[str, ...], values: tuple[str, ...], max_size: int = 2) -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(st.sampled_from(keys), st.sampled_from(values), max_size=max_size)


def _expression(keys: tuple[str, ...], values: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    with_values = st.builds(lambda k, op, vs: {"key": k, "operator": op, "values": vs},
                            st.sampled_from(keys), st.sampled_from(("In", "NotIn")),
                            st.lists(st.sampled_from(values), min_size=1, max_size=2))
    without = st.builds(lambda k, op: {"key": k, "operator": op},
                        st.sampled_from(keys), st.sampled_from(("Exists", "DoesNotExist")))
    return st.one_of(with_values, without)


def label_selector_json(keys: tuple[str, ...] = POD_KEYS,
                        values: tuple[str, ...] = POD_VALUES) -> st.SearchStrategy[dict[str, Any]]:
    """A valid selector, including the select-all spellings."""
    full = st.builds(lambda ml, me: {k: v for k, v in (("matchLabels", ml), ("matchExpressions", me)) if v},
                     _labels(keys, values), st.lists(_expression(keys, values), max_size=2))
    return st.one_of(st.just({}), st.just({"matchLabels": None}), full, full)


def _ip_block() -> st.SearchStrategy[dict[str, Any]]:
    def block(cidr: str, excepts: list[str]) -> dict[str, Any]:
        return {"cidr": cidr, "except": excepts} if excepts else {"cidr": cidr}

    return st.sampled_from(sorted(BLOCKS)).flatmap(
        lambda c: st.builds(block, st.just(c), st.lists(st.sampled_from(BLOCKS[c]), unique=True, max_size=2)
                            if BLOCKS[c] else st.just([])))


def peer_json() -> st.SearchStrategy[dict[str, Any]]:
    pod = label_selector_json()
    ns = label_selector_json((*NS_KEYS, "kubernetes.io/metadata.name"), NS_VALUES + NS_NAMES)
    return st.one_of(
        st.builds(lambda p: {"podSelector": p}, pod),
        st.builds(lambda n: {"namespaceSelector": n}, ns),
        st.builds(lambda p, n: {"podSelector": p, "namespaceSelector": n}, pod, ns),
        st.builds(lambda b: {"ipBlock": b}, _ip_block()),
    )


def port_json() -> st.SearchStrategy[dict[str, Any]]:
    proto = st.sampled_from((None, "TCP", "UDP", "SCTP"))

    def build(p: str | None, port: Any) -> dict[str, Any]:
        d: dict[str, Any] = {} if p is None else {"protocol": p}
        if isinstance(port, tuple):
            d["port"], d["endPort"] = port
        elif port is not None:
            d["port"] = port
        return d

    port = st.one_of(st.none(), st.sampled_from(PROBE_PORTS), st.sampled_from(PORT_NAMES),
                     st.sampled_from(((79, 81), (8000, 8100), (1, 65535), (53, 53), (444, 9000))))
    return st.builds(build, proto, port)


def _rules(peers_field: str) -> st.SearchStrategy[list[dict[str, Any]] | None]:
    def build(peers: list[dict[str, Any]] | None, ports: list[dict[str, Any]] | None) -> dict[str, Any]:
        r: dict[str, Any] = {}
        if peers is not None:
            r[peers_field] = peers
        if ports is not None:
            r["ports"] = ports
        return r

    rule = st.builds(build, st.one_of(st.none(), st.lists(peer_json(), max_size=3)),
                     st.one_of(st.none(), st.lists(port_json(), max_size=2)))
    return st.one_of(st.none(), st.lists(rule, max_size=2))


def _spec(sel: dict[str, Any], types: list[str] | None, ingress: Any, egress: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": sel}
    if types is not None:
        spec["policyTypes"] = types
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return spec


# Built once: hypothesis validates a strategy the first time it is drawn
# from, which costs far more than drawing; fresh strategies per draw were
# 50x slower.
POLICY_SPEC: st.SearchStrategy[dict[str, Any]] = st.builds(
    _spec, label_selector_json(),
    st.sampled_from((None, ["Ingress"], ["Egress"], ["Ingress", "Egress"], ["Egress", "Ingress"])),
    _rules("from"), _rules("to"))


def policy_object(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def policy_json(namespace: str, name: str) -> st.SearchStrategy[dict[str, Any]]:
    """A valid NetworkPolicy object in ``namespace``."""
    return POLICY_SPEC.map(lambda spec: policy_object(namespace, name, spec))


# --------------------------------------------------------------------------
# Clusters


def _node(i: int) -> Node:
    return Node(f"node-{i}", (f"198.19.0.{i + 1}", f"fd00:19::{i + 1}"),
                (f"198.18.{i}.0/24", str(ipaddress.ip_network(f"fd00:18:{i}::/64"))))


_KIND = st.sampled_from(("v4", "v4", "v4", "dual", "dual", "v6", "host", "finished", "noip"))
_FINISHED = st.sampled_from(("Succeeded", "Failed"))
_POD_PORTS = st.lists(st.sampled_from(PORT_CHOICES), max_size=3, unique_by=lambda c: c[0] or str(c[1]))
_POD_LABELS = _labels(POD_KEYS, POD_VALUES, 3)
_NS_LABELS = _labels(NS_KEYS, NS_VALUES)
_NS_NAME = st.sampled_from(NS_NAMES)


def _pod(draw: st.DrawFn, i: int, nodes: int) -> Pod:
    ns = draw(_NS_NAME)
    node = draw(st.integers(0, nodes - 1))
    kind = draw(_KIND)
    v4, v6 = f"198.18.{node}.{i + 2}", str(ipaddress.ip_address(f"fd00:18:{node}::{i + 2}"))
    ips: tuple[str, ...] = {"v4": (v4,), "dual": (v4, v6), "v6": (v6,), "finished": (v4,), "noip": (),
                            "host": (f"198.19.0.{node + 1}", f"fd00:19::{node + 1}")}[kind]
    phase = draw(_FINISHED) if kind == "finished" else "Pending" if kind == "noip" else "Running"
    chosen = draw(_POD_PORTS)
    ports = tuple(ContainerPort(n, p, name) for name, n, p in chosen  # type: ignore[arg-type]
                  if not any(o != (name, n, p) and o[1:] == (n, p) for o in chosen))
    return Pod(ns, f"p{i}", draw(_POD_LABELS), f"node-{node}", ips, kind == "host", phase, ports)


@st.composite
def clusters(draw: st.DrawFn, max_pods: int = 8, max_policies: int = 4) -> RandomCluster:
    """A random cluster; every policy valid (parsed from its JSON)."""
    n_nodes = draw(st.integers(1, 3))
    namespaces = tuple(Namespace(name, {"kubernetes.io/metadata.name": name, **draw(_NS_LABELS)})
                       for name in NS_NAMES)
    n_pods = draw(st.integers(1, max_pods))
    pods = tuple(_pod(draw, i, n_nodes) for i in range(n_pods))
    n_pol = draw(st.integers(0, max_policies))
    objs = tuple(policy_object(draw(_NS_NAME), f"pol-{i}", draw(POLICY_SPEC)) for i in range(n_pol))
    policies = tuple(parse_policy(o) for o in objs)
    return RandomCluster(namespaces, tuple(_node(i) for i in range(n_nodes)), pods, policies, objs)


@st.composite
def probes(draw: st.DrawFn, cluster: RandomCluster) -> RandomProbe:
    """A probe between two different endpoints the oracle can resolve."""
    refs = cluster.endpoints()
    oc = cluster.oracle_cluster()

    def families(a: str, b: str) -> list[int]:
        out = []
        for fam in (4, 6):
            try:
                resolve(oc, a, b, fam)
                out.append(fam)
            except OracleError:
                pass
        return out

    src = draw(st.sampled_from(refs))
    dsts = [r for r in refs if r != src and families(src, r)]  # an outside host of src's family always fits
    dst = draw(st.sampled_from(dsts))
    family = draw(st.sampled_from([None, *families(src, dst)]))
    return RandomProbe(src, dst, draw(st.sampled_from(PROBE_PORTS)),
                       draw(st.sampled_from(("TCP", "TCP", "UDP", "SCTP"))), family)


@st.composite
def cluster_and_probes(draw: st.DrawFn, max_probes: int = 6) -> tuple[RandomCluster, list[RandomProbe]]:
    c = draw(clusters())
    return c, draw(st.lists(probes(c), min_size=1, max_size=max_probes))
