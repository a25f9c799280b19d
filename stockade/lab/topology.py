"""The lab's network, as a pure plan: namespaces, links, addresses, routes.

A lab is a small cluster built from Linux network namespaces on one machine:

* ``<prefix>-u``  the *underlay*: a router namespace holding bridge ``br0``
  (198.19.0.254/24) that joins the nodes and the control namespace; it routes
  each node's pod CIDR to that node's IP and each outside host to its veth,
  so outside hosts reach pod IPs without address translation;
* ``<prefix>-n<i>`` node ``i``: ``eth0`` 198.19.0.(i+1)/24 on the underlay,
  pod CIDR 198.18.i.0/24, routes to the other nodes' pod CIDRs via their
  node IPs, ``ip_forward=1`` and ``bridge-nf-call-iptables=1``;

  - *bridged* mode (kubenet, as on AKS): bridge ``cbr0`` holds the gateway
    198.18.i.1/24 and every pod veth is a port of it (same-node traffic is
    bridged and, through br_netfilter, still crosses the node's FORWARD);
  - *routed* mode (Azure CNI style): no bridge; the gateway lives on ``lo``,
    each pod veth gets a /32 route and answers ARP by proxy;

* ``<prefix>-p<k>`` pod ``k`` (its veth ``eth0`` into the node, default route
  via the gateway); hostNetwork pods get no namespace of their own;
* ``<prefix>-c`` the control namespace (API emulator and controller),
  198.19.0.250/24 on the underlay;
* ``<prefix>-x<j>`` outside host ``j`` at its documentation-range address,
  behind the underlay router (proxy ARP on the router's side).

Nothing is ever created in the machine's own network namespace: every link
is created inside a lab namespace with its peer moved straight into another.

This module only *plans*: it renders ``ip -batch`` lines and sysctl settings
per namespace.  ``stockade.lab.netns`` runs them.  It does not decide pod
addresses (that is the case address plan) and knows nothing of Kubernetes.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from stockade.case_addresses import gateway_ip, node_ip, pod_cidr

Mode = Literal["bridged", "routed"]
MODES: tuple[Mode, ...] = ("bridged", "routed")

NS_PREFIX = "stklab-"  # every lab namespace starts with this (``lab clean`` looks for it)
UNDERLAY_NET = "198.19.0.0/24"
ROUTER_IP = "198.19.0.254"
CONTROL_IP = "198.19.0.250"
MAX_NODES = 200  # node IPs 198.19.0.1 .. .200 stay clear of the control/router addresses
MAX_IFNAME = 15


class TopologyError(ValueError):
    """A lab that cannot be built as asked (names the field)."""


def prefix_for(runid: str) -> str:
    if not runid or not runid.isalnum() or len(runid) > 12:
        raise TopologyError(f"runid: {runid!r} must be 1-12 letters or digits")
    return f"{NS_PREFIX}{runid}"


def runid_of(namespace: str) -> str | None:
    """The run id of a lab namespace name, or None when it is not one."""
    if not namespace.startswith(NS_PREFIX):
        return None
    rest = namespace[len(NS_PREFIX):]
    runid, sep, _role = rest.partition("-")
    return runid if sep and runid else None


def _mac(kind: int, a: int, b: int) -> str:
    """A stable locally administered MAC, so a bridge keeps its address
    when ports come and go (pods' ARP caches never go stale)."""
    return f"02:5c:{kind:02x}:{a // 256:02x}:{a % 256:02x}:{b:02x}"


@dataclass(frozen=True, slots=True)
class External:
    """An outside host: its own namespace at a documentation-range address."""

    name: str
    ip: str


@dataclass(frozen=True, slots=True)
class PodWiring:
    """Where one pod lives: its own namespace (``netns``) on ``node`` with
    ``ip``, or the node's namespace itself when ``host_network``."""

    key: str  # "namespace/name"
    index: int  # run-unique serial; names the namespace and the node-side veth
    node: int
    ip: str
    host_network: bool
    netns: str

    @property
    def veth(self) -> str:
        return f"v{self.index}"


@dataclass(frozen=True, slots=True)
class Batch:
    """Commands for one namespace: ``ip -n NETNS -batch`` lines, then sysctls."""

    netns: str
    ip_lines: tuple[str, ...] = ()
    sysctls: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class LabPlan:
    """The fixed part of a lab: underlay, control, nodes and outside hosts."""

    runid: str
    mode: Mode
    nodes: int
    externals: tuple[External, ...] = ()
    prefix: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", prefix_for(self.runid))
        if self.mode not in MODES:
            raise TopologyError(f"mode: {self.mode!r} is not one of {MODES}")
        if not 1 <= self.nodes <= MAX_NODES:
            raise TopologyError(f"nodes: {self.nodes} is not in 1..{MAX_NODES}")
        seen: set[str] = set()
        for j, x in enumerate(self.externals):
            ip = ipaddress.ip_address(x.ip)
            if ip.version != 4 or any(ip in ipaddress.ip_network(n) for n in ("198.18.0.0/15",)):
                raise TopologyError(f"external[{j}].ip: {x.ip} must be IPv4 outside 198.18.0.0/15")
            if x.ip in seen:
                raise TopologyError(f"external[{j}].ip: {x.ip} is used twice")
            seen.add(x.ip)

    # ---- names
    @property
    def underlay_ns(self) -> str:
        return f"{self.prefix}-u"

    @property
    def control_ns(self) -> str:
        return f"{self.prefix}-c"

    def node_ns(self, i: int) -> str:
        return f"{self.prefix}-n{i}"

    def external_ns(self, j: int) -> str:
        return f"{self.prefix}-x{j}"

    def pod_ns(self, index: int) -> str:
        return f"{self.prefix}-p{index}"

    def base_namespaces(self) -> list[str]:
        return ([self.underlay_ns, self.control_ns] + [self.node_ns(i) for i in range(self.nodes)]
                + [self.external_ns(j) for j in range(len(self.externals))])

    def external_ns_by_name(self, name: str) -> str:
        for j, x in enumerate(self.externals):
            if x.name == name:
                return self.external_ns(j)
        raise KeyError(name)

    def pod(self, key: str, index: int, node: int, ip: str, host_network: bool) -> PodWiring:
        if not 0 <= node < self.nodes:
            raise TopologyError(f"pod {key}: node {node} is not in 0..{self.nodes - 1}")
        if host_network:
            return PodWiring(key, index, node, node_ip(node), True, self.node_ns(node))
        if ipaddress.ip_address(ip) not in ipaddress.ip_network(pod_cidr(node)) or ip == gateway_ip(node):
            raise TopologyError(f"pod {key}: address {ip} is not a pod address of node {node}")
        return PodWiring(key, index, node, ip, False, self.pod_ns(index))

    # ---- rendering
    def base_batches(self) -> list[list[Batch]]:
        """Phases of batches: every batch of a phase may run concurrently;
        phases run in order (links exist before they are configured)."""
        links: list[Batch] = []
        conf: list[Batch] = []
        u = self.underlay_ns
        ul = ["link set lo up",
              "link add br0 type bridge stp_state 0 forward_delay 0",
              f"link set br0 address {_mac(1, 0, 254)}",
              f"link add c0 type veth peer name eth0 netns {self.control_ns}"]
        ul += [f"link add n{i} type veth peer name eth0 netns {self.node_ns(i)}" for i in range(self.nodes)]
        ul += [f"link add x{j} type veth peer name eth0 netns {self.external_ns(j)}"
               for j in range(len(self.externals))]
        links.append(Batch(u, tuple(ul)))
        uc = [f"addr add {ROUTER_IP}/24 dev br0", "link set br0 up",
              "link set c0 master br0", "link set c0 up"]
        for i in range(self.nodes):
            uc += [f"link set n{i} master br0", f"link set n{i} up",
                   f"route add {pod_cidr(i)} via {node_ip(i)}"]
        usys: list[tuple[str, str]] = [("net.ipv4.ip_forward", "1"), *_no_rp_filter()]
        for j, x in enumerate(self.externals):
            uc += [f"link set x{j} up", f"route add {x.ip}/32 dev x{j}"]
            usys += [(f"net.ipv4.conf.x{j}.proxy_arp", "1"), (f"net.ipv4.neigh.x{j}.proxy_delay", "0")]
        conf.append(Batch(u, tuple(uc), tuple(usys)))
        conf.append(Batch(self.control_ns, (
            "link set lo up", f"addr add {CONTROL_IP}/24 dev eth0", "link set eth0 up",
            f"route add default via {ROUTER_IP}"), tuple(_no_rp_filter())))
        for i in range(self.nodes):
            nl: list[str] = []
            nc = ["link set lo up", f"addr add {node_ip(i)}/24 dev eth0", "link set eth0 up"]
            nc += [f"route add {pod_cidr(k)} via {node_ip(k)}" for k in range(self.nodes) if k != i]
            nc.append(f"route add default via {ROUTER_IP}")
            if self.mode == "bridged":
                nl = ["link add cbr0 type bridge stp_state 0 forward_delay 0",
                      f"link set cbr0 address {_mac(2, i, 1)}"]
                nc += [f"addr add {gateway_ip(i)}/24 dev cbr0", "link set cbr0 up"]
            else:
                nc += [f"addr add {gateway_ip(i)}/32 dev lo", f"route add blackhole {pod_cidr(i)}"]
            if nl:
                links.append(Batch(self.node_ns(i), tuple(nl)))
            conf.append(Batch(self.node_ns(i), tuple(nc), (
                ("net.ipv4.ip_forward", "1"), ("net.bridge.bridge-nf-call-iptables", "1"),
                ("net.bridge.bridge-nf-call-ip6tables", "1"), *_no_rp_filter())))
        for j, x in enumerate(self.externals):
            conf.append(Batch(self.external_ns(j), (
                "link set lo up", f"addr add {x.ip}/32 dev eth0", "link set eth0 up",
                "route add default dev eth0"), tuple(_no_rp_filter())))
        return [links, conf]

    def pod_batches(self, pod: PodWiring) -> list[list[Batch]]:
        """Phases that wire one pod into its node (nothing for hostNetwork)."""
        if pod.host_network:
            return []
        node = self.node_ns(pod.node)
        make = Batch(node, (f"link add {pod.veth} type veth peer name eth0 netns {pod.netns}",))
        if self.mode == "bridged":
            nc: tuple[str, ...] = (f"link set {pod.veth} master cbr0", f"link set {pod.veth} up")
            nsys: tuple[tuple[str, str], ...] = ()
        else:
            nc = (f"link set {pod.veth} up", f"route add {pod.ip}/32 dev {pod.veth}")
            nsys = ((f"net.ipv4.conf.{pod.veth}.proxy_arp", "1"),
                    (f"net.ipv4.neigh.{pod.veth}.proxy_delay", "0"))
        pc = Batch(pod.netns, ("link set lo up", f"addr add {pod.ip}/24 dev eth0", "link set eth0 up",
                               f"route add default via {gateway_ip(pod.node)}"), tuple(_no_rp_filter()))
        return [[make], [Batch(node, nc, nsys), pc]]


    def unwire_batches(self, pod: PodWiring) -> list[list[Batch]]:
        """Remove a pod's veth (and with it its /32 route) from the node
        *now*: deleting the pod's namespace alone frees the link only when
        the kernel gets round to it, too late for a pod reusing the address."""
        if pod.host_network:
            return []
        return [[Batch(self.node_ns(pod.node), (f"link del {pod.veth}",))]]


def _no_rp_filter() -> list[tuple[str, str]]:
    return [("net.ipv4.conf.all.rp_filter", "0"), ("net.ipv4.conf.default.rp_filter", "0")]


def check_ifnames(batches: list[list[Batch]]) -> None:
    """Raise TopologyError if a planned interface name is too long."""
    for phase in batches:
        for b in phase:
            for line in b.ip_lines:
                words = line.split()
                for kw in ("add", "name"):
                    if kw in words and words[0] == "link":
                        n = words[words.index(kw) + 1]
                        if len(n) > MAX_IFNAME:
                            raise TopologyError(f"interface name {n!r} is longer than {MAX_IFNAME}")
