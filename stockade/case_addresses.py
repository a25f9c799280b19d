"""The address plan of a case: node names and IPs, pod CIDRs, pod addresses.

What (the lab relies on it; do not change it casually):

* node ``i`` (0-based) is named ``node-i``, has underlay IP ``198.19.0.(i+1)``,
  pod CIDR ``198.18.i.0/24`` and bridge gateway ``198.18.i.1``;
* pods are numbered in case order (the ``pods`` list, then ``create-pod``
  actions in step order); pod number ``k`` without ``node`` goes to node
  ``k % nodes``;
* a pod gets the lowest free address ``198.18.<node>.2`` .. ``.254`` on its
  node (a deleted pod's address becomes free again); hostNetwork pods have
  their node's IP and take no pod address.

Why its own module: ``stockade evaluate`` and the lab must place every pod
at the same address, and :class:`AddressPlan` is the one place that
decides it (also incrementally, for steps).

What not: no objects (``case_world``), no templates (``case_templates``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from stockade.case_values import Case, External, PodDecl

POD_NET = ipaddress.ip_network("198.18.0.0/15")


def node_name(i: int) -> str:
    return f"node-{i}"


def node_ip(i: int) -> str:
    return f"198.19.0.{i + 1}"


def pod_cidr(i: int) -> str:
    return f"198.18.{i}.0/24"


def gateway_ip(i: int) -> str:
    return f"198.18.{i}.1"


class AddressPlan:
    """Where every node, pod and outside host sits.  ``pod_ips`` and
    ``pod_nodes`` map ``NS/POD`` to its IP and node index; ``external``
    maps a host name to its IP; ``_used[i]`` holds the host numbers taken on
    node ``i``; ``ordinal`` counts pods placed so far (round-robin)."""

    def __init__(self, nodes: int, external: Iterable[External] = ()) -> None:
        self.nodes = nodes
        self.pod_ips: dict[str, str] = {}
        self.pod_nodes: dict[str, int] = {}
        self.external = {e.name: e.ip for e in external}
        self.ordinal = 0
        self._used: list[set[int]] = [set() for _ in range(nodes)]

    def add_pod(self, pod: PodDecl) -> str:
        """Place and address ``pod`` (the next in case order); its IP."""
        if pod.key in self.pod_ips:
            raise ValueError(f"pod {pod.key} already exists")
        node = pod.node if pod.node is not None else self.ordinal % self.nodes
        self.ordinal += 1
        if pod.host_network:
            ip = node_ip(node)
        else:
            free = next((h for h in range(2, 255) if h not in self._used[node]), None)
            if free is None:
                raise ValueError(f"node {node} has no free pod address left")
            self._used[node].add(free)
            ip = f"198.18.{node}.{free}"
        self.pod_ips[pod.key] = ip
        self.pod_nodes[pod.key] = node
        return ip

    def remove_pod(self, key: str) -> None:
        ip = self.pod_ips.pop(key)
        node = self.pod_nodes.pop(key)
        if ip != node_ip(node):
            self._used[node].discard(int(ip.rsplit(".", 1)[1]))

    def lookup(self, ref: str) -> str:
        """Address of ``NS/POD`` or ``external:NAME``; KeyError if unknown."""
        if ref.startswith("external:"):
            return self.external[ref[len("external:"):]]
        return self.pod_ips[ref]


def plan_addresses(case: Case) -> AddressPlan:
    """The plan for the case's top-level pods (steps extend it)."""
    plan = AddressPlan(case.nodes, case.external)
    for p in case.pods:
        plan.add_pod(p)
    return plan
